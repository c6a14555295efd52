// mknod(2): Node can make files, dirs and symlinks but not fifos or device nodes.
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

class MknodWorker : public PromiseWorker {
 public:
  MknodWorker(Napi::Env env, std::string path, mode_t mode, dev_t dev)
      : PromiseWorker(env), path_(std::move(path)), mode_(mode), dev_(dev) {}

  void Execute() override {
    if (::mknod(path_.c_str(), mode_, dev_) != 0) Fail(Failure(errno, "mknod", path_));
  }

 private:
  std::string path_;
  mode_t mode_;
  dev_t dev_;
};

}  // namespace

// mknod(path, mode, major, minor) -> Promise<void>; mode carries the S_IF* type bits.
Napi::Value Mknod(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  auto mode = static_cast<mode_t>(IntArg(info, 1, "mode"));
  auto major = static_cast<unsigned int>(IntArg(info, 2, "major"));
  auto minor = static_cast<unsigned int>(IntArg(info, 3, "minor"));
  auto* worker = new MknodWorker(info.Env(), path, mode, makedev(major, minor));
  return worker->Start();
}

}  // namespace ogd
