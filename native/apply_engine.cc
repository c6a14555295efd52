// The apply engine, free of N-API (apply_tar.cc runs it in a pool job and turns its
// outcome into a Promise): applies one layer tar (the OCI changeset: entries, ".wh."
// whiteouts, opaque directories) onto a root. It takes the tar's bytes from a
// ChunkQueue (fed by JS, or by a thread that reads and inflates a file itself:
// layer_file_reader.h), parses it (tar_reader.h), hashes it (sha256) and makes every
// entry with *at syscalls on cached directory fds: no pool trip, promise or JS object
// per entry. lib/archive/apply.ts keeps the policy around it.
//
// Three properties drive every line here:
// - Containment. Nothing outside `root` is created, changed or deleted. Names are
//   cleaned lexically and a name climbing above the root fails the apply; every
//   parent directory is resolved by the kernel inside the root (openat2
//   RESOLVE_IN_ROOT; symlinks are followed as if root were "/", the way real images
//   need for `bin -> usr/bin`); the last component is never followed, it is replaced.
// - Shared inodes. An image's root is a hardlink copy of its parent's, so any
//   non-directory here may be the parent's too. We never write into an inode we did
//   not create in this apply: an entry always gets a new inode (O_EXCL create after
//   removing what was there), and a tar hardlink that would change a lower inode
//   still shared (nlink > 1) first gives it a private copy, whatever its type.
//   Directories are never shared (a hardlink copy recreates them), so a directory
//   entry over a directory merges into it.
// - Streaming. Bodies are written as they arrive, memory stays bounded whatever the
//   layer's size (ChunkQueue's bound, the writers' 16 MiB, one PAX header).
// - Order. With writer threads (the caller's choice; lib picks 2 on 2+ cores), small
//   files go to them (file_writers.h) while this thread parses on and makes
//   directories and symlinks; the tree is still the one stream order gives: no two
//   files in flight share a real path or lie one above the other, a directory or
//   symlink meeting one (same path, above or below) and every other entry wait for
//   them all, so does a parent walk the directory cache has not seen, and a file
//   whose name was taken is placed by this thread afterwards.
//
// Directory times are set at the end, after their children; a pre-existing
// directory that the tar does not mention keeps its times (and all its metadata).
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "apply_engine.h"
#include "apply_error.h"
#include "chunk_queue.h"
#include "fd.h"
#include "file_writers.h"
#include "layer_file_reader.h"
#include "resolve.h"
#include "tar_reader.h"

namespace ogd {
namespace {

constexpr size_t kNameMax = 255;
constexpr int kMaxSymlinkHops = 40;  // a missing parent behind dangling symlinks (MAXSYMLINKS)
constexpr size_t kMaxCachedDirs = 512;
constexpr uint64_t kProgressNs = 100000000;
// Files up to this go to the writer threads, whole; larger ones are written by this
// thread straight from the stream. The writers pay off on inode allocation, not on
// bytes: a larger file handed over costs one more copy of its content (Debian
// minbase: 5% more CPU with 1 MiB here, the same as no writers with 64 KiB).
constexpr uint64_t kSmallFile = 64 << 10;
constexpr size_t kMaxInflight = 4096;     // files in flight between two Settle()s

bool StartsWith(const std::string& s, const char* prefix) { return s.compare(0, strlen(prefix), prefix) == 0; }

// Which xattrs from a layer are applied: file capabilities and user.* are part of an
// image; trusted.* and security.selinux need the caller's opt-in; overlayfs's own
// would turn a file into a whiteout or a redirect once the layer is a lower dir.
bool XattrAllowed(const std::string& name, bool allowPrivileged) {
  if (StartsWith(name, "trusted.overlay.") || StartsWith(name, "user.overlay.")) return false;
  if (StartsWith(name, "user.") || name == "security.capability") return true;
  return allowPrivileged;
}

// Lexical cleaning (filepath.Clean): "." and empty components vanish, ".." removes
// the one before; false when ".." climbs above the root.
bool CleanName(const std::string& name, std::vector<std::string>& out) {
  out.clear();
  size_t i = 0;
  while (i <= name.size()) {
    size_t j = name.find('/', i);
    if (j == std::string::npos) j = name.size();
    size_t n = j - i;
    if (n == 0 || (n == 1 && name[i] == '.')) {
    } else if (n == 2 && name[i] == '.' && name[i + 1] == '.') {
      if (out.empty()) return false;
      out.pop_back();
    } else {
      out.emplace_back(name, i, n);
    }
    i = j + 1;
  }
  return true;
}

std::string Join(const std::vector<std::string>& comps, size_t n) {
  std::string key;
  for (size_t i = 0; i < n; i++) {
    if (i > 0) key += '/';
    key += comps[i];
  }
  return key;
}

// A directory resolved inside the root: an O_PATH fd for the *at calls, and its real path.
struct DirRef {
  int fd;
  std::string real;
  DirRef(int f, std::string r) : fd(f), real(std::move(r)) {}
  ~DirRef() {
    if (fd >= 0) ::close(fd);
  }
  DirRef(const DirRef&) = delete;
  DirRef& operator=(const DirRef&) = delete;
};
using DirPtr = std::shared_ptr<DirRef>;

struct Times {
  struct timespec t[2];  // atime, mtime
};

struct Meta {
  uint64_t uid, gid;
  uint32_t mode;
  bool withMode;
  struct timespec times[2];
};

[[noreturn]] void ThrowSys(int err, const char* syscall, const std::string& path) { throw ApplyError::Sys(Failure(err, syscall, path)); }

uint64_t NowNs() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000000ULL + static_cast<uint64_t>(t.tv_nsec);
}

class ApplyEngine {
 public:
  ApplyEngine(const ApplyRequest& req, const ApplyHooks& hooks, ApplyOutcome& out)
      : req_(req),
        hooks_(hooks),
        rootArg_(req.root),
        queue_(req.queue.get()),
        uidMaps_(req.uidMaps),
        gidMaps_(req.gidMaps),
        allowPrivileged_(req.allowPrivileged),
        gzip_(req.gzip),
        current_(out.current),
        out_(out),
        entries_(out.entries),
        bytes_(out.bytes) {}

  // What the worker's Execute did: the file's reader thread, the writers, the run; a
  // failure is kept in out_ once nothing writes into the root any more.
  void Execute() {
    if (req_.fileFd >= 0) {
      reader_ = std::make_unique<LayerFileReader>(req_.fileFd, req_.filePath, gzip_, *queue_, [this] { return AbortRequested(); });
      reader_->Start();
    }
    try {
      writers_ = std::make_unique<FileWriters>(req_.threads);
      Run();
    } catch (const ApplyError& thrown) {
      // Nothing may still be writing into the root once JS sees the failure (the caller discards the root).
      std::vector<std::unique_ptr<FileTask>> retry;
      SysFailure ignored;
      if (writers_) writers_->Wait(retry, ignored);
      ApplyError e = thrown;
      if (reader_) e = ReaderError(e);
      out_.failed = true;
      out_.error = e;
    } catch (const std::bad_alloc&) {
      out_.failed = true;
      out_.error = ApplyError::Sys(Failure(ENOMEM, "applyTar", rootArg_));
    }
    writers_.reset();  // joins its threads (all idle by now)
    queue_->Close();
    reader_.reset();  // joins it (a closed queue stops it)
  }

 private:
  bool AbortRequested() const { return hooks_.aborted(); }

  // ---- the run ----

  // The failure to report when the input is a file: the reader's own (a read error, a
  // corrupt or truncated gzip stream) wins over what its output did to the tar parser.
  ApplyError ReaderError(const ApplyError& e) {
    if (e.kind == ApplyError::kSourceFailed) {
      reader_->Join();
    } else if (gzip_ && (e.kind == ApplyError::kInvalid || e.kind == ApplyError::kUnsafe)) {
      reader_->FinishDiscarding();
    } else {
      return e;
    }
    if (reader_->failure().err != 0) return ApplyError::Sys(reader_->failure());
    if (!reader_->zlibError().empty()) return ApplyError{ApplyError::kSourceFailed, {}, {}, reader_->zlibError()};
    return e;
  }

  void Run() {
    char* real = ::realpath(rootArg_.c_str(), nullptr);
    if (real == nullptr) ThrowSys(errno, "realpath", rootArg_);
    root_ = real;
    free(real);
    int rfd = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rfd < 0) ThrowSys(errno, "open", root_);
    rootDir_ = std::make_shared<DirRef>(rfd, root_);
    uint64_t rootUid, rootGid;
    if (!ToHost(uidMaps_, 0, rootUid) || !ToHost(gidMaps_, 0, rootGid)) throw ApplyError::Invalid("the id maps do not map container root (id 0)");
    rootUid_ = rootUid;
    rootGid_ = rootGid;

    TarInput input(
        *queue_, [this] { return AbortRequested(); }, [this] { hooks_.drained(); });
    Sha256 streamSha;
    if (!reader_) input.HashInto(&streamSha);
    TarReader reader(input);
    tar_ = &reader;
    TarEntry e;
    for (;;) {  // the first entry reports at once (lastReport_ 0), then every kProgressNs

      CheckAbort();
      if (!reader.Next(e)) break;
      current_ = e.name;
      try {
        Apply(e);
      } catch (ApplyError& err) {
        if (err.kind == ApplyError::kSys && err.sys.err == ENAMETOOLONG) throw ApplyError::Invalid("path too long for the filesystem", e.name);
        throw;
      }
      entries_++;
      if (hooks_.progress) {
        uint64_t now = NowNs();
        if (now - lastReport_ >= kProgressNs) {
          lastReport_ = now;
          hooks_.progress(entries_, bytes_);
        }
      }
    }
    Settle();
    current_.clear();
    // Whatever follows the end of the archive is read, so a piping writer is not cut off
    // (and it is part of the digest, as it is of the bytes given).
    input.Drain();
    if (reader_) {
      reader_->Join();
      out_.tarSize = reader_->size();
      out_.digest = reader_->Digest();
    } else {
      out_.tarSize = input.taken();
      out_.digest = streamSha.Hex();
    }
    for (const auto& [dir, t] : dirTimes_) {
      CheckAbort();
      if (::utimensat(AT_FDCWD, dir.c_str(), t.t, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT) ThrowSys(errno, "utimensat", dir);
    }
  }

  void CheckAbort() {
    if (AbortRequested()) throw ApplyError{ApplyError::kAborted, {}, {}, {}};
  }

  void Apply(TarEntry& e) {
    if (!CleanName(e.name, comps_)) throw ApplyError::Unsafe(e.name, "its name climbs above the layer root");
    for (const auto& c : comps_) {
      if (c.size() > kNameMax) throw ApplyError::Invalid("has a name component over 255 bytes", e.name);
    }
    // Whiteouts (containers/storage pkg/archive whiteouts.go).
    if (!comps_.empty()) {
      const std::string& base = comps_.back();
      if (base == ".wh..wh..opq") {
        Settle();
        DirPtr dir = Dir(comps_.size() - 1, e, true, 0);
        ClearLower(dir->real);
        return;
      }
      for (const auto& c : comps_)
        if (StartsWith(c, ".wh..wh.")) return;  // AUFS bookkeeping (.wh..wh.plnk/...)
      if (StartsWith(base, ".wh.")) {
        std::string target = base.substr(4);
        if (target.empty() || target == "." || target == "..") throw ApplyError::Unsafe(e.name, "a whiteout must name a sibling entry");
        Settle();
        DirPtr dir = Dir(comps_.size() - 1, e, false, 0);
        if (dir) Whiteout(dir->real + "/" + target, dir->real);
        return;
      }
    }
    // Regular files, directories and symlinks go ahead of the files in flight unless they
    // meet one (Conflicts below: same path, above or below); every other entry comes
    // after all of them.
    if (e.type != '0' && e.type != '5' && e.type != '2') Settle();
    if (comps_.empty()) {
      if (e.type != '5') throw ApplyError::Unsafe(e.name, "it would replace the layer root");
      DirMeta(AT_FDCWD, root_, root_, e);
      return;
    }
    DirPtr parent = Dir(comps_.size() - 1, e, true, 0);
    const std::string& name = comps_.back();
    std::string path = parent->real + "/" + name;
    if (Conflicts(path)) Settle();
    switch (e.type) {
      case '0': File(parent, name, path, e); break;
      case '5': Directory(*parent, name, path, e); break;
      case '2': Symlink(*parent, name, path, e); break;
      case '1': Hardlink(*parent, name, path, e); break;
      default: Node(*parent, name, path, e); break;
    }
    unpacked_.insert(std::move(path));
  }

  // ---- entry types ----

  void File(const DirPtr& parentPtr, const std::string& name, const std::string& path, const TarEntry& e) {
    const DirRef& parent = *parentPtr;
    Meta m = MetaOf(e, true);
    if (inflight_.size() >= kMaxInflight) Settle();
    if (writers_->enabled() && e.size <= kSmallFile) {
      auto task = std::make_unique<FileTask>();
      task->keepParent = parentPtr;
      task->parentFd = parent.fd;
      task->name = name;
      task->path = path;
      task->uid = static_cast<uid_t>(m.uid);
      task->gid = static_cast<gid_t>(m.gid);
      task->mode = m.mode;
      task->times[0] = m.times[0];
      task->times[1] = m.times[1];
      task->data.reserve(e.size);
      for (std::string_view chunk = tar_->Body(); !chunk.empty(); chunk = tar_->Body()) task->data.append(chunk);
      for (const auto& kv : e.xattrs)
        if (!kv.first.empty() && XattrAllowed(kv.first, allowPrivileged_)) task->xattrs.push_back(kv);
      NoteChange(parent.real);
      Track(path);
      writers_->Submit(std::move(task));
      bytes_ += e.size;
      return;
    }
    int fd = -1;
    Place(parent, name, path, "open", [&] {
      fd = ::openat(parent.fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      return fd < 0 ? errno : 0;
    });
    Fd owned(fd);
    for (;;) {
      std::string_view chunk = tar_->Body();
      if (chunk.empty()) break;
      while (!chunk.empty()) {
        ssize_t n = ::write(fd, chunk.data(), chunk.size());
        if (n < 0) {
          if (errno == EINTR) continue;
          ThrowSys(errno, "write", path);
        }
        chunk.remove_prefix(static_cast<size_t>(n));
      }
      if (e.size > (1 << 20)) CheckAbort();
    }
    // fchown before fchmod (chown clears setuid/setgid), xattrs after fchown (it drops security.capability).
    if (::fchown(fd, static_cast<uid_t>(m.uid), static_cast<gid_t>(m.gid)) != 0) ThrowSys(errno, "fchown", path);
    if (::fchmod(fd, m.mode) != 0) ThrowSys(errno, "fchmod", path);
    for (const auto& [k, v] : e.xattrs) {
      if (k.empty() || !XattrAllowed(k, allowPrivileged_)) continue;
      if (::fsetxattr(fd, k.c_str(), v.data(), v.size(), 0) != 0) ThrowSys(errno, "fsetxattr", path);
    }
    if (::futimens(fd, m.times) != 0) ThrowSys(errno, "futimens", path);
    bytes_ += e.size;
  }

  void Directory(const DirRef& parent, const std::string& name, const std::string& path, const TarEntry& e) {
    NoteChange(parent.real);
    if (::mkdirat(parent.fd, name.c_str(), 0700) != 0) {
      if (errno != EEXIST) ThrowSys(errno, "mkdir", path);
      struct stat st;
      if (::fstatat(parent.fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "lstat", path);
      if (!S_ISDIR(st.st_mode)) {
        Remove(path);
        if (::mkdirat(parent.fd, name.c_str(), 0700) != 0) ThrowSys(errno, "mkdir", path);
      }
      // A directory over a directory merges: it keeps its content and takes the entry's metadata.
    }
    DirMeta(parent.fd, name, path, e);
    int fd = ::openat(parent.fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) ThrowSys(errno, "open", path);
    Cache(Join(comps_, comps_.size()), std::make_shared<DirRef>(fd, path));
  }

  // `at`/`name`: where the directory is (AT_FDCWD and the real path for the root).
  void DirMeta(int at, const std::string& name, const std::string& path, const TarEntry& e) {
    Meta m = MetaOf(e, true);
    if (::fchownat(at, name.c_str(), static_cast<uid_t>(m.uid), static_cast<gid_t>(m.gid), AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "lchown", path);
    if (::fchmodat(at, name.c_str(), m.mode, 0) != 0) ThrowSys(errno, "chmod", path);
    SetXattrs(path, e);
    Times t;
    t.t[0] = m.times[0];
    t.t[1] = m.times[1];
    dirTimes_[path] = t;
  }

  void Symlink(const DirRef& parent, const std::string& name, const std::string& path, const TarEntry& e) {
    if (e.linkname.empty()) throw ApplyError::Invalid("symlink has an empty target", e.name);
    Meta m = MetaOf(e, false);
    Place(parent, name, path, "symlink", [&] { return ::symlinkat(e.linkname.c_str(), parent.fd, name.c_str()) == 0 ? 0 : errno; });
    if (::fchownat(parent.fd, name.c_str(), static_cast<uid_t>(m.uid), static_cast<gid_t>(m.gid), AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "lchown", path);
    if (::utimensat(parent.fd, name.c_str(), m.times, AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "utimensat", path);
    SetXattrs(path, e);
  }

  void Node(const DirRef& parent, const std::string& name, const std::string& path, const TarEntry& e) {
    mode_t type = e.type == '3' ? S_IFCHR : e.type == '4' ? S_IFBLK : S_IFIFO;
    dev_t dev = makedev(static_cast<unsigned>(e.devmajor), static_cast<unsigned>(e.devminor));
    Meta m = MetaOf(e, true);
    Place(parent, name, path, "mknod", [&] { return ::mknodat(parent.fd, name.c_str(), type | (e.mode & 0777), dev) == 0 ? 0 : errno; });
    if (::fchownat(parent.fd, name.c_str(), static_cast<uid_t>(m.uid), static_cast<gid_t>(m.gid), AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "lchown", path);
    if (::fchmodat(parent.fd, name.c_str(), m.mode, 0) != 0) ThrowSys(errno, "chmod", path);
    if (::utimensat(parent.fd, name.c_str(), m.times, AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "utimensat", path);
    SetXattrs(path, e);
  }

  void Hardlink(const DirRef& parent, const std::string& name, const std::string& path, const TarEntry& e) {
    std::vector<std::string> saved;
    saved.swap(comps_);  // Dir() works on comps_: resolve the target's parent with the target's components
    std::vector<std::string> tcomps;
    if (!CleanName(e.linkname, tcomps)) throw ApplyError::Unsafe(e.name, "its hardlink target climbs above the layer root");
    if (tcomps.empty()) throw ApplyError::Unsafe(e.name, "it hardlinks the layer root");
    comps_ = tcomps;
    DirPtr tdir = Dir(comps_.size() - 1, e, false, 0);
    comps_.swap(saved);
    struct stat st;
    std::string target;
    bool exists = false;
    if (tdir) {
      target = tdir->real + "/" + tcomps.back();
      if (::fstatat(tdir->fd, tcomps.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        exists = true;
      } else if (errno != ENOENT && errno != ENOTDIR) {
        ThrowSys(errno, "lstat", target);
      }
    }
    if (!exists) throw ApplyError::Unsafe(e.name, "its hardlink target \"" + e.linkname + "\" does not exist");
    if (S_ISDIR(st.st_mode)) throw ApplyError::Unsafe(e.name, "it hardlinks a directory");
    // Change only what differs: a chown, even to the same owner, would strip the file's capabilities.
    bool isLink = S_ISLNK(st.st_mode);
    Meta want = MetaOf(e, !isLink);
    bool chown = static_cast<uid_t>(want.uid) != st.st_uid || static_cast<gid_t>(want.gid) != st.st_gid;
    bool chmod = want.withMode && want.mode != (st.st_mode & 07777);
    if (chown && (st.st_mode & 06000) != 0 && want.withMode) chmod = true;  // chown clears setuid/setgid
    bool times = want.times[1].tv_sec != st.st_mtim.tv_sec || want.times[1].tv_nsec != st.st_mtim.tv_nsec;
    std::vector<const std::pair<std::string, std::string>*> xattrs;
    for (const auto& kv : e.xattrs) {
      if (kv.first.empty() || !XattrAllowed(kv.first, allowPrivileged_)) continue;
      std::string have;
      if (!GetXattr(target, kv.first, have) || have != kv.second) xattrs.push_back(&kv);
    }
    // A change would land on the parent image's inode too: give the target its own inode first.
    // (Without a change the link shares the inode, which keeps its other names linked with it.)
    bool changes = chown || chmod || times || !xattrs.empty();
    if (changes && st.st_nlink > 1 && !IsPrivate(target)) {
      CopyUp(*tdir, tcomps.back(), target, st);
      sharedLinks_.erase(target);
      copiedUp_.insert(target);
    }
    if (target != path) {
      Place(parent, name, path, "link", [&] { return ::linkat(tdir->fd, tcomps.back().c_str(), parent.fd, name.c_str(), 0) == 0 ? 0 : errno; });
      // The new name shares the target's inode: private only if the target's is.
      if (IsPrivate(target)) sharedLinks_.erase(path);
      else sharedLinks_.insert(path);
    }
    if (chown && ::fchownat(parent.fd, name.c_str(), static_cast<uid_t>(want.uid), static_cast<gid_t>(want.gid), AT_SYMLINK_NOFOLLOW) != 0) {
      ThrowSys(errno, "lchown", path);
    }
    if (chmod && ::fchmodat(parent.fd, name.c_str(), want.mode, 0) != 0) ThrowSys(errno, "chmod", path);
    if (times && ::utimensat(parent.fd, name.c_str(), want.times, AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "utimensat", path);
    for (const auto* kv : xattrs) {
      if (::lsetxattr(path.c_str(), kv->first.c_str(), kv->second.data(), kv->second.size(), 0) != 0) ThrowSys(errno, "lsetxattr", path);
    }
  }

  // ---- files in flight ----
  //
  // A file handed to the writers must not meet another entry on its path: none in
  // flight has the same real path, lies above it or below it (real paths, so a
  // symlinked alias cannot sneak past), else the ones in flight are settled first.

  bool Conflicts(const std::string& path) const {
    if (inflight_.empty()) return false;
    if (inflight_.count(path) != 0 || inflightAbove_.count(path) != 0) return true;
    for (size_t i = path.rfind('/'); i != std::string::npos && i > 0; i = path.rfind('/', i - 1)) {
      if (inflight_.count(path.substr(0, i)) != 0) return true;
    }
    return false;
  }

  void Track(const std::string& path) {
    inflight_.insert(path);
    for (size_t i = path.rfind('/'); i != std::string::npos && i > 0; i = path.rfind('/', i - 1)) {
      if (!inflightAbove_.insert(path.substr(0, i)).second) break;  // its own ancestors are there already
    }
  }

  // Waits for the files in flight; those whose name was taken are placed now (what was there replaced), in stream order.
  void Settle() {
    if (inflight_.empty()) return;
    std::vector<std::unique_ptr<FileTask>> retry;
    SysFailure failure;
    bool ok = writers_->Wait(retry, failure);
    inflight_.clear();
    inflightAbove_.clear();
    if (!ok) throw ApplyError::Sys(failure);
    for (const auto& t : retry) {
      auto parent = std::static_pointer_cast<DirRef>(t->keepParent);
      int fd = -1;
      Place(*parent, t->name, t->path, "open", [&] {
        fd = ::openat(parent->fd, t->name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        return fd < 0 ? errno : 0;
      });
      Fd owned(fd);
      const char* syscall = "open";
      int err = FinishFile(fd, t->data.data(), t->data.size(), *t, syscall);
      if (err != 0) ThrowSys(err, syscall, t->path);
    }
  }

  // ---- whiteouts ----

  void Whiteout(const std::string& path, const std::string& parent) {
    // A whiteout hides lower content only, never what this layer itself put there (OCI image spec):
    // over a directory of this layer (merged with a lower one) it hides just the lower part.
    struct stat st;
    bool exists = Lstat(path, st);
    if (unpacked_.count(path) != 0) {
      if (exists && S_ISDIR(st.st_mode)) ClearLower(path);
      return;
    }
    if (!exists) return;
    NoteChange(parent);
    Remove(path);
  }

  // Opaque directory: removes everything below `dir` that this layer did not put there, in whatever order the entries came.
  void ClearLower(const std::string& dir) {
    std::vector<std::pair<std::string, bool>> children;
    ::closedir(OpenChildren(AT_FDCWD, dir, dir, children));
    for (const auto& [name, isDir] : children) {
      std::string path = dir + "/" + name;
      if (unpacked_.count(path) != 0) {
        if (isDir) ClearLower(path);
        continue;
      }
      NoteChange(dir);
      Remove(path);
    }
  }

  // ---- building blocks ----

  // The directory named by the first `n` of comps_, resolved inside the root. Missing
  // directories are created 0755 root when `create`, else null is returned; a path
  // that is not a directory fails the entry (or is null without `create`).
  DirPtr Dir(size_t n, const TarEntry& e, bool create, int hops) {
    if (n == 0) return rootDir_;
    std::string key = Join(comps_, n);
    auto hit = dirs_.find(key);
    if (hit != dirs_.end()) return hit->second;
    // A walk the cache has not seen may pass where a file in flight is about to be.
    Settle();
    int fd = -1, err = 0;
    const char* syscallName = "openat2";
    if (!noOpenat2_) {
      struct open_how how = {};
      how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
      how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
      fd = static_cast<int>(::syscall(SYS_openat2, rootDir_->fd, key.c_str(), &how, sizeof how));
      err = errno;
      if (fd < 0 && err == ENOSYS) noOpenat2_ = true;
    }
    if (noOpenat2_) {
      syscallName = "openat";
      fd = WalkInRoot(rootDir_->fd, key, true);
      err = errno;
      struct stat st;
      if (fd >= 0 && (::fstat(fd, &st) != 0 || !S_ISDIR(st.st_mode))) {
        ::close(fd);
        fd = -1;
        err = ENOTDIR;
      }
    }
    if (fd < 0) {
      if (err == ENOENT) {
        if (!create) return nullptr;
        return MakeMissingDir(n, e, hops);
      }
      if (err == ENOTDIR) {
        if (!create) return nullptr;
        throw ApplyError::Unsafe(e.name, "\"" + key + "\" on its way is not a directory");
      }
      if (err == ELOOP) throw ApplyError::Unsafe(e.name, "too many symlinks on its way");
      if (err == EXDEV) throw ApplyError::Unsafe(e.name, "its path crosses a mount point");
      throw ApplyError::Sys(Failure(err, syscallName, root_, key));
    }
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    std::string real(PATH_MAX, '\0');
    ssize_t len = ::readlink(link, real.data(), real.size());
    if (len < 0 || static_cast<size_t>(len) >= real.size()) {
      int e2 = len < 0 ? errno : ENAMETOOLONG;
      ::close(fd);
      ThrowSys(e2, "readlink", link);
    }
    real.resize(static_cast<size_t>(len));
    auto dir = std::make_shared<DirRef>(fd, std::move(real));
    Cache(key, dir);
    return dir;
  }

  DirPtr MakeMissingDir(size_t n, const TarEntry& e, int hops) {
    DirPtr parent = Dir(n - 1, e, true, hops);
    const std::string name = comps_[n - 1];
    std::string path = parent->real + "/" + name;
    NoteChange(parent->real);
    if (::mkdirat(parent->fd, name.c_str(), 0700) != 0) {
      if (errno != EEXIST) ThrowSys(errno, "mkdir", path);
      // The resolver found nothing, yet something is there: a dangling symlink. Create
      // its target, inside the root, as a kernel walk from "/" would reach it.
      struct stat st;
      if (!Lstat(path, st) || !S_ISLNK(st.st_mode) || hops >= kMaxSymlinkHops) {
        throw ApplyError::Unsafe(e.name, "cannot create its parent directory \"" + Join(comps_, n) + "\"");
      }
      char target[PATH_MAX];
      ssize_t len = ::readlinkat(parent->fd, name.c_str(), target, sizeof target);
      if (len < 0) ThrowSys(errno, "readlink", path);
      std::string t(target, static_cast<size_t>(len));
      std::string from = t[0] == '/' ? std::string() : parent->real.substr(std::min(parent->real.size(), root_.size() + 1));
      // Components of the target taken inside the root: ".." at the root stays at the root, as with RESOLVE_IN_ROOT.
      std::vector<std::string> clamped;
      std::string joined = from + "/" + t;
      size_t i = 0;
      while (i <= joined.size()) {
        size_t j = joined.find('/', i);
        if (j == std::string::npos) j = joined.size();
        std::string part = joined.substr(i, j - i);
        if (part.empty() || part == ".") {
        } else if (part == "..") {
          if (!clamped.empty()) clamped.pop_back();
        } else {
          clamped.push_back(std::move(part));
        }
        i = j + 1;
      }
      std::vector<std::string> saved;
      saved.swap(comps_);
      comps_ = std::move(clamped);
      DirPtr out;
      try {
        out = Dir(comps_.size(), e, true, hops + 1);
      } catch (...) {
        comps_.swap(saved);
        throw;
      }
      comps_.swap(saved);
      return out;
    }
    if (::fchownat(parent->fd, name.c_str(), static_cast<uid_t>(rootUid_), static_cast<gid_t>(rootGid_), AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "lchown", path);
    if (::fchmodat(parent->fd, name.c_str(), 0755, 0) != 0) ThrowSys(errno, "chmod", path);
    int fd = ::openat(parent->fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) ThrowSys(errno, "open", path);
    unpacked_.insert(path);
    auto dir = std::make_shared<DirRef>(fd, path);
    Cache(Join(comps_, n), dir);
    return dir;
  }

  void Cache(const std::string& key, DirPtr dir) {
    if (dirs_.size() >= kMaxCachedDirs) dirs_.clear();
    dirs_[key] = std::move(dir);
  }

  // Creates an entry; when something is there, replaces it (removed first: the entry always gets a new inode).
  template <typename Create>
  void Place(const DirRef& parent, const std::string& name, const std::string& path, const char* syscallName, Create create) {
    NoteChange(parent.real);
    int err = create();
    if (err == 0) return;
    if (err != EEXIST) ThrowSys(err, syscallName, path);
    Remove(path);
    err = create();
    if (err != 0) ThrowSys(err, syscallName, path);
  }

  // Removes whatever is at `path` (a whole tree for a directory), never following a symlink.
  void Remove(const std::string& path) {
    struct stat st;
    if (!Lstat(path, st)) return;
    if (S_ISDIR(st.st_mode)) {
      RemoveTree(AT_FDCWD, path, path);
      dirTimes_.erase(path);
      std::string prefix = path + "/";
      for (auto it = dirTimes_.lower_bound(prefix); it != dirTimes_.end() && it->first.compare(0, prefix.size(), prefix) == 0;) it = dirTimes_.erase(it);
    } else if (::unlink(path.c_str()) != 0) {
      ThrowSys(errno, "unlink", path);
    }
    Replaced(path, S_ISDIR(st.st_mode));
    // Resolved parents may have gone through what was removed.
    if (S_ISDIR(st.st_mode) || S_ISLNK(st.st_mode)) dirs_.clear();
  }

  // ---- which inodes are private to this apply ----
  //
  // Every non-directory of the root starts as a second name of the parent image's
  // inode. An inode is private when this apply made it (an entry's new inode, or a
  // copy-up), or when a name reached it through a tar hardlink to a private inode;
  // only a private inode may be changed in place. Tracked by name: unpacked_ holds the
  // names this apply made, and two small sets the exceptions, which only tar hardlinks
  // and copy-ups make: a link to a shared inode (made here, yet not private) and a
  // copy-up (private, yet still lower content for a later whiteout).

  bool IsPrivate(const std::string& path) const {
    return copiedUp_.count(path) != 0 || (unpacked_.count(path) != 0 && sharedLinks_.count(path) == 0);
  }

  // Whatever was at `path` (and below it, for a directory) is gone.
  void Replaced(const std::string& path, bool isDir) {
    sharedLinks_.erase(path);
    copiedUp_.erase(path);
    if (!isDir || (sharedLinks_.empty() && copiedUp_.empty())) return;
    std::string below = path + "/";
    for (auto* set : {&sharedLinks_, &copiedUp_}) {
      for (auto it = set->begin(); it != set->end();) it = it->compare(0, below.size(), below) == 0 ? set->erase(it) : std::next(it);
    }
  }

  // Opens the directory `name` (at `at`, not following a symlink) and lists its
  // entries, each with whether it is a directory; the caller closes what it returns.
  static DIR* OpenChildren(int at, const std::string& name, const std::string& shown, std::vector<std::pair<std::string, bool>>& children) {
    int fd = ::openat(at, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) ThrowSys(errno, "opendir", shown);
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      int err = errno;
      ::close(fd);
      ThrowSys(err, "opendir", shown);
    }
    while (struct dirent* de = ::readdir(d)) {
      if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
      bool isDir = de->d_type == DT_DIR;
      if (de->d_type == DT_UNKNOWN) {
        struct stat st;
        isDir = ::fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
      }
      children.emplace_back(de->d_name, isDir);
    }
    return d;
  }

  void RemoveTree(int at, const std::string& name, const std::string& shown) {
    std::vector<std::pair<std::string, bool>> children;
    DIR* d = OpenChildren(at, name, shown, children);
    int fd = ::dirfd(d);
    for (const auto& [child, isDir] : children) {
      if (isDir) {
        RemoveTree(fd, child, shown + "/" + child);
      } else if (::unlinkat(fd, child.c_str(), 0) != 0) {
        int err = errno;
        ::closedir(d);
        ThrowSys(err, "unlink", shown + "/" + child);
      }
    }
    ::closedir(d);
    if (::unlinkat(at, name.c_str(), AT_REMOVEDIR) != 0) ThrowSys(errno, "rmdir", shown);
  }

  // Before the first change inside a directory this apply did not make and the tar
  // has no entry for, remember its times, to put them back at the end.
  void NoteChange(const std::string& dir) {
    if (unpacked_.count(dir) != 0 || dirTimes_.count(dir) != 0) return;
    struct stat st;
    if (::lstat(dir.c_str(), &st) != 0) ThrowSys(errno, "lstat", dir);
    Times t;
    t.t[0] = st.st_atim;
    t.t[1] = st.st_mtim;
    dirTimes_[dir] = t;
  }

  // Replaces a lower inode that is still shared (with the parent image) by a private
  // copy: same type, content, owner, mode, xattrs and times, new inode. Any non-directory.
  void CopyUp(const DirRef& dir, const std::string& name, const std::string& path, const struct stat& st) {
    std::string tmpName = ".ogd-copyup-" + std::to_string(::getpid()) + "-" + std::to_string(entries_);
    std::string tmp = dir.real + "/" + tmpName;
    if (S_ISREG(st.st_mode)) {
      CopyContent(dir, name, path, tmpName, tmp);
    } else if (S_ISLNK(st.st_mode)) {
      std::string target(PATH_MAX, '\0');
      ssize_t n = ::readlinkat(dir.fd, name.c_str(), target.data(), target.size());
      if (n < 0) ThrowSys(errno, "readlink", path);
      target.resize(static_cast<size_t>(n));
      if (::symlinkat(target.c_str(), dir.fd, tmpName.c_str()) != 0) ThrowSys(errno, "symlink", tmp);
    } else if (::mknodat(dir.fd, tmpName.c_str(), st.st_mode, st.st_rdev) != 0) {
      ThrowSys(errno, "mknod", tmp);
    }
    if (::fchownat(dir.fd, tmpName.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "lchown", tmp);
    if (!S_ISLNK(st.st_mode) && ::fchmodat(dir.fd, tmpName.c_str(), st.st_mode & 07777, 0) != 0) ThrowSys(errno, "chmod", tmp);
    CopyXattrs(path, tmp);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::utimensat(dir.fd, tmpName.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) ThrowSys(errno, "utimensat", tmp);
    if (::renameat(dir.fd, tmpName.c_str(), dir.fd, name.c_str()) != 0) ThrowSys(errno, "rename", tmp);
  }

  // Reads with O_NOATIME, so the (shared) source keeps even its atime.
  void CopyContent(const DirRef& dir, const std::string& name, const std::string& path, const std::string& tmpName, const std::string& tmp) {
    int src = ::openat(dir.fd, name.c_str(), O_RDONLY | O_NOATIME | O_NOFOLLOW | O_CLOEXEC);
    if (src < 0) ThrowSys(errno, "open", path);
    Fd srcFd(src);
    int dst = ::openat(dir.fd, tmpName.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (dst < 0) ThrowSys(errno, "open", tmp);
    Fd dstFd(dst);
    std::vector<char> buf(1 << 20);
    for (;;) {
      ssize_t n = ::read(src, buf.data(), buf.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        ThrowSys(errno, "read", path);
      }
      if (n == 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = ::write(dst, buf.data() + off, static_cast<size_t>(n - off));
        if (w < 0) {
          if (errno == EINTR) continue;
          ThrowSys(errno, "write", tmp);
        }
        off += w;
      }
    }
  }

  void CopyXattrs(const std::string& from, const std::string& to) {
    ssize_t size = ::llistxattr(from.c_str(), nullptr, 0);
    if (size < 0) {
      if (errno == ENOTSUP) return;
      ThrowSys(errno, "llistxattr", from);
    }
    std::string names(static_cast<size_t>(size), '\0');
    size = ::llistxattr(from.c_str(), names.data(), names.size());
    if (size < 0) ThrowSys(errno, "llistxattr", from);
    names.resize(static_cast<size_t>(size));
    for (size_t i = 0; i < names.size();) {
      std::string name(names.c_str() + i);
      i += name.size() + 1;
      std::string value;
      if (!GetXattr(from, name, value)) continue;
      if (::lsetxattr(to.c_str(), name.c_str(), value.data(), value.size(), 0) != 0) ThrowSys(errno, "lsetxattr", to);
    }
  }

  // False when `path` has no such xattr (or none can be read).
  static bool GetXattr(const std::string& path, const std::string& name, std::string& out) {
    for (int attempt = 0; attempt < 8; attempt++) {
      ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      if (size < 0) return false;
      out.resize(static_cast<size_t>(size));
      ssize_t got = ::lgetxattr(path.c_str(), name.c_str(), out.data(), out.size());
      if (got >= 0) {
        out.resize(static_cast<size_t>(got));
        return true;
      }
      if (errno != ERANGE) return false;
    }
    return false;
  }

  void SetXattrs(const std::string& path, const TarEntry& e) {
    for (const auto& [k, v] : e.xattrs) {
      if (k.empty() || !XattrAllowed(k, allowPrivileged_)) continue;
      if (::lsetxattr(path.c_str(), k.c_str(), v.data(), v.size(), 0) != 0) {
        // user.* xattrs are not permitted on symlinks and device nodes; the kernel refuses, as it would for any unpacker.
        if (errno == EPERM && StartsWith(k, "user.") && e.type != '0' && e.type != '5') continue;
        ThrowSys(errno, "lsetxattr", path);
      }
    }
  }

  static bool Lstat(const std::string& path, struct stat& st) {
    if (::lstat(path.c_str(), &st) == 0) return true;
    if (errno == ENOENT || errno == ENOTDIR) return false;
    ThrowSys(errno, "lstat", path);
  }

  // Host owner, mode and times of an entry.
  Meta MetaOf(const TarEntry& e, bool withMode) {
    Meta m;
    if (!ToHost(uidMaps_, e.uid, m.uid)) throw ApplyError::Unsafe(e.name, "its uid " + std::to_string(e.uid) + " is not mapped to a host uid");
    if (!ToHost(gidMaps_, e.gid, m.gid)) throw ApplyError::Unsafe(e.name, "its gid " + std::to_string(e.gid) + " is not mapped to a host gid");
    m.mode = e.mode;
    m.withMode = withMode;
    m.times[0] = e.hasAtime ? e.atime : e.mtime;
    m.times[1] = e.mtime;
    return m;
  }

  const ApplyRequest& req_;
  const ApplyHooks& hooks_;
  const std::string& rootArg_;
  std::unique_ptr<FileWriters> writers_;
  std::unordered_set<std::string> inflight_;       // real paths of the files handed to the writers since the last Settle
  std::unordered_set<std::string> inflightAbove_;  // and every directory above them
  ChunkQueue* queue_;
  const std::vector<IdRange>& uidMaps_;
  const std::vector<IdRange>& gidMaps_;
  bool allowPrivileged_;

  std::string root_;
  DirPtr rootDir_;
  uint64_t rootUid_ = 0, rootGid_ = 0;
  bool noOpenat2_ = false;
  TarReader* tar_ = nullptr;
  bool gzip_;
  std::unique_ptr<LayerFileReader> reader_;
  std::vector<std::string> comps_;  // the current entry's cleaned name
  std::string& current_;            // the current entry's raw name, for system errors (out_.current)
  // Parent dirs already resolved: cleaned name → fd and real path. Cleared whenever a dir or symlink is removed.
  std::unordered_map<std::string, DirPtr> dirs_;
  // Real paths this apply put there (files, dirs incl. merged ones, links): never lower content.
  std::unordered_set<std::string> unpacked_;
  std::unordered_set<std::string> sharedLinks_;  // see IsPrivate
  std::unordered_set<std::string> copiedUp_;
  // Times to set on directories at the end: from their tar entries, or their own (restored) when the tar has none.
  std::map<std::string, Times> dirTimes_;
  ApplyOutcome& out_;
  uint64_t& entries_;
  uint64_t& bytes_;
  uint64_t lastReport_ = 0;
};

}  // namespace

ApplyOutcome RunApply(const ApplyRequest& request, const ApplyHooks& hooks) {
  ApplyOutcome out;
  ApplyEngine(request, hooks, out).Execute();
  return out;
}

}  // namespace ogd
