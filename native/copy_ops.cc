// Per-entry operations of the tree copy; see copy_ops.h for the contract.
#include "copy_ops.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ogd {
namespace {

// XATTR_LIST_MAX and XATTR_SIZE_MAX are both 64 KiB on Linux: one call each suffices.
constexpr size_t kXattrMax = 64 * 1024;
// copy_file_range chunk: large enough to be one call for almost every file, small
// enough that an abort is seen within a few milliseconds on a huge one.
constexpr size_t kRangeChunk = 16 * 1024 * 1024;
constexpr size_t kBufferSize = 256 * 1024;

const uid_t kEuid = ::geteuid();
const gid_t kEgid = ::getegid();

OpError ParseXattrList(const char* list, ssize_t size, Xattrs* out, ssize_t (*get)(const void*, const char*, void*, size_t),
                       const void* target) {
  std::vector<char> value(kXattrMax);
  for (ssize_t off = 0; off < size;) {
    const char* name = list + off;
    size_t len = ::strnlen(name, static_cast<size_t>(size - off));
    off += static_cast<ssize_t>(len) + 1;
    if (len == 0) continue;
    ssize_t got = get(target, name, value.data(), value.size());
    if (got < 0) {
      if (errno == ENODATA) continue;  // removed in between
      return OpFail("getxattr");
    }
    out->push_back(Xattr{std::string(name, len), std::string(value.data(), static_cast<size_t>(got))});
  }
  return {};
}

ssize_t GetFd(const void* target, const char* name, void* buf, size_t size) {
  return ::fgetxattr(*static_cast<const int*>(target), name, buf, size);
}

ssize_t GetPath(const void* target, const char* name, void* buf, size_t size) {
  return ::lgetxattr(static_cast<const std::string*>(target)->c_str(), name, buf, size);
}

// A path that reaches `name` inside the directory open as `dirFd` however deep that
// directory is, for the l*xattr calls (no fd-relative form before Linux 6.13).
std::string ProcPath(int dirFd, const char* name) { return "/proc/self/fd/" + std::to_string(dirFd) + "/" + name; }

// listxattrat(2) (Linux 6.13) lists without a walk through /proc; most entries have no
// xattrs at all, so this one call is all they cost. Older kernels: ENOSYS, once.
#if defined(__x86_64__) || defined(__aarch64__)
constexpr long kListXattrAt = 465;  // same number in both syscall tables
#else
constexpr long kListXattrAt = -1;
#endif
std::atomic<bool> listXattrAtWorks{kListXattrAt > 0};

ssize_t ListXattrsAt(int dirFd, const char* name, char* list, size_t size) {
  if (listXattrAtWorks.load(std::memory_order_relaxed)) {
    long n = ::syscall(kListXattrAt, dirFd, name, AT_SYMLINK_NOFOLLOW, list, size);
    if (n >= 0 || errno != ENOSYS) return n;
    listXattrAtWorks.store(false, std::memory_order_relaxed);
  }
  return ::llistxattr(ProcPath(dirFd, name).c_str(), list, size);
}

bool Unsupported(int err) { return err == EOPNOTSUPP || err == ENOTTY || err == EXDEV || err == ENOSYS || err == EINVAL; }

OpError WriteAll(int fd, const char* data, size_t len, off_t off) {
  while (len > 0) {
    ssize_t n = ::pwrite(fd, data, len, off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return OpFail("write");
    }
    data += n;
    len -= static_cast<size_t>(n);
    off += n;
  }
  return {};
}

// Copies [off, off+len) at the same offsets; stops early if the source shrank.
OpError CopyRange(int srcFd, int dstFd, off_t off, off_t len, DataPaths& paths, std::vector<char>& buffer,
                  const StopCheck& stop) {
  loff_t in = off, out = off;
  bool rangeOk = paths.copyFileRange.load(std::memory_order_relaxed);
  while (len > 0) {
    if (stop.Stopping()) return OpError{ECANCELED, "copy"};
    if (rangeOk) {
      ssize_t n = ::copy_file_range(srcFd, &in, dstFd, &out, std::min<size_t>(static_cast<size_t>(len), kRangeChunk), 0);
      if (n > 0) {
        len -= n;
        continue;
      }
      if (n == 0) return {};
      if (errno == EINTR) continue;
      if (!Unsupported(errno) && errno != EBADF && errno != ETXTBSY) return OpFail("copy_file_range");
      if (errno != EINVAL) paths.copyFileRange.store(false, std::memory_order_relaxed);
      rangeOk = false;
    }
    if (buffer.size() < kBufferSize) buffer.resize(kBufferSize);
    ssize_t n = ::pread(srcFd, buffer.data(), std::min<size_t>(static_cast<size_t>(len), buffer.size()), in);
    if (n < 0) {
      if (errno == EINTR) continue;
      return OpFail("read");
    }
    if (n == 0) return {};
    if (OpError e = WriteAll(dstFd, buffer.data(), static_cast<size_t>(n), out)) return e;
    in += n;
    out += n;
    len -= n;
  }
  return {};
}

void ToTimes(const struct stat& st, struct timespec times[2]) {
  times[0] = st.st_atim;
  times[1] = st.st_mtim;
}

}  // namespace

bool OwnerDiffers(const struct stat& st) { return st.st_uid != kEuid || st.st_gid != kEgid; }


OpError ReadXattrs(int fd, Xattrs* out) {
  char list[kXattrMax];
  ssize_t size = ::flistxattr(fd, list, sizeof list);
  if (size < 0) {
    if (errno == EOPNOTSUPP) return {};
    return OpFail("flistxattr");
  }
  if (size == 0) return {};
  return ParseXattrList(list, size, out, GetFd, &fd);
}

OpError ReadXattrsAt(int dirFd, const char* name, Xattrs* out) {
  char list[kXattrMax];
  ssize_t size = ListXattrsAt(dirFd, name, list, sizeof list);
  if (size < 0) {
    if (errno == EOPNOTSUPP) return {};
    return OpFail("llistxattr");
  }
  if (size == 0) return {};
  std::string path = ProcPath(dirFd, name);
  return ParseXattrList(list, size, out, GetPath, &path);
}

OpError WriteXattrs(int fd, const Xattrs& xattrs) {
  for (const Xattr& x : xattrs) {
    if (::fsetxattr(fd, x.name.c_str(), x.value.data(), x.value.size(), 0) != 0) return OpFail("fsetxattr");
  }
  return {};
}

OpError WriteXattrsAt(int dirFd, const char* name, const Xattrs& xattrs) {
  if (xattrs.empty()) return {};
  std::string path = ProcPath(dirFd, name);
  for (const Xattr& x : xattrs) {
    if (::lsetxattr(path.c_str(), x.name.c_str(), x.value.data(), x.value.size(), 0) != 0) return OpFail("lsetxattr");
  }
  return {};
}

OpError CopyData(int srcFd, int dstFd, const struct stat& st, DataPaths& paths, std::vector<char>& buffer,
                 const StopCheck& stop) {
  if (st.st_size == 0) return {};
  if (paths.reflink.load(std::memory_order_relaxed)) {
    if (::ioctl(dstFd, FICLONE, srcFd) == 0) return {};
    if (Unsupported(errno)) paths.reflink.store(false, std::memory_order_relaxed);
    // Any other failure: this one file is copied the ordinary way below.
  }
  // Fewer allocated blocks than the size means holes: copy only the data segments.
  bool sparse = static_cast<off_t>(st.st_blocks) * 512 < st.st_size;
  if (!sparse) return CopyRange(srcFd, dstFd, 0, st.st_size, paths, buffer, stop);
  for (off_t off = 0; off < st.st_size;) {
    off_t data = ::lseek(srcFd, off, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole remains
      if (errno == EINVAL || errno == EOPNOTSUPP) return CopyRange(srcFd, dstFd, off, st.st_size - off, paths, buffer, stop);
      return OpFail("lseek");
    }
    off_t hole = ::lseek(srcFd, data, SEEK_HOLE);
    if (hole < 0) return OpFail("lseek");
    if (hole > st.st_size) hole = st.st_size;
    if (OpError e = CopyRange(srcFd, dstFd, data, hole - data, paths, buffer, stop)) return e;
    off = hole;
  }
  if (::ftruncate(dstFd, st.st_size) != 0) return OpFail("ftruncate");
  return {};
}

OpError ApplyMetadata(int fd, const struct stat& st, const Xattrs& xattrs, bool forceChown) {
  if ((forceChown || OwnerDiffers(st)) && ::fchown(fd, st.st_uid, st.st_gid) != 0) return OpFail("fchown");
  if (::fchmod(fd, st.st_mode & 07777) != 0) return OpFail("fchmod");
  if (OpError e = WriteXattrs(fd, xattrs)) return e;
  struct timespec times[2];
  ToTimes(st, times);
  if (::futimens(fd, times) != 0) return OpFail("futimens");
  return {};
}

OpError ApplyMetadataAt(int dirFd, const char* name, const struct stat& st, const Xattrs& xattrs, bool forceChown) {
  if ((forceChown || OwnerDiffers(st)) && ::fchownat(dirFd, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return OpFail("fchownat");
  }
  // The entry was just made by us and is not a symlink, so following it is safe.
  if (!S_ISLNK(st.st_mode) && ::fchmodat(dirFd, name, st.st_mode & 07777, 0) != 0) return OpFail("fchmodat");
  if (OpError e = WriteXattrsAt(dirFd, name, xattrs)) return e;
  struct timespec times[2];
  ToTimes(st, times);
  if (::utimensat(dirFd, name, times, AT_SYMLINK_NOFOLLOW) != 0) return OpFail("utimensat");
  return {};
}

}  // namespace ogd
