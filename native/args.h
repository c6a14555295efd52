// Argument checks for the exported functions. Real validation happens in
// lib/native.ts before a call gets here; these only guard types, so a wrong call
// throws a TypeError instead of crashing the process.
#pragma once
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace ogd {

// A path given as a string (UTF-8) or a Buffer (raw bytes, for names that are not
// valid UTF-8). Paths never contain NUL.
inline std::string PathArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  std::string out;
  if (v.IsString()) {
    out = v.As<Napi::String>().Utf8Value();
  } else if (v.IsBuffer()) {
    auto buf = v.As<Napi::Buffer<char>>();
    out.assign(buf.Data(), buf.Length());
  } else {
    throw Napi::TypeError::New(info.Env(), std::string("The \"") + name + "\" argument must be a string or Buffer");
  }
  if (out.find('\0') != std::string::npos) {
    throw Napi::TypeError::New(info.Env(), std::string("The \"") + name + "\" argument must not contain null bytes");
  }
  return out;
}

inline std::string StringArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string("The \"") + name + "\" argument must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}

inline int64_t IntArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (!info[i].IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string("The \"") + name + "\" argument must be a number");
  }
  return info[i].As<Napi::Number>().Int64Value();
}

inline bool ArgIsBuffer(const Napi::CallbackInfo& info, size_t i) { return info[i].IsBuffer(); }

// Returns bytes as a Buffer when the caller gave Buffers, else as a UTF-8 string.
inline Napi::Value PathValue(Napi::Env env, const std::string& s, bool asBuffer) {
  if (asBuffer) return Napi::Buffer<char>::Copy(env, s.data(), s.size());
  return Napi::String::New(env, s);
}

}  // namespace ogd
