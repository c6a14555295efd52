// Reading a small file whole, shared by readSmallFile and the path probes.
#pragma once
#include <string>

namespace ogd {

// Reads the file at `path` (a symlink is refused, ELOOP) into `data`: 0, or the errno
// of the failed call, with `syscall` naming it. Files over 16 MiB are refused (EFBIG).
int ReadSmall(const std::string& path, std::string& data, const char*& syscall);

}  // namespace ogd
