// Resolves a path strictly inside a root directory, as if the root were "/":
// openat2(2) with RESOLVE_IN_ROOT makes the kernel clamp "..", absolute symlinks
// and symlink chains to the root, so no component of a layer's path can lead out
// of it. Returns the real path of what it found (read back from /proc/self/fd).
//
// Where openat2 is missing (kernels before 5.6, or a seccomp profile that answers
// ENOSYS, as older container runtimes' defaults do) the same walk is done in
// userspace: one O_PATH|O_NOFOLLOW openat per component, symlinks read and their
// targets spliced in (absolute ones restart at the root), ".." never above the
// root, at most 40 symlinks, no crossing onto another device.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <deque>
#include <vector>

#include "args.h"
#include "resolve.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

// Linux's MAXSYMLINKS: symlinks followed in one resolution before ELOOP.
constexpr int kMaxSymlinks = 40;

void SplitPath(const std::string& path, std::deque<std::string>& out, bool atFront) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  out.insert(atFront ? out.begin() : out.end(), parts.begin(), parts.end());
}

}  // namespace

int WalkInRoot(int rootFd, const std::string& rel, bool followLast) {
  struct stat rootSt;
  if (::fstat(rootFd, &rootSt) != 0) return -1;
  std::deque<std::string> todo;
  SplitPath(rel, todo, false);
  std::vector<int> stack;  // the directories walked through; back() is where we are
  auto fail = [&stack](int err, int extraFd) {
    if (extraFd >= 0) ::close(extraFd);
    for (int fd : stack) ::close(fd);
    errno = err;
    return -1;
  };
  int start = ::dup(rootFd);
  if (start < 0) return -1;
  stack.push_back(start);
  int links = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.front());
    todo.pop_front();
    if (c == ".") continue;
    if (c == "..") {
      if (stack.size() > 1) {
        ::close(stack.back());
        stack.pop_back();
      }
      continue;
    }
    bool last = todo.empty();
    int fd = ::openat(stack.back(), c.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return fail(errno, -1);
    struct stat st;
    if (::fstat(fd, &st) != 0) return fail(errno, fd);
    if (S_ISLNK(st.st_mode) && (!last || followLast)) {
      char target[PATH_MAX];
      ssize_t n = ::readlinkat(fd, "", target, sizeof target);
      if (n < 0) return fail(errno, fd);
      ::close(fd);
      if (++links > kMaxSymlinks) return fail(ELOOP, -1);
      std::string t(target, static_cast<size_t>(n));
      if (!t.empty() && t[0] == '/') {
        while (stack.size() > 1) {
          ::close(stack.back());
          stack.pop_back();
        }
      }
      SplitPath(t, todo, true);
      continue;
    }
    if (st.st_dev != rootSt.st_dev) return fail(EXDEV, fd);
    if (!last && !S_ISDIR(st.st_mode)) return fail(ENOTDIR, fd);
    stack.push_back(fd);
  }
  int result = stack.back();
  stack.pop_back();
  for (int fd : stack) ::close(fd);
  return result;
}

namespace {

class ResolveWorker : public PromiseWorker {
 public:
  ResolveWorker(Napi::Env env, std::string root, std::string rel, bool followLast, bool asBuffer, bool forceWalk)
      : PromiseWorker(env),
        root_(std::move(root)),
        rel_(std::move(rel)),
        followLast_(followLast),
        asBuffer_(asBuffer),
        forceWalk_(forceWalk) {}

  void Execute() override {
    int rootFd = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootFd < 0) return Fail(Failure(errno, "open", root_));
    struct open_how how = {};
    how.flags = O_PATH | O_CLOEXEC | (followLast_ ? 0 : O_NOFOLLOW);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    const char* rel = rel_.empty() ? "." : rel_.c_str();
    int fd = -1;
    int err = ENOSYS;
    const char* syscallName = "openat2";
    if (!forceWalk_) {
      fd = static_cast<int>(::syscall(SYS_openat2, rootFd, rel, &how, sizeof how));
      err = errno;
    }
    if (fd < 0 && err == ENOSYS) {
      fd = WalkInRoot(rootFd, rel_, followLast_);
      err = errno;
      syscallName = "openat";
    }
    ::close(rootFd);
    if (fd < 0) return Fail(Failure(err, syscallName, root_, rel_));
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
  bool followLast_, asBuffer_, forceWalk_;
  std::string resolved_;
};

}  // namespace

// resolveInRoot(root, rel, followLast[, forceWalk]) -> Promise<string | Buffer>
// Rejects with ENOENT when a component is missing, and EXDEV when the walk would
// cross a mount point below the root (the fallback walk sees a change of device).
Napi::Value ResolveInRoot(const Napi::CallbackInfo& info) {
  bool asBuffer = ArgIsBuffer(info, 0) || ArgIsBuffer(info, 1);
  std::string root = PathArg(info, 0, "root");
  std::string rel = PathArg(info, 1, "rel");
  bool followLast = info.Length() > 2 && info[2].ToBoolean();
  bool forceWalk = info.Length() > 3 && info[3].ToBoolean();  // tests: the fallback walk even where openat2 exists
  auto* w = new ResolveWorker(info.Env(), root, rel, followLast, asBuffer, forceWalk);
  return w->Start();
}

}  // namespace ogd
