// mount(2) and umount2(2), off the JS thread: an overlay mount can take a while
// (the kernel checks every lower layer), and a lazy unmount can block on I/O. Each can
// carry a small file change made in the same job (a store's mount references): right
// after the mount, which is undone when the change fails, and right before the
// unmount, which is not tried when the change fails. Either way the call did both or
// neither.
#include <sys/mount.h>

#include <cerrno>

#include "args.h"
#include "exports.h"
#include "small_files.h"
#include "worker.h"

namespace ogd {
namespace {

class MountWorker : public PromiseWorker {
 public:
  MountWorker(Napi::Env env, std::string source, std::string target, std::string fstype,
              unsigned long flags, std::string data, bool hasData, FileChange after)
      : PromiseWorker(env), source_(std::move(source)), target_(std::move(target)),
        fstype_(std::move(fstype)), flags_(flags), data_(std::move(data)), hasData_(hasData), after_(std::move(after)) {}

  void Execute() override {
    const char* fstype = fstype_.empty() ? nullptr : fstype_.c_str();
    const char* data = hasData_ ? data_.c_str() : nullptr;
    if (::mount(source_.c_str(), target_.c_str(), fstype, flags_, data) != 0) {
      return Fail(Failure(errno, "mount", source_, target_));
    }
    SysFailure failure;
    if (!ApplyFileChange(after_, failure)) {
      ::umount2(target_.c_str(), MNT_DETACH);
      Fail(failure);
    }
  }

 private:
  std::string source_, target_, fstype_;
  unsigned long flags_;
  std::string data_;
  bool hasData_;
  FileChange after_;
};

class UnmountWorker : public PromiseWorker {
 public:
  UnmountWorker(Napi::Env env, std::string target, int flags, FileChange before)
      : PromiseWorker(env), target_(std::move(target)), flags_(flags), before_(std::move(before)) {}

  void Execute() override {
    SysFailure failure;
    if (!ApplyFileChange(before_, failure)) return Fail(failure);
    if (::umount2(target_.c_str(), flags_) != 0) Fail(Failure(errno, "umount2", target_));
  }

 private:
  std::string target_;
  int flags_;
  FileChange before_;
};

}  // namespace

// mount(source, target, fstype, flags, data?, after?) -> Promise<void>
// The error's path is the source and its dest the target, as Node does for two-path calls.
Napi::Value Mount(const Napi::CallbackInfo& info) {
  std::string source = PathArg(info, 0, "source");
  std::string target = PathArg(info, 1, "target");
  std::string fstype = StringArg(info, 2, "fstype");
  auto flags = static_cast<unsigned long>(IntArg(info, 3, "flags"));
  bool hasData = info.Length() > 4 && !info[4].IsUndefined() && !info[4].IsNull();
  std::string data = hasData ? StringArg(info, 4, "data") : std::string();
  auto* worker = new MountWorker(info.Env(), source, target, fstype, flags, data, hasData, FileChangeArg(info, 5));
  return worker->Start();
}

// unmount(target, flags, before?) -> Promise<void>
Napi::Value Unmount(const Napi::CallbackInfo& info) {
  std::string target = PathArg(info, 0, "target");
  int flags = static_cast<int>(IntArg(info, 1, "flags"));
  auto* worker = new UnmountWorker(info.Env(), target, flags, FileChangeArg(info, 2));
  return worker->Start();
}

}  // namespace ogd
