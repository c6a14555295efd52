// Small files read whole and written whole, shared by readSmallFile/writeNewFile, the
// path probes, and the mount jobs that record a change beside the mount (a store's
// mount references: one pool job for both instead of two).
#pragma once
#include <napi.h>

#include <string>

#include "sys_error.h"

namespace ogd {

// Reads the regular file at `path` into `data`: 0, or the errno of the failed call,
// with `syscall` naming it. A symlink is refused (ELOOP), a directory (EISDIR), anything
// else that is not a regular file (EINVAL, never waiting on a fifo), and a file over
// 16 MiB (EFBIG).
int ReadSmall(const std::string& path, std::string& data, const char*& syscall);

// Creates `tmp` (O_EXCL, 0600), writes `data`, fsyncs when `durable`, and renames it to
// `renameTo` unless that is empty. False, with the failure, when a step fails; then no
// temp file is left.
bool WriteNew(const std::string& tmp, const std::string& data, bool durable, const std::string& renameTo, SysFailure& failure);

// A file change made beside another job's own work: a file replaced (written to `tmp`,
// renamed to `dest`), or a file removed (`dest`; a missing one is no failure).
struct FileChange {
  enum class Kind { kNone, kReplace, kRemove };
  Kind kind = Kind::kNone;
  std::string tmp;
  std::string data;
  std::string dest;
};

// Argument `i`: undefined (no change), { tmp, data: Buffer, dest } or { remove: path }.
FileChange FileChangeArg(const Napi::CallbackInfo& info, size_t i);

// Makes the change; false, with the failure, when it fails (and nothing is left of it).
bool ApplyFileChange(const FileChange& change, SysFailure& failure);

}  // namespace ogd
