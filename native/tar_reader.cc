#include "tar_reader.h"

#include <cstring>

#include "apply_error.h"

namespace ogd {
namespace {

constexpr size_t kBlock = 512;
constexpr uint64_t kMaxSafe = (1ULL << 53) - 1;  // what JS numbers carry exactly

std::string At(uint64_t offset) { return std::to_string(offset); }

ApplyError Truncated(uint64_t at) {
  return ApplyError::Invalid("truncated tar stream: the input ended inside the entry at offset " + At(at));
}

ApplyError BadHeader(uint64_t at, const std::string& what) { return ApplyError::Invalid("invalid tar header at offset " + At(at) + ": " + what); }

ApplyError BadPax(uint64_t at, const std::string& what) { return ApplyError::Invalid("invalid PAX header at offset " + At(at) + ": " + what); }

uint64_t Padding(uint64_t size) { return (kBlock - size % kBlock) % kBlock; }

bool IsZero(const unsigned char* b) {
  for (size_t i = 0; i < kBlock; i++)
    if (b[i] != 0) return false;
  return true;
}

// A numeric header field: octal text, or GNU base-256 when the high bit is set.
uint64_t Number(const unsigned char* b, size_t off, size_t len, const char* field, uint64_t at) {
  unsigned char first = b[off];
  if (first & 0x80) {
    if (first == 0xff) throw BadHeader(at, std::string("negative ") + field);
    uint64_t v = first & 0x7f;
    for (size_t i = 1; i < len; i++) {
      if (v > (kMaxSafe >> 8)) throw BadHeader(at, std::string(field) + " too large");
      v = v * 256 + b[off + i];
    }
    if (v > kMaxSafe) throw BadHeader(at, std::string(field) + " too large");
    return v;
  }
  size_t i = off, end = off + len;
  while (i < end && (b[i] == ' ' || b[i] == 0)) i++;
  uint64_t v = 0;
  for (; i < end; i++) {
    unsigned char c = b[i];
    if (c == ' ' || c == 0) break;
    if (c < '0' || c > '7') throw BadHeader(at, std::string(field) + " field is not octal");
    v = v * 8 + (c - '0');
  }
  for (; i < end; i++)
    if (b[i] != ' ' && b[i] != 0) throw BadHeader(at, std::string(field) + " field is not octal");
  return v;
}

// A field that may be negative (an mtime before 1970): GNU tar and Go write it in
// base-256 two's complement, 0xff first.
int64_t SignedNumber(const unsigned char* b, size_t off, size_t len, const char* field, uint64_t at) {
  if (b[off] != 0xff) return static_cast<int64_t>(Number(b, off, len, field, at));
  uint64_t v = 0;  // the complement's magnitude: -(v + 1)
  for (size_t i = 1; i < len; i++) {
    if (v > (kMaxSafe >> 8)) throw BadHeader(at, std::string(field) + " too large");
    v = v * 256 + (0xff - b[off + i]);
  }
  if (v > kMaxSafe) throw BadHeader(at, std::string(field) + " too large");
  return -static_cast<int64_t>(v) - 1;
}

void VerifyChecksum(const unsigned char* b, uint64_t at) {
  int64_t unsignedSum = 8 * 0x20, signedSum = 8 * 0x20;
  for (size_t i = 0; i < kBlock; i++) {
    if (i >= 148 && i < 156) continue;
    unsignedSum += b[i];
    signedSum += static_cast<signed char>(b[i]);
  }
  int64_t stored = static_cast<int64_t>(Number(b, 148, 8, "checksum", at));
  if (stored != unsignedSum && stored != signedSum) throw BadHeader(at, "bad checksum (not a tar, or corrupt)");
}

std::string CString(const char* p, size_t len) { return std::string(p, strnlen(p, len)); }

bool AllDigits(std::string_view s, size_t maxLen) {
  if (s.empty() || s.size() > maxLen) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// PAX keys that override a header field.
bool IsOverride(const std::string& key) {
  return key == "path" || key == "linkpath" || key == "size" || key == "uid" || key == "gid" || key == "mtime" || key == "atime";
}

uint64_t PaxInt(std::string_view v, const std::string& key, uint64_t at) {
  if (!AllDigits(v, 16)) throw BadPax(at, key + " is not a number");
  uint64_t n = std::stoull(std::string(v));
  if (n > kMaxSafe) throw BadPax(at, key + " is too large");
  return n;
}

// "[-]seconds[.fraction]"; "-1.5" is 1.5 s before the epoch.
struct timespec PaxTime(std::string_view v, const std::string& key, uint64_t at) {
  std::string_view s = v;
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  size_t dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  if (!AllDigits(whole, 15)) throw BadPax(at, key + " is not a time");
  long nsec = 0;
  if (dot != std::string_view::npos) {
    std::string_view frac = s.substr(dot + 1);
    if (frac.empty()) throw BadPax(at, key + " is not a time");
    for (char c : frac)
      if (c < '0' || c > '9') throw BadPax(at, key + " is not a time");
    for (size_t i = 0; i < 9; i++) nsec = nsec * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  }
  int64_t sec = std::stoll(std::string(whole));
  struct timespec t;
  if (negative) {
    t.tv_sec = static_cast<time_t>(nsec > 0 ? -sec - 1 : -sec);
    t.tv_nsec = nsec > 0 ? 1000000000L - nsec : 0;
  } else {
    t.tv_sec = static_cast<time_t>(sec);
    t.tv_nsec = nsec;
  }
  return t;
}

// PAX records: "<len> <key>=<value>\n". Later records (and later 'x' headers) override earlier ones.
void ParsePax(const std::string& buf, uint64_t at, std::vector<std::pair<std::string, std::string>>& out) {
  size_t pos = 0;
  while (pos < buf.size()) {
    size_t sp = pos;
    while (sp < buf.size() && buf[sp] != ' ') sp++;
    std::string_view lenText(buf.data() + pos, sp - pos);
    if (!AllDigits(lenText, 10) || lenText[0] == '0') throw BadPax(at, "malformed record");
    uint64_t len = std::stoull(std::string(lenText));
    uint64_t end = pos + len;
    if (end > buf.size() || buf[end - 1] != '\n') throw BadPax(at, "malformed record");
    size_t eq = buf.find('=', sp + 1);
    if (eq == std::string::npos || eq >= end) throw BadPax(at, "malformed record");
    std::string key = buf.substr(sp + 1, eq - sp - 1);
    std::string value = buf.substr(eq + 1, end - 1 - (eq + 1));
    bool replaced = false;
    for (auto& kv : out) {
      if (kv.first == key) {
        kv.second = std::move(value);
        replaced = true;
        break;
      }
    }
    if (!replaced) out.emplace_back(std::move(key), std::move(value));
    pos = end;
  }
}

}  // namespace

// ---- TarInput ----

bool TarInput::Ensure() {
  while (at_ >= block_.size()) {
    if (ended_) return false;
    at_ = 0;
    switch (queue_.Next(block_, stop_, onDrain_)) {
      case ChunkQueue::Pull::kData:
        taken_ += block_.size();
        if (sha_ != nullptr) sha_->Update(block_.data(), block_.size());
        break;
      case ChunkQueue::Pull::kEnd:
        block_.clear();
        ended_ = true;
        return false;
      case ChunkQueue::Pull::kFailed:
        throw ApplyError{ApplyError::kSourceFailed, {}, {}, {}};
      case ChunkQueue::Pull::kStopped:
        throw ApplyError{ApplyError::kAborted, {}, {}, {}};
    }
  }
  return true;
}

std::string_view TarInput::Take(size_t max) {
  if (max == 0 || !Ensure()) return {};
  size_t n = std::min(max, block_.size() - at_);
  std::string_view v(block_.data() + at_, n);
  at_ += n;
  position_ += n;
  return v;
}

bool TarInput::Read(char* dst, size_t n) {
  while (n > 0) {
    std::string_view v = Take(n);
    if (v.empty()) return false;
    memcpy(dst, v.data(), v.size());
    dst += v.size();
    n -= v.size();
  }
  return true;
}

bool TarInput::Skip(uint64_t n) {
  while (n > 0) {
    std::string_view v = Take(n > SIZE_MAX ? SIZE_MAX : static_cast<size_t>(n));
    if (v.empty()) return false;
    n -= v.size();
  }
  return true;
}

bool TarInput::AtEnd() { return !Ensure(); }

void TarInput::Drain() {
  while (!Take(SIZE_MAX).empty()) {
  }
}

// ---- TarReader ----

void TarReader::SkipRest() {
  uint64_t n = bodyLeft_ + padLeft_;
  uint64_t at = in_.position();
  bodyLeft_ = padLeft_ = 0;
  if (!in_.Skip(n)) throw Truncated(at);
}

std::string_view TarReader::Body() {
  if (bodyLeft_ == 0) {
    if (padLeft_ > 0) SkipRest();
    return {};
  }
  uint64_t at = in_.position();
  std::string_view v = in_.Take(bodyLeft_ > SIZE_MAX ? SIZE_MAX : static_cast<size_t>(bodyLeft_));
  if (v.empty()) throw Truncated(at);
  bodyLeft_ -= v.size();
  return v;
}

bool TarReader::Next(TarEntry& e) {
  SkipRest();
  std::vector<std::pair<std::string, std::string>> pax;
  bool hasMeta = false, hasLongName = false, hasLongLink = false;
  std::string longName, longLink;
  uint64_t start = in_.position();
  unsigned char b[kBlock];
  for (;;) {
    uint64_t headerAt = in_.position();
    if (in_.AtEnd()) {
      if (hasMeta) throw Truncated(headerAt);
      return false;  // end of input at a block boundary: tolerated, as GNU tar and Go do
    }
    if (!in_.Read(reinterpret_cast<char*>(b), kBlock)) throw Truncated(headerAt);
    if (IsZero(b)) {
      // The end is two zero blocks; a lone zero block followed by data is corrupt.
      if (in_.AtEnd()) return false;
      uint64_t secondAt = in_.position();
      if (!in_.Read(reinterpret_cast<char*>(b), kBlock)) throw Truncated(secondAt);
      if (!IsZero(b)) throw BadHeader(headerAt, "zero block inside the archive");
      return false;
    }
    if (headerAt == 0 && b[0] == 0x1f && b[1] == 0x8b) throw ApplyError::Invalid("the layer is gzip-compressed; an uncompressed tar is expected here");
    if (headerAt == 0 && b[0] == 0x28 && b[1] == 0xb5 && b[2] == 0x2f && b[3] == 0xfd) {
      throw ApplyError::Invalid("the layer is zstd-compressed; an uncompressed tar is expected here");
    }
    VerifyChecksum(b, headerAt);
    char flag = static_cast<char>(b[156]);
    uint64_t size = Number(b, 124, 12, "size", headerAt);
    if (flag == 'x' || flag == 'g' || flag == 'L' || flag == 'K') {
      if (size > kMaxMetaBytes) {
        const char* what = flag == 'x' ? "PAX" : flag == 'g' ? "global PAX" : flag == 'L' ? "GNU long name" : "GNU long link name";
        throw ApplyError::Invalid(std::string("tar ") + what + " header at offset " + At(headerAt) + " is " + std::to_string(size) + " bytes (limit " +
                                  std::to_string(kMaxMetaBytes) + ")");
      }
      std::string body(size, '\0');
      if (!in_.Read(body.data(), size) || !in_.Skip(Padding(size))) throw Truncated(headerAt);
      hasMeta = true;
      if (flag == 'x') {
        ParsePax(body, headerAt, pax);
      } else if (flag == 'L') {
        longName = CString(body.data(), body.size());
        hasLongName = true;
      } else if (flag == 'K') {
        longLink = CString(body.data(), body.size());
        hasLongLink = true;
      }
      continue;
    }

    const char* h = reinterpret_cast<const char*>(b);
    bool v7 = memcmp(h + 257, "ustar", 5) != 0;
    e.name = CString(h, 100);
    if (memcmp(h + 257, "ustar\0", 6) == 0 && h[345] != 0) e.name = CString(h + 345, 155) + "/" + e.name;
    e.linkname = CString(h + 157, 100);
    if (hasLongName) e.name = std::move(longName);
    if (hasLongLink) e.linkname = std::move(longLink);
    e.offset = start;
    e.size = size;
    e.mode = static_cast<uint32_t>(Number(b, 100, 8, "mode", start) & 07777);
    e.uid = Number(b, 108, 8, "uid", start);
    e.gid = Number(b, 116, 8, "gid", start);
    e.mtime.tv_sec = static_cast<time_t>(SignedNumber(b, 136, 12, "mtime", start));
    e.mtime.tv_nsec = 0;
    e.hasAtime = false;
    e.atime = {};
    e.xattrs.clear();
    for (auto& [key, value] : pax) {
      // An empty value deletes the override (POSIX): the header's field stands, as Go reads it.
      if (value.empty() && IsOverride(key)) continue;
      if (key == "path" || key == "linkpath") {
        if (value.find('\0') != std::string::npos) throw BadPax(headerAt, key + " contains a NUL byte");
        (key == "path" ? e.name : e.linkname) = value;
      } else if (key == "size") {
        e.size = PaxInt(value, key, headerAt);
      } else if (key == "uid") {
        e.uid = PaxInt(value, key, headerAt);
      } else if (key == "gid") {
        e.gid = PaxInt(value, key, headerAt);
      } else if (key == "mtime") {
        e.mtime = PaxTime(value, key, headerAt);
      } else if (key == "atime") {
        e.atime = PaxTime(value, key, headerAt);
        e.hasAtime = true;
      } else if (key.compare(0, 13, "SCHILY.xattr.") == 0) {
        e.xattrs.emplace_back(key.substr(13), value);
      } else if (key.compare(0, 11, "GNU.sparse.") == 0) {
        throw ApplyError::Invalid("sparse file at offset " + At(headerAt) + ": GNU sparse tars are not supported", e.name);
      }
    }
    switch (flag) {
      case 0:
      case '0':
      case '7':  // contiguous file
        // Pre-POSIX tars (a NUL flag, or a V7 header without the ustar magic) mark a
        // directory by a trailing slash on the final name (after GNU L and PAX path,
        // never the header's field: Go puts only an ASCII remainder there, and a long
        // name cut at 100 bytes may end in '/'). A POSIX or GNU flag '0' is a file.
        e.type = (flag == 0 || v7) && !e.name.empty() && e.name.back() == '/' ? '5' : '0';
        break;
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
        e.type = flag;
        break;
      case 'S':
        throw ApplyError::Invalid("sparse file at offset " + At(start) + ": GNU sparse tars are not supported", e.name);
      default: {
        char c[2] = {flag, 0};
        throw ApplyError::Invalid(std::string("unsupported tar entry type '") + (flag >= 0x20 && flag < 0x7f ? c : "?") + "' at offset " + At(start), e.name);
      }
    }
    if (e.type == '3' || e.type == '4') {
      e.devmajor = Number(b, 329, 8, "devmajor", start);
      e.devminor = Number(b, 337, 8, "devminor", start);
    } else {
      e.devmajor = e.devminor = 0;
    }
    bodyLeft_ = e.size;
    padLeft_ = Padding(e.size);
    return true;
  }
}

}  // namespace ogd
