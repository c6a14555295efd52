// Errors shaped like Node's own fs errors (lib/internal/errors.js uvException):
//   "ENOENT: no such file or directory, mount 'src' -> 'dst'"
// with .code, .errno (negative, as libuv reports it), .syscall, .path and .dest,
// so callers can treat a failure of the addon exactly like a failure of node:fs.
#pragma once
#include <napi.h>
#include <uv.h>

#include <string>

namespace ogd {

// One failed syscall, captured on a worker thread and turned into a JS Error
// later on the JS thread (no JS values may be touched off-thread).
struct SysFailure {
  int err = 0;                // positive errno
  std::string syscall;
  std::string path;
  std::string dest;
  bool hasPath = false;
  bool hasDest = false;
};

inline Napi::Error SysError(Napi::Env env, const SysFailure& f) {
  const char* code = uv_err_name(-f.err);
  std::string message = std::string(code) + ": " + uv_strerror(-f.err) + ", " + f.syscall;
  if (f.hasPath) message += " '" + f.path + "'";
  if (f.hasDest) message += " -> '" + f.dest + "'";
  Napi::Error error = Napi::Error::New(env, message);
  Napi::Object obj = error.Value();
  obj.Set("errno", Napi::Number::New(env, -f.err));
  obj.Set("code", Napi::String::New(env, code));
  obj.Set("syscall", Napi::String::New(env, f.syscall));
  if (f.hasPath) obj.Set("path", Napi::String::New(env, f.path));
  if (f.hasDest) obj.Set("dest", Napi::String::New(env, f.dest));
  return error;
}

inline SysFailure Failure(int err, const char* syscall) {
  SysFailure f;
  f.err = err;
  f.syscall = syscall;
  return f;
}

inline SysFailure Failure(int err, const char* syscall, const std::string& path) {
  SysFailure f = Failure(err, syscall);
  f.path = path;
  f.hasPath = true;
  return f;
}

inline SysFailure Failure(int err, const char* syscall, const std::string& path, const std::string& dest) {
  SysFailure f = Failure(err, syscall, path);
  f.dest = dest;
  f.hasDest = true;
  return f;
}

}  // namespace ogd
