// The tree walk of copyTree: fd-relative from the two roots down, so no symlink in
// the source is ever followed and no path is ever longer than one name.
//
// Speed comes from doing as few syscalls per entry as the result allows, on several
// threads at once:
// - getdents64 d_type tells directories apart without a stat, so in hardlink mode
//   every other entry (file, symlink, device, fifo, socket) costs exactly one linkat,
//   and the only inodes made are directories. (Recreating symlinks instead, one new
//   inode each, made the copy up to 3x slower than cp -al on an ext4 that had just
//   seen mass deletions, where allocating an inode costs 90-250 us.)
// - Each worker walks a subtree depth first, holding open only the directories on its
//   path (two fds each). When another worker is idle, the next subdirectory it meets
//   is handed over instead of entered (work sharing), so both cores stay busy on
//   any fan-out without a shared queue per entry.
// - A directory's mode and times are set when all of its children, on any thread,
//   are done: each directory counts its unfinished parts (`pending`), and whoever
//   finishes the last part finishes the directory and then its parent's part.
#include "copy_engine.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "copy_ops.h"
#include "dirent64.h"

namespace ogd {

void CopyCounts::Add(const CopyCounts& o) {
  entries += o.entries;
  directories += o.directories;
  files += o.files;
  symlinks += o.symlinks;
  hardlinks += o.hardlinks;
  devices += o.devices;
  fifos += o.fifos;
  sockets += o.sockets;
  bytes += o.bytes;
}

namespace {

constexpr size_t kDirentBuffer = 64 * 1024;
// linkat takes a path; longer relative paths are resolved a chunk at a time.
constexpr size_t kPathChunk = 3000;

struct DirNode {
  DirNode* parent = nullptr;
  std::string rel;  // path below the roots, "" for the roots themselves
  int srcFd = -1;
  int dstFd = -1;
  struct stat st {};
  Xattrs xattrs;
  bool chownSelf = false;      // our copy may not have the owner a new entry gets
  bool chownChildren = false;  // children land in a set-group-ID dir we did not make
  std::atomic<int> pending{1};  // this dir's own walk + each child dir not finished
  std::vector<std::string> subdirs;
  size_t next = 0;
};

struct InodeKey {
  dev_t dev;
  ino_t ino;
  bool operator==(const InodeKey& o) const { return dev == o.dev && ino == o.ino; }
};
struct InodeKeyHash {
  size_t operator()(const InodeKey& k) const { return std::hash<uint64_t>()(k.ino * 31 + k.dev); }
};
// Where the first copy of a multiply-linked source file went (content mode).
struct FirstCopy {
  bool ready = false;
  bool failed = false;
  std::string rel;
};

std::string JoinRel(const std::string& a, const char* b) { return a.empty() ? std::string(b) : a + "/" + b; }

int NoAtime() { return ::geteuid() == 0 ? O_NOATIME : 0; }

class Engine : public StopCheck {
 public:
  Engine(const CopyRequest& request, const CopyProgressFn& progress)
      : req_(request), progress_(progress), noatime_(NoAtime()) {}

  CopyResult Run();

  bool Stopping() const override {
    if (stop_.load(std::memory_order_relaxed)) return true;
    if (req_.abortFlag != nullptr && __atomic_load_n(req_.abortFlag, __ATOMIC_RELAXED) != 0) {
      aborted_.store(true, std::memory_order_relaxed);
      stop_.store(true, std::memory_order_relaxed);
      return true;
    }
    return false;
  }

 private:
  struct Worker {
    CopyCounts counts;
    std::vector<char> dirents;
    std::vector<char> data;
  };

  bool Prepare(DirNode* root);
  void WorkerMain(Worker& w);
  void RunSubtree(Worker& w, DirNode* top);
  void Scan(Worker& w, DirNode* n);
  DirNode* OpenDir(Worker& w, DirNode* parent, std::string name);
  void CopyEntry(Worker& w, DirNode* n, const char* name, unsigned char type);
  void LinkEntry(Worker& w, DirNode* n, const char* name, unsigned char type);
  void Recreate(Worker& w, DirNode* n, const char* name);
  void CopyFile(Worker& w, DirNode* n, const char* name, bool keepLinks);
  void CopySymlink(Worker& w, DirNode* n, const char* name, const struct stat& st);
  void MakeNode(Worker& w, DirNode* n, const char* name, const struct stat& st);
  void Release(Worker& w, DirNode* n);
  void Finish(DirNode* n);
  void Enqueue(DirNode* n);
  bool ClaimFirstCopy(const struct stat& st, const std::string& rel, std::string* firstRel);
  void PublishFirstCopy(const struct stat& st, bool ok);
  int LinkFromCopy(const std::string& firstRel, int dirFd, const char* name);
  void Created(Worker& w, uint64_t* counter, uint64_t bytes = 0);

  std::string SrcPath(const std::string& rel, const char* name = nullptr) const {
    std::string r = name ? JoinRel(rel, name) : rel;
    return r.empty() ? req_.src : req_.src + "/" + r;
  }
  std::string DstPath(const std::string& rel, const char* name = nullptr) const {
    std::string r = name ? JoinRel(rel, name) : rel;
    return r.empty() ? req_.dst : req_.dst + "/" + r;
  }
  void Fail(const SysFailure& f) {
    {
      std::lock_guard<std::mutex> lock(failMu_);
      if (!failed_) {
        failed_ = true;
        failure_ = f;
      }
    }
    stop_.store(true, std::memory_order_relaxed);
  }
  void Fail(const OpError& e, const std::string& path, const std::string& dest) {
    Fail(Failure(e.err, e.syscall, path, dest));
  }

  const CopyRequest& req_;
  const CopyProgressFn& progress_;
  const int noatime_;
  DataPaths paths_;
  int dstRootFd_ = -1;
  bool leftBehind_ = false;

  mutable std::atomic<bool> stop_{false};
  mutable std::atomic<bool> aborted_{false};
  std::mutex failMu_;
  bool failed_ = false;
  SysFailure failure_;

  std::atomic<uint64_t> entries_{0};
  std::atomic<uint64_t> bytes_{0};

  // Work sharing: idle workers wait here for subtrees others hand over.
  std::mutex queueMu_;
  std::condition_variable workCv_;
  std::condition_variable doneCv_;
  std::deque<DirNode*> queue_;
  std::atomic<int> idle_{0};
  std::atomic<int> queued_{0};
  int busy_ = 0;
  bool finished_ = false;

  std::mutex inodeMu_;
  std::condition_variable inodeCv_;
  std::unordered_map<InodeKey, FirstCopy, InodeKeyHash> firstCopies_;
};

// Whether the directory open as `fd` is `target` or lies below it (walking "..").
bool IsWithin(int fd, const struct stat& target, int* err) {
  int cur = ::openat(fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (cur < 0) return *err = errno, false;
  for (;;) {
    struct stat s, up;
    if (::fstat(cur, &s) != 0) return *err = errno, ::close(cur), false;
    if (s.st_dev == target.st_dev && s.st_ino == target.st_ino) return ::close(cur), true;
    int parent = ::openat(cur, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
    ::close(cur);
    if (parent < 0) return *err = errno, false;
    if (::fstat(parent, &up) != 0) return *err = errno, ::close(parent), false;
    if (up.st_dev == s.st_dev && up.st_ino == s.st_ino) return ::close(parent), false;  // reached "/"
    cur = parent;
  }
}

bool IsEmptyDir(int fd, int* err) {
  int dup = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dup < 0) return *err = errno, false;
  alignas(8) char buf[4096];
  long n = ::syscall(SYS_getdents64, dup, buf, sizeof buf);
  int saved = errno;
  ::close(dup);
  if (n < 0) return *err = saved, false;
  for (long off = 0; off < n;) {
    auto* d = reinterpret_cast<Dirent64*>(buf + off);
    off += d->reclen;
    if (std::strcmp(d->name, ".") != 0 && std::strcmp(d->name, "..") != 0) return false;
  }
  return true;
}

bool Engine::Prepare(DirNode* root) {
  const std::string& src = req_.src;
  const std::string& dst = req_.dst;
  int srcFd = ::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | noatime_);
  if (srcFd < 0 && errno == EPERM && noatime_) srcFd = ::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (srcFd < 0) return Fail(Failure(errno, "open", src)), false;
  root->srcFd = srcFd;
  if (::fstat(srcFd, &root->st) != 0) return Fail(Failure(errno, "fstat", src)), false;
  if (OpError e = ReadXattrs(srcFd, &root->xattrs)) return Fail(e, src, dst), false;

  // Trailing slashes would make dirname/basename lie.
  std::string d = dst;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  struct stat dstSt;
  int err = 0;
  if (::fstatat(AT_FDCWD, d.c_str(), &dstSt, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISDIR(dstSt.st_mode)) return Fail(Failure(EEXIST, "copyTree", src, dst)), false;
    int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return Fail(Failure(errno, "open", dst)), false;
    root->dstFd = fd;
    if (IsWithin(fd, root->st, &err)) return Fail(Failure(EINVAL, "copyTree", src, dst)), false;
    if (err) return Fail(Failure(err, "openat", dst)), false;
    if (!IsEmptyDir(fd, &err)) return Fail(Failure(err ? err : ENOTEMPTY, err ? "getdents64" : "copyTree", src, dst)), false;
    // An existing root keeps its inode, so its owner must be set; if it is
    // set-group-ID, everything made below it inherits its group until fixed.
    root->chownSelf = true;
    root->chownChildren = (dstSt.st_mode & S_ISGID) != 0;
  } else if (errno == ENOENT) {
    size_t slash = d.rfind('/');
    std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : d.substr(0, slash);
    std::string base = slash == std::string::npos ? d : d.substr(slash + 1);
    int parentFd = ::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (parentFd < 0) return Fail(Failure(errno, "mkdir", dst)), false;
    bool inside = IsWithin(parentFd, root->st, &err);
    if (inside || err) {
      ::close(parentFd);
      return Fail(inside ? Failure(EINVAL, "copyTree", src, dst) : Failure(err, "openat", dst)), false;
    }
    if (::mkdirat(parentFd, base.c_str(), 0700) != 0) {
      int e = errno;
      ::close(parentFd);
      return Fail(Failure(e, "mkdir", dst)), false;
    }
    leftBehind_ = true;
    root->dstFd = ::openat(parentFd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    ::close(parentFd);
    if (root->dstFd < 0) return Fail(Failure(e, "open", dst)), false;
  } else {
    return Fail(Failure(errno, "lstat", dst)), false;
  }
  dstRootFd_ = root->dstFd;
  return true;
}

void Engine::Created(Worker& w, uint64_t* counter, uint64_t bytes) {
  (*counter)++;
  w.counts.entries++;
  w.counts.bytes += bytes;
  entries_.fetch_add(1, std::memory_order_relaxed);
  if (bytes) bytes_.fetch_add(bytes, std::memory_order_relaxed);
}

DirNode* Engine::OpenDir(Worker& w, DirNode* parent, std::string name) {
  const char* nm = name.c_str();
  int srcFd = ::openat(parent->srcFd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | noatime_);
  if (srcFd < 0 && errno == EPERM && noatime_) srcFd = ::openat(parent->srcFd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (srcFd < 0) return Fail(Failure(errno, "openat", SrcPath(parent->rel, nm))), nullptr;
  auto* n = new DirNode();
  n->parent = parent;
  n->srcFd = srcFd;
  n->chownSelf = n->chownChildren = parent->chownChildren;
  parent->pending.fetch_add(1, std::memory_order_relaxed);
  OpError e;
  if (::fstat(srcFd, &n->st) != 0) {
    e = OpFail("fstat");
  } else if (OpError x = ReadXattrs(srcFd, &n->xattrs)) {
    e = x;
  } else if (::mkdirat(parent->dstFd, nm, 0700) != 0) {
    e = OpFail("mkdirat");
  } else if ((n->dstFd = ::openat(parent->dstFd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
    e = OpFail("openat");
  }
  n->rel = JoinRel(parent->rel, nm);
  if (e) {
    Fail(e, SrcPath(n->rel), DstPath(n->rel));
    ::close(n->srcFd);
    n->srcFd = -1;
    Release(w, n);
    return nullptr;
  }
  Created(w, &w.counts.directories);
  return n;
}

void Engine::Scan(Worker& w, DirNode* n) {
  if (w.dirents.empty()) w.dirents.resize(kDirentBuffer);
  for (;;) {
    long got = ::syscall(SYS_getdents64, n->srcFd, w.dirents.data(), w.dirents.size());
    if (got < 0) return Fail(Failure(errno, "getdents64", SrcPath(n->rel)));
    if (got == 0) return;
    for (long off = 0; off < got;) {
      auto* d = reinterpret_cast<Dirent64*>(w.dirents.data() + off);
      off += d->reclen;
      const char* name = d->name;
      if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
      if (Stopping()) return;
      if (d->type == DT_DIR) {
        n->subdirs.emplace_back(name);
      } else {
        CopyEntry(w, n, name, d->type);
      }
    }
  }
}

void Engine::CopyEntry(Worker& w, DirNode* n, const char* name, unsigned char type) {
  if (req_.hardlink && type != DT_UNKNOWN) return LinkEntry(w, n, name, type);
  if (type == DT_REG) return CopyFile(w, n, name, true);
  struct stat st;
  if (::fstatat(n->srcFd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return Fail(Failure(errno, "lstat", SrcPath(n->rel, name)));
  switch (st.st_mode & S_IFMT) {
    case S_IFDIR:
      n->subdirs.emplace_back(name);
      return;
    case S_IFREG:
      return req_.hardlink ? LinkEntry(w, n, name, DT_REG) : CopyFile(w, n, name, true);
    case S_IFLNK:
      return req_.hardlink ? LinkEntry(w, n, name, DT_LNK) : CopySymlink(w, n, name, st);
    default:
      return req_.hardlink ? LinkEntry(w, n, name, IFTODT(st.st_mode)) : MakeNode(w, n, name, st);
  }
}

// Hardlink mode: the entry itself, whatever its type, becomes a second name of the
// source inode (linkat without AT_SYMLINK_FOLLOW links a symlink, not its target).
// Whoever changes such an entry later must give it its own inode first (apply does).
void Engine::LinkEntry(Worker& w, DirNode* n, const char* name, unsigned char type) {
  if (::linkat(n->srcFd, name, n->dstFd, name, 0) == 0) {
    w.counts.hardlinks++;
    switch (type) {
      case DT_REG: return Created(w, &w.counts.files);
      case DT_LNK: return Created(w, &w.counts.symlinks);
      case DT_FIFO: return Created(w, &w.counts.fifos);
      case DT_SOCK: return Created(w, &w.counts.sockets);
      default: return Created(w, &w.counts.devices);
    }
  }
  // The source inode is at the filesystem's link limit: this one entry gets its own inode.
  if (errno == EMLINK) return Recreate(w, n, name);
  Fail(Failure(errno, "linkat", SrcPath(n->rel, name), DstPath(n->rel, name)));
}

// A content copy of one entry that could not be linked.
void Engine::Recreate(Worker& w, DirNode* n, const char* name) {
  struct stat st;
  if (::fstatat(n->srcFd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return Fail(Failure(errno, "lstat", SrcPath(n->rel, name)));
  switch (st.st_mode & S_IFMT) {
    case S_IFDIR: return n->subdirs.emplace_back(name), void();
    case S_IFREG: return CopyFile(w, n, name, false);
    case S_IFLNK: return CopySymlink(w, n, name, st);
    default: return MakeNode(w, n, name, st);
  }
}

void Engine::CopyFile(Worker& w, DirNode* n, const char* name, bool keepLinks) {
  const int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  int srcFd = ::openat(n->srcFd, name, flags | noatime_);
  if (srcFd < 0 && errno == EPERM && noatime_) srcFd = ::openat(n->srcFd, name, flags);
  if (srcFd < 0) return Fail(Failure(errno, "openat", SrcPath(n->rel, name)));
  struct stat st;
  if (::fstat(srcFd, &st) != 0) {
    Fail(Failure(errno, "fstat", SrcPath(n->rel, name)));
    ::close(srcFd);
    return;
  }
  if (!S_ISREG(st.st_mode)) {  // replaced since getdents: copy what is there now
    ::close(srcFd);
    if (S_ISDIR(st.st_mode)) return n->subdirs.emplace_back(name), void();
    return S_ISLNK(st.st_mode) ? CopySymlink(w, n, name, st) : MakeNode(w, n, name, st);
  }
  bool claimed = false;
  if (keepLinks && st.st_nlink > 1) {
    std::string firstRel;
    std::string rel = JoinRel(n->rel, name);
    if (!ClaimFirstCopy(st, rel, &firstRel)) {
      ::close(srcFd);
      if (firstRel.empty()) return;  // the first copy failed; that failure is reported
      if (LinkFromCopy(firstRel, n->dstFd, name) == 0) {
        w.counts.hardlinks++;
        return Created(w, &w.counts.files);
      }
      if (errno != EMLINK) return Fail(Failure(errno, "linkat", DstPath(firstRel), DstPath(n->rel, name)));
      return CopyFile(w, n, name, false);
    }
    claimed = true;
  }
  int dstFd = ::openat(n->dstFd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (dstFd < 0) {
    Fail(Failure(errno, "openat", DstPath(n->rel, name)));
    if (claimed) PublishFirstCopy(st, false);
    ::close(srcFd);
    return;
  }
  // Other links may now point at this inode; its data and metadata follow below.
  if (claimed) PublishFirstCopy(st, true);
  Xattrs xattrs;
  OpError e = CopyData(srcFd, dstFd, st, paths_, w.data, *this);
  if (!e) e = ReadXattrs(srcFd, &xattrs);
  if (!e) e = ApplyMetadata(dstFd, st, xattrs, n->chownChildren);
  ::close(dstFd);
  ::close(srcFd);
  if (e) return Fail(e, SrcPath(n->rel, name), DstPath(n->rel, name));
  Created(w, &w.counts.files, static_cast<uint64_t>(st.st_size));
}

void Engine::CopySymlink(Worker& w, DirNode* n, const char* name, const struct stat& st) {
  // st_size is the target's length, but some filesystems report 0: grow until it fits.
  std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
  for (;;) {
    ssize_t len = ::readlinkat(n->srcFd, name, &target[0], target.size());
    if (len < 0) return Fail(Failure(errno, "readlinkat", SrcPath(n->rel, name)));
    if (static_cast<size_t>(len) < target.size()) {
      target.resize(static_cast<size_t>(len));
      break;
    }
    target.resize(target.size() * 2 + 256);
  }
  if (::symlinkat(target.c_str(), n->dstFd, name) != 0) {
    return Fail(Failure(errno, "symlinkat", target, DstPath(n->rel, name)));
  }
  Xattrs xattrs;
  OpError e = ReadXattrsAt(n->srcFd, name, &xattrs);
  if (!e) e = ApplyMetadataAt(n->dstFd, name, st, xattrs, n->chownChildren);
  if (e) return Fail(e, SrcPath(n->rel, name), DstPath(n->rel, name));
  Created(w, &w.counts.symlinks);
}

void Engine::MakeNode(Worker& w, DirNode* n, const char* name, const struct stat& st) {
  mode_t type = st.st_mode & S_IFMT;
  if (::mknodat(n->dstFd, name, type | 0600, type == S_IFCHR || type == S_IFBLK ? st.st_rdev : 0) != 0) {
    return Fail(Failure(errno, "mknodat", DstPath(n->rel, name)));
  }
  Xattrs xattrs;
  OpError e = ReadXattrsAt(n->srcFd, name, &xattrs);
  if (!e) e = ApplyMetadataAt(n->dstFd, name, st, xattrs, n->chownChildren);
  if (e) return Fail(e, SrcPath(n->rel, name), DstPath(n->rel, name));
  Created(w, type == S_IFIFO ? &w.counts.fifos : type == S_IFSOCK ? &w.counts.sockets : &w.counts.devices);
}

bool Engine::ClaimFirstCopy(const struct stat& st, const std::string& rel, std::string* firstRel) {
  std::unique_lock<std::mutex> lock(inodeMu_);
  auto [it, inserted] = firstCopies_.try_emplace(InodeKey{st.st_dev, st.st_ino});
  FirstCopy& first = it->second;  // references survive rehashing, iterators do not
  if (inserted) {
    first.rel = rel;
    return true;
  }
  // Another thread is creating the first copy right now: its open() is all we wait for.
  inodeCv_.wait(lock, [&] { return first.ready || first.failed; });
  if (!first.failed) *firstRel = first.rel;
  return false;
}

void Engine::PublishFirstCopy(const struct stat& st, bool ok) {
  {
    std::lock_guard<std::mutex> lock(inodeMu_);
    FirstCopy& f = firstCopies_[InodeKey{st.st_dev, st.st_ino}];
    (ok ? f.ready : f.failed) = true;
  }
  inodeCv_.notify_all();
}

int Engine::LinkFromCopy(const std::string& firstRel, int dirFd, const char* name) {
  if (firstRel.size() < kPathChunk) return ::linkat(dstRootFd_, firstRel.c_str(), dirFd, name, 0);
  // Deeper than one path may reach: walk to its directory a chunk at a time.
  size_t slash = firstRel.rfind('/');
  int cur = dstRootFd_;
  size_t pos = 0;
  while (pos < slash) {
    size_t end = slash;
    if (end - pos >= kPathChunk) end = firstRel.rfind('/', pos + kPathChunk - 1);
    if (end == std::string::npos || end <= pos) end = slash;
    std::string part = firstRel.substr(pos, end - pos);
    int next = ::openat(cur, part.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    if (cur != dstRootFd_) ::close(cur);
    if (next < 0) return errno = e, -1;
    cur = next;
    pos = end + 1;
  }
  int rc = ::linkat(cur, firstRel.c_str() + slash + 1, dirFd, name, 0);
  int e = errno;
  if (cur != dstRootFd_) ::close(cur);
  errno = e;
  return rc;
}

void Engine::Enqueue(DirNode* n) {
  {
    std::lock_guard<std::mutex> lock(queueMu_);
    queue_.push_back(n);
    queued_.fetch_add(1, std::memory_order_relaxed);
  }
  workCv_.notify_one();
}

void Engine::RunSubtree(Worker& w, DirNode* top) {
  std::vector<DirNode*> stack;
  Scan(w, top);
  stack.push_back(top);
  while (!stack.empty()) {
    DirNode* n = stack.back();
    if (n->next < n->subdirs.size() && !Stopping()) {
      DirNode* child = OpenDir(w, n, std::move(n->subdirs[n->next++]));
      if (child == nullptr) continue;
      if (idle_.load(std::memory_order_relaxed) > queued_.load(std::memory_order_relaxed)) {
        Enqueue(child);
        continue;
      }
      Scan(w, child);
      stack.push_back(child);
      continue;
    }
    stack.pop_back();
    ::close(n->srcFd);
    n->srcFd = -1;
    std::vector<std::string>().swap(n->subdirs);
    Release(w, n);
  }
}

void Engine::Release(Worker& w, DirNode* n) {
  while (n != nullptr && n->pending.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    Finish(n);
    DirNode* parent = n->parent;
    delete n;
    n = parent;
  }
}

// All of a directory's children are done: now its owner, mode, xattrs and times.
void Engine::Finish(DirNode* n) {
  if (!Stopping()) {
    if (OpError e = ApplyMetadata(n->dstFd, n->st, n->xattrs, n->chownSelf)) Fail(e, SrcPath(n->rel), DstPath(n->rel));
  }
  if (n->srcFd >= 0) ::close(n->srcFd);
  if (n->dstFd >= 0) ::close(n->dstFd);
  n->srcFd = n->dstFd = -1;
}

void Engine::WorkerMain(Worker& w) {
  for (;;) {
    DirNode* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(queueMu_);
      for (;;) {
        if (!queue_.empty()) {
          job = queue_.front();
          queue_.pop_front();
          queued_.fetch_sub(1, std::memory_order_relaxed);
          busy_++;
          break;
        }
        if (busy_ == 0 || finished_) {
          finished_ = true;
          workCv_.notify_all();
          doneCv_.notify_all();
          return;
        }
        idle_.fetch_add(1, std::memory_order_relaxed);
        workCv_.wait(lock);
        idle_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    if (Stopping()) {
      ::close(job->srcFd);
      job->srcFd = -1;
      Release(w, job);
    } else {
      RunSubtree(w, job);
    }
    std::lock_guard<std::mutex> lock(queueMu_);
    if (--busy_ == 0 && queue_.empty()) {
      finished_ = true;
      workCv_.notify_all();
      doneCv_.notify_all();
    }
  }
}

CopyResult Engine::Run() {
  CopyResult result;
  auto* root = new DirNode();
  if (!Prepare(root)) {
    if (root->srcFd >= 0) ::close(root->srcFd);
    if (root->dstFd >= 0) ::close(root->dstFd);
    delete root;
    result.outcome = CopyOutcome::Failed;
    result.failure = failure_;
    result.leftBehind = leftBehind_;
    return result;
  }
  const int threads = req_.threads <= 0 ? kDefaultCopyThreads : std::min(req_.threads, kMaxCopyThreads);
  std::vector<Worker> workers(static_cast<size_t>(threads));
  workers[0].counts.directories = 1;  // the root
  workers[0].counts.entries = 1;
  entries_.store(1);
  queue_.push_back(root);
  queued_.store(1);
  std::vector<std::thread> pool;
  pool.reserve(workers.size());
  for (Worker& w : workers) pool.emplace_back([this, &w] { WorkerMain(w); });
  {
    std::unique_lock<std::mutex> lock(queueMu_);
    while (!finished_) {
      if (doneCv_.wait_for(lock, std::chrono::milliseconds(100), [this] { return finished_; })) break;
      if (progress_) {
        lock.unlock();
        progress_(entries_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed));
        lock.lock();
      }
    }
  }
  for (std::thread& t : pool) t.join();
  for (const Worker& w : workers) result.counts.Add(w.counts);
  result.leftBehind = leftBehind_ || result.counts.entries > 1;
  if (aborted_.load()) {
    result.outcome = CopyOutcome::Aborted;
  } else if (failed_) {
    result.outcome = CopyOutcome::Failed;
    result.failure = failure_;
  }
  return result;
}

}  // namespace

CopyResult RunCopy(const CopyRequest& request, const CopyProgressFn& progress) {
  Engine engine(request, progress);
  return engine.Run();
}

}  // namespace ogd
