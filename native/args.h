// Argument checks for the exported functions. Real validation happens in
// lib/native.ts before a call gets here; these only guard types, so a wrong call
// throws a TypeError instead of crashing the process.
#pragma once
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "id_maps.h"

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

// Id maps given as containerId, hostId, size triples (an option of a native job).
inline std::vector<IdRange> MapsArg(Napi::Env env, Napi::Value v, const char* name) {
  std::vector<IdRange> out;
  if (v.IsUndefined()) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(env, std::string("\"") + name + "\" must be an array of numbers");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() % 3 != 0) throw Napi::TypeError::New(env, std::string("\"") + name + "\" must hold container, host, size triples");
  for (uint32_t i = 0; i < a.Length(); i += 3) {
    uint64_t n[3];
    for (uint32_t k = 0; k < 3; k++) {
      Napi::Value x = a.Get(i + k);
      if (!x.IsNumber() || x.As<Napi::Number>().DoubleValue() < 0) throw Napi::TypeError::New(env, std::string("\"") + name + "\" must hold numbers >= 0");
      n[k] = static_cast<uint64_t>(x.As<Napi::Number>().Int64Value());
    }
    out.push_back(IdRange{n[0], n[1], n[2]});
  }
  return out;
}

}  // namespace ogd
