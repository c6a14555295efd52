// The public surface of overlay-graphdriver: nothing else is API.
export { DRIVER_NAMES, createDriver } from './drivers/create-driver.js';
export type { DriverName } from './drivers/create-driver.js';
export { checkStoreHome, openStore } from './store/store.js';
export { openLayer } from './archive/compression.js';
export type { Compression, LayerFormat, OpenedLayer } from './archive/compression.js';
export type {
  CheckOptions,
  CheckReport,
  CleanupOptions,
  CleanupResult,
  ImageInfo,
  ImageLayerRecord,
  ImageRecord,
  ImageUsage,
  KeepBlobs,
  Layer,
  LayerKind,
  LayerRecord,
  LayerUsage,
  BlobUsage,
  MountHolder,
  Problem,
  ProblemKind,
  RemoveImageOptions,
  RemoveImageResult,
  RepairOptions,
  RepairReport,
  Store,
  StoreDf,
  StoreDfOptions,
  StorePruneOptions,
  StorePruneResult,
  UsageSummary,
  StoreCreateOptions,
  StoreDiffOptions,
  StoreImportOptions,
  StoreMountOptions,
  StoreOptions,
  StoreCommitOptions,
  StorePullOptions,
  StorePullResult,
  StorePushOptions,
  StorePushResult,
  ResolvedId,
  StoreResolveOptions,
  StoreUnmountOptions,
  UnmountResult,
} from './store/types.js';
export type {
  ApplyDiffOptions,
  Change,
  ChangeKind,
  CreateOptions,
  DiffSource,
  Driver,
  DriverOptions,
  GetOptions,
  PutOptions,
  IDMap,
  LayerFileSource,
  LongOperationOptions,
  Progress,
} from './types.js';
export {
  AbortError,
  AmbiguousIdError,
  BlobTooLargeError,
  DamagedRecordError,
  DigestMismatchError,
  GraphDriverError,
  IncompatibleFsError,
  ImageInUseError,
  ImageNotFoundError,
  InvalidArchiveError,
  InvalidIdError,
  InvalidImageError,
  InvalidOptionError,
  InvalidReferenceError,
  LayerExistsError,
  LayerInUseError,
  LayerNotFoundError,
  LayerRemovedError,
  NoSpaceError,
  NotLoggedInError,
  NotSupportedError,
  RegistryError,
  UnsafeLayerError,
  isSystemError,
} from './errors.js';
export type { SystemError } from './errors.js';
export type { LayerProgress } from './image/pull.js';
export type { PushProgress } from './image/push.js';
export type { CommitProgress } from './image/commit.js';
export { parseReference } from './image/reference.js';
export type { DockerReference, ImageReference, OciLayoutReference } from './image/reference.js';
export { copyTree } from './native.js';
export type { CopyProgress, CopyStats, CopyTreeOptions } from './native.js';
export { LayerFile } from './archive/layer-file.js';
export { authFilePath, checkLogin, loggedInAs, login, logout } from './image/login.js';
export type { LoginOptions, LogoutOptions, LogoutResult } from './image/login.js';
