// scanTree(root): the walk that a whole-layer export runs (read_files.cc then reads
// the files). Done in JS it costs a libuv pool trip (and a JS object and a GC'd
// Promise) per lstat, readlink, listxattr and getxattr; here it is one pool job that
// hands back a few packed Buffers that lib/native.ts decodes.
//
// scanTree walks fd-relative (openat/fstatat/readlinkat, xattrs through
// /proc/self/fd/N/NAME so nothing is followed and no path grows past PATH_MAX) and
// lists a directory's children sorted bytewise, each directory right before its
// subtree: the order of lib/archive/raw-path.ts comparePaths, so JS need not sort.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "fd.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

// One entry: kSlots little-endian u64 slots (see lib/native.ts ScannedEntry for the decoder).
constexpr size_t kSlots = 11;


inline uint64_t Pack(uint32_t lo, uint32_t hi) { return static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << 32); }

class ScanTreeWorker : public PromiseWorker {
 public:
  ScanTreeWorker(Napi::Env env, std::string root) : PromiseWorker(env), root_(std::move(root)) {}

  void Execute() override {
    int fd = ::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Fail(Failure(errno, "open", root_));
    Fd rootFd(fd);
    std::string rel;
    Walk(rootFd.get(), rel);
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
  // Walks the directory open as `dirFd`, whose path relative to the root is `rel` ("" or "a/b").
  void Walk(int dirFd, std::string& rel) {
    std::vector<std::string> children;
    if (!ListDir(dirFd, rel, children)) return;
    std::sort(children.begin(), children.end());
    for (const std::string& name : children) {
      if (Failed()) return;
      struct stat st;
      if (::fstatat(dirFd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return Fail(Failure(errno, "lstat", Shown(rel, name)));
      size_t relLen = rel.size();
      if (!rel.empty()) rel.push_back('/');
      rel += name;
      bool ok = Record(dirFd, name, rel, st);
      if (ok && S_ISDIR(st.st_mode)) {
        int child = ::openat(dirFd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child < 0) {
          Fail(Failure(errno, "open", root_ + "/" + rel));
        } else {
          Fd childFd(child);
          Walk(childFd.get(), rel);
        }
      }
      rel.resize(relLen);
      if (!ok) return;
    }
  }

  bool ListDir(int dirFd, const std::string& rel, std::vector<std::string>& out) {
    // fdopendir takes the fd it is given; give it a copy so the caller's stays open.
    int copy = ::openat(dirFd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (copy < 0) {
      Fail(Failure(errno, "open", root_ + (rel.empty() ? "" : "/" + rel)));
      return false;
    }
    DIR* dir = ::fdopendir(copy);
    if (dir == nullptr) {
      int err = errno;
      ::close(copy);
      Fail(Failure(err, "opendir", root_ + (rel.empty() ? "" : "/" + rel)));
      return false;
    }
    errno = 0;
    while (struct dirent* d = ::readdir(dir)) {
      if (d->d_name[0] == '.' && (d->d_name[1] == '\0' || (d->d_name[1] == '.' && d->d_name[2] == '\0'))) continue;
      out.emplace_back(d->d_name);
      errno = 0;
    }
    int err = errno;
    ::closedir(dir);
    if (err != 0) {
      Fail(Failure(err, "readdir", root_ + (rel.empty() ? "" : "/" + rel)));
      return false;
    }
    return true;
  }

  std::string Shown(const std::string& rel, const std::string& name) const {
    return root_ + "/" + (rel.empty() ? name : rel + "/" + name);
  }

  bool Record(int dirFd, const std::string& name, const std::string& rel, const struct stat& st) {
    uint32_t extraOff = static_cast<uint32_t>(extra_.size());
    uint32_t linkLen = 0;
    if (S_ISLNK(st.st_mode)) {
      std::vector<char> target(static_cast<size_t>(st.st_size > 0 ? st.st_size : 0) + 1);
      for (;;) {
        ssize_t n = ::readlinkat(dirFd, name.c_str(), target.data(), target.size());
        if (n < 0) {
          Fail(Failure(errno, "readlink", root_ + "/" + rel));
          return false;
        }
        if (static_cast<size_t>(n) < target.size()) {
          extra_.insert(extra_.end(), target.data(), target.data() + n);
          linkLen = static_cast<uint32_t>(n);
          break;
        }
        target.resize(target.size() * 2);  // grew since the stat
      }
    }
    uint32_t xattrCount = 0;
    if (!Xattrs(dirFd, name, rel, xattrCount)) return false;

    uint32_t nameOff = static_cast<uint32_t>(names_.size());
    names_.insert(names_.end(), rel.begin(), rel.end());
    uint64_t slots[kSlots] = {
        Pack(nameOff, static_cast<uint32_t>(rel.size())),
        Pack(st.st_mode, static_cast<uint32_t>(st.st_nlink)),
        Pack(st.st_uid, st.st_gid),
        static_cast<uint64_t>(st.st_size),
        static_cast<uint64_t>(st.st_ino),
        static_cast<uint64_t>(st.st_dev),
        static_cast<uint64_t>(st.st_rdev),
        static_cast<uint64_t>(static_cast<int64_t>(st.st_mtim.tv_sec)),
        static_cast<uint64_t>(st.st_mtim.tv_nsec),
        Pack(extraOff, static_cast<uint32_t>(extra_.size()) - extraOff),
        Pack(xattrCount, linkLen),
    };
    records_.insert(records_.end(), slots, slots + kSlots);
    return true;
  }

  // Appends the entry's xattrs to extra_ as (name NUL, u32 LE length, value), sorted by name.
  bool Xattrs(int dirFd, const std::string& name, const std::string& rel, uint32_t& count) {
    std::string path = "/proc/self/fd/" + std::to_string(dirFd) + "/" + name;
    std::vector<char> list;
    for (int attempt = 0;; attempt++) {
      ssize_t size = ::llistxattr(path.c_str(), nullptr, 0);
      if (size < 0) {
        if (errno == ENOTSUP) return true;
        Fail(Failure(errno, "llistxattr", root_ + "/" + rel));
        return false;
      }
      if (size == 0) return true;
      list.resize(static_cast<size_t>(size));
      ssize_t got = ::llistxattr(path.c_str(), list.data(), list.size());
      if (got >= 0) {
        list.resize(static_cast<size_t>(got));
        break;
      }
      if (errno != ERANGE || attempt >= 8) {
        Fail(Failure(errno, "llistxattr", root_ + "/" + rel));
        return false;
      }
    }
    std::vector<std::string> keys;
    size_t start = 0;
    for (size_t i = 0; i < list.size(); i++) {
      if (list[i] != '\0') continue;
      if (i > start) keys.emplace_back(list.data() + start, i - start);
      start = i + 1;
    }
    std::sort(keys.begin(), keys.end());
    std::vector<char> value;
    for (const std::string& key : keys) {
      ssize_t got = -1;
      for (int attempt = 0; attempt < 8; attempt++) {
        ssize_t size = ::lgetxattr(path.c_str(), key.c_str(), nullptr, 0);
        if (size < 0) break;
        value.resize(static_cast<size_t>(size));
        got = ::lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
        if (got >= 0 || errno != ERANGE) break;
      }
      if (got < 0) {
        if (errno == ENODATA) continue;  // removed between list and get
        Fail(Failure(errno, "lgetxattr", root_ + "/" + rel));
        return false;
      }
      extra_.insert(extra_.end(), key.begin(), key.end());
      extra_.push_back('\0');
      uint32_t len = static_cast<uint32_t>(got);
      for (int b = 0; b < 4; b++) extra_.push_back(static_cast<char>((len >> (8 * b)) & 0xff));
      extra_.insert(extra_.end(), value.data(), value.data() + got);
      count++;
    }
    return true;
  }

  std::string root_;
  std::vector<uint64_t> records_;
  std::vector<char> names_;
  std::vector<char> extra_;
};

}  // namespace

// scanTree(root) -> Promise<{records: ArrayBuffer, names: Buffer, extra: Buffer}>
Napi::Value ScanTree(const Napi::CallbackInfo& info) {
  auto* w = new ScanTreeWorker(info.Env(), PathArg(info, 0, "root"));
  return w->Start();
}

}  // namespace ogd
