// struct linux_dirent64, as getdents64(2) fills it: the tree walks read directories a
// buffer at a time with it (no libc DIR, no per-entry allocation).
#pragma once
#include <cstdint>

namespace ogd {

struct Dirent64 {
  uint64_t ino;
  int64_t off;
  unsigned short reclen;
  unsigned char type;
  char name[];
};

}  // namespace ogd
