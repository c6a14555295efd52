// One extended attribute as the tree jobs carry it (copy, scan, pack, compare): its
// full name ("user.x", "security.capability") and its value as raw bytes.
#pragma once
#include <string>
#include <vector>

namespace ogd {

struct Xattr {
  std::string name;
  std::string value;  // raw bytes
};
using Xattrs = std::vector<Xattr>;

}  // namespace ogd
