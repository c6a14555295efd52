// The per-entry syscalls of a layer apply, batched into one thread-pool trip each.
// A layer of 100k small files costs open+write+fchown+fchmod+futimens+close per
// file; through node:fs that is six trips to the pool and back, here it is one.
// Times are set with nanoseconds (utimensat), which Node's utimes (seconds as a
// double) cannot carry exactly. Nothing here follows a final symlink: files are
// created with O_EXCL|O_NOFOLLOW, metadata is set with lchown/utimensat
// AT_SYMLINK_NOFOLLOW, and mode is never set on a symlink.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

struct Meta {
  int64_t uid = -1, gid = -1, mode = -1;  // -1: leave as is
  bool setTimes = false;
  struct timespec times[2] = {};
};

Meta MetaArgs(const Napi::CallbackInfo& info, size_t i) {
  Meta m;
  m.uid = IntArg(info, i, "uid");
  m.gid = IntArg(info, i + 1, "gid");
  m.mode = IntArg(info, i + 2, "mode");
  int64_t an = IntArg(info, i + 4, "atimeNsec");
  int64_t mn = IntArg(info, i + 6, "mtimeNsec");
  m.setTimes = an >= 0 && mn >= 0;
  m.times[0].tv_sec = static_cast<time_t>(IntArg(info, i + 3, "atimeSec"));
  m.times[0].tv_nsec = static_cast<long>(an);
  m.times[1].tv_sec = static_cast<time_t>(IntArg(info, i + 5, "mtimeSec"));
  m.times[1].tv_nsec = static_cast<long>(mn);
  return m;
}

// fchown before fchmod: chown clears setuid/setgid.
class WriteNewFileWorker : public PromiseWorker {
 public:
  WriteNewFileWorker(Napi::Env env, std::string path, std::vector<char> data, Meta meta)
      : PromiseWorker(env), path_(std::move(path)), data_(std::move(data)), meta_(meta) {}

  void Execute() override {
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return Fail(Failure(errno, "open", path_));
    size_t done = 0;
    while (done < data_.size()) {
      ssize_t n = ::write(fd, data_.data() + done, data_.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        Fail(Failure(errno, "write", path_));
        break;
      }
      done += static_cast<size_t>(n);
    }
    if (!Failed() && meta_.uid >= 0 && ::fchown(fd, static_cast<uid_t>(meta_.uid), static_cast<gid_t>(meta_.gid)) != 0) {
      Fail(Failure(errno, "fchown", path_));
    }
    if (!Failed() && meta_.mode >= 0 && ::fchmod(fd, static_cast<mode_t>(meta_.mode)) != 0) Fail(Failure(errno, "fchmod", path_));
    if (!Failed() && meta_.setTimes && ::futimens(fd, meta_.times) != 0) Fail(Failure(errno, "futimens", path_));
    if (::close(fd) != 0 && !Failed()) Fail(Failure(errno, "close", path_));
  }

 private:
  std::string path_;
  std::vector<char> data_;
  Meta meta_;
};

class SetMetaWorker : public PromiseWorker {
 public:
  SetMetaWorker(Napi::Env env, std::string path, Meta meta) : PromiseWorker(env), path_(std::move(path)), meta_(meta) {}

  void Execute() override {
    if (meta_.uid >= 0 && ::lchown(path_.c_str(), static_cast<uid_t>(meta_.uid), static_cast<gid_t>(meta_.gid)) != 0) {
      return Fail(Failure(errno, "lchown", path_));
    }
    if (meta_.mode >= 0 && ::fchmodat(AT_FDCWD, path_.c_str(), static_cast<mode_t>(meta_.mode), 0) != 0) {
      return Fail(Failure(errno, "chmod", path_));
    }
    if (meta_.setTimes && ::utimensat(AT_FDCWD, path_.c_str(), meta_.times, AT_SYMLINK_NOFOLLOW) != 0) {
      return Fail(Failure(errno, "utimensat", path_));
    }
  }

 private:
  std::string path_;
  Meta meta_;
};

}  // namespace

// writeNewFile(path, data, uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec) -> Promise<void>
// Creates `path` (EEXIST if anything is there), writes `data`, sets owner, mode and times.
// uid -1 skips the chown, mode -1 the chmod, a negative nsec the times.
Napi::Value WriteNewFile(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(info.Env(), "The \"data\" argument must be a Buffer");
  auto buf = info[1].As<Napi::Buffer<char>>();
  std::vector<char> data(buf.Data(), buf.Data() + buf.Length());
  Meta meta = MetaArgs(info, 2);
  auto* w = new WriteNewFileWorker(info.Env(), path, std::move(data), meta);
  return w->Start();
}

// setMeta(path, uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec) -> Promise<void>
// lchown, chmod (pass mode -1 for a symlink: chmod would follow it), utimensat without following.
Napi::Value SetMeta(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  Meta meta = MetaArgs(info, 1);
  auto* w = new SetMetaWorker(info.Env(), path, meta);
  return w->Start();
}

}  // namespace ogd
