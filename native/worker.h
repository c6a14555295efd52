// Base for every native call that does I/O: the work runs on libuv's thread pool
// and settles a Promise.
//
// Contract (as sharp's and classic-level's workers): copy every argument into the
// worker's own members in the constructor, before Start(); Execute() runs on a pool
// thread and must touch no JS value and no napi_env; it reports a failed syscall
// with Fail(), and Result() builds the resolution value back on the JS thread.
#pragma once
#include <napi.h>

#include <string>

#include "sys_error.h"

namespace ogd {

class PromiseWorker : public Napi::AsyncWorker {
 public:
  explicit PromiseWorker(Napi::Env env)
      : Napi::AsyncWorker(env, "ogd"), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

 protected:
  // Call from Execute() only; the first failure wins.
  void Fail(const SysFailure& failure) {
    if (failed_) return;
    failed_ = true;
    failure_ = failure;
    SetError(failure.syscall);
  }
  bool Failed() const { return failed_; }

  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  void OnOK() override { deferred_.Resolve(Result(Env())); }

  void OnError(const Napi::Error& error) override {
    if (failed_) {
      Napi::Error sys = SysError(Env(), failure_);
      Decorate(sys);
      deferred_.Reject(sys.Value());
    } else {
      deferred_.Reject(error.Value());
    }
  }

  // Lets a worker add fields (for example what it left behind) to its error.
  virtual void Decorate(Napi::Error& error) {}

 private:
  Napi::Promise::Deferred deferred_;
  SysFailure failure_;
  bool failed_ = false;
};

}  // namespace ogd
