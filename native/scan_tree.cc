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
#include "tree_walk.h"
#include "worker.h"

namespace ogd {
namespace {

// One entry: kSlots little-endian u64 slots (see lib/native.ts ScannedEntry for the decoder).
constexpr size_t kSlots = 11;

inline uint64_t Pack(uint32_t lo, uint32_t hi) { return static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << 32); }

class ScanTreeWorker : public PromiseWorker {
 public:
  ScanTreeWorker(Napi::Env env, std::string root, bool procXattrs) : PromiseWorker(env), walker_(std::move(root)) {
    if (procXattrs) walker_.ForceProcXattrs();
  }

  void Execute() override {
    if (!walker_.Run([this](const WalkEntry& e) { return Record(e); })) Fail(walker_.failure());
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    // An ArrayBuffer (not a pooled Buffer) so JS can view it as aligned 64-bit slots.
    Napi::ArrayBuffer records = Napi::ArrayBuffer::New(env, records_.size() * sizeof(uint64_t));
    if (!records_.empty()) std::memcpy(records.Data(), records_.data(), records_.size() * sizeof(uint64_t));
    out.Set("records", records);
    out.Set("names", Napi::Buffer<char>::Copy(env, names_.data(), names_.size()));
    out.Set("extra", Napi::Buffer<char>::Copy(env, extra_.data(), extra_.size()));
    return out;
  }

 private:
  // Appends the entry: its slots, its path to names_, its link target then its xattrs
  // (each name NUL, u32 LE length, value) to extra_.
  bool Record(const WalkEntry& e) {
    const struct stat& st = e.st;
    uint32_t extraOff = static_cast<uint32_t>(extra_.size());
    extra_.insert(extra_.end(), e.linkTarget.begin(), e.linkTarget.end());
    for (const Xattr& x : e.xattrs) {
      extra_.insert(extra_.end(), x.name.begin(), x.name.end());
      extra_.push_back('\0');
      uint32_t len = static_cast<uint32_t>(x.value.size());
      for (int b = 0; b < 4; b++) extra_.push_back(static_cast<char>((len >> (8 * b)) & 0xff));
      extra_.insert(extra_.end(), x.value.begin(), x.value.end());
    }
    uint32_t nameOff = static_cast<uint32_t>(names_.size());
    names_.insert(names_.end(), e.rel.begin(), e.rel.end());
    uint64_t slots[kSlots] = {
        Pack(nameOff, static_cast<uint32_t>(e.rel.size())),
        Pack(st.st_mode, static_cast<uint32_t>(st.st_nlink)),
        Pack(st.st_uid, st.st_gid),
        static_cast<uint64_t>(st.st_size),
        static_cast<uint64_t>(st.st_ino),
        static_cast<uint64_t>(st.st_dev),
        static_cast<uint64_t>(st.st_rdev),
        static_cast<uint64_t>(static_cast<int64_t>(st.st_mtim.tv_sec)),
        static_cast<uint64_t>(st.st_mtim.tv_nsec),
        Pack(extraOff, static_cast<uint32_t>(extra_.size()) - extraOff),
        Pack(static_cast<uint32_t>(e.xattrs.size()), static_cast<uint32_t>(e.linkTarget.size())),
    };
    records_.insert(records_.end(), slots, slots + kSlots);
    return true;
  }

  TreeWalker walker_;
  std::vector<uint64_t> records_;
  std::vector<char> names_;
  std::vector<char> extra_;
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
