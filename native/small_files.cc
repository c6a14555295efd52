// Small files read and replaced in one pool trip each: the store's records and mount
// references (a few hundred bytes) are read and written on every mount and unmount,
// and node:fs would spend a trip on each of open, fstat, read, read, close (readFile)
// or open, write, (fsync,) close (then the caller's rename): the waits, not the
// bytes, were the cost.
#include <fcntl.h>
#include <sys/stat.h>
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
  // O_NONBLOCK: a fifo planted where a record belongs must not hang a pool thread.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return errno;
  Fd file(fd);
  syscall = "fstat";
  struct stat st;
  if (::fstat(fd, &st) != 0) return errno;
  syscall = "read";
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (!S_ISREG(st.st_mode)) return EINVAL;  // a fifo, socket or device is no small file
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxSmall) return EFBIG;
    // A regular file reads short only at its end: no second read to learn it.
    if (static_cast<size_t>(n) < sizeof buf) return 0;
  }
}

bool WriteNew(const std::string& tmp, const std::string& data, bool durable, const std::string& renameTo, SysFailure& failure) {
  // A failed write leaves no file behind.
  auto undo = [&](int fd, const SysFailure& f) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    failure = f;
    return false;
  };
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    failure = Failure(errno, "open", tmp);
    return false;
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return undo(fd, Failure(errno, "write", tmp));
    done += static_cast<size_t>(n);
  }
  if (durable && ::fsync(fd) != 0) return undo(fd, Failure(errno, "fsync", tmp));
  if (::close(fd) != 0) return undo(-1, Failure(errno, "close", tmp));
  if (!renameTo.empty() && ::rename(tmp.c_str(), renameTo.c_str()) != 0) return undo(-1, Failure(errno, "rename", tmp, renameTo));
  return true;
}

FileChange FileChangeArg(const Napi::CallbackInfo& info, size_t i) {
  FileChange change;
  if (info.Length() <= i || info[i].IsUndefined()) return change;
  Napi::Env env = info.Env();
  if (!info[i].IsObject()) throw Napi::TypeError::New(env, "A file change must be an object");
  Napi::Object o = info[i].As<Napi::Object>();
  auto path = [&](const char* key) {
    Napi::Value v = o.Get(key);
    if (!v.IsString()) throw Napi::TypeError::New(env, std::string("A file change's \"") + key + "\" must be a path");
    std::string p = v.As<Napi::String>().Utf8Value();
    if (p.empty() || p.find('\0') != std::string::npos) throw Napi::TypeError::New(env, std::string("A file change's \"") + key + "\" must be a non-empty path without NUL");
    return p;
  };
  if (o.Has("remove")) {
    change.kind = FileChange::Kind::kRemove;
    change.dest = path("remove");
    return change;
  }
  Napi::Value data = o.Get("data");
  if (!data.IsBuffer()) throw Napi::TypeError::New(env, "A file change's \"data\" must be a Buffer");
  auto buf = data.As<Napi::Buffer<char>>();
  change.kind = FileChange::Kind::kReplace;
  change.tmp = path("tmp");
  change.dest = path("dest");
  change.data.assign(buf.Data(), buf.Length());
  return change;
}

bool ApplyFileChange(const FileChange& change, SysFailure& failure) {
  switch (change.kind) {
    case FileChange::Kind::kNone:
      return true;
    case FileChange::Kind::kReplace:
      return WriteNew(change.tmp, change.data, false, change.dest, failure);
    case FileChange::Kind::kRemove:
      if (::unlink(change.dest.c_str()) == 0 || errno == ENOENT) return true;
      failure = Failure(errno, "unlink", change.dest);
      return false;
  }
  return true;
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
    SysFailure failure;
    if (!WriteNew(tmp_, data_, durable_, renameTo_, failure)) Fail(failure);
  }

 private:
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
