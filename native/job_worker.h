// Base for the long native jobs (copyTree, packTree): a PromiseWorker that also
// holds the abort flag JS sets (byte 0 of a Buffer, polled between entries) and
// the progress callback, called through a ThreadSafeFunction from the job's threads.
#pragma once
#include <napi.h>

#include <cstdint>
#include <memory>
#include <string>

#include "worker.h"

namespace ogd {

class JobWorker : public PromiseWorker {
 public:
  using PromiseWorker::PromiseWorker;

  void SetAbortFlag(Napi::Buffer<uint8_t> flag) {
    if (flag.Length() == 0) return;
    abortRef_ = Napi::Persistent(flag);
    abortFlag_ = flag.Data();
  }

  void SetProgress(Napi::Env env, Napi::Function fn, const char* name) {
    progress_ = Napi::ThreadSafeFunction::New(env, fn, name, 0, 1);
    hasProgress_ = true;
  }

 protected:
  // The flag's byte, or nullptr when the caller passed none.
  const uint8_t* abortFlag() const { return abortFlag_; }
  bool AbortRequested() const { return abortFlag_ != nullptr && __atomic_load_n(abortFlag_, __ATOMIC_RELAXED) != 0; }

  bool hasProgress() const { return hasProgress_; }
  // From any thread of the job; dropped when the JS side is busy (the next one will do).
  void ReportProgress(uint64_t entries, uint64_t bytes) {
    auto* p = new Progress{static_cast<double>(entries), static_cast<double>(bytes)};
    if (progress_.NonBlockingCall(p, CallProgress) != napi_ok) delete p;
  }
  // Call at the end of Execute(): no progress call comes after it.
  void EndProgress() {
    if (hasProgress_) progress_.Release();
  }

  void OnOK() override {
    abortRef_.Reset();
    PromiseWorker::OnOK();
  }
  void OnError(const Napi::Error& error) override {
    abortRef_.Reset();
    PromiseWorker::OnError(error);
  }

 private:
  struct Progress {
    double entries;
    double bytes;
  };

  static void CallProgress(Napi::Env env, Napi::Function fn, Progress* p) {
    std::unique_ptr<Progress> owned(p);
    if (env == nullptr || fn.IsEmpty()) return;
    try {
      fn.Call({Napi::Number::New(env, p->entries), Napi::Number::New(env, p->bytes)});
    } catch (const Napi::Error&) {
      // lib/native.ts guards the user's callback; nothing may escape into libuv here.
    }
  }

  const uint8_t* abortFlag_ = nullptr;
  Napi::Reference<Napi::Buffer<uint8_t>> abortRef_;
  Napi::ThreadSafeFunction progress_;
  bool hasProgress_ = false;
};

}  // namespace ogd
