// An overlay mount through the new mount API (fsopen/fsconfig/fsmount/move_mount),
// off the JS thread. Why not mount(2): its option data is one page, so a stack of a
// few hundred lower dirs does not fit; "lowerdir+" (Linux 6.8) takes one lower per
// fsconfig call, with no length limit and no escaping of ',' ':' '\'.
//
// overlayfs caps one mount at 500 lower layers (OVL_MAX_STACK). A deeper stack gives
// its bottom layers as `base`: they become a detached read-only overlay (never
// attached anywhere), passed to the top mount as its lowest lower through
// /proc/self/fd/N. Only the bottom may be nested: a nested overlay hides its own
// whiteouts, so it must have nothing under it. overlayfs keeps a private clone of
// each layer, so the detached base goes away with the top mount.
//
// Syscalls by number, not glibc's wrappers (2.36+): the prebuilt addon needs only 2.34.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "args.h"
#include "exports.h"
#include "small_files.h"
#include "worker.h"

#ifndef FSOPEN_CLOEXEC
#define FSOPEN_CLOEXEC 0x00000001
#endif
#ifndef FSMOUNT_CLOEXEC
#define FSMOUNT_CLOEXEC 0x00000001
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
// enum fsconfig_command (linux/mount.h)
#define OGD_FSCONFIG_SET_FLAG 0
#define OGD_FSCONFIG_SET_STRING 1
#define OGD_FSCONFIG_CMD_CREATE 6

namespace ogd {
namespace {

int FsOpen(const char* fs) { return static_cast<int>(::syscall(SYS_fsopen, fs, FSOPEN_CLOEXEC)); }
int FsConfig(int fd, unsigned cmd, const char* key, const char* value) {
  return static_cast<int>(::syscall(SYS_fsconfig, fd, cmd, key, value, 0));
}
int FsMount(int fd, unsigned attrs) { return static_cast<int>(::syscall(SYS_fsmount, fd, FSMOUNT_CLOEXEC, attrs)); }
int MoveMount(int fd, const char* target) {
  return static_cast<int>(::syscall(SYS_move_mount, fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH));
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

class FsMountWorker : public PromiseWorker {
 public:
  FsMountWorker(Napi::Env env, std::string target, std::vector<std::string> lowers, std::vector<std::string> base,
                std::string upper, std::string work, std::vector<std::string> options, bool readOnly, FileChange after)
      : PromiseWorker(env), target_(std::move(target)), lowers_(std::move(lowers)), base_(std::move(base)),
        upper_(std::move(upper)), work_(std::move(work)), options_(std::move(options)), readOnly_(readOnly), after_(std::move(after)) {}

  void Execute() override {
    Fd base;
    std::vector<std::string> lowers = lowers_;
    if (!base_.empty()) {
      base.fd = Overlay(base_, "", "", {}, true);
      if (base.fd < 0) return;
      lowers.push_back("/proc/self/fd/" + std::to_string(base.fd));
    }
    Fd top;
    top.fd = Overlay(lowers, upper_, work_, options_, readOnly_);
    if (top.fd < 0) return;
    if (MoveMount(top.fd, target_.c_str()) != 0) return Fail(Failure(errno, "move_mount", target_));
    // As mount(2)'s job (mount.cc): the caller's file change right after, the mount undone when it fails.
    SysFailure failure;
    if (!ApplyFileChange(after_, failure)) {
      ::umount2(target_.c_str(), MNT_DETACH);
      Fail(failure);
    }
  }

  // The kernel's own words (read from the fs context: "overlayfs: too many lower
  // directories, limit is 500") say more than EINVAL alone.
  void Decorate(Napi::Error& error) override {
    if (log_.empty()) return;
    Napi::Object obj = error.Value();
    obj.Set("message", Napi::String::New(Env(), error.Message() + " (" + log_ + ")"));
    obj.Set("kernelMessage", Napi::String::New(Env(), log_));
  }

 private:
  // Returns a detached mount's fd, or -1 after Fail().
  int Overlay(const std::vector<std::string>& lowers, const std::string& upper, const std::string& work,
              const std::vector<std::string>& options, bool readOnly) {
    Fd ctx;
    ctx.fd = FsOpen("overlay");
    if (ctx.fd < 0) {
      Fail(Failure(errno, "fsopen", target_));
      return -1;
    }
    auto set = [&](const char* key, const std::string& value) -> bool {
      if (FsConfig(ctx.fd, OGD_FSCONFIG_SET_STRING, key, value.c_str()) == 0) return true;
      int err = errno;
      ReadLog(ctx.fd);
      Fail(Failure(err, "fsconfig", std::string(key) + "=" + value));
      return false;
    };
    for (const auto& l : lowers) {
      if (!set("lowerdir+", l)) return -1;
    }
    if (!upper.empty() && (!set("upperdir", upper) || !set("workdir", work))) return -1;
    for (const auto& o : options) {
      size_t eq = o.find('=');
      if (eq == std::string::npos) {
        if (FsConfig(ctx.fd, OGD_FSCONFIG_SET_FLAG, o.c_str(), nullptr) != 0) {
          int err = errno;
          ReadLog(ctx.fd);
          Fail(Failure(err, "fsconfig", o));
          return -1;
        }
      } else if (!set(o.substr(0, eq).c_str(), o.substr(eq + 1))) {
        return -1;
      }
    }
    if (FsConfig(ctx.fd, OGD_FSCONFIG_CMD_CREATE, nullptr, nullptr) != 0) {
      int err = errno;
      ReadLog(ctx.fd);
      Fail(Failure(err, "fsconfig", target_));
      return -1;
    }
    int m = FsMount(ctx.fd, readOnly ? MOUNT_ATTR_RDONLY : 0);
    if (m < 0) Fail(Failure(errno, "fsmount", target_));
    return m;
  }

  void ReadLog(int fd) {
    char buf[512];
    for (int i = 0; i < 8; i++) {
      ssize_t n = ::read(fd, buf, sizeof buf - 1);
      if (n <= 0) break;
      if (!log_.empty()) log_ += "; ";
      std::string line(buf, static_cast<size_t>(n));
      // Lines come as "e overlayfs: …": drop the severity letter.
      if (line.size() > 2 && line[1] == ' ') line = line.substr(2);
      log_ += line;
    }
  }

  std::string target_;
  std::vector<std::string> lowers_, base_;
  std::string upper_, work_;
  std::vector<std::string> options_;
  bool readOnly_;
  FileChange after_;
  std::string log_;
};

std::vector<std::string> PathList(const Napi::CallbackInfo& info, const Napi::Object& o, const char* key) {
  std::vector<std::string> out;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(info.Env(), std::string("The \"") + key + "\" option must be an array");
  auto a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) throw Napi::TypeError::New(info.Env(), std::string("The \"") + key + "\" option must hold strings");
    std::string s = e.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) throw Napi::TypeError::New(info.Env(), std::string("The \"") + key + "\" option must not contain null bytes");
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace

// mountOverlayFs(target, { lowers, base?, upper?, work?, options?, readOnly }, after?) -> Promise<void>
// lowers top first; base: the bottom layers, mounted as one nested read-only overlay;
// after: a file change made in the same job once the mount is in place (as mount's).
Napi::Value MountOverlayFs(const Napi::CallbackInfo& info) {
  std::string target = PathArg(info, 0, "target");
  if (!info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "The \"options\" argument must be an object");
  auto o = info[1].As<Napi::Object>();
  auto lowers = PathList(info, o, "lowers");
  auto base = PathList(info, o, "base");
  auto options = PathList(info, o, "options");
  std::string upper = o.Get("upper").IsString() ? o.Get("upper").As<Napi::String>().Utf8Value() : std::string();
  std::string work = o.Get("work").IsString() ? o.Get("work").As<Napi::String>().Utf8Value() : std::string();
  bool readOnly = o.Get("readOnly").ToBoolean().Value();
  auto* worker = new FsMountWorker(info.Env(), target, lowers, base, upper, work, options, readOnly, FileChangeArg(info, 2));
  return worker->Start();
}

}  // namespace ogd
