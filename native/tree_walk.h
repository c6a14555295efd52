// TreeWalker: the walk of a whole tree shared by scanTree (scan_tree.cc) and
// packTree (pack_tree.cc), so the two see the same entries in the same order.
//
// It walks fd-relative (openat/fstatat/readlinkat; xattrs by getxattrat/listxattrat
// or through /proc/self/fd/N/NAME), so nothing is followed and no path grows past
// PATH_MAX, and lists a directory's children sorted bytewise, each directory right
// before its subtree: the order of lib/archive/raw-path.ts comparePaths, which is
// also tar order. The root itself is not an entry.
#pragma once
#include <sys/stat.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sys_error.h"
#include "xattr_list.h"

namespace ogd {

// One entry, valid during the visit only.
struct WalkEntry {
  int dirFd;                        // the directory holding the entry
  const std::string& name;          // its name in dirFd
  const std::string& rel;           // its path relative to the root ("a/b/name")
  const struct stat& st;            // lstat
  const std::string& linkTarget;    // a symlink's target (empty for anything else)
  const std::vector<Xattr>& xattrs;  // every xattr, none followed through a symlink, sorted by name
};

class TreeWalker {
 public:
  // Return false to stop the walk (the visitor keeps its own reason).
  using Visit = std::function<bool(const WalkEntry&)>;

  explicit TreeWalker(std::string root) : root_(std::move(root)) {}

  // Visits every entry under the root; false when a syscall failed (see failure())
  // or the visitor stopped the walk.
  bool Run(const Visit& visit);

  bool failed() const { return failed_; }
  const SysFailure& failure() const { return failure_; }
  const std::string& root() const { return root_; }
  // How an entry is named in an error: the root, "/", the relative path.
  std::string Shown(const std::string& rel) const { return rel.empty() ? root_ : root_ + "/" + rel; }

  // Uses /proc/self/fd/N/NAME for xattrs even where getxattrat exists (tests hold the two to the same results).
  void ForceProcXattrs() { procXattrs_ = true; }

  // The pieces of a walk, for walks of their own (compare_trees.cc): on failure they
  // return false and keep the failure (see failure()).
  // The names in the directory open as `dirFd` (at `rel`), sorted bytewise, appended to `out`.
  bool ListSorted(int dirFd, const std::string& rel, std::vector<std::string>& out);
  // Reads an entry's symlink target and xattrs into linkTarget()/xattrs().
  bool ReadEntry(int dirFd, const std::string& name, const std::string& rel, const struct stat& st) {
    return ReadLink(dirFd, name, rel, st) && ReadXattrs(dirFd, name, rel);
  }
  const std::string& linkTarget() const { return linkTarget_; }
  const std::vector<Xattr>& xattrs() const { return xattrs_; }
  bool Fail(const SysFailure& f);

 private:
  bool Walk(int dirFd, std::string& rel, const Visit& visit);
  bool ListDir(int dirFd, const std::string& rel, std::vector<std::string>& out);
  bool ReadLink(int dirFd, const std::string& name, const std::string& rel, const struct stat& st);
  bool ReadXattrs(int dirFd, const std::string& name, const std::string& rel);

  std::string root_;
  bool procXattrs_ = false;
  bool failed_ = false;
  SysFailure failure_;
  // Reused per entry, so a walk allocates little once warm.
  std::string linkTarget_;
  std::vector<Xattr> xattrs_;
  std::vector<char> list_;
  std::vector<char> value_;
  std::unique_ptr<char[]> dirents_;  // getdents64's buffer (a directory is listed whole before its subtree)
};

}  // namespace ogd
