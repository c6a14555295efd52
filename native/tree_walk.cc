// TreeWalker (see tree_walk.h). Costs per entry, all fd-relative: one fstatat, one
// listxattrat (a getxattrat per xattr found), a readlinkat for a symlink; per
// directory an openat and getdents64 calls straight on that fd.
#include "tree_walk.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "dirent64.h"
#include "fd.h"

// getxattrat/listxattrat (Linux 6.13): one syscall per call, where the
// /proc/self/fd/N/NAME path costs a walk of /proc in each. Same numbers on every
// architecture but alpha; elsewhere, or on an older kernel, /proc is used.
#if !defined(__NR_getxattrat) && !defined(__alpha__)
#define __NR_getxattrat 464
#define __NR_listxattrat 465
#endif

namespace ogd {
namespace {

// include/uapi/linux/xattr.h, not in older headers.
struct XattrArgs {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

// Whether the *xattrat syscalls work here: unknown until the first call.
enum class AtSyscalls { Unknown, Yes, No };
std::atomic<AtSyscalls> atSyscalls{AtSyscalls::Unknown};

// A missing syscall (or one a seccomp filter refuses) rather than a real failure.
bool Unsupported(int err) { return err == ENOSYS || err == EPERM; }

constexpr size_t kDirBuffer = 32 * 1024;

}  // namespace

bool TreeWalker::Fail(const SysFailure& f) {
  if (!failed_) {
    failed_ = true;
    failure_ = f;
  }
  return false;
}

bool TreeWalker::Run(const Visit& visit) {
  int fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Fail(Failure(errno, "open", root_));
  Fd rootFd(fd);
  std::string rel;
  return Walk(rootFd.get(), rel, visit);
}

// Walks the directory open as `dirFd`, whose path relative to the root is `rel` ("" or "a/b").
bool TreeWalker::Walk(int dirFd, std::string& rel, const Visit& visit) {
  std::vector<std::string> children;
  if (!ListDir(dirFd, rel, children)) return false;
  std::sort(children.begin(), children.end());
  for (const std::string& name : children) {
    struct stat st;
    if (::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return Fail(Failure(errno, "lstat", root_ + "/" + (rel.empty() ? name : rel + "/" + name)));
    }
    size_t relLen = rel.size();
    if (!rel.empty()) rel.push_back('/');
    rel += name;
    bool ok = ReadLink(dirFd, name, rel, st) && ReadXattrs(dirFd, name, rel) && visit(WalkEntry{dirFd, name, rel, st, linkTarget_, xattrs_});
    if (ok && S_ISDIR(st.st_mode)) {
      int child = ::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        ok = Fail(Failure(errno, "open", root_ + "/" + rel));
      } else {
        Fd childFd(child);
        ok = Walk(childFd.get(), rel, visit);
      }
    }
    rel.resize(relLen);
    if (!ok) return false;
  }
  return true;
}

bool TreeWalker::ListSorted(int dirFd, const std::string& rel, std::vector<std::string>& out) {
  size_t from = out.size();
  if (!ListDir(dirFd, rel, out)) return false;
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(from), out.end());
  return true;
}

// The names in the directory open as `dirFd`, read straight from that fd (no second
// open for a DIR*): the fd's offset moves, which nothing else uses.
bool TreeWalker::ListDir(int dirFd, const std::string& rel, std::vector<std::string>& out) {
  if (!dirents_) dirents_.reset(new char[kDirBuffer]);
  for (;;) {
    long n = ::syscall(SYS_getdents64, dirFd, dirents_.get(), kDirBuffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Fail(Failure(errno, "readdir", Shown(rel)));
    }
    if (n == 0) return true;
    for (long at = 0; at < n;) {
      const auto* d = reinterpret_cast<const Dirent64*>(dirents_.get() + at);
      at += d->reclen;
      if (d->name[0] == '.' && (d->name[1] == '\0' || (d->name[1] == '.' && d->name[2] == '\0'))) continue;
      out.emplace_back(d->name);
    }
  }
}

bool TreeWalker::ReadLink(int dirFd, const std::string& name, const std::string& rel, const struct stat& st) {
  linkTarget_.clear();
  if (!S_ISLNK(st.st_mode)) return true;
  linkTarget_.resize(static_cast<size_t>(st.st_size > 0 ? st.st_size : 0) + 1);
  for (;;) {
    ssize_t n = ::readlinkat(dirFd, name.c_str(), &linkTarget_[0], linkTarget_.size());
    if (n < 0) return Fail(Failure(errno, "readlink", root_ + "/" + rel));
    if (static_cast<size_t>(n) < linkTarget_.size()) {
      linkTarget_.resize(static_cast<size_t>(n));
      return true;
    }
    linkTarget_.resize(linkTarget_.size() * 2);  // grew since the stat
  }
}

// Reads the entry's xattrs into xattrs_, sorted by name; none is not an error where
// the filesystem has no xattrs (ENOTSUP), and one removed between list and get is left out.
bool TreeWalker::ReadXattrs(int dirFd, const std::string& name, const std::string& rel) {
  xattrs_.clear();
  // Both ways read the same attributes; only the cost differs.
  bool at = !procXattrs_ && atSyscalls.load(std::memory_order_relaxed) != AtSyscalls::No;
  std::string proc;
  auto useProc = [&]() {
    at = false;
    proc = "/proc/self/fd/" + std::to_string(dirFd) + "/" + name;
  };
  if (!at) useProc();
  auto list = [&](char* buf, size_t size) -> ssize_t {
    if (at) {
      ssize_t n = ::syscall(__NR_listxattrat, dirFd, name.c_str(), AT_SYMLINK_NOFOLLOW, buf, size);
      if (n >= 0 || !Unsupported(errno) || atSyscalls.load(std::memory_order_relaxed) == AtSyscalls::Yes) return n;
      atSyscalls.store(AtSyscalls::No, std::memory_order_relaxed);
      useProc();
    }
    return ::llistxattr(proc.c_str(), buf, size);
  };
  auto get = [&](const std::string& key, char* buf, size_t size) -> ssize_t {
    if (at) {
      XattrArgs args{reinterpret_cast<uintptr_t>(buf), static_cast<uint32_t>(size), 0};
      return ::syscall(__NR_getxattrat, dirFd, name.c_str(), AT_SYMLINK_NOFOLLOW, key.c_str(), &args, sizeof(args));
    }
    return ::lgetxattr(proc.c_str(), key.c_str(), buf, size);
  };

  if (list_.size() < 1024) list_.resize(1024);
  ssize_t got;
  for (int attempt = 0;; attempt++) {
    got = list(list_.data(), list_.size());
    if (got >= 0) break;
    if (errno == ENOTSUP) return true;
    if (errno != ERANGE || attempt >= 8) return Fail(Failure(errno, "llistxattr", root_ + "/" + rel));
    ssize_t size = list(nullptr, 0);  // the size it has now
    if (size < 0) return Fail(Failure(errno, "llistxattr", root_ + "/" + rel));
    list_.resize(std::max(list_.size(), static_cast<size_t>(size)));
  }
  if (at && atSyscalls.load(std::memory_order_relaxed) == AtSyscalls::Unknown) atSyscalls.store(AtSyscalls::Yes, std::memory_order_relaxed);
  if (got == 0) return true;

  size_t start = 0;
  for (size_t i = 0; i < static_cast<size_t>(got); i++) {
    if (list_[i] != '\0') continue;
    if (i > start) xattrs_.push_back(Xattr{std::string(list_.data() + start, i - start), std::string()});
    start = i + 1;
  }
  std::sort(xattrs_.begin(), xattrs_.end(), [](const Xattr& a, const Xattr& b) { return a.name < b.name; });

  if (value_.size() < 4096) value_.resize(4096);
  size_t kept = 0;
  for (size_t k = 0; k < xattrs_.size(); k++) {
    ssize_t n = -1;
    for (int attempt = 0; attempt < 8; attempt++) {
      n = get(xattrs_[k].name, value_.data(), value_.size());
      if (n >= 0 || errno != ERANGE) break;
      ssize_t size = get(xattrs_[k].name, nullptr, 0);
      if (size < 0) break;
      value_.resize(std::max(value_.size(), static_cast<size_t>(size)));
    }
    if (n < 0) {
      if (errno == ENODATA) continue;  // removed between list and get
      return Fail(Failure(errno, "lgetxattr", root_ + "/" + rel));
    }
    if (kept != k) xattrs_[kept].name = std::move(xattrs_[k].name);
    xattrs_[kept].value.assign(value_.data(), static_cast<size_t>(n));
    kept++;
  }
  xattrs_.resize(kept);
  return true;
}

}  // namespace ogd
