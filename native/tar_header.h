// The tar header of one entry, byte for byte as lib/archive/tar-header.ts writes it
// (writeHeader): a ustar block, preceded by a PAX 'x' header and its records when
// ustar cannot hold the entry (a long or non-ASCII name or link name, big ids or
// size, an mtime with nanoseconds or outside ustar's range, xattrs). Kept identical
// so packTree (pack_tree.cc) and the JS exporter write the same archive.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tree_walk.h"

namespace ogd {

struct TarHeader {
  std::string_view name;  // relative, raw bytes; a directory's ends with '/'
  char typeflag;          // '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' directory, '6' fifo
  uint32_t mode;          // permission bits incl. setuid, setgid, sticky
  uint64_t uid;
  uint64_t gid;
  uint64_t size;          // content bytes that follow
  int64_t mtimeSec;       // as struct timespec: the nanoseconds are never negative
  uint32_t mtimeNsec;
  std::string_view linkname;  // a symlink's or hardlink's target; empty: none
  uint64_t devmajor = 0;
  uint64_t devminor = 0;
  const std::vector<const Xattr*>* xattrs = nullptr;  // sorted by name
};

class TarHeaderEncoder {
 public:
  // Appends the header block(s) of `h` to `out`.
  void Append(const TarHeader& h, std::string& out);

 private:
  std::string pax_;  // the PAX records, reused
};

}  // namespace ogd
