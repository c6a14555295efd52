// setMeta: owner, mode and times of one path in one thread-pool trip. Times are set
// with nanoseconds (utimensat), which Node's utimes (seconds as a double) cannot
// carry exactly. Nothing here follows a final symlink: lchown, utimensat
// AT_SYMLINK_NOFOLLOW, and mode is never set on a symlink (pass -1).
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

// setMeta(path, uid, gid, mode, atimeSec, atimeNsec, mtimeSec, mtimeNsec) -> Promise<void>
// lchown, chmod (pass mode -1 for a symlink: chmod would follow it), utimensat without following.
Napi::Value SetMeta(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  Meta meta = MetaArgs(info, 1);
  auto* w = new SetMetaWorker(info.Env(), path, meta);
  return w->Start();
}

}  // namespace ogd
