// scanTree(root) and readFiles(root, paths, sizes): the two loops over many files
// that layer export runs. Done in JS they cost a libuv pool trip (and a JS object
// and a GC'd Promise) per lstat, readlink, listxattr, getxattr, open, read and close;
// here each is one pool job that walks or reads everything, and hands back a few
// packed Buffers that lib/native.ts decodes.
//
// scanTree walks fd-relative (openat/fstatat/readlinkat, xattrs through
// /proc/self/fd/N/NAME so nothing is followed and no path grows past PATH_MAX) and
// lists a directory's children sorted bytewise, each directory right before its
// subtree: the order of lib/archive/raw-path.ts comparePaths, so JS need not sort.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {
namespace {

// One entry: kSlots little-endian u64 slots (see lib/native.ts ScannedEntry for the decoder).
constexpr size_t kSlots = 11;

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

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

// Memory for readFiles' results, kept for reuse once JS has collected a result,
// and mapped in 2 MiB huge pages where the kernel allows: faulting in fresh 4 KiB
// pages one by one cost as much as reading the files (measured on a virtualised
// machine), and an export reads a layer's worth of them.
class BlockPool {
 public:
  static constexpr size_t kUnit = 2 << 20;
  static constexpr size_t kKeep = 32 << 20;

  // A block of at least `size` bytes and its capacity; nullptr when out of memory.
  char* Take(size_t size, size_t& capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      size_t best = blocks_.size();
      for (size_t i = 0; i < blocks_.size(); i++) {
        if (blocks_[i].capacity >= size && (best == blocks_.size() || blocks_[i].capacity < blocks_[best].capacity)) best = i;
      }
      if (best < blocks_.size()) {
        Block b = blocks_[best];
        blocks_.erase(blocks_.begin() + static_cast<long>(best));
        kept_ -= b.capacity;
        capacity = b.capacity;
        return b.data;
      }
    }
    capacity = (size + kUnit - 1) / kUnit * kUnit;
    if (capacity == 0) capacity = kUnit;
    return Map(capacity);
  }

  void Give(char* data, size_t capacity) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (kept_ + capacity <= kKeep) {
        blocks_.push_back({data, capacity});
        kept_ += capacity;
        return;
      }
    }
    ::munmap(data, capacity);
  }

 private:
  // `capacity` bytes aligned to kUnit, so whole huge pages back them.
  static char* Map(size_t capacity) {
    size_t span = capacity + kUnit;
    void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = (start + kUnit - 1) & ~(static_cast<uintptr_t>(kUnit) - 1);
    if (aligned > start) ::munmap(raw, aligned - start);
    uintptr_t end = aligned + capacity;
    if (start + span > end) ::munmap(reinterpret_cast<void*>(end), start + span - end);
    ::madvise(reinterpret_cast<void*>(aligned), capacity, MADV_HUGEPAGE);  // advice only: fine if refused
    return reinterpret_cast<char*>(aligned);
  }

  struct Block {
    char* data;
    size_t capacity;
  };
  std::mutex mutex_;
  std::vector<Block> blocks_;
  size_t kept_ = 0;
};

BlockPool& Pool() {
  static BlockPool* pool = new BlockPool();  // never destroyed: finalizers may run at exit
  return *pool;
}

// Opens `rel` beneath `rootFd` without following a symlink in its last component;
// a path longer than PATH_MAX is opened a directory at a time.
int OpenRelative(int rootFd, const std::string& rel) {
  if (rel.size() < PATH_MAX) return ::openat(rootFd, rel.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  size_t cut = rel.rfind('/', PATH_MAX - 1);
  if (cut == std::string::npos || cut == 0) {
    errno = ENAMETOOLONG;
    return -1;
  }
  int dir = ::openat(rootFd, rel.substr(0, cut).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  int fd = OpenRelative(dir, rel.substr(cut + 1));
  int err = errno;
  ::close(dir);
  errno = err;
  return fd;
}

// Zero bytes that round `size` up to a whole tar block.
uint64_t Padding(uint64_t size) { return (512 - size % 512) % 512; }

// Results up to this size are malloc'd (capacity 0), bigger ones come from the pool.
constexpr uint64_t kSmallResult = 256 * 1024;

void Release(char* data, size_t capacity) {
  if (capacity == 0) std::free(data);
  else Pool().Give(data, capacity);
}

class ReadFilesWorker : public PromiseWorker {
 public:
  ReadFilesWorker(Napi::Env env, std::string root, std::vector<std::string> paths, std::vector<uint64_t> sizes,
                  std::string frames, std::vector<uint64_t> frameLengths)
      : PromiseWorker(env),
        root_(std::move(root)),
        paths_(std::move(paths)),
        sizes_(std::move(sizes)),
        frames_(std::move(frames)),
        frameLengths_(std::move(frameLengths)) {}
  ~ReadFilesWorker() override {
    if (data_ != nullptr) Release(data_, capacity_);
  }

  void Execute() override {
    const bool framed = !frameLengths_.empty();
    for (uint64_t s : sizes_) total_ += s + (framed ? Padding(s) : 0);
    for (uint64_t n : frameLengths_) total_ += n;
    // Not zero-filled: every byte is read, copied or padded into (or the call reports `shrunk`).
    // A small result (one file behind its header) is plain heap memory: a pooled block
    // is a 2 MiB unit, and V8 counts every one it is told of towards its next collection.
    if (total_ <= kSmallResult) {
      data_ = static_cast<char*>(std::malloc(total_ == 0 ? 1 : total_));
      capacity_ = 0;
    } else {
      data_ = Pool().Take(total_, capacity_);
    }
    if (data_ == nullptr) return Fail(Failure(ENOMEM, "readFiles", root_));
    int fd = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Fail(Failure(errno, "open", root_));
    Fd rootFd(fd);
    uint64_t at = 0;
    const char* frame = frames_.data();
    auto copyFrame = [&](size_t i) {
      if (!framed) return;
      std::memcpy(data_ + at, frame, frameLengths_[i]);
      frame += frameLengths_[i];
      at += frameLengths_[i];
    };
    for (size_t i = 0; i < paths_.size(); i++) {
      copyFrame(i);
      int f = OpenRelative(rootFd.get(), paths_[i]);
      if (f < 0) return Fail(Failure(errno, "open", root_ + "/" + paths_[i]));
      Fd file(f);
      uint64_t done = 0;
      while (done < sizes_[i]) {
        ssize_t n = ::pread(file.get(), data_ + at + done, sizes_[i] - done, static_cast<off_t>(done));
        if (n < 0) {
          if (errno == EINTR) continue;
          return Fail(Failure(errno, "read", root_ + "/" + paths_[i]));
        }
        if (n == 0) {
          shrunk_ = static_cast<int64_t>(i);
          return;
        }
        done += static_cast<uint64_t>(n);
      }
      at += sizes_[i];
      if (framed) {
        std::memset(data_ + at, 0, Padding(sizes_[i]));
        at += Padding(sizes_[i]);
      }
    }
    copyFrame(paths_.size());
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    // Handed over without a copy; V8 is told of the memory so it collects it in time.
    char* data = data_;
    data_ = nullptr;
    size_t capacity = capacity_;
    int64_t size = static_cast<int64_t>(capacity == 0 ? total_ : capacity);
    Napi::MemoryManagement::AdjustExternalMemory(env, size);
    out.Set("data", Napi::Buffer<char>::New(env, data, total_, [size, capacity](Napi::Env e, char* p) {
      Napi::MemoryManagement::AdjustExternalMemory(e, -size);
      Release(p, capacity);
    }));
    out.Set("shrunk", Napi::Number::New(env, static_cast<double>(shrunk_)));
    return out;
  }

 private:
  std::string root_;
  std::vector<std::string> paths_;
  std::vector<uint64_t> sizes_;
  // Tar framing (empty: none): frameLengths_[i] bytes of frames_ go before file i, the
  // last entry after the last file; each file's content is padded to whole 512-byte blocks.
  std::string frames_;
  std::vector<uint64_t> frameLengths_;
  char* data_ = nullptr;
  size_t capacity_ = 0;
  uint64_t total_ = 0;
  int64_t shrunk_ = -1;
};

}  // namespace

// scanTree(root) -> Promise<{records: ArrayBuffer, names: Buffer, extra: Buffer}>
Napi::Value ScanTree(const Napi::CallbackInfo& info) {
  auto* w = new ScanTreeWorker(info.Env(), PathArg(info, 0, "root"));
  return w->Start();
}

// readFiles(root, paths: Buffer (relative paths, each ended by NUL), sizes: number[],
//           frames?: Buffer, frameLengths?: number[])
//   -> Promise<{data: Buffer, shrunk: number}>: the files' first `sizes[i]` bytes, end to
// end; `shrunk` is the index of a file that ended early (-1: none), where reading stopped.
// With frames, the result is a piece of tar: frame 0, file 0 padded to 512 bytes,
// frame 1, ..., the last frame (headers in the frames), so export copies nothing in JS.
Napi::Value ReadFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string root = PathArg(info, 0, "root");
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "The \"paths\" argument must be a Buffer");
  if (!info[2].IsArray()) throw Napi::TypeError::New(env, "The \"sizes\" argument must be an array");
  auto joined = info[1].As<Napi::Buffer<char>>();
  std::vector<std::string> paths;
  size_t start = 0;
  for (size_t i = 0; i < joined.Length(); i++) {
    if (joined.Data()[i] != '\0') continue;
    paths.emplace_back(joined.Data() + start, i - start);
    start = i + 1;
  }
  Napi::Array sizesArg = info[2].As<Napi::Array>();
  if (sizesArg.Length() != paths.size()) throw Napi::TypeError::New(env, "\"sizes\" must have one entry per path");
  std::vector<uint64_t> sizes(paths.size());
  for (uint32_t i = 0; i < sizesArg.Length(); i++) {
    Napi::Value v = sizesArg.Get(i);
    if (!v.IsNumber()) throw Napi::TypeError::New(env, "\"sizes\" must hold numbers");
    int64_t n = v.As<Napi::Number>().Int64Value();
    if (n < 0) throw Napi::TypeError::New(env, "\"sizes\" must not be negative");
    sizes[i] = static_cast<uint64_t>(n);
  }
  std::string frames;
  std::vector<uint64_t> frameLengths;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsBuffer() || !info[4].IsArray()) throw Napi::TypeError::New(env, "\"frames\" must be a Buffer with an array of lengths");
    auto bytes = info[3].As<Napi::Buffer<char>>();
    frames.assign(bytes.Data(), bytes.Length());
    Napi::Array lengths = info[4].As<Napi::Array>();
    if (lengths.Length() != paths.size() + 1) throw Napi::TypeError::New(env, "\"frames\" must have one length per path plus one");
    uint64_t sum = 0;
    for (uint32_t i = 0; i < lengths.Length(); i++) {
      Napi::Value v = lengths.Get(i);
      if (!v.IsNumber() || v.As<Napi::Number>().Int64Value() < 0) throw Napi::TypeError::New(env, "frame lengths must be numbers >= 0");
      frameLengths.push_back(static_cast<uint64_t>(v.As<Napi::Number>().Int64Value()));
      sum += frameLengths.back();
    }
    if (sum != frames.size()) throw Napi::TypeError::New(env, "frame lengths must add up to the frames' bytes");
  }
  auto* w = new ReadFilesWorker(env, std::move(root), std::move(paths), std::move(sizes), std::move(frames), std::move(frameLengths));
  return w->Start();
}

}  // namespace ogd
