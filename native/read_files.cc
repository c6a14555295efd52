// readFiles: the file contents of a layer export, read in one pool job per group of
// files (a pool trip per open/read/close would cost more than the reading), either
// handed to JS as one Buffer or, framed as tar, written straight to a file
// descriptor.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "block_pool.h"
#include "exports.h"
#include "fd.h"
#include "tar_out.h"
#include "worker.h"

namespace ogd {
namespace {

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

// Results up to this size are malloc'd (capacity 0), bigger ones come from the pool.
constexpr uint64_t kSmallResult = 256 * 1024;

void Release(char* data, size_t capacity) {
  if (capacity == 0) std::free(data);
  else Pool().Give(data, capacity);
}

class ReadFilesWorker : public PromiseWorker {
 public:
  ReadFilesWorker(Napi::Env env, std::string root, std::vector<std::string> paths, std::vector<uint64_t> sizes,
                  std::string frames, std::vector<uint64_t> frameLengths, int out)
      : PromiseWorker(env),
        root_(std::move(root)),
        paths_(std::move(paths)),
        sizes_(std::move(sizes)),
        frames_(std::move(frames)),
        frameLengths_(std::move(frameLengths)),
        out_(out) {}
  ~ReadFilesWorker() override {
    if (data_ != nullptr) Release(data_, capacity_);
  }

  void Execute() override {
    if (out_ >= 0) return WriteOut();
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

  // The framed bytes written to out_ instead of returned: small files go through one
  // reused buffer (one write per few MiB), big ones straight from the file by
  // sendfile, so content never enters JS and no fresh memory is faulted in.
  void WriteOut() {
    Fd rootFd(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (rootFd.get() < 0) return Fail(Failure(errno, "open", root_));
    size_t capacity = 0;
    char* buf = Pool().Take(kOutBuffer, capacity);
    if (buf == nullptr) return Fail(Failure(ENOMEM, "readFiles", root_));
    OutBuffer out{out_, buf, capacity};
    WriteFramed(rootFd.get(), out);
    if (!Failed() && shrunk_ < 0 && !out.Flush()) Fail(Failure(errno, "write"));
    written_ = out.written;
    Pool().Give(buf, capacity);
  }

  void WriteFramed(int rootFd, OutBuffer& out) {
    const char* frame = frames_.data();
    for (size_t i = 0; i <= paths_.size(); i++) {
      if (!out.Put(frame, frameLengths_[i])) return Fail(Failure(errno, "write"));
      frame += frameLengths_[i];
      if (i == paths_.size()) break;
      Fd file(OpenRelative(rootFd, paths_[i]));
      if (file.get() < 0) return Fail(Failure(errno, "open", root_ + "/" + paths_[i]));
      SysFailure failure;
      uint64_t done = CopyContent(file.get(), sizes_[i], root_ + "/" + paths_[i], out, failure);
      if (failure.err != 0) return Fail(failure);
      if (done < sizes_[i]) {
        shrunk_ = static_cast<int64_t>(i);
        return;
      }
      if (!out.Zeros(Padding(sizes_[i]))) return Fail(Failure(errno, "write"));
    }
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    if (out_ >= 0) {
      out.Set("data", Napi::Buffer<char>::New(env, 0));
      out.Set("shrunk", Napi::Number::New(env, static_cast<double>(shrunk_)));
      out.Set("written", Napi::Number::New(env, static_cast<double>(written_)));
      return out;
    }
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
  int out_;  // -1: return the bytes; else write them to this fd (not owned)
  uint64_t written_ = 0;
  char* data_ = nullptr;
  size_t capacity_ = 0;
  uint64_t total_ = 0;
  int64_t shrunk_ = -1;
};

}  // namespace

// readFiles(root, paths: Buffer (relative paths, each ended by NUL), sizes: number[],
//           frames?: Buffer, frameLengths?: number[])
//   -> Promise<{data: Buffer, shrunk: number}>: the files' first `sizes[i]` bytes, end to
// end; `shrunk` is the index of a file that ended early (-1: none), where reading stopped.
// With frames, the result is a piece of tar: frame 0, file 0 padded to 512 bytes,
// frame 1, ..., the last frame (headers in the frames), so export copies nothing in JS.
// With an fd as well (6th argument), that piece is written to the fd instead, and the
// result says how many bytes (`written`).
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
  int out = -1;
  if (info.Length() > 5 && !info[5].IsUndefined()) {
    if (!info[5].IsNumber() || info[5].As<Napi::Number>().Int32Value() < 0) throw Napi::TypeError::New(env, "\"fd\" must be a file descriptor");
    if (frameLengths.empty()) throw Napi::TypeError::New(env, "writing to \"fd\" needs frames");
    out = info[5].As<Napi::Number>().Int32Value();
  }
  auto* w = new ReadFilesWorker(env, std::move(root), std::move(paths), std::move(sizes), std::move(frames), std::move(frameLengths), out);
  return w->Start();
}

}  // namespace ogd
