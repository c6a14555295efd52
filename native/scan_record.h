// The packed form of a scanned entry that scanTree and compareTrees hand to JS
// (lib/native.ts decodeScan reads it): kScanSlots little-endian u64 slots per entry,
// its path in a names buffer, its link target and xattrs (each name NUL, u32 LE
// length, value) in an extra buffer.
#pragma once
#include <sys/stat.h>

#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "tree_walk.h"

namespace ogd {

constexpr size_t kScanSlots = 11;

struct ScanRecords {
  std::vector<uint64_t> records;
  std::vector<char> names;
  std::vector<char> extra;

  static uint64_t Pack(uint32_t lo, uint32_t hi) { return static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << 32); }

  // Appends one entry.
  void Append(const std::string& rel, const struct stat& st, const std::string& linkTarget, const std::vector<Xattr>& xattrs) {
    uint32_t extraOff = static_cast<uint32_t>(extra.size());
    extra.insert(extra.end(), linkTarget.begin(), linkTarget.end());
    for (const Xattr& x : xattrs) {
      extra.insert(extra.end(), x.name.begin(), x.name.end());
      extra.push_back('\0');
      uint32_t len = static_cast<uint32_t>(x.value.size());
      for (int b = 0; b < 4; b++) extra.push_back(static_cast<char>((len >> (8 * b)) & 0xff));
      extra.insert(extra.end(), x.value.begin(), x.value.end());
    }
    uint32_t nameOff = static_cast<uint32_t>(names.size());
    names.insert(names.end(), rel.begin(), rel.end());
    uint64_t slots[kScanSlots] = {
        Pack(nameOff, static_cast<uint32_t>(rel.size())),
        Pack(st.st_mode, static_cast<uint32_t>(st.st_nlink)),
        Pack(st.st_uid, st.st_gid),
        static_cast<uint64_t>(st.st_size),
        static_cast<uint64_t>(st.st_ino),
        static_cast<uint64_t>(st.st_dev),
        static_cast<uint64_t>(st.st_rdev),
        static_cast<uint64_t>(static_cast<int64_t>(st.st_mtim.tv_sec)),
        static_cast<uint64_t>(st.st_mtim.tv_nsec),
        Pack(extraOff, static_cast<uint32_t>(extra.size()) - extraOff),
        Pack(static_cast<uint32_t>(xattrs.size()), static_cast<uint32_t>(linkTarget.size())),
    };
    records.insert(records.end(), slots, slots + kScanSlots);
  }

  // The three buffers as { records: ArrayBuffer, names: Buffer, extra: Buffer } (on the JS thread).
  void SetOn(Napi::Env env, Napi::Object out) const {
    // An ArrayBuffer (not a pooled Buffer) so JS can view it as aligned 64-bit slots.
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, records.size() * sizeof(uint64_t));
    if (!records.empty()) std::memcpy(ab.Data(), records.data(), records.size() * sizeof(uint64_t));
    out.Set("records", ab);
    out.Set("names", Napi::Buffer<char>::Copy(env, names.data(), names.size()));
    out.Set("extra", Napi::Buffer<char>::Copy(env, extra.data(), extra.size()));
  }
};

}  // namespace ogd
