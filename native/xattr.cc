// Extended attributes, never following a symlink (the l*xattr family): layers carry
// security.capability, user.* and overlay's trusted.overlay.* attributes.
#include <sys/xattr.h>

#include <cerrno>
#include <vector>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

class GetXattrWorker : public PromiseWorker {
 public:
  GetXattrWorker(Napi::Env env, std::string path, std::string name)
      : PromiseWorker(env), path_(std::move(path)), name_(std::move(name)) {}

  void Execute() override {
    // Size, then read; retry if the value grew in between.
    for (int attempt = 0; attempt < 8; attempt++) {
      ssize_t size = ::lgetxattr(path_.c_str(), name_.c_str(), nullptr, 0);
      if (size < 0) return Fail(Failure(errno, "lgetxattr", path_));
      value_.resize(static_cast<size_t>(size));
      ssize_t got = ::lgetxattr(path_.c_str(), name_.c_str(), value_.data(), value_.size());
      if (got >= 0) {
        value_.resize(static_cast<size_t>(got));
        return;
      }
      if (errno != ERANGE) return Fail(Failure(errno, "lgetxattr", path_));
    }
    Fail(Failure(ERANGE, "lgetxattr", path_));
  }

  Napi::Value Result(Napi::Env env) override {
    return Napi::Buffer<char>::Copy(env, value_.data(), value_.size());
  }

 private:
  std::string path_, name_;
  std::vector<char> value_;
};

class SetXattrWorker : public PromiseWorker {
 public:
  SetXattrWorker(Napi::Env env, std::string path, std::string name, std::vector<char> value, int flags)
      : PromiseWorker(env), path_(std::move(path)), name_(std::move(name)), value_(std::move(value)), flags_(flags) {}

  void Execute() override {
    if (::lsetxattr(path_.c_str(), name_.c_str(), value_.data(), value_.size(), flags_) != 0) {
      Fail(Failure(errno, "lsetxattr", path_));
    }
  }

 private:
  std::string path_, name_;
  std::vector<char> value_;
  int flags_;
};

class ListXattrWorker : public PromiseWorker {
 public:
  ListXattrWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

  void Execute() override {
    for (int attempt = 0; attempt < 8; attempt++) {
      ssize_t size = ::llistxattr(path_.c_str(), nullptr, 0);
      if (size < 0) return Fail(Failure(errno, "llistxattr", path_));
      list_.resize(static_cast<size_t>(size));
      ssize_t got = ::llistxattr(path_.c_str(), list_.data(), list_.size());
      if (got >= 0) {
        list_.resize(static_cast<size_t>(got));
        return;
      }
      if (errno != ERANGE) return Fail(Failure(errno, "llistxattr", path_));
    }
    Fail(Failure(ERANGE, "llistxattr", path_));
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array names = Napi::Array::New(env);
    uint32_t n = 0;
    size_t start = 0;
    for (size_t i = 0; i < list_.size(); i++) {
      if (list_[i] == '\0') {
        if (i > start) names.Set(n++, Napi::String::New(env, list_.data() + start, i - start));
        start = i + 1;
      }
    }
    return names;
  }

 private:
  std::string path_;
  std::vector<char> list_;
};

class RemoveXattrWorker : public PromiseWorker {
 public:
  RemoveXattrWorker(Napi::Env env, std::string path, std::string name)
      : PromiseWorker(env), path_(std::move(path)), name_(std::move(name)) {}

  void Execute() override {
    if (::lremovexattr(path_.c_str(), name_.c_str()) != 0) Fail(Failure(errno, "lremovexattr", path_));
  }

 private:
  std::string path_, name_;
};

}  // namespace

// getXattr(path, name) -> Promise<Buffer>; a missing attribute rejects with ENODATA.
Napi::Value GetXattr(const Napi::CallbackInfo& info) {
  auto* w = new GetXattrWorker(info.Env(), PathArg(info, 0, "path"), StringArg(info, 1, "name"));
  return w->Start();
}

// setXattr(path, name, value: Buffer, flags) -> Promise<void>
Napi::Value SetXattr(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  std::string name = StringArg(info, 1, "name");
  if (!info[2].IsBuffer()) throw Napi::TypeError::New(info.Env(), "The \"value\" argument must be a Buffer");
  auto buf = info[2].As<Napi::Buffer<char>>();
  std::vector<char> value(buf.Data(), buf.Data() + buf.Length());
  int flags = static_cast<int>(IntArg(info, 3, "flags"));
  auto* w = new SetXattrWorker(info.Env(), path, name, std::move(value), flags);
  return w->Start();
}

// listXattr(path) -> Promise<string[]>
Napi::Value ListXattr(const Napi::CallbackInfo& info) {
  auto* w = new ListXattrWorker(info.Env(), PathArg(info, 0, "path"));
  return w->Start();
}

// removeXattr(path, name) -> Promise<void>
Napi::Value RemoveXattr(const Napi::CallbackInfo& info) {
  auto* w = new RemoveXattrWorker(info.Env(), PathArg(info, 0, "path"), StringArg(info, 1, "name"));
  return w->Start();
}

}  // namespace ogd
