// packTree(root, fd, {uidMaps, gidMaps, abortFlag?, onProgress?}) → Promise<{written,
// entries, bytes}>: the tar of a whole tree (a layer with no parent) written to `fd`
// in one pool job: the walk of scanTree (tree_walk.h), each entry's header encoded
// here (tar_header.h) and its content copied right behind it (tar_out.h). The same
// bytes as lib/archive/export.ts exportChanges of that tree, without a JS object,
// BigInt or pool trip per entry.
//
// Entry rules (export.ts headerFor/headerOf/linkCarriers): directory names end with
// '/'; sockets are left out; a non-directory with several links is carried by its
// first name in tar order, later names are hardlinks to it (size 0, own xattrs kept);
// overlay's own xattrs (trusted.overlay.*, user.overlay.*) are dropped; owners are
// mapped host → container; content is the lstat size (a file that grew is cut there).
//
// Failures reject with a Node-style error. Those that are not a syscall's carry what
// JS needs to say them its own way: `aborted` (abortFlag set), `unmappedId` {what,
// hostId, path} (an owner the maps do not hold) or `shrunk` (a file that ended
// before its size), paths raw and relative to the root; and `written` always.
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "args.h"
#include "block_pool.h"
#include "exports.h"
#include "fd.h"
#include "tar_header.h"
#include "tar_out.h"
#include "tree_walk.h"
#include "job_worker.h"

namespace ogd {
namespace {

struct InodeKey {
  uint64_t dev;
  uint64_t ino;
  bool operator==(const InodeKey& o) const { return dev == o.dev && ino == o.ino; }
};

struct InodeHash {
  size_t operator()(const InodeKey& k) const { return std::hash<uint64_t>()(k.ino * 0x9e3779b97f4a7c15ULL ^ k.dev); }
};

// Tar typeflags.
constexpr char kFile = '0';
constexpr char kHardlink = '1';
constexpr char kSymlink = '2';
constexpr char kChar = '3';
constexpr char kBlock = '4';
constexpr char kDirectory = '5';
constexpr char kFifo = '6';

bool IsOverlayXattr(const std::string& name) {
  return name.compare(0, 16, "trusted.overlay.") == 0 || name.compare(0, 13, "user.overlay.") == 0;
}

// The tar typeflag of a file type, or 0 for what a layer does not hold (sockets).
char TypeFlag(mode_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG: return kFile;
    case S_IFLNK: return kSymlink;
    case S_IFCHR: return kChar;
    case S_IFBLK: return kBlock;
    case S_IFDIR: return kDirectory;
    case S_IFIFO: return kFifo;
    default: return 0;
  }
}

uint64_t NowMs() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
}

class PackTreeWorker : public JobWorker {
 public:
  PackTreeWorker(Napi::Env env, std::string root, int fd, std::vector<IdRange> uidMaps, std::vector<IdRange> gidMaps)
      : JobWorker(env), walker_(std::move(root)), fd_(fd), uidMaps_(std::move(uidMaps)), gidMaps_(std::move(gidMaps)) {}

  void Execute() override {
    size_t capacity = 0;
    char* buf = Pool().Take(kOutBuffer, capacity);
    if (buf == nullptr) {
      Fail(Failure(ENOMEM, "packTree", walker_.root()));
    } else {
      OutBuffer out{fd_, buf, capacity};
      out.abortFlag = abortFlag();
      lastReport_ = NowMs();
      bool done = walker_.Run([this, &out](const WalkEntry& e) { return Pack(e, out); });
      if (!done && walker_.failed()) Fail(walker_.failure());
      // Two zero blocks end the archive.
      if (done && (!out.Zeros(512) || !out.Zeros(512) || !out.Flush())) WriteFailed();
      written_ = out.written;
      Pool().Give(buf, capacity);
    }
    EndProgress();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object o = Napi::Object::New(env);
    o.Set("written", Napi::Number::New(env, static_cast<double>(written_)));
    o.Set("entries", Napi::Number::New(env, static_cast<double>(entries_)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes_)));
    return o;
  }

  void Decorate(Napi::Error& error) override {
    Napi::Env env = Env();
    Napi::Object obj = error.Value();
    obj.Set("written", Napi::Number::New(env, static_cast<double>(written_)));
    if (aborted_) obj.Set("aborted", Napi::Boolean::New(env, true));
    if (!unmappedWhat_.empty()) {
      Napi::Object u = Napi::Object::New(env);
      u.Set("what", Napi::String::New(env, unmappedWhat_));
      u.Set("hostId", Napi::Number::New(env, static_cast<double>(unmappedId_)));
      u.Set("path", Napi::Buffer<char>::Copy(env, stoppedAt_.data(), stoppedAt_.size()));
      obj.Set("unmappedId", u);
    }
    if (shrunk_) obj.Set("shrunk", Napi::Buffer<char>::Copy(env, stoppedAt_.data(), stoppedAt_.size()));
  }

 private:

  bool Abort() {
    aborted_ = true;
    Fail(Failure(ECANCELED, "packTree", walker_.root()));
    return false;
  }

  // A write failed (errno set): an abort while waiting for the fd, or a real failure.
  bool WriteFailed() {
    if (errno == ECANCELED && AbortRequested()) return Abort();
    Fail(Failure(errno, "write"));
    return false;
  }

  // The container id of a host id; false (and the failure set) when the maps hold none.
  bool MapId(const std::vector<IdRange>& maps, uint64_t host, const char* what, const std::string& rel, uint64_t& out) {
    if (ToContainer(maps, host, out)) return true;
    unmappedWhat_ = what;
    unmappedId_ = host;
    stoppedAt_ = rel;
    Fail(Failure(EOVERFLOW, "packTree", walker_.Shown(rel)));
    return false;
  }

  bool Pack(const WalkEntry& e, OutBuffer& out) {
    if (AbortRequested()) return Abort();
    const struct stat& st = e.st;
    const char type = TypeFlag(st.st_mode);
    if (type == 0) return true;
    TarHeader h{};
    if (!MapId(uidMaps_, st.st_uid, "uid", e.rel, h.uid) || !MapId(gidMaps_, st.st_gid, "gid", e.rel, h.gid)) return false;
    name_.assign(e.rel);
    if (type == kDirectory) name_.push_back('/');
    h.name = name_;
    h.typeflag = type;
    h.mode = st.st_mode & 07777;
    h.size = type == kFile ? static_cast<uint64_t>(st.st_size) : 0;
    h.mtimeSec = st.st_mtim.tv_sec;
    h.mtimeNsec = static_cast<uint32_t>(st.st_mtim.tv_nsec);
    h.linkname = e.linkTarget;
    if (type == kChar || type == kBlock) {
      const uint64_t rdev = st.st_rdev;
      h.devmajor = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~0xfffULL);
      h.devminor = (rdev & 0xff) | ((rdev >> 12) & ~0xffULL);
    }
    kept_.clear();
    for (const Xattr& x : e.xattrs) {
      if (!IsOverlayXattr(x.name)) kept_.push_back(&x);
    }
    if (!kept_.empty()) h.xattrs = &kept_;
    // Another name of an inode already in the tar: a hardlink to that first name.
    if (type != kDirectory && st.st_nlink > 1) {
      auto found = carriers_.emplace(InodeKey{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)}, e.rel);
      if (!found.second) {
        h.typeflag = kHardlink;
        h.size = 0;
        h.linkname = found.first->second;
      }
    }
    header_.clear();
    encoder_.Append(h, header_);
    if (!out.Put(header_.data(), header_.size())) return WriteFailed();
    if (h.size > 0 && !Content(e, h.size, out)) return false;
    entries_++;
    bytes_ += h.size;
    if (hasProgress()) {
      uint64_t now = NowMs();
      if (now - lastReport_ >= 100) {
        lastReport_ = now;
        ReportProgress(entries_, bytes_);
      }
    }
    return true;
  }

  // The first `size` bytes of the file and their padding.
  bool Content(const WalkEntry& e, uint64_t size, OutBuffer& out) {
    Fd file(::openat(e.dirFd, e.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (file.get() < 0) {
      Fail(Failure(errno, "open", walker_.Shown(e.rel)));
      return false;
    }
    SysFailure failure;
    uint64_t done = CopyContent(file.get(), size, walker_.Shown(e.rel), out, failure);
    if (failure.err != 0) {
      if (failure.err == ECANCELED && AbortRequested()) return Abort();
      Fail(failure);
      return false;
    }
    if (done < size) {
      shrunk_ = true;
      stoppedAt_ = e.rel;
      Fail(Failure(ENODATA, "read", walker_.Shown(e.rel)));
      return false;
    }
    if (!out.Zeros(Padding(size))) return WriteFailed();
    return true;
  }

  TreeWalker walker_;
  int fd_;  // not owned
  std::vector<IdRange> uidMaps_;
  std::vector<IdRange> gidMaps_;
  uint64_t lastReport_ = 0;

  // Inode → the relative path of its first name in the tar.
  std::unordered_map<InodeKey, std::string, InodeHash> carriers_;
  TarHeaderEncoder encoder_;
  std::string header_;
  std::string name_;
  std::vector<const Xattr*> kept_;

  uint64_t written_ = 0;
  uint64_t entries_ = 0;
  uint64_t bytes_ = 0;
  bool aborted_ = false;
  bool shrunk_ = false;
  std::string unmappedWhat_;
  uint64_t unmappedId_ = 0;
  std::string stoppedAt_;  // the entry an unmapped id or a shrunk file stopped at
};

}  // namespace

Napi::Value PackTree(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = PathArg(info, 0, "root");
  int64_t fd = IntArg(info, 1, "fd");
  if (fd < 0 || fd > INT32_MAX) throw Napi::TypeError::New(env, "The \"fd\" argument must be a file descriptor");
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "The \"options\" argument must be an object");
  Napi::Object opts = info[2].As<Napi::Object>();
  std::vector<IdRange> uidMaps = MapsArg(env, opts.Get("uidMaps"), "uidMaps");
  std::vector<IdRange> gidMaps = MapsArg(env, opts.Get("gidMaps"), "gidMaps");
  auto* worker = new PackTreeWorker(env, std::move(root), static_cast<int>(fd), std::move(uidMaps), std::move(gidMaps));
  Napi::Value flag = opts.Get("abortFlag");
  if (flag.IsBuffer()) worker->SetAbortFlag(flag.As<Napi::Buffer<uint8_t>>());
  Napi::Value onProgress = opts.Get("onProgress");
  if (onProgress.IsFunction()) worker->SetProgress(env, onProgress.As<Napi::Function>(), "ogd.packTree.progress");
  return worker->Start();
}

}  // namespace ogd
