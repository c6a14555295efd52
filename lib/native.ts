// The native addon's wrappers, by concern: native/addon.ts (loading and types),
// native/sys.ts (one syscall, or one pool trip, each), native/jobs.ts (long jobs). A new
// native function goes in the file of its concern; its name is exported here.
export { constants } from './native/addon.js';
export type { CopyProgress, CopyStats, CopyTreeOptions, EntryMeta, FileChange, LockKind, NativeConstants, PathLike, PathProbe, ProbeResult } from './native/addon.js';
export * from './native/sys.js';
export * from './native/jobs.js';
// Not a native call, but the check every pid-named temp file needs, for the CLI too.
export { processAlive } from './processes.js';
