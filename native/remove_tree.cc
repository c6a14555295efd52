// removeTree(path): `rm -rf --one-file-system` in one pool job, fd-relative
// (unlinkat on each directory's fd, nothing followed, no path grows past PATH_MAX).
// Memory is bounded by depth, not by the size of the tree: a directory is read a
// getdents64 buffer at a time, its files unlinked as they are read, the
// subdirectories of that buffer removed before the next buffer is read. Node's
// fs.rm recursive held every level's whole listing and a Promise per entry.
// A directory on another mount (another device, or another mount id where statx
// tells it) is never entered: the removal fails with EBUSY, as rmdir would, without
// touching what is mounted there. A missing `path` is not an error.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "args.h"
#include "dirent64.h"
#include "exports.h"
#include "fd.h"
#include "worker.h"

namespace ogd {
namespace {

constexpr size_t kDirBuffer = 32 * 1024;

// Where a directory lives: device, and the mount id when the kernel tells it (5.8+).
struct Place {
  uint64_t dev = 0;
  uint64_t mnt = 0;
  bool hasMnt = false;
  bool operator!=(const Place& o) const { return dev != o.dev || (hasMnt && o.hasMnt && mnt != o.mnt); }
};

bool PlaceOf(int dirFd, const char* name, int flags, Place& out) {
#if defined(STATX_MNT_ID)
  struct statx sx;
  if (::statx(dirFd, name, flags | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &sx) == 0) {
    out.dev = (static_cast<uint64_t>(sx.stx_dev_major) << 32) | sx.stx_dev_minor;
    out.hasMnt = (sx.stx_mask & STATX_MNT_ID) != 0;
    out.mnt = sx.stx_mnt_id;
    return true;
  }
  if (errno != ENOSYS) return false;
#endif
  struct stat st;
  if (::fstatat(dirFd, name, &st, flags | AT_SYMLINK_NOFOLLOW) != 0) return false;
  out.dev = static_cast<uint64_t>(st.st_dev);
  out.hasMnt = false;
  return true;
}

class RemoveTreeWorker : public PromiseWorker {
 public:
  RemoveTreeWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

  void Execute() override {
    struct stat st;
    if (::lstat(path_.c_str(), &st) != 0) {
      if (errno != ENOENT) Fail(Failure(errno, "lstat", path_));
      return;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (::unlink(path_.c_str()) != 0 && errno != ENOENT) Fail(Failure(errno, "unlink", path_));
      return;
    }
    Fd fd(::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0) return Fail(Failure(errno, "open", path_));
    Place place;
    if (!PlaceOf(fd.get(), "", AT_EMPTY_PATH, place)) return Fail(Failure(errno, "lstat", path_));
    buf_.reset(new char[kDirBuffer]);
    std::string shown = path_;
    EmptyAndRemove(fd.get(), place, shown, [&]() { return ::rmdir(path_.c_str()); });
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("removed", Napi::Number::New(env, static_cast<double>(removed_)));
    return o;
  }

 private:
  bool Stop(const SysFailure& f) {
    Fail(f);
    return false;
  }

  // Removes everything in the directory open as `dirFd` (shown as `shown` in errors),
  // then the directory itself with `rmdir` (called with no argument). What a
  // concurrent writer adds meanwhile makes rmdir fail ENOTEMPTY: read it again.
  template <typename Rmdir>
  bool EmptyAndRemove(int dirFd, const Place& place, std::string& shown, Rmdir rmdir) {
    for (int round = 0;; round++) {
      if (round > 0 && ::lseek(dirFd, 0, SEEK_SET) < 0) return Stop(Failure(errno, "lseek", shown));
      if (!Empty(dirFd, place, shown)) return false;
      if (rmdir() == 0 || errno == ENOENT) return true;
      if (errno != ENOTEMPTY || round >= 8) return Stop(Failure(errno, "rmdir", shown));
    }
  }

  bool Empty(int dirFd, const Place& place, std::string& shown) {
    for (;;) {
      long n = ::syscall(SYS_getdents64, dirFd, buf_.get(), kDirBuffer);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Stop(Failure(errno, "readdir", shown));
      }
      if (n == 0) break;
      // This buffer's subdirectories, removed once its other entries are; the buffer is reused below.
      std::vector<std::string> dirs;
      for (long at = 0; at < n;) {
        const auto* d = reinterpret_cast<const Dirent64*>(buf_.get() + at);
        at += d->reclen;
        if (d->name[0] == '.' && (d->name[1] == '\0' || (d->name[1] == '.' && d->name[2] == '\0'))) continue;
        bool isDir = d->type == DT_DIR;
        if (d->type == DT_UNKNOWN) {
          struct stat st;
          if (::fstatat(dirFd, d->name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT) continue;
            return Stop(Failure(errno, "lstat", shown + "/" + d->name));
          }
          isDir = S_ISDIR(st.st_mode);
        }
        if (isDir) {
          dirs.emplace_back(d->name);
        } else if (::unlinkat(dirFd, d->name, 0) == 0) {
          removed_++;
        } else if (errno == EISDIR) {
          dirs.emplace_back(d->name);  // became a directory meanwhile
        } else if (errno != ENOENT) {
          return Stop(Failure(errno, "unlink", shown + "/" + d->name));
        }
      }
      for (const std::string& name : dirs) {
        if (!RemoveDir(dirFd, name, place, shown)) return false;
      }
    }
    return true;
  }

  bool RemoveDir(int parentFd, const std::string& name, const Place& place, std::string& shown) {
    size_t len = shown.size();
    shown += "/" + name;
    bool ok = RemoveDirAt(parentFd, name, place, shown);
    shown.resize(len);
    return ok;
  }

  bool RemoveDirAt(int parentFd, const std::string& name, const Place& place, std::string& shown) {
    Fd fd(::openat(parentFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0) {
      if (errno == ENOENT) return true;
      if (errno == ENOTDIR || errno == ELOOP) {
        // Replaced by a non-directory meanwhile.
        if (::unlinkat(parentFd, name.c_str(), 0) == 0 || errno == ENOENT) return true;
        return Stop(Failure(errno, "unlink", shown));
      }
      return Stop(Failure(errno, "open", shown));
    }
    Place here;
    if (!PlaceOf(fd.get(), "", AT_EMPTY_PATH, here)) return Stop(Failure(errno, "lstat", shown));
    if (here != place) return Stop(Failure(EBUSY, "rmdir", shown));  // a mount point: not ours to empty
    if (!EmptyAndRemove(fd.get(), place, shown, [&]() { return ::unlinkat(parentFd, name.c_str(), AT_REMOVEDIR); })) return false;
    removed_++;
    return true;
  }

  std::string path_;
  std::unique_ptr<char[]> buf_;
  uint64_t removed_ = 0;
};

}  // namespace

// removeTree(path) -> Promise<{ removed }>: the entries removed below `path` (itself not counted).
Napi::Value RemoveTree(const Napi::CallbackInfo& info) {
  auto* w = new RemoveTreeWorker(info.Env(), PathArg(info, 0, "path"));
  return w->Start();
}

}  // namespace ogd
