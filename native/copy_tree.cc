// copyTree(src, dst, {hardlink, threads, abortFlag?, onProgress?}) → Promise<CopyStats>:
// the N-API side of the copy engine (copy_engine.cc). The engine runs on a libuv
// pool thread that only coordinates; the copying happens on the engine's own threads.
//
// Abort: lib/native.ts sets byte 0 of `abortFlag` (a Buffer) when the AbortSignal
// fires; the engine polls it between entries. Progress goes back through a
// ThreadSafeFunction, at most every 100 ms. A failure or an abort rejects with a
// Node-style error carrying `leftBehind` (the dst path) when the copy made anything.
#include <cerrno>
#include <memory>

#include "args.h"
#include "copy_engine.h"
#include "exports.h"
#include "job_worker.h"

namespace ogd {
namespace {

class CopyTreeWorker : public JobWorker {
 public:
  CopyTreeWorker(Napi::Env env, CopyRequest request, bool dstIsBuffer) : JobWorker(env), request_(std::move(request)), dstIsBuffer_(dstIsBuffer) {}

  void Execute() override {
    CopyProgressFn report;
    if (hasProgress()) report = [this](uint64_t entries, uint64_t bytes) { ReportProgress(entries, bytes); };
    request_.abortFlag = abortFlag();
    result_ = RunCopy(request_, report);
    EndProgress();
    if (result_.outcome == CopyOutcome::Failed) Fail(result_.failure);
    if (result_.outcome == CopyOutcome::Aborted) Fail(Failure(ECANCELED, "copyTree", request_.src, request_.dst));
  }

  Napi::Value Result(Napi::Env env) override { return Counts(env); }

  void Decorate(Napi::Error& error) override {
    Napi::Object obj = error.Value();
    Napi::Env env = Env();
    if (result_.outcome == CopyOutcome::Aborted) obj.Set("aborted", Napi::Boolean::New(env, true));
    if (result_.leftBehind) obj.Set("leftBehind", PathValue(env, request_.dst, dstIsBuffer_));
    obj.Set("copied", Counts(env));
  }

 private:
  Napi::Object Counts(Napi::Env env) const {
    const CopyCounts& c = result_.counts;
    Napi::Object o = Napi::Object::New(env);
    o.Set("entries", Napi::Number::New(env, static_cast<double>(c.entries)));
    o.Set("directories", Napi::Number::New(env, static_cast<double>(c.directories)));
    o.Set("files", Napi::Number::New(env, static_cast<double>(c.files)));
    o.Set("symlinks", Napi::Number::New(env, static_cast<double>(c.symlinks)));
    o.Set("hardlinks", Napi::Number::New(env, static_cast<double>(c.hardlinks)));
    o.Set("devices", Napi::Number::New(env, static_cast<double>(c.devices)));
    o.Set("fifos", Napi::Number::New(env, static_cast<double>(c.fifos)));
    o.Set("sockets", Napi::Number::New(env, static_cast<double>(c.sockets)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(c.bytes)));
    return o;
  }

  CopyRequest request_;
  bool dstIsBuffer_;
  CopyResult result_;
};

}  // namespace

Napi::Value CopyTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CopyRequest request;
  request.src = PathArg(info, 0, "src");
  request.dst = PathArg(info, 1, "dst");
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "The \"options\" argument must be an object");
  Napi::Object opts = info[2].As<Napi::Object>();
  request.hardlink = opts.Get("hardlink").ToBoolean().Value();
  Napi::Value threads = opts.Get("threads");
  if (threads.IsNumber()) request.threads = threads.As<Napi::Number>().Int32Value();
  auto* worker = new CopyTreeWorker(env, std::move(request), ArgIsBuffer(info, 1));
  Napi::Value flag = opts.Get("abortFlag");
  if (flag.IsBuffer()) worker->SetAbortFlag(flag.As<Napi::Buffer<uint8_t>>());
  Napi::Value onProgress = opts.Get("onProgress");
  if (onProgress.IsFunction()) worker->SetProgress(env, onProgress.As<Napi::Function>(), "ogd.copyTree.progress");
  return worker->Start();
}

}  // namespace ogd
