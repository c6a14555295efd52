// The per-entry building blocks of the tree copy (copy_engine.cc walks, these act):
// copying one file's data the cheapest way the filesystems allow, and applying
// owner, mode, xattrs and times in the one order that keeps them all.
//
// Each returns an OpError: errno 0 on success, else the errno and the syscall that
// failed; the engine adds the paths, which only it knows.
#pragma once
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <string>
#include <vector>

#include "xattr_list.h"

namespace ogd {

struct OpError {
  int err = 0;
  const char* syscall = nullptr;
  explicit operator bool() const { return err != 0; }
};

inline OpError OpFail(const char* syscall) { return OpError{errno, syscall}; }

// Which data paths still work for this copy: each is turned off the first time the
// filesystems say they do not support it, so later files do not pay for the probe.
struct DataPaths {
  std::atomic<bool> reflink{true};
  std::atomic<bool> copyFileRange{true};
};

// Stops a long data copy between chunks (abort or another thread's failure).
struct StopCheck {
  virtual bool Stopping() const = 0;
  virtual ~StopCheck() = default;
};

// Reads all xattrs of an open file (fd), or of `name` in the directory `dirFd`
// without following it (for entries that cannot be opened: symlinks, devices, fifos).
OpError ReadXattrs(int fd, Xattrs* out);
OpError ReadXattrsAt(int dirFd, const char* name, Xattrs* out);
OpError WriteXattrs(int fd, const Xattrs& xattrs);
OpError WriteXattrsAt(int dirFd, const char* name, const Xattrs& xattrs);

// Copies the data of `st` (size, blocks) from srcFd to dstFd: FICLONE, else
// copy_file_range, else read/write; holes found with SEEK_DATA/SEEK_HOLE stay holes.
// `buffer` is the caller's scratch space for the read/write path.
OpError CopyData(int srcFd, int dstFd, const struct stat& st, DataPaths& paths, std::vector<char>& buffer,
                 const StopCheck& stop);

// Owner (when it differs from what a new file gets, or `forceChown`), then the full
// mode (chown clears setuid/setgid), then xattrs (chown clears security.capability),
// then atime/mtime with nanoseconds.
OpError ApplyMetadata(int fd, const struct stat& st, const Xattrs& xattrs, bool forceChown);

// The same for an entry that cannot be opened (symlink, device, fifo, socket), by name
// in `dirFd`, never following it. Symlinks have no mode of their own.
OpError ApplyMetadataAt(int dirFd, const char* name, const struct stat& st, const Xattrs& xattrs, bool forceChown);

// True when a file we create gets other owners than `st` names (so a chown is needed).
bool OwnerDiffers(const struct stat& st);

}  // namespace ogd
