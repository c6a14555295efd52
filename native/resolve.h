// Resolution inside a root (resolve.cc), shared with the layer apply (apply_tar.cc).
#pragma once
#include <string>

namespace ogd {

// The userspace RESOLVE_IN_ROOT walk, for where openat2 is missing (ENOSYS): an
// O_PATH fd of `rel` under `rootFd`, or -1 with errno set (ELOOP, EXDEV, ENOTDIR...).
int WalkInRoot(int rootFd, const std::string& rel, bool followLast);

}  // namespace ogd
