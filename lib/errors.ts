// Errors with stable codes. Callers branch on `.code` (never on messages), the same
// way they do with Node's system errors, which pass through from node:fs and the
// addon unchanged (`.code`, `.errno`, `.syscall`, `.path`).

/** Base class of every error this package creates itself. */
export class GraphDriverError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The kernel or the machine lacks something the driver needs (overlayfs, openat2, root). */
export class NotSupportedError extends GraphDriverError {
  static readonly code = 'ERR_OGD_NOT_SUPPORTED';
  constructor(message: string, options?: ErrorOptions) {
    super(NotSupportedError.code, message, options);
  }
}

/** The driver's home lies on a filesystem overlayfs cannot use as upper layer. */
export class IncompatibleFsError extends GraphDriverError {
  static readonly code = 'ERR_OGD_INCOMPATIBLE_FS';
  readonly filesystem: string;
  constructor(filesystem: string, home: string) {
    super(IncompatibleFsError.code, `overlay is not supported over ${filesystem} (home ${home})`);
    this.filesystem = filesystem;
  }
}

/** A layer id (or a lower-id read from disk) that is not a safe single path component. */
export class InvalidIdError extends GraphDriverError {
  static readonly code = 'ERR_OGD_INVALID_ID';
  readonly id: string;
  constructor(id: string, reason: string) {
    super(InvalidIdError.code, `invalid layer id ${JSON.stringify(id)}: ${reason}`);
    this.id = id;
  }
}

export class LayerNotFoundError extends GraphDriverError {
  static readonly code = 'ERR_OGD_LAYER_NOT_FOUND';
  readonly id: string;
  constructor(id: string, options?: ErrorOptions) {
    super(LayerNotFoundError.code, `layer ${JSON.stringify(id)} does not exist`, options);
    this.id = id;
  }
}

export class LayerExistsError extends GraphDriverError {
  static readonly code = 'ERR_OGD_LAYER_EXISTS';
  readonly id: string;
  constructor(id: string) {
    super(LayerExistsError.code, `layer ${JSON.stringify(id)} already exists`);
    this.id = id;
  }
}

/** The layer is mounted (or otherwise busy) and the operation would break its users. */
export class LayerInUseError extends GraphDriverError {
  static readonly code = 'ERR_OGD_LAYER_IN_USE';
  readonly id: string;
  constructor(id: string, why: string) {
    super(LayerInUseError.code, `layer ${JSON.stringify(id)} is in use: ${why}`);
    this.id = id;
  }
}

/** No image has this name or id. */
export class ImageNotFoundError extends GraphDriverError {
  static readonly code = 'ERR_OGD_IMAGE_NOT_FOUND';
  /** The name or id asked for. */
  readonly image: string;
  constructor(image: string, why?: string) {
    super(ImageNotFoundError.code, `image ${JSON.stringify(image)} ${why ?? 'does not exist'}`);
    this.image = image;
  }
}

/** logout (or login --get-login) of a registry the auth file has no credentials for. */
export class NotLoggedInError extends GraphDriverError {
  static readonly code = 'ERR_OGD_NOT_LOGGED_IN';
  readonly registry: string;
  constructor(registry: string, why: string) {
    super(NotLoggedInError.code, `not logged in to ${registry}: ${why}`);
    this.registry = registry;
  }
}

/** A short id that starts the ids of several layers or images: which one is meant is not guessed. */
export class AmbiguousIdError extends GraphDriverError {
  static readonly code = 'ERR_OGD_AMBIGUOUS_ID';
  /** The prefix given. */
  readonly id: string;
  /** The full ids it starts. */
  readonly candidates: string[];
  constructor(id: string, candidates: string[]) {
    const sorted = [...candidates].sort();
    const shown = sorted.slice(0, 5).map((c) => c.slice(0, 12)).join(', ');
    super(AmbiguousIdError.code, `${JSON.stringify(id)} is ambiguous: it starts ${candidates.length} ids (${shown}${candidates.length > 5 ? ', …' : ''}); give more of the id`);
    this.id = id;
    this.candidates = sorted;
  }
}

/** An image a container stands on (or a layer an image is made of) cannot be removed. */
export class ImageInUseError extends GraphDriverError {
  static readonly code = 'ERR_OGD_IMAGE_IN_USE';
  readonly image: string;
  constructor(image: string, why: string) {
    super(ImageInUseError.code, `image ${JSON.stringify(image)} is in use: ${why}`);
    this.image = image;
  }
}

/** A layer tar that tries to reach outside its root, or is otherwise hostile or malformed. */
export class UnsafeLayerError extends GraphDriverError {
  static readonly code = 'ERR_OGD_UNSAFE_LAYER';
  /** The tar entry's name as found in the archive. */
  readonly entry: string;
  constructor(entry: string, reason: string, options?: ErrorOptions) {
    super(UnsafeLayerError.code, `unsafe layer entry ${JSON.stringify(entry)}: ${reason}`, options);
    this.entry = entry;
  }
}

/** A tar stream that is truncated or not a tar at all. */
export class InvalidArchiveError extends GraphDriverError {
  static readonly code = 'ERR_OGD_INVALID_ARCHIVE';
  constructor(message: string, options?: ErrorOptions) {
    super(InvalidArchiveError.code, message, options);
  }
}

/** An option the driver does not support (for example storageOpt on overlay). */
export class InvalidOptionError extends GraphDriverError {
  static readonly code = 'ERR_OGD_INVALID_OPTION';
  constructor(message: string) {
    super(InvalidOptionError.code, message);
  }
}

/** The operation was stopped through its AbortSignal; nothing half-done is left. */
export class AbortError extends GraphDriverError {
  static readonly code = 'ABORT_ERR';
  constructor(message = 'The operation was aborted', options?: ErrorOptions) {
    super(AbortError.code, message, options);
  }
}

/** A blob whose bytes do not hash to the digest (or size) its descriptor names; nothing of it is kept. */
export class DigestMismatchError extends GraphDriverError {
  static readonly code = 'ERR_OGD_DIGEST_MISMATCH';
  /** The digest the descriptor (manifest, config diff_ids) promised. */
  readonly expected: string;
  /** What the bytes hashed to, or undefined when the size was already wrong. */
  readonly actual: string | undefined;
  constructor(what: string, expected: string, actual: string | undefined, reason?: string) {
    super(DigestMismatchError.code, `${what}: ${reason ?? `expected ${expected}, got ${actual ?? '?'}`}`);
    this.expected = expected;
    this.actual = actual;
  }
}

/** An image reference (docker://…, oci:…), repository name, tag or digest that does not parse. */
export class InvalidReferenceError extends GraphDriverError {
  static readonly code = 'ERR_OGD_INVALID_REFERENCE';
  readonly reference: string;
  constructor(reference: string, reason: string) {
    super(InvalidReferenceError.code, `invalid image reference ${JSON.stringify(reference)}: ${reason}`);
    this.reference = reference;
  }
}

/** A manifest, index or config that is malformed, too big, of an unknown media type, or has no matching platform. */
export class InvalidImageError extends GraphDriverError {
  static readonly code = 'ERR_OGD_INVALID_IMAGE';
  constructor(message: string, options?: ErrorOptions) {
    super(InvalidImageError.code, message, options);
  }
}

/** A registry answered with an error (or not in the protocol); `.status` is the HTTP status, 0 for no answer. */
export class RegistryError extends GraphDriverError {
  static readonly code = 'ERR_OGD_REGISTRY';
  readonly status: number;
  /** The distribution spec's error code from the body (MANIFEST_UNKNOWN, UNAUTHORIZED, …), when given. */
  readonly registryCode: string | undefined;
  constructor(message: string, status: number, registryCode?: string, options?: ErrorOptions) {
    super(RegistryError.code, message, options);
    this.status = status;
    this.registryCode = registryCode;
  }
}

/** A blob whose declared size is above the limit a pull accepts (`maxBlobSize`); refused before a byte of it is fetched. */
export class BlobTooLargeError extends GraphDriverError {
  static readonly code = 'ERR_OGD_BLOB_TOO_LARGE';
  readonly digest: string;
  readonly size: number;
  readonly limit: number;
  /** `what`: the blob as the message names it ("layer 2 (blob sha256:…)"). */
  constructor(what: string, digest: string, size: number, limit: number) {
    super(BlobTooLargeError.code, `${what} declares ${size} bytes, more than the ${limit} a pull accepts (maxBlobSize)`);
    this.digest = digest;
    this.size = size;
    this.limit = limit;
  }
}

/**
 * Not enough free space: found before a pull starts (its declared sizes against the
 * filesystem's free bytes) or met while writing. The code is the system's ENOSPC, so
 * one check catches both.
 */
export class NoSpaceError extends GraphDriverError {
  static readonly code = 'ENOSPC';
  /** The directory (or file) whose filesystem is full. */
  readonly path: string;
  constructor(message: string, path: string, options?: ErrorOptions) {
    super(NoSpaceError.code, message, options);
    this.path = path;
  }
}

/** A file of the store's own (a layer or image record, a reference) that is not what the store writes: `.path` names it, the message says what is wrong. */
export class DamagedRecordError extends GraphDriverError {
  static readonly code = 'ERR_OGD_DAMAGED_RECORD';
  readonly path: string;
  constructor(path: string, reason: string, options?: ErrorOptions) {
    super(DamagedRecordError.code, `${path} is damaged: ${reason} (ogd check --repair rebuilds it or moves it to lost+found)`, options);
    this.path = path;
  }
}

/** A layer that was there when an operation began was removed by another process before it was done (a pull racing an rmi). */
export class LayerRemovedError extends GraphDriverError {
  static readonly code = 'ERR_OGD_LAYER_REMOVED';
  readonly id: string;
  constructor(message: string, id: string, options?: ErrorOptions) {
    super(LayerRemovedError.code, message, options);
    this.id = id;
  }
}

/** A Node-style system error (from node:fs or the addon). */
export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
  dest?: string;
}

export function isSystemError(err: unknown, code?: string): err is SystemError {
  return (
    err instanceof Error &&
    typeof (err as Partial<SystemError>).code === 'string' &&
    typeof (err as Partial<SystemError>).syscall === 'string' &&
    (code === undefined || (err as SystemError).code === code)
  );
}

/** True for the errors that mean "no such path": ENOENT, or ENOTDIR (a parent is not a directory). */
export function isMissing(err: unknown): boolean {
  return isSystemError(err, 'ENOENT') || isSystemError(err, 'ENOTDIR');
}
