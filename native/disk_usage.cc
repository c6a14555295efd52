// diskUsage(roots, sharedWith): what `du -sx` counts (allocated blocks, an inode
// shared by hardlinks once), per root, in one pool job. The roots are walked in
// order with one set of seen inodes, so an inode an earlier root holds is not
// counted again under a later one (a parent layer before its children: each file is
// its writer's). sharedWith[i], when not empty, is a tree whose inodes root i does not
// own: a file with more than one link that is the same inode at the same path there
// (an overlay child's hardlinks into its parent's root) is not counted. Nothing is
// followed and no other filesystem is entered (-x). A missing root counts 0.
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <unordered_set>
#include <vector>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

struct InodeKey {
  uint64_t dev;
  uint64_t ino;
  bool operator==(const InodeKey& o) const { return dev == o.dev && ino == o.ino; }
};

struct InodeHash {
  size_t operator()(const InodeKey& k) const { return std::hash<uint64_t>()(k.ino * 31 + k.dev); }
};

struct Usage {
  uint64_t bytes = 0;
  uint64_t inodes = 0;
};

// nftw's callback takes no context: the walk in progress on this pool thread.
struct Walk {
  std::unordered_set<InodeKey, InodeHash>* seen;
  size_t rootLen;
  int sharedFd;
  Usage* usage;
};
thread_local Walk* current = nullptr;

int Visit(const char* path, const struct stat* st, int type, struct FTW* ftw) {
  Walk& w = *current;
  if (type == FTW_NS || type == FTW_DNR) return 0;  // vanished or unreadable: nothing to count
  if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
    InodeKey key{static_cast<uint64_t>(st->st_dev), static_cast<uint64_t>(st->st_ino)};
    if (!w.seen->insert(key).second) return 0;
    if (w.sharedFd >= 0 && ftw->level > 0) {
      struct stat there;
      const char* rel = path + w.rootLen + 1;
      if (::fstatat(w.sharedFd, rel, &there, AT_SYMLINK_NOFOLLOW) == 0 && there.st_ino == st->st_ino && there.st_dev == st->st_dev) return 0;
    }
  }
  w.usage->bytes += static_cast<uint64_t>(st->st_blocks) * 512;
  w.usage->inodes++;
  return 0;
}

class DiskUsageWorker : public PromiseWorker {
 public:
  DiskUsageWorker(Napi::Env env, std::vector<std::string> roots, std::vector<std::string> shared)
      : PromiseWorker(env), roots_(std::move(roots)), shared_(std::move(shared)), usage_(roots_.size()) {}

  void Execute() override {
    std::unordered_set<InodeKey, InodeHash> seen;
    for (size_t i = 0; i < roots_.size(); i++) {
      const std::string& root = roots_[i];
      struct stat st;
      if (::lstat(root.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) continue;
        return Fail(Failure(errno, "lstat", root));
      }
      int sharedFd = -1;
      if (i < shared_.size() && !shared_[i].empty()) sharedFd = ::open(shared_[i].c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      Walk walk{&seen, root.size(), sharedFd, &usage_[i]};
      current = &walk;
      // 64 directory fds at most: a deeper tree is walked by path beyond that.
      int rc = ::nftw(root.c_str(), Visit, 64, FTW_PHYS | FTW_MOUNT);
      int err = errno;
      current = nullptr;
      if (sharedFd >= 0) ::close(sharedFd);
      if (rc != 0) return Fail(Failure(err, "nftw", root));
    }
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array out = Napi::Array::New(env, usage_.size());
    for (size_t i = 0; i < usage_.size(); i++) {
      Napi::Object u = Napi::Object::New(env);
      u.Set("bytes", Napi::Number::New(env, static_cast<double>(usage_[i].bytes)));
      u.Set("inodes", Napi::Number::New(env, static_cast<double>(usage_[i].inodes)));
      out.Set(static_cast<uint32_t>(i), u);
    }
    return out;
  }

 private:
  std::vector<std::string> roots_;
  std::vector<std::string> shared_;
  std::vector<Usage> usage_;
};

std::vector<std::string> PathList(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsArray()) throw Napi::TypeError::New(info.Env(), std::string("The \"") + name + "\" argument must be an array");
  Napi::Array a = info[i].As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsString()) throw Napi::TypeError::New(info.Env(), std::string("The \"") + name + "\" entries must be strings");
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) throw Napi::TypeError::New(info.Env(), std::string("The \"") + name + "\" entries must not contain null bytes");
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

// diskUsage(roots: string[], sharedWith: string[]) -> Promise<Array<{bytes, inodes}>>
Napi::Value DiskUsage(const Napi::CallbackInfo& info) {
  auto* w = new DiskUsageWorker(info.Env(), PathList(info, 0, "roots"), PathList(info, 1, "sharedWith"));
  return w->Start();
}

}  // namespace ogd
