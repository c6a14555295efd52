// scanTree(root): the walk of a tree (tree_walk.h) handed to JS as a few packed
// Buffers that lib/native.ts decodes: what a whole-layer change set needs of each
// entry. Done in JS it costs a libuv pool trip (and a JS object and a GC'd Promise)
// per lstat, readlink, listxattr and getxattr; here it is one pool job.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "exports.h"
#include "scan_record.h"
#include "tree_walk.h"
#include "worker.h"

namespace ogd {
namespace {

class ScanTreeWorker : public PromiseWorker {
 public:
  ScanTreeWorker(Napi::Env env, std::string root, bool procXattrs) : PromiseWorker(env), walker_(std::move(root)) {
    if (procXattrs) walker_.ForceProcXattrs();
  }

  void Execute() override {
    bool ok = walker_.Run([this](const WalkEntry& e) {
      out_.Append(e.rel, e.st, e.linkTarget, e.xattrs);
      return true;
    });
    if (!ok) Fail(walker_.failure());
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out_.SetOn(env, out);
    return out;
  }

 private:
  TreeWalker walker_;
  ScanRecords out_;
};

}  // namespace

// scanTree(root, procXattrs?) -> Promise<{records: ArrayBuffer, names: Buffer, extra: Buffer}>
// procXattrs: read xattrs through /proc even where getxattrat exists (for tests).
Napi::Value ScanTree(const Napi::CallbackInfo& info) {
  bool procXattrs = info.Length() > 1 && info[1].ToBoolean().Value();
  auto* w = new ScanTreeWorker(info.Env(), PathArg(info, 0, "root"), procXattrs);
  return w->Start();
}

}  // namespace ogd
