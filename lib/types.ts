// The public contract of a graph driver (DESIGN.md section 3), shared by every driver,
// the CLI and the tests. Method names follow containers/storage's Go verbs so the two
// code bases read side by side.
import type { Readable } from 'node:stream';

/** One range of a user-namespace id mapping: container ids [containerId, containerId+size) ↔ host ids [hostId, …). */
export interface IDMap {
  containerId: number;
  hostId: number;
  size: number;
}

export interface DriverOptions {
  uidMaps?: IDMap[];
  gidMaps?: IDMap[];
  /** Driver-specific "key=value" options; the overlay driver accepts none yet and rejects unknown keys. */
  options?: string[];
}

export interface CreateOptions {
  /** SELinux label for the layer's mount, added as context="…". */
  mountLabel?: string;
  /** Per-layer storage options; the overlay driver supports none and rejects any. */
  storageOpt?: Record<string, string>;
}

export interface GetOptions {
  mountLabel?: string;
}

export interface PutOptions {
  /**
   * When the last reference goes, detach the mount even if something still uses it (a
   * process's cwd, an open file): umount2(MNT_DETACH). The kernel frees it when its
   * last user leaves. Without it, a busy mount fails with EBUSY and stays.
   */
  lazy?: boolean;
}

/** Progress of a long operation, reported at most every 100 ms. */
export interface Progress {
  entries: number;
  bytes: number;
  /** Total bytes expected, when known. */
  totalBytes?: number;
}

export interface LongOperationOptions {
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

export interface ApplyDiffOptions extends LongOperationOptions {
  /** Also apply trusted.* and security.selinux xattrs found in the tar (default: only security.capability and user.*). */
  allowPrivilegedXattrs?: boolean;
  /** Apply a 0-byte stream as an empty diff; by default it is refused with ERR_OGD_INVALID_ARCHIVE (a tar has at least its two zero blocks). */
  allowEmpty?: boolean;
  /**
   * Called once the apply has succeeded, with the length and sha256 ("sha256:<hex>")
   * of the uncompressed tar it read (all of it, past the end of the archive too):
   * what a store records as the layer's uncompressed size and digest.
   */
  onTarDigest?: (tar: { size: number; digest: string }) => void;
}

export type ChangeKind = 'A' | 'C' | 'D';

/** One change between a layer and its parent, as containers/storage's ChangesDirs reports it. */
export interface Change {
  /** Absolute path inside the layer, e.g. "/etc/passwd". */
  path: string;
  kind: ChangeKind;
}

/**
 * A layer tar in a file, named by its path: plain data (`new LayerFile(path)` makes one
 * and checks the path). The apply reads the file itself (plain, gzip or zstd), the
 * fastest way to import a layer from disk.
 */
export interface LayerFileSource {
  readonly kind: 'layer-file';
  readonly path: string;
}

/** An uncompressed layer tar as a stream or chunks, or a layer file. */
export type DiffSource = NodeJS.ReadableStream | AsyncIterable<Uint8Array> | LayerFileSource;

export interface Driver {
  readonly name: string;
  readonly home: string;
  /** Pairs such as ['Backing Filesystem', 'extfs']. */
  status(): Array<[string, string]>;
  /** RootDir for an image; LowerDir, UpperDir, WorkDir, MergedDir for a layer on top of one. */
  getMetadata(id: string): Promise<Record<string, string>>;
  create(id: string, parent?: string, opts?: CreateOptions): Promise<void>;
  createReadWrite(id: string, parent?: string, opts?: CreateOptions): Promise<void>;
  remove(id: string): Promise<void>;
  /** Mounts (refcounted) and returns the path of the layer's filesystem. */
  get(id: string, opts?: GetOptions): Promise<string>;
  put(id: string, opts?: PutOptions): Promise<void>;
  exists(id: string): Promise<boolean>;
  /** Unmounts everything this driver mounted, including its home's bind mount. */
  cleanup(): Promise<void>;
  /** Applies an uncompressed layer tar; returns the bytes of content applied. All or nothing. */
  applyDiff(id: string, parent: string | undefined, diff: DiffSource, opts?: ApplyDiffOptions): Promise<number>;
  /** An uncompressed, deterministic tar of the changes of `id` against `parent`. */
  diff(id: string, parent?: string, opts?: LongOperationOptions): Promise<Readable>;
  /**
   * The same tar as diff(), written to the open file descriptor `fd` (a file, pipe,
   * socket or character device, blocking or not; the caller closes it). Faster than
   * piping diff(): file content goes from the layer to `fd` inside the kernel
   * (sendfile). Resolves to the bytes written; on failure what was written stays.
   */
  writeDiff(id: string, parent: string | undefined, fd: number, opts?: LongOperationOptions): Promise<number>;
  changes(id: string, parent?: string, opts?: LongOperationOptions): Promise<Change[]>;
  diffSize(id: string, parent?: string, opts?: LongOperationOptions): Promise<number>;
}
