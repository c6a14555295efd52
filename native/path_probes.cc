#include "path_probes.h"

#include <sys/stat.h>
#include <sys/vfs.h>

#include <cerrno>

#include "args.h"
#include "exports.h"
#include "small_files.h"
#include "worker.h"

namespace ogd {
namespace {

PathProbe::Op OpOf(Napi::Env env, const std::string& name) {
  if (name == "lstat") return PathProbe::Op::kLstat;
  if (name == "statfs") return PathProbe::Op::kStatfs;
  if (name == "read") return PathProbe::Op::kRead;
  throw Napi::TypeError::New(env, "A probe's operation must be 'lstat', 'statfs' or 'read'");
}

void Settle(ProbeOutcome& out, int err, const char* syscall, const std::string& path) {
  if (err == ENOENT || err == ENOTDIR) out.missing = true;
  else out.failure = Failure(err, syscall, path);
}

class ProbeWorker : public PromiseWorker {
 public:
  ProbeWorker(Napi::Env env, std::vector<PathProbe> probes) : PromiseWorker(env), probes_(std::move(probes)) {}

  void Execute() override { outcomes_ = RunProbes(probes_); }

  Napi::Value Result(Napi::Env env) override { return ProbeValues(env, outcomes_); }

 private:
  std::vector<PathProbe> probes_;
  std::vector<ProbeOutcome> outcomes_;
};

}  // namespace

std::vector<PathProbe> ProbesArg(const Napi::CallbackInfo& info, size_t i) {
  std::vector<PathProbe> probes;
  if (info.Length() <= i || info[i].IsUndefined()) return probes;
  if (!info[i].IsArray()) throw Napi::TypeError::New(info.Env(), "The \"probes\" argument must be an array");
  Napi::Array list = info[i].As<Napi::Array>();
  uint32_t n = list.Length();
  if (n % 2 != 0) throw Napi::TypeError::New(info.Env(), "The \"probes\" argument must hold [op, path] pairs");
  for (uint32_t k = 0; k < n; k += 2) {
    Napi::Value op = list.Get(k);
    Napi::Value path = list.Get(k + 1);
    if (!op.IsString() || !path.IsString()) throw Napi::TypeError::New(info.Env(), "A probe is an op and a path, both strings");
    std::string p = path.As<Napi::String>().Utf8Value();
    if (p.empty() || p.find('\0') != std::string::npos) throw Napi::TypeError::New(info.Env(), "A probe's path must be a non-empty string without NUL");
    probes.push_back({OpOf(info.Env(), op.As<Napi::String>().Utf8Value()), std::move(p)});
  }
  return probes;
}

std::vector<ProbeOutcome> RunProbes(const std::vector<PathProbe>& probes) {
  std::vector<ProbeOutcome> outcomes(probes.size());
  for (size_t k = 0; k < probes.size(); k++) {
    const PathProbe& p = probes[k];
    ProbeOutcome& out = outcomes[k];
    switch (p.op) {
      case PathProbe::Op::kLstat: {
        struct stat st;
        if (::lstat(p.path.c_str(), &st) != 0) Settle(out, errno, "lstat", p.path);
        else out.number = st.st_mode;
        break;
      }
      case PathProbe::Op::kStatfs: {
        struct statfs sf;
        if (::statfs(p.path.c_str(), &sf) != 0) Settle(out, errno, "statfs", p.path);
        else out.number = static_cast<int64_t>(static_cast<uint32_t>(sf.f_type));
        break;
      }
      case PathProbe::Op::kRead: {
        const char* syscall = "open";
        out.isData = true;
        int err = ReadSmall(p.path, out.data, syscall);
        if (err != 0) Settle(out, err, syscall, p.path);
        break;
      }
    }
  }
  return outcomes;
}

Napi::Array ProbeValues(Napi::Env env, const std::vector<ProbeOutcome>& outcomes) {
  Napi::Array values = Napi::Array::New(env, outcomes.size());
  for (uint32_t k = 0; k < outcomes.size(); k++) {
    const ProbeOutcome& out = outcomes[k];
    if (out.missing) values.Set(k, env.Undefined());
    else if (out.failure.err != 0) values.Set(k, SysError(env, out.failure).Value());
    else if (out.isData) values.Set(k, Napi::Buffer<char>::Copy(env, out.data.data(), out.data.size()));
    else values.Set(k, Napi::Number::New(env, static_cast<double>(out.number)));
  }
  return values;
}

// probePaths([op, path, …]) -> Promise<Array<undefined | Error | number | Buffer>>.
Napi::Value ProbePaths(const Napi::CallbackInfo& info) {
  return (new ProbeWorker(info.Env(), ProbesArg(info, 0)))->Start();
}

}  // namespace ogd
