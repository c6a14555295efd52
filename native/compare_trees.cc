// compareTrees(newRoot, oldRoot): the changes of a tree against an older one (an
// image's root/ against its parent's, or a mounted layer against its parent), in
// one pool job. Both trees are merge-walked directory by directory, each listed
// sorted, so what is held is a directory's two listings per level of depth, never a
// list of the whole tree; only the changes are kept and handed to JS, packed as
// scanTree's entries (scan_record.h) in the order of lib/archive/raw-path.ts
// comparePaths. In JS the same walk cost a pool trip, a Promise and a queue slot
// per lstat, and held the whole tree's work queued at once.
//
// The rules are lib/archive/entry-compare.ts entryDiffers' (which the overlay fast
// path uses; test/archive-changes.test.ts holds the two paths to the same results):
// - a name in both trees on the same inode is unchanged, unread (a hardlink copy);
// - else changed when mode, owner, rdev differ, or (not for a directory) size or
//   mtime to the nanosecond; then when the xattrs other than overlay's own differ,
//   the link count of a non-directory, a symlink's target, a regular file's bytes;
// - a directory unchanged itself is listed (C) when anything below it is, before
//   its subtree: it is held as pending until the first change below shows up;
// - a name only in the old tree is deleted (D); a directory (not the root) whose
//   every old name was deleted is opaque.
// Hardlinks: when a changed or added non-directory has other links, the new tree's
// names of its inode are found in a second walk of the new tree (done only then),
// so the export can send the group whole (lib/archive/export.ts withWholeLinkGroups).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <unordered_set>
#include <vector>

#include "args.h"
#include "exports.h"
#include "fd.h"
#include "job_worker.h"
#include "scan_record.h"
#include "tree_walk.h"

namespace ogd {
namespace {

// A record's kind (kinds[i]), as lib/native.ts compareTrees reads it.
constexpr uint8_t kAdded = 0;
constexpr uint8_t kChanged = 1;
constexpr uint8_t kDeleted = 2;

// Files are compared in chunks of this size (as entry-compare.ts does).
constexpr size_t kCompareChunk = 256 * 1024;

struct InodeKey {
  uint64_t dev;
  uint64_t ino;
  bool operator==(const InodeKey& o) const { return dev == o.dev && ino == o.ino; }
};
struct InodeHash {
  size_t operator()(const InodeKey& k) const { return std::hash<uint64_t>()(k.ino * 31 + k.dev); }
};

uint64_t NowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

// Overlay's own bookkeeping is never layer content (entry-compare.ts isOverlayXattr).
bool IsOverlayXattr(const std::string& name) { return name.rfind("trusted.overlay.", 0) == 0 || name.rfind("user.overlay.", 0) == 0; }

// Both lists sorted by name.
bool SameContentXattrs(const std::vector<Xattr>& a, const std::vector<Xattr>& b) {
  size_t i = 0;
  size_t j = 0;
  for (;;) {
    while (i < a.size() && IsOverlayXattr(a[i].name)) i++;
    while (j < b.size() && IsOverlayXattr(b[j].name)) j++;
    if (i == a.size() || j == b.size()) return i == a.size() && j == b.size();
    if (a[i].name != b[j].name || a[i].value != b[j].value) return false;
    i++;
    j++;
  }
}

bool StatDifferent(const struct stat& o, const struct stat& n) {
  if (o.st_mode != n.st_mode || o.st_uid != n.st_uid || o.st_gid != n.st_gid || o.st_rdev != n.st_rdev) return true;
  // A directory's size and mtime follow its entries, not a change of the directory.
  if (S_ISDIR(o.st_mode)) return false;
  return o.st_size != n.st_size || o.st_mtim.tv_sec != n.st_mtim.tv_sec || o.st_mtim.tv_nsec != n.st_mtim.tv_nsec;
}

class CompareTreesWorker : public JobWorker {
 public:
  CompareTreesWorker(Napi::Env env, std::string newRoot, std::string oldRoot) : JobWorker(env), new_(std::move(newRoot)), old_(std::move(oldRoot)) {}

  void Execute() override {
    lastReport_ = NowMs();
    Run();
    EndProgress();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    out_.SetOn(env, o);
    o.Set("kinds", Napi::Buffer<uint8_t>::Copy(env, kinds_.data(), kinds_.size()));
    o.Set("opaque", Napi::Buffer<char>::Copy(env, opaque_.data(), opaque_.size()));
    Napi::ArrayBuffer keys = Napi::ArrayBuffer::New(env, linkKeys_.size() * sizeof(uint64_t));
    if (!linkKeys_.empty()) std::memcpy(keys.Data(), linkKeys_.data(), linkKeys_.size() * sizeof(uint64_t));
    o.Set("linkKeys", keys);
    o.Set("linkNames", Napi::Buffer<char>::Copy(env, linkNames_.data(), linkNames_.size()));
    o.Set("entries", Napi::Number::New(env, static_cast<double>(visited_)));
    return o;
  }

  void Decorate(Napi::Error& error) override {
    if (aborted_) error.Value().Set("aborted", Napi::Boolean::New(Env(), true));
  }

 private:
  // A directory of the new tree being walked, listed (C) only once something below it is.
  struct Pending {
    std::string rel;
    struct stat st;
    std::vector<Xattr> xattrs;
  };

  void Run() {
    Fd newFd(::open(new_.root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (newFd.get() < 0) return Fail(Failure(errno, "open", new_.root()));
    Fd oldFd(::open(old_.root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (oldFd.get() < 0) return Fail(Failure(errno, "open", old_.root()));
    std::string rel;
    if (!Dir(newFd.get(), oldFd.get(), rel)) return;
    if (groups_.empty()) return;
    // The root's listing was read to its end by Dir().
    if (::lseek(newFd.get(), 0, SEEK_SET) < 0) return Fail(Failure(errno, "lseek", new_.root()));
    FindLinkNames(newFd.get(), rel);
  }

  bool Stop(const SysFailure& f) {
    Fail(f);
    return false;
  }

  bool Abort() {
    aborted_ = true;
    return Stop(Failure(ECANCELED, "compareTrees", new_.root()));
  }

  void Visited() {
    visited_++;
    if (!hasProgress()) return;
    uint64_t now = NowMs();
    if (now - lastReport_ < 100) return;
    lastReport_ = now;
    ReportProgress(visited_, 0);
  }

  // Appends a record, after the pending directories above it.
  void Emit(uint8_t kind, const std::string& rel, const struct stat& st, const std::string& link, const std::vector<Xattr>& xattrs) {
    for (; emitted_ < pending_.size(); emitted_++) {
      const Pending& p = pending_[emitted_];
      out_.Append(p.rel, p.st, std::string(), p.xattrs);
      kinds_.push_back(kChanged);
    }
    out_.Append(rel, st, link, xattrs);
    kinds_.push_back(kind);
    if (kind != kDeleted && !S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      groups_.insert(InodeKey{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)});
    }
  }

  // The directory open as `newFd` (and as `oldFd` in the old tree, or -1 when the old
  // tree has no directory there) at `rel`.
  bool Dir(int newFd, int oldFd, std::string& rel) {
    std::vector<std::string> newNames;
    std::vector<std::string> oldNames;
    if (!new_.ListSorted(newFd, rel, newNames)) return Stop(new_.failure());
    if (oldFd >= 0 && !old_.ListSorted(oldFd, rel, oldNames)) return Stop(old_.failure());
    if (!rel.empty() && !oldNames.empty() && NoneShared(newNames, oldNames)) {
      opaque_.insert(opaque_.end(), rel.begin(), rel.end());
      opaque_.push_back('\0');
    }
    size_t i = 0;
    size_t j = 0;
    while (i < newNames.size() || j < oldNames.size()) {
      if (AbortRequested()) return Abort();
      int c = i == newNames.size() ? 1 : j == oldNames.size() ? -1 : newNames[i].compare(oldNames[j]);
      size_t relLen = rel.size();
      if (!rel.empty()) rel.push_back('/');
      bool ok = true;
      if (c > 0) {
        rel += oldNames[j++];
        Emit(kDeleted, rel, zero_, std::string(), noXattrs_);
      } else {
        rel += newNames[i];
        ok = Entry(newFd, c == 0 ? oldFd : -1, newNames[i], rel);
        i++;
        if (c == 0) j++;
      }
      rel.resize(relLen);
      if (!ok) return false;
    }
    return true;
  }

  static bool NoneShared(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    size_t i = 0;
    size_t j = 0;
    while (i < a.size() && j < b.size()) {
      int c = a[i].compare(b[j]);
      if (c == 0) return false;
      if (c < 0) i++;
      else j++;
    }
    return true;
  }

  // One name of the new tree; `oldFd` is the old tree's directory when it has the name too.
  bool Entry(int newFd, int oldFd, const std::string& name, std::string& rel) {
    struct stat ns;
    if (::fstatat(newFd, name.c_str(), &ns, AT_SYMLINK_NOFOLLOW) != 0) return Stop(Failure(errno, "lstat", new_.Shown(rel)));
    Visited();
    struct stat os;
    bool inOld = false;
    if (oldFd >= 0) {
      if (::fstatat(oldFd, name.c_str(), &os, AT_SYMLINK_NOFOLLOW) == 0) inOld = true;
      else if (errno != ENOENT && errno != ENOTDIR) return Stop(Failure(errno, "lstat", old_.Shown(rel)));
    }
    if (!inOld) {
      if (!new_.ReadEntry(newFd, name, rel, ns)) return Stop(new_.failure());
      Emit(kAdded, rel, ns, new_.linkTarget(), new_.xattrs());
      return !S_ISDIR(ns.st_mode) || Subdir(newFd, -1, name, rel, ns, true);
    }
    // Shared with the old tree (a hardlink copy): unchanged, and not even read.
    if (os.st_ino == ns.st_ino && os.st_dev == ns.st_dev) return true;
    bool changed = false;
    if (!Differs(newFd, oldFd, name, rel, ns, os, changed)) return false;
    if (changed) Emit(kChanged, rel, ns, new_.linkTarget(), new_.xattrs());
    return !S_ISDIR(ns.st_mode) || Subdir(newFd, S_ISDIR(os.st_mode) ? oldFd : -1, name, rel, ns, changed);
  }

  // Whether the entry differs from the old one (both exist, different inodes); reads
  // the new entry's link target and xattrs in any case (new_.linkTarget()/xattrs()).
  bool Differs(int newFd, int oldFd, const std::string& name, const std::string& rel, const struct stat& ns, const struct stat& os, bool& changed) {
    if (!new_.ReadEntry(newFd, name, rel, ns)) return Stop(new_.failure());
    changed = true;
    if (StatDifferent(os, ns)) return true;
    if (!old_.ReadEntry(oldFd, name, rel, os)) return Stop(old_.failure());
    if (!SameContentXattrs(old_.xattrs(), new_.xattrs())) return true;
    // Another link count: the name left or joined a hardlink group.
    if (!S_ISDIR(ns.st_mode) && os.st_nlink != ns.st_nlink) return true;
    if (S_ISLNK(ns.st_mode)) {
      changed = old_.linkTarget() != new_.linkTarget();
      return true;
    }
    if (S_ISREG(ns.st_mode) && ns.st_size > 0) return SameContent(newFd, oldFd, name, rel, changed);
    changed = false;
    return true;
  }

  bool SameContent(int newFd, int oldFd, const std::string& name, const std::string& rel, bool& changed) {
    Fd a(::openat(oldFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (a.get() < 0) return Stop(Failure(errno, "open", old_.Shown(rel)));
    Fd b(::openat(newFd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (b.get() < 0) return Stop(Failure(errno, "open", new_.Shown(rel)));
    if (bufA_.empty()) {
      bufA_.resize(kCompareChunk);
      bufB_.resize(kCompareChunk);
    }
    for (;;) {
      if (AbortRequested()) return Abort();
      ssize_t ra = ReadFull(a.get(), bufA_.data());
      if (ra < 0) return Stop(Failure(errno, "read", old_.Shown(rel)));
      ssize_t rb = ReadFull(b.get(), bufB_.data());
      if (rb < 0) return Stop(Failure(errno, "read", new_.Shown(rel)));
      if (ra != rb || std::memcmp(bufA_.data(), bufB_.data(), static_cast<size_t>(ra)) != 0) {
        changed = true;
        return true;
      }
      if (ra == 0) {
        changed = false;
        return true;
      }
    }
  }

  // Up to a chunk, short only at the end of the file.
  static ssize_t ReadFull(int fd, char* buf) {
    size_t got = 0;
    while (got < kCompareChunk) {
      ssize_t n = ::read(fd, buf + got, kCompareChunk - got);
      if (n < 0) {
        if (errno == EINTR) continue;
        return -1;
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    return static_cast<ssize_t>(got);
  }

  // Walks the directory `name` of the new tree (at `rel`), against the old tree's
  // directory there when `oldFd` >= 0. `emitted`: the directory is already listed.
  bool Subdir(int newFd, int oldFd, const std::string& name, std::string& rel, const struct stat& ns, bool emitted) {
    Fd child(::openat(newFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (child.get() < 0) return Stop(Failure(errno, "open", new_.Shown(rel)));
    Fd oldChild(oldFd >= 0 ? ::openat(oldFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1);
    if (oldFd >= 0 && oldChild.get() < 0) return Stop(Failure(errno, "open", old_.Shown(rel)));
    pending_.push_back(Pending{rel, ns, emitted ? std::vector<Xattr>() : new_.xattrs()});
    // Listed itself: so are the directories above it (Emit listed them first).
    if (emitted) emitted_ = pending_.size();
    bool ok = Dir(child.get(), oldChild.get(), rel);
    pending_.pop_back();
    emitted_ = std::min(emitted_, pending_.size());
    return ok;
  }

  // Every name of the new tree on an inode in groups_: (dev, ino) pairs in linkKeys_,
  // the relative paths NUL-terminated in linkNames_.
  bool FindLinkNames(int dirFd, std::string& rel) {
    std::vector<std::string> names;
    if (!new_.ListSorted(dirFd, rel, names)) return Stop(new_.failure());
    for (const std::string& name : names) {
      if (AbortRequested()) return Abort();
      size_t relLen = rel.size();
      if (!rel.empty()) rel.push_back('/');
      rel += name;
      bool ok = true;
      struct stat st;
      if (::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        ok = Stop(Failure(errno, "lstat", new_.Shown(rel)));
      } else if (S_ISDIR(st.st_mode)) {
        Fd child(::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        ok = child.get() < 0 ? Stop(Failure(errno, "open", new_.Shown(rel))) : FindLinkNames(child.get(), rel);
      } else if (groups_.count(InodeKey{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)}) > 0) {
        linkKeys_.push_back(static_cast<uint64_t>(st.st_dev));
        linkKeys_.push_back(static_cast<uint64_t>(st.st_ino));
        linkNames_.insert(linkNames_.end(), rel.begin(), rel.end());
        linkNames_.push_back('\0');
      }
      rel.resize(relLen);
      if (!ok) return false;
    }
    return true;
  }

  TreeWalker new_;  // reads the new tree's entries; its root names errors
  TreeWalker old_;
  ScanRecords out_;
  std::vector<uint8_t> kinds_;
  std::vector<char> opaque_;
  std::vector<Pending> pending_;
  size_t emitted_ = 0;  // pending_[0, emitted_) are listed
  std::unordered_set<InodeKey, InodeHash> groups_;
  std::vector<uint64_t> linkKeys_;
  std::vector<char> linkNames_;
  std::vector<char> bufA_;
  std::vector<char> bufB_;
  const struct stat zero_ {};
  const std::vector<Xattr> noXattrs_;
  uint64_t visited_ = 0;
  uint64_t lastReport_ = 0;
  bool aborted_ = false;
};

}  // namespace

// compareTrees(newRoot, oldRoot, { abortFlag?, onProgress? }) -> Promise<{ records, names, extra,
// kinds, opaque, linkKeys, linkNames, entries }>; rejects with `.aborted` set when aborted.
Napi::Value CompareTrees(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string newRoot = PathArg(info, 0, "newRoot");
  std::string oldRoot = PathArg(info, 1, "oldRoot");
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "The \"options\" argument must be an object");
  Napi::Object opts = info[2].As<Napi::Object>();
  auto* worker = new CompareTreesWorker(env, std::move(newRoot), std::move(oldRoot));
  Napi::Value flag = opts.Get("abortFlag");
  if (flag.IsBuffer()) worker->SetAbortFlag(flag.As<Napi::Buffer<uint8_t>>());
  Napi::Value onProgress = opts.Get("onProgress");
  if (onProgress.IsFunction()) worker->SetProgress(env, onProgress.As<Napi::Function>(), "ogd.compareTrees.progress");
  return worker->Start();
}

}  // namespace ogd
