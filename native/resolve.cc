// Resolves a path strictly inside a root directory, as if the root were "/":
// openat2(2) with RESOLVE_IN_ROOT makes the kernel clamp "..", absolute symlinks
// and symlink chains to the root, so no component of a layer's path can lead out
// of it. Returns the real path of what it found (read back from /proc/self/fd).
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

class ResolveWorker : public PromiseWorker {
 public:
  ResolveWorker(Napi::Env env, std::string root, std::string rel, bool followLast, bool asBuffer)
      : PromiseWorker(env), root_(std::move(root)), rel_(std::move(rel)), followLast_(followLast), asBuffer_(asBuffer) {}

  void Execute() override {
    int rootFd = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootFd < 0) return Fail(Failure(errno, "open", root_));
    struct open_how how = {};
    how.flags = O_PATH | O_CLOEXEC | (followLast_ ? 0 : O_NOFOLLOW);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    const char* rel = rel_.empty() ? "." : rel_.c_str();
    int fd = static_cast<int>(::syscall(SYS_openat2, rootFd, rel, &how, sizeof how));
    int err = errno;
    ::close(rootFd);
    if (fd < 0) return Fail(Failure(err, "openat2", root_, rel_));
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    std::string buf(PATH_MAX * 4, '\0');
    ssize_t n = ::readlink(link, buf.data(), buf.size());
    err = errno;
    ::close(fd);
    if (n < 0) return Fail(Failure(err, "readlink", link));
    if (static_cast<size_t>(n) >= buf.size()) return Fail(Failure(ENAMETOOLONG, "readlink", link));
    buf.resize(static_cast<size_t>(n));
    resolved_ = std::move(buf);
  }

  Napi::Value Result(Napi::Env env) override { return PathValue(env, resolved_, asBuffer_); }

 private:
  std::string root_, rel_;
  bool followLast_, asBuffer_;
  std::string resolved_;
};

}  // namespace

// resolveInRoot(root, rel, followLast) -> Promise<string | Buffer>
// Rejects with ENOENT when a component is missing, ENOSYS on kernels before 5.6,
// and EXDEV when the walk would cross a mount point below the root.
Napi::Value ResolveInRoot(const Napi::CallbackInfo& info) {
  bool asBuffer = ArgIsBuffer(info, 0) || ArgIsBuffer(info, 1);
  std::string root = PathArg(info, 0, "root");
  std::string rel = PathArg(info, 1, "rel");
  bool followLast = info.Length() > 2 && info[2].ToBoolean();
  auto* w = new ResolveWorker(info.Env(), root, rel, followLast, asBuffer);
  return w->Start();
}

}  // namespace ogd
