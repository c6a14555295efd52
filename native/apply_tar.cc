// applyTar(root, {uidMaps, gidMaps, allowPrivilegedXattrs, abortFlag, onDrain,
// onProgress?, file?: {fd, path, gzip}}) → {done: Promise<{entries, bytes, tarSize,
// digest}>, feeder}: the N-API glue of the apply engine (apply_engine.cc), which
// applies one layer tar onto `root` in one pool job. JS pushes the stream's bytes
// (applyTarPush(feeder, chunk), applyTarEnd(feeder, failed)), or with `file` a thread
// of the job reads (and inflates) the file itself. lib/archive/apply.ts keeps the
// policy around it.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "apply_engine.h"
#include "args.h"
#include "chunk_queue.h"
#include "exports.h"
#include "job_worker.h"

namespace ogd {
namespace {

class ApplyTarWorker : public JobWorker {
 public:
  ApplyTarWorker(Napi::Env env, ApplyRequest request, Napi::Function onDrain) : JobWorker(env), req_(std::move(request)) {
    drain_ = Napi::ThreadSafeFunction::New(env, onDrain, "ogd.applyTar.drain", 0, 1);
  }

  ~ApplyTarWorker() override {
    if (req_.fileFd >= 0) ::close(req_.fileFd);
  }

  void Execute() override {
    ApplyHooks hooks;
    hooks.aborted = [this] { return AbortRequested(); };
    hooks.drained = [this] { drain_.NonBlockingCall(); };
    if (hasProgress()) hooks.progress = [this](uint64_t entries, uint64_t bytes) { ReportProgress(entries, bytes); };
    outcome_ = RunApply(req_, hooks);
    req_.fileFd = -1;  // the engine's reader closed it
    if (outcome_.failed) {
      const ApplyError& e = outcome_.error;
      if (e.kind == ApplyError::kSys) {
        Fail(e.sys);
      } else {
        Fail(Failure(e.kind == ApplyError::kAborted ? ECANCELED : EINVAL, "applyTar", req_.root));
      }
    }
    drain_.Release();
    EndProgress();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("entries", Napi::Number::New(env, static_cast<double>(outcome_.entries)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(outcome_.bytes)));
    o.Set("tarSize", Napi::Number::New(env, static_cast<double>(outcome_.tarSize)));
    o.Set("digest", Napi::String::New(env, outcome_.digest));
    return o;
  }

  void Decorate(Napi::Error& error) override {
    Napi::Env env = Env();
    Napi::Object obj = error.Value();
    const ApplyError& e = outcome_.error;
    const char* kind = nullptr;
    switch (e.kind) {
      case ApplyError::kInvalid: kind = "invalid"; break;
      case ApplyError::kUnsafe: kind = "unsafe"; break;
      case ApplyError::kAborted: kind = "aborted"; break;
      case ApplyError::kSourceFailed: kind = "source"; break;
      case ApplyError::kSys: break;
    }
    if (kind != nullptr) {
      obj.Set("applyError", Napi::String::New(env, kind));
      obj.Set("entry", Napi::Buffer<char>::Copy(env, e.entry.data(), e.entry.size()));
      obj.Set("reason", Napi::String::New(env, e.reason));
    } else if (!outcome_.current.empty()) {
      obj.Set("entry", Napi::Buffer<char>::Copy(env, outcome_.current.data(), outcome_.current.size()));
    }
  }

 private:
  ApplyRequest req_;
  Napi::ThreadSafeFunction drain_;
  ApplyOutcome outcome_;
};


void DeleteQueue(Napi::Env, std::shared_ptr<ChunkQueue>* q) { delete q; }

std::shared_ptr<ChunkQueue>& QueueArg(const Napi::CallbackInfo& info) {
  if (!info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "The \"feeder\" argument must be an applyTar feeder");
  return *info[0].As<Napi::External<std::shared_ptr<ChunkQueue>>>().Data();
}

}  // namespace

Napi::Value ApplyTar(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = PathArg(info, 0, "root");
  if (!info[1].IsObject()) throw Napi::TypeError::New(env, "The \"options\" argument must be an object");
  Napi::Object opts = info[1].As<Napi::Object>();
  Napi::Value onDrain = opts.Get("onDrain");
  if (!onDrain.IsFunction()) throw Napi::TypeError::New(env, "\"onDrain\" must be a function");
  Napi::Value t = opts.Get("threads");
  if (!t.IsNumber()) throw Napi::TypeError::New(env, "\"threads\" must be a number");
  int threads = static_cast<int>(t.As<Napi::Number>().Int32Value());
  if (threads < 0 || threads > 64) throw Napi::TypeError::New(env, "\"threads\" must be 0 to 64");
  // A file input: its fd is duplicated here, so the caller may close its own at once.
  int fileFd = -1;
  std::string filePath;
  bool gzip = false;
  Napi::Value file = opts.Get("file");
  if (file.IsObject()) {
    Napi::Object f = file.As<Napi::Object>();
    Napi::Value fd = f.Get("fd");
    if (!fd.IsNumber()) throw Napi::TypeError::New(env, "\"file.fd\" must be a file descriptor");
    filePath = f.Get("path").ToString().Utf8Value();
    gzip = f.Get("gzip").ToBoolean();
    fileFd = ::fcntl(fd.As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
    if (fileFd < 0) throw SysError(env, Failure(errno, "dup", filePath));
  }
  ApplyRequest request;
  request.root = std::move(root);
  request.uidMaps = MapsArg(env, opts.Get("uidMaps"), "uidMaps");
  request.gidMaps = MapsArg(env, opts.Get("gidMaps"), "gidMaps");
  request.allowPrivileged = opts.Get("allowPrivilegedXattrs").ToBoolean();
  request.threads = threads;
  request.queue = std::make_shared<ChunkQueue>();
  request.fileFd = fileFd;
  request.filePath = std::move(filePath);
  request.gzip = gzip;
  auto queue = request.queue;
  auto* worker = new ApplyTarWorker(env, std::move(request), onDrain.As<Napi::Function>());
  Napi::Value flag = opts.Get("abortFlag");
  if (flag.IsBuffer()) worker->SetAbortFlag(flag.As<Napi::Buffer<uint8_t>>());
  Napi::Value onProgress = opts.Get("onProgress");
  if (onProgress.IsFunction()) worker->SetProgress(env, onProgress.As<Napi::Function>(), "ogd.applyTar.progress");
  Napi::Object out = Napi::Object::New(env);
  out.Set("feeder", Napi::External<std::shared_ptr<ChunkQueue>>::New(env, new std::shared_ptr<ChunkQueue>(queue), DeleteQueue));
  out.Set("done", worker->Start());
  return out;
}

// applyTarPush(feeder, chunk) → false when JS should wait for onDrain before pushing more.
Napi::Value ApplyTarPush(const Napi::CallbackInfo& info) {
  auto& queue = QueueArg(info);
  if (!info[1].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "The \"chunk\" argument must be a Uint8Array");
  Napi::Uint8Array chunk = info[1].As<Napi::Uint8Array>();
  return Napi::Boolean::New(info.Env(), queue->Push(reinterpret_cast<const char*>(chunk.Data()), chunk.ByteLength()));
}

// applyTarEnd(feeder, failed): the input ended (failed: the source failed; the job stops).
Napi::Value ApplyTarEnd(const Napi::CallbackInfo& info) {
  auto& queue = QueueArg(info);
  queue->End(info[1].ToBoolean());
  return info.Env().Undefined();
}

}  // namespace ogd
