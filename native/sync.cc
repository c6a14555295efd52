// Flushes Node lacks by path: syncfs(2) of the filesystem a path is on (what the store
// calls once per committed layer: every file the apply wrote, in one writeback and one
// journal commit), and fsync/fdatasync of files or directories named by path, several
// in one pool trip (a directory after a rename or unlink in it: without it the new
// name may not survive a power cut, even when the file's own data did).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "args.h"
#include "exports.h"
#include "fd.h"
#include "worker.h"

namespace ogd {
namespace {

// O_RDONLY, not O_PATH: syncfs and fsync refuse an O_PATH fd. O_NONBLOCK: a fifo
// planted at the path must not hang a pool thread.
int OpenForSync(const std::string& path) {
  return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
}

class SyncFsWorker : public PromiseWorker {
 public:
  SyncFsWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

  void Execute() override {
    int fd = OpenForSync(path_);
    if (fd < 0) return Fail(Failure(errno, "open", path_));
    Fd file(fd);
    // Since Linux 5.8 syncfs also reports writeback errors seen since the fd was opened.
    if (::syncfs(fd) != 0) Fail(Failure(errno, "syncfs", path_));
  }

 private:
  std::string path_;
};

class FsyncWorker : public PromiseWorker {
 public:
  FsyncWorker(Napi::Env env, std::vector<std::string> paths, bool dataOnly)
      : PromiseWorker(env), paths_(std::move(paths)), dataOnly_(dataOnly) {}

  void Execute() override {
    for (const std::string& path : paths_) {
      int fd = OpenForSync(path);
      if (fd < 0) return Fail(Failure(errno, "open", path));
      Fd file(fd);
      if ((dataOnly_ ? ::fdatasync(fd) : ::fsync(fd)) != 0) return Fail(Failure(errno, dataOnly_ ? "fdatasync" : "fsync", path));
    }
  }

 private:
  std::vector<std::string> paths_;
  bool dataOnly_;
};

}  // namespace

// syncFs(path) -> Promise<void>
Napi::Value SyncFs(const Napi::CallbackInfo& info) {
  auto* w = new SyncFsWorker(info.Env(), PathArg(info, 0, "path"));
  return w->Start();
}

// fsyncPaths(paths: (string|Buffer)[], dataOnly: boolean) -> Promise<void>, in order, stopping at the first failure
Napi::Value FsyncPaths(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) throw Napi::TypeError::New(env, "The \"paths\" argument must be an array");
  Napi::Array list = info[0].As<Napi::Array>();
  std::vector<std::string> paths;
  paths.reserve(list.Length());
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    std::string p;
    if (v.IsString()) {
      p = v.As<Napi::String>().Utf8Value();
    } else if (v.IsBuffer()) {
      auto buf = v.As<Napi::Buffer<char>>();
      p.assign(buf.Data(), buf.Length());
    } else {
      throw Napi::TypeError::New(env, "The \"paths\" argument must hold strings or Buffers");
    }
    if (p.empty() || p.find('\0') != std::string::npos) throw Napi::TypeError::New(env, "The \"paths\" argument must hold non-empty paths without null bytes");
    paths.push_back(std::move(p));
  }
  auto* w = new FsyncWorker(env, std::move(paths), info[1].ToBoolean());
  return w->Start();
}

}  // namespace ogd
