// Small files read and replaced in one pool trip each: the store's records and mount
// references (a few hundred bytes) are read and written on every mount and unmount,
// and node:fs would spend a trip on each of open, fstat, read, read, close (readFile)
// or open, write, (fsync,) close (then the caller's rename): the waits, not the
// bytes, were the cost.
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "args.h"
#include "exports.h"
#include "fd.h"
#include "small_files.h"
#include "worker.h"

namespace ogd {

// Files bigger than this are not "small": refused with EFBIG rather than read whole.
constexpr size_t kMaxSmall = 16 * 1024 * 1024;

int ReadSmall(const std::string& path, std::string& data, const char*& syscall) {
  data.clear();
  syscall = "open";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno;
  Fd file(fd);
  syscall = "read";
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return 0;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxSmall) return EFBIG;
  }
}

namespace {

class ReadSmallWorker : public PromiseWorker {
 public:
  ReadSmallWorker(Napi::Env env, std::string path) : PromiseWorker(env), path_(std::move(path)) {}

  void Execute() override {
    const char* syscall = "open";
    int err = ReadSmall(path_, data_, syscall);
    if (err == ENOENT) return;  // missing: resolves to undefined
    if (err != 0) return Fail(Failure(err, syscall, path_));
    found_ = true;
  }

  Napi::Value Result(Napi::Env env) override {
    if (!found_) return env.Undefined();
    return Napi::Buffer<char>::Copy(env, data_.data(), data_.size());
  }

 private:
  std::string path_;
  std::string data_;
  bool found_ = false;
};

class WriteNewWorker : public PromiseWorker {
 public:
  WriteNewWorker(Napi::Env env, std::string tmp, std::string data, bool durable, std::string renameTo)
      : PromiseWorker(env), tmp_(std::move(tmp)), data_(std::move(data)), durable_(durable), renameTo_(std::move(renameTo)) {}

  void Execute() override {
    int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Fail(Failure(errno, "open", tmp_));
    size_t done = 0;
    while (done < data_.size()) {
      ssize_t n = ::write(fd, data_.data() + done, data_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Undo(fd, Failure(errno, "write", tmp_));
      done += static_cast<size_t>(n);
    }
    if (durable_ && ::fsync(fd) != 0) return Undo(fd, Failure(errno, "fsync", tmp_));
    if (::close(fd) != 0) return Undo(-1, Failure(errno, "close", tmp_));
    if (!renameTo_.empty() && ::rename(tmp_.c_str(), renameTo_.c_str()) != 0) return Undo(-1, Failure(errno, "rename", tmp_));
  }

 private:
  // A failed write leaves no file behind.
  void Undo(int fd, const SysFailure& failure) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp_.c_str());
    Fail(failure);
  }

  std::string tmp_;
  std::string data_;
  bool durable_;
  std::string renameTo_;
};

}  // namespace

// readSmallFile(path) -> Promise<Buffer | undefined>: the whole file (a symlink is
// refused, ELOOP), undefined when it does not exist.
Napi::Value ReadSmallFile(const Napi::CallbackInfo& info) {
  return (new ReadSmallWorker(info.Env(), PathArg(info, 0, "path")))->Start();
}

// writeNewFile(path, data, durable, renameTo?) -> Promise<void>: creates `path`
// (O_EXCL, 0600), writes `data`, when `durable` fsyncs it, and when `renameTo` is
// given renames it there, all in the one trip. A failure removes what it created.
Napi::Value WriteNewFile(const Napi::CallbackInfo& info) {
  std::string path = PathArg(info, 0, "path");
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(info.Env(), "The \"data\" argument must be a Buffer");
  auto buf = info[1].As<Napi::Buffer<char>>();
  bool durable = info[2].ToBoolean().Value();
  std::string renameTo = info.Length() > 3 && !info[3].IsUndefined() ? PathArg(info, 3, "renameTo") : std::string();
  return (new WriteNewWorker(info.Env(), std::move(path), std::string(buf.Data(), buf.Length()), durable, std::move(renameTo)))->Start();
}

}  // namespace ogd
