// renameat2(2): RENAME_NOREPLACE to publish a staged directory without clobbering
// one that appeared meanwhile, RENAME_EXCHANGE to swap two trees in one step.
#include <fcntl.h>
#include <stdio.h>

#include <cerrno>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

class RenameWorker : public PromiseWorker {
 public:
  RenameWorker(Napi::Env env, std::string from, std::string to, unsigned int flags)
      : PromiseWorker(env), from_(std::move(from)), to_(std::move(to)), flags_(flags) {}

  void Execute() override {
    if (::renameat2(AT_FDCWD, from_.c_str(), AT_FDCWD, to_.c_str(), flags_) != 0) {
      Fail(Failure(errno, "renameat2", from_, to_));
    }
  }

 private:
  std::string from_, to_;
  unsigned int flags_;
};

}  // namespace

// rename2(from, to, flags) -> Promise<void>
Napi::Value Rename2(const Napi::CallbackInfo& info) {
  std::string from = PathArg(info, 0, "from");
  std::string to = PathArg(info, 1, "to");
  auto flags = static_cast<unsigned int>(IntArg(info, 2, "flags"));
  auto* w = new RenameWorker(info.Env(), from, to, flags);
  return w->Start();
}

}  // namespace ogd
