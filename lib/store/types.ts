// The Store's public types (lib/store/store.ts has the contract).
import type { Readable } from 'node:stream';
import type { ApplyDiffOptions, Change, DiffSource, DriverOptions, LongOperationOptions } from '../types.js';
import type { Compression } from '../archive/compression.js';
import type { LayerProgress } from '../image/pull.js';
import type { PushProgress } from '../image/push.js';
import type { CommitProgress } from '../image/commit.js';
import type { DriverName } from '../drivers/create-driver.js';

export type LayerKind = 'image' | 'container';

/** What the store records about a layer (home/layers/<id>). */
export interface LayerRecord {
  id: string;
  /** The layer this one was created on; for a container layer, its driver's lower layer or a container on it. */
  parent?: string;
  kind: LayerKind;
  names: string[];
  /** ISO time of creation. */
  created: string;
  mountLabel?: string;
  /** Bytes of content applied by import/applyDiff (file data, as Driver.applyDiff counts it). */
  diffSize?: number;
  /** Length and sha256 digest ("sha256:…") of the uncompressed tar last applied. */
  uncompressedSize?: number;
  uncompressedDigest?: string;
  /**
   * Bytes the layer's own inodes take on disk (allocated blocks, as `du` counts them),
   * not what it shares with its parent through hardlinks; measured when its content was
   * last written. A container layer's grows after that: df measures containers afresh.
   */
  diskSize?: number;
  /** Set before anything is written and cleared at commit; an incomplete layer is never listed and is removed at the next open. */
  incomplete?: boolean;
}

/** A reference on a layer's mount: a process (pid and start time) or a detached reference (`ogd mount`, pid 0). */
export interface MountHolder {
  pid: number;
  detached: boolean;
  count: number;
}

/** A listed layer: its record and its live mount references. */
export interface Layer extends LayerRecord {
  /** Live references (dead holders' are not counted). */
  mountCount: number;
  holders: MountHolder[];
}

/**
 * Which compressed layer blobs (home/blobs) the store keeps once their layer is applied:
 * - 'pushable': those an image names, so a push sends the bytes that were pulled or
 *   committed (same digests); an image's own blobs go with it (rmi, prune);
 * - 'all': those too, and the blobs of removed images until a prune (rmi then pull
 *   again fetches nothing);
 * - 'none': none; a push compresses every layer again, so its blob digests, the
 *   config's diff_ids when the tar differs, and the manifest digest may change.
 */
export type KeepBlobs = 'all' | 'none' | 'pushable';

export interface StoreOptions extends DriverOptions {
  /** The blob policy of this Store object (pull, commit, rmi and prune follow it); default 'pushable'. */
  keepBlobs?: KeepBlobs;
  /**
   * The graph driver; its directory is home/<driver>. A store keeps the driver it was
   * made with: absent, the store's own (a new store: 'overlay'); another one is refused.
   */
  driver?: DriverName;
  /**
   * Default true: a call resolves only once what it did is on the device (layer content
   * flushed with one syncfs before the record that commits it, records and blobs fsynced,
   * every rename and removal followed by an fsync of its directory), so a power cut
   * right after it returns loses nothing. false: no flush at all (podman's transient
   * store), for stores whose content need not outlive a crash (CI sandboxes, tests);
   * a power cut may then lose or empty what calls reported done.
   */
  durable?: boolean;
  /** The largest layer blob a pull accepts, by its declared size (a pull's own maxBlobSize overrides it); default 64 GiB. */
  maxBlobSize?: number;
}

export interface StoreCreateOptions {
  parent?: string;
  /** 'image' (default) or 'container' (a writable layer, mounted as an overlay). */
  kind?: LayerKind;
  names?: string[];
  mountLabel?: string;
}

export interface StoreImportOptions extends ApplyDiffOptions {
  parent?: string;
  kind?: LayerKind;
  names?: string[];
}

export interface StoreMountOptions {
  mountLabel?: string;
  /** A reference that outlives this process (as `ogd mount` takes): released only by unmount(id, { detached: true }). */
  detached?: boolean;
}

export interface StoreUnmountOptions {
  /** Release a detached reference rather than this store's own. */
  detached?: boolean;
  /** Drop every reference, live or not, and unmount now. */
  force?: boolean;
  /** When this releases the last reference and the mount is busy, detach it (MNT_DETACH) instead of failing with EBUSY. */
  lazy?: boolean;
}

export interface UnmountResult {
  /** A reference was released. */
  released: boolean;
  /** The layer is still mounted (other references remain). */
  mounted: boolean;
  /** Live references left. */
  references: number;
  holders: MountHolder[];
}

export interface StoreDiffOptions extends LongOperationOptions {
  /** The layer to compare with: the record's parent when left out; null for the whole layer. */
  parent?: string | null;
}

export type ProblemKind =
  | 'record-without-layer'
  | 'layer-without-record'
  | 'lower-missing'
  | 'parent-missing'
  | 'parent-mismatch'
  | 'stale-reference'
  | 'damaged-reference'
  | 'mount-without-holder'
  | 'leftover'
  | 'incomplete-layer'
  | 'home-not-private'
  | 'image-layer-missing'
  | 'incomplete-image'
  /** A layer record that is not one (unreadable, not JSON, the wrong shape, a name that is no id). */
  | 'damaged-record'
  /** An image record that is not one. */
  | 'damaged-image'
  /** (check --deep) A kept blob whose bytes do not hash to its name. */
  | 'corrupt-blob'
  /** (check --deep) A layer whose kept blob does not unpack to the tar digest recorded for it. */
  | 'corrupt-layer';

export interface Problem {
  kind: ProblemKind;
  id?: string;
  path?: string;
  message: string;
  /** What repair() does about it (or did, in a repair report). */
  repair: string;
  /** Bytes it takes (a leftover). */
  size?: number;
  /** In a repair report: where it was moved (home/lost+found/…) instead of being deleted. */
  movedTo?: string;
}

export interface CheckOptions {
  /** Also hash every kept blob against its name and every image layer's blob against the layer's recorded tar digest. */
  deep?: boolean;
}

export interface RepairOptions extends CheckOptions {
  /** Delete what cannot be rebuilt instead of moving it to home/lost+found. */
  force?: boolean;
}

export interface CheckReport {
  /** No problems (reclaimable leftovers do not count). */
  ok: boolean;
  problems: Problem[];
  /**
   * Leftovers that harm nothing but take space, each with its size: verified blobs no
   * image names and partial downloads of processes that are gone (a later pull may
   * still use them). repair() deletes them.
   */
  reclaimable: Problem[];
}

export interface RepairReport {
  /** Problems found and fixed, each with what was done. */
  repaired: Problem[];
  /** What check() still finds after the repair. */
  remaining: Problem[];
}

export interface CleanupOptions {
  /** Also release detached references (`ogd mount`s). */
  detached?: boolean;
  /** Release every reference of every holder, unmount every layer and the home. */
  force?: boolean;
}

export interface CleanupResult {
  /** Layers unmounted. */
  unmounted: string[];
  /** The home's own mount was released (no other live process had the store open). */
  homeReleased: boolean;
}

/** One layer of an image: the store layer (the hex of its chain id), its diff_id and the blob it came from. */
export interface ImageLayerRecord {
  id: string;
  /** sha256 of the uncompressed layer tar (the config's rootfs.diff_ids entry). */
  diffId: string;
  /** The compressed blob: media type, digest, size. */
  blob: { mediaType: string; digest: string; size: number };
}

/** What the store records about an image (home/images/<id>). */
export interface ImageRecord {
  /** The hex of the config's sha256 digest (as podman and containers/storage name images). */
  id: string;
  /** The manifest's digest ("sha256:…"). */
  digest: string;
  /** repo:tag names; a name belongs to one image at a time. */
  names: string[];
  /** The top layer: what a container on this image stands on (undefined for an image of no layers). */
  topLayer?: string;
  /** Bottom first. */
  layers: ImageLayerRecord[];
  /** The manifest's and the config's exact bytes, base64. */
  manifest: string;
  config: string;
  /** ISO time the image was recorded. */
  created: string;
  /** Set while the image is being removed; such an image is never listed and its removal is finished by the next open. */
  incomplete?: boolean;
}

/** A listed image: `ogd images --json` shows these. */
export interface ImageInfo {
  id: string;
  names: string[];
  topLayer: string | null;
  /** The manifest digest. */
  digest: string;
  /** Bytes of the uncompressed layer tars. */
  size: number;
  layers: string[];
  created: string;
}

export interface StorePullOptions {
  /** Names to give the image; default the reference's repo:tag (docker://) or ref name (oci:). */
  names?: string[];
  /** false: self-signed HTTPS or plain HTTP. Default true. */
  tlsVerify?: boolean;
  /** "USER:PASSWORD"; otherwise the auth files are read. */
  creds?: string;
  /** Auth files to read instead of the usual ones. */
  authFiles?: string[];
  /** "os/arch[/variant]" to pick from an index; default this machine's. */
  platform?: string;
  /** Layer downloads at once; default 3. */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (p: LayerProgress) => void;
  /** The largest layer blob accepted, by its declared size: a bigger one fails the pull (ERR_OGD_BLOB_TOO_LARGE) before a byte is fetched. Default the store's, else 64 GiB. */
  maxBlobSize?: number;
  /** Milliseconds the registry may stay silent before the pull fails (ERR_OGD_REGISTRY, naming the timeout); default 120 000. */
  idleTimeout?: number;
}

export interface StorePullResult extends ImageInfo {
  /** Per layer, bottom first: compressed bytes fetched (0: the layer existed or its blob was cached). */
  fetched: number[];
  /** Per layer: applied by this pull (false: it existed). */
  applied: boolean[];
}

export interface StoreCommitOptions {
  /** How the new layer's blob is kept (and later pushed); default gzip. */
  compression?: Compression;
  /** The history entry's created_by and comment (podman commit --message). */
  createdBy?: string;
  comment?: string;
  /** The image's author, in its config and history entry (podman commit --author). */
  author?: string;
  /**
   * Dockerfile instructions applied to the runtime config, in order, as podman commit
   * --change takes them: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME,
   * WORKDIR (exec form as a JSON array). One that does not parse fails the commit
   * before any work (ERR_OGD_INVALID_OPTION).
   */
  changes?: string[];
  signal?: AbortSignal;
  /** The diff being tarred and compressed, then the new layer being applied. */
  onProgress?: (p: CommitProgress) => void;
}

export interface StorePushOptions {
  tlsVerify?: boolean;
  creds?: string;
  authFiles?: string[];
  /** Compression of layers whose blob is not kept, or to force one; a kept blob goes as it is unless this differs. */
  compression?: Compression;
  /** PATCH chunks of this many bytes; default one PUT per blob. */
  chunkSize?: number;
  signal?: AbortSignal;
  onProgress?: (p: PushProgress) => void;
}

export interface StorePushResult {
  digest: string;
  /**
   * Per layer: its blob digest and whether it was sent (false: the destination had it);
   * recompressed: its blob was made again from the layer (the store did not keep the
   * one it was pulled or committed as, or another compression was asked for), so its
   * digest, and the manifest's, differ from the image's record.
   */
  layers: Array<{ digest: string; size: number; sent: boolean; recompressed: boolean }>;
}

/** Bytes and count of one kind of thing in the store, and what `prune` would reclaim of it. */
export interface UsageSummary {
  count: number;
  /** Bytes on disk (allocated blocks, each inode once). */
  size: number;
  /** Bytes a prune would free: images no container uses (prune --all), unmounted containers (--containers), blobs the policy does not keep. */
  reclaimable: number;
}

export interface ImageUsage {
  id: string;
  names: string[];
  created: string;
  /** Bytes of all its layers. */
  size: number;
  /** Bytes of its layers that another image uses too. */
  shared: number;
  /** Bytes only it uses: what removing it frees (its blobs aside). */
  unique: number;
  /** Container layers standing on it. */
  containers: number;
}

export interface LayerUsage {
  id: string;
  kind: LayerKind;
  parent?: string;
  /** Bytes its own inodes take (see LayerRecord.diskSize). */
  size: number;
  /** Images naming it. */
  images: number;
  /** For a container: whether a live holder has it mounted. */
  mounted?: boolean;
}

export interface BlobUsage {
  digest: string;
  size: number;
  /** Images naming it. */
  images: number;
}

export interface StoreDfOptions {
  /** Per-item lists (`ogd df -v`). */
  verbose?: boolean;
  /** Walk every layer's tree instead of trusting the sizes in the records. */
  exact?: boolean;
}

/** `store.df()`: what the store takes on disk, as `du -sx home` counts it. */
export interface StoreDf {
  images: UsageSummary & { shared: number; unique: number; items?: ImageUsage[] };
  /** Image layers (every layer that is not a container's), each counted once. */
  layers: UsageSummary & { items?: LayerUsage[] };
  /** Container layers, measured afresh (they change under their records). */
  containers: UsageSummary & { items?: LayerUsage[] };
  blobs: UsageSummary & { items?: BlobUsage[] };
  /** Records, locks, and the store's and driver's own directories. */
  metadata: { size: number };
  /** Sum of layers, containers, blobs and metadata. */
  total: number;
  /** Layers whose record held no size (made before sizes were recorded): measured now, and written to the record when it was free. */
  measured: number;
  exact: boolean;
}

export interface StorePruneOptions {
  /** Remove images: by default those without names that no container uses; 'all': every image no container uses. Default 'dangling'. false: none. */
  images?: 'dangling' | 'all' | false;
  /** Also remove container layers no live process holds mounted. */
  containers?: boolean;
  /** Remove the blobs the store's policy does not keep (default true). */
  blobs?: boolean;
  /** Only what was made (image: recorded, container: created, blob: written) more than this many milliseconds ago. */
  olderThan?: number;
  /** Report what would go, remove nothing. */
  dryRun?: boolean;
}

export interface StorePruneResult {
  /** Image ids removed. */
  images: string[];
  /** Container layer ids removed. */
  containers: string[];
  /** Image layers removed with the images. */
  layers: string[];
  /** Blob digests removed (and partial downloads of processes that are gone). */
  blobs: string[];
  /** Bytes freed (layers' recorded sizes, blobs' allocated bytes). */
  reclaimed: number;
  /** What was left because another process holds it (a mount, a pull in flight), each with why. */
  skipped: Array<{ id: string; reason: string }>;
}

export interface RemoveImageOptions {
  /** Remove the image by id even when it has several names, and the containers on it that nobody holds mounted. */
  force?: boolean;
}

export interface RemoveImageResult {
  id: string;
  /** Names removed. */
  untagged: string[];
  /** The image itself was removed (false: only a name went: it has others). */
  removed: boolean;
  /** Container layers removed with it (force). */
  containers: string[];
}

/** What an argument names: a layer (image layer or container) or an image, by full id. */
export type ResolvedId = { kind: 'layer'; id: string } | { kind: 'image'; id: string };

export interface StoreResolveOptions {
  /** An image's name or id also stands for its top layer (default true). */
  images?: boolean;
}

/** A layer store shared by every process (library or `ogd`) on one home; see the README's Store section. */
export interface Store {
  readonly home: string;
  readonly driverName: string;
  status(): Array<[string, string]>;
  create(id: string, opts?: StoreCreateOptions): Promise<LayerRecord>;
  /**
   * create + applyDiff, all or nothing: a failed or killed import leaves no layer. A
   * layer made empty by create() is filled instead (an applyDiff on the parent it was
   * made on); one already filled is LayerExists.
   */
  importLayer(id: string, diff: DiffSource, opts?: StoreImportOptions): Promise<LayerRecord>;
  /** Applies a layer tar to an existing layer with no children and no mounts. */
  applyDiff(id: string, diff: DiffSource, opts?: ApplyDiffOptions): Promise<LayerRecord>;
  mount(id: string, opts?: StoreMountOptions): Promise<string>;
  unmount(id: string, opts?: StoreUnmountOptions): Promise<UnmountResult>;
  diff(id: string, opts?: StoreDiffOptions): Promise<Readable>;
  writeDiff(id: string, fd: number, opts?: StoreDiffOptions): Promise<number>;
  changes(id: string, opts?: StoreDiffOptions): Promise<Change[]>;
  diffSize(id: string, opts?: StoreDiffOptions): Promise<number>;
  remove(id: string): Promise<void>;
  exists(id: string): Promise<boolean>;
  layer(id: string): Promise<Layer>;
  list(): Promise<Layer[]>;
  /** The layer's directories, as Driver.getMetadata gives them. */
  metadata(id: string): Promise<Record<string, string>>;
  /** Every problem of the records, the disk, the mounts and the blob cache, with what repair() would do; nothing changes. */
  check(opts?: CheckOptions): Promise<CheckReport>;
  /** Fixes what check() finds, rebuilding rather than deleting: what cannot be rebuilt goes to home/lost+found (deleted with `force`). */
  repair(opts?: RepairOptions): Promise<RepairReport>;
  cleanup(opts?: CleanupOptions): Promise<CleanupResult>;
  /** Pulls an image (docker://… or oci:…) into the store: its layers by chain id, then its record. */
  pull(ref: string, opts?: StorePullOptions): Promise<StorePullResult>;
  images(): Promise<ImageInfo[]>;
  /** By name (repo:tag; "debian" means "debian:latest", a name may be given without its registry), id, "sha256:<id>" or a unique id prefix of 12+ hex. */
  image(nameOrId: string): Promise<ImageInfo>;
  /** The full record, manifest and config included. */
  imageRecord(nameOrId: string): Promise<ImageRecord>;
  /**
   * `rmi`: by a name of an image with other names, removes that name only (podman's
   * untag); else removes the image and its layers no other image uses, refused
   * (ERR_OGD_IMAGE_IN_USE) while a container stands on it (force: removes containers
   * nobody holds mounted) or, by id, while it has several names (force: removes it).
   */
  removeImage(nameOrId: string, opts?: RemoveImageOptions): Promise<RemoveImageResult>;
  /** Gives the image one more name (taken from the image that had it). */
  tag(nameOrId: string, name: string): Promise<ImageInfo>;
  /** Removes names from the image (all of them when none are given); the image stays. */
  untag(nameOrId: string, names?: string[]): Promise<ImageInfo>;
  /** What the store takes on disk, from the records (see StoreDf). */
  df(opts?: StoreDfOptions): Promise<StoreDf>;
  /** Removes what nothing uses: unused images, unmounted containers, unneeded blobs (see StorePruneOptions); never what a live process holds. */
  prune(opts?: StorePruneOptions): Promise<StorePruneResult>;
  /** The container's changes as a new image layer on its image, recorded as image `name`. */
  commit(container: string, name: string, opts?: StoreCommitOptions): Promise<ImageInfo>;
  push(nameOrId: string, ref: string, opts?: StorePushOptions): Promise<StorePushResult>;
  /**
   * The layer an argument names: a layer id, a layer's name, an image's id or name (its
   * top layer, unless opts.images is false), else a unique prefix (3+ hex digits) of a
   * layer or image id; a prefix of several is refused (ERR_OGD_AMBIGUOUS_ID).
   */
  resolveLayer(nameOrId: string, opts?: StoreResolveOptions): Promise<string>;
  /** The layer or image an argument names, by the same rule as resolveLayer (a layer's id or name first). */
  resolve(nameOrId: string, opts?: StoreResolveOptions): Promise<ResolvedId>;
}
