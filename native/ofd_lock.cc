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
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "args.h"
#include "exports.h"
#include "sys_error.h"

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
