// Open file description locks (fcntl F_OFD_SETLK / F_OFD_SETLKW) on a whole file:
// the store's cross-process read/write locks. Unlike classic POSIX record locks they
// belong to the open file description, not to the process, so two fds in one process
// (or two worker threads) exclude each other, closing one fd never drops a lock taken
// through another, and the kernel drops the lock when its holder dies (kill -9
// included): no pid files, no staleness guesses.
//
// A blocking wait runs on a thread of its own, not on libuv's pool: waiters parked on
// the pool could starve the very fs calls a lock holder in this process needs to
// finish and release.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "args.h"
#include "exports.h"
#include "path_probes.h"
#include "sys_error.h"
#include "worker.h"

namespace ogd {
namespace {

int SetLock(int fd, short type, bool wait) {
  struct flock fl = {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // the whole file, however long it grows
  fl.l_pid = 0;  // required by F_OFD_* locks
  for (;;) {
    if (::fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

short LockType(const Napi::CallbackInfo& info, size_t i) {
  std::string kind = StringArg(info, i, "kind");
  if (kind == "read") return F_RDLCK;
  if (kind == "write") return F_WRLCK;
  if (kind == "unlock") return F_UNLCK;
  throw Napi::TypeError::New(info.Env(), "The \"kind\" argument must be 'read', 'write' or 'unlock'");
}

// Opens (creating) the lock file and tries the lock, in one pool trip instead of the
// four (open, fcntl, fstat, stat) a store operation would otherwise wait for, and once
// it holds the lock makes the caller's probes (what it reads under the lock) in the
// same trip. Holding the lock on a file someone deleted meanwhile (a removed layer's)
// is no lock at all: then it starts over on the file now at the path.
class TryLockPathWorker : public PromiseWorker {
 public:
  TryLockPathWorker(Napi::Env env, std::string path, short type, std::vector<PathProbe> probes)
      : PromiseWorker(env), path_(std::move(path)), type_(type), probes_(std::move(probes)) {}

  void Execute() override {
    for (int attempt = 0; attempt < 100; attempt++) {
      int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
      if (fd < 0) return Fail(Failure(errno, "open", path_));
      int err = SetLock(fd, type_, false);
      if (err == EAGAIN || err == EACCES) {
        fd_ = fd;  // not taken: the caller waits on this fd (off the pool) and checks the path itself
        return;
      }
      if (err != 0) {
        ::close(fd);
        return Fail(Failure(err, "fcntl", path_));
      }
      struct stat mine, now;
      if (::fstat(fd, &mine) != 0) {
        err = errno;
        ::close(fd);
        return Fail(Failure(err, "fstat", path_));
      }
      bool same = ::stat(path_.c_str(), &now) == 0 && now.st_ino == mine.st_ino && now.st_dev == mine.st_dev;
      if (same) {
        fd_ = fd;
        locked_ = true;
        outcomes_ = RunProbes(probes_);
        return;
      }
      ::close(fd);
    }
    Fail(Failure(EAGAIN, "open", path_));  // replaced a hundred times in a row: not a lock file anyone can hold
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("fd", Napi::Number::New(env, fd_));
    out.Set("locked", Napi::Boolean::New(env, locked_));
    if (locked_) out.Set("probed", ProbeValues(env, outcomes_));
    return out;
  }

 private:
  std::string path_;
  short type_;
  std::vector<PathProbe> probes_;
  std::vector<ProbeOutcome> outcomes_;
  int fd_ = -1;
  bool locked_ = false;
};

struct Wait {
  Napi::Promise::Deferred deferred;
  int err = 0;
};

}  // namespace

// ofdTryLock(fd, kind) -> boolean: takes (or, with 'unlock', drops) the lock without
// waiting; false when another open file description holds a conflicting one.
Napi::Value OfdTryLock(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(IntArg(info, 0, "fd"));
  short type = LockType(info, 1);
  int err = SetLock(fd, type, false);
  if (err == 0) return Napi::Boolean::New(info.Env(), true);
  if (err == EAGAIN || err == EACCES) return Napi::Boolean::New(info.Env(), false);
  throw SysError(info.Env(), Failure(err, "fcntl"));
}

// ofdTryLockPath(path, kind, probes?) -> Promise<{ fd, locked, probed? }>: the lock file
// open (created when missing) and, when nobody holds a conflicting lock, locked, checked
// to be the file at `path`, and the probes made (path_probes.h). With locked false the
// fd is open but not locked, and nothing was probed.
Napi::Value OfdTryLockPath(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  short type = LockType(info, 1);
  if (type == F_UNLCK) throw Napi::TypeError::New(info.Env(), "The \"kind\" argument must be 'read' or 'write'");
  return (new TryLockPathWorker(info.Env(), std::move(path), type, ProbesArg(info, 2)))->Start();
}

// ofdLock(fd, kind) -> Promise<void>: waits for the lock on a thread of its own.
Napi::Value OfdLock(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(IntArg(info, 0, "fd"));
  short type = LockType(info, 1);
  auto* wait = new Wait{Napi::Promise::Deferred::New(env)};
  Napi::Promise promise = wait->deferred.Promise();
  // The thread-safe function keeps the event loop alive while the wait lasts, and
  // settles the promise back on the JS thread.
  auto tsfn = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}), "ogd-ofd-lock", 0, 1);
  std::thread([tsfn, wait, fd, type]() mutable {
    wait->err = SetLock(fd, type, true);
    tsfn.BlockingCall(wait, [](Napi::Env env, Napi::Function, Wait* w) {
      if (w->err == 0) w->deferred.Resolve(env.Undefined());
      else w->deferred.Reject(SysError(env, Failure(w->err, "fcntl")).Value());
      delete w;
    });
    tsfn.Release();
  }).detach();
  return promise;
}

}  // namespace ogd
