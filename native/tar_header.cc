// TarHeaderEncoder (see tar_header.h). Every rule mirrors lib/archive/tar-header.ts;
// a change there must be made here too (test/archive-pack-tree.test.ts compares the
// two byte for byte).
#include "tar_header.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace ogd {
namespace {

constexpr size_t kBlock = 512;
// Largest values the ustar numeric fields hold (octal digits + NUL).
constexpr uint64_t kMax7 = 07777777;
constexpr uint64_t kMax11 = 077777777777ULL;

bool IsAscii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80 || c == 0) return false;
  }
  return true;
}

// Splits a name into ustar's prefix (≤155) and name (≤100) fields at a '/': the last
// '/' that leaves ≤100 bytes after it and ≤155 before it (a directory's trailing '/'
// stays in the name). False when there is none.
bool SplitUstarName(std::string_view name, std::string_view& prefix, std::string_view& base) {
  if (name.size() <= 100) {
    prefix = std::string_view();
    base = name;
    return true;
  }
  if (name.size() > 256) return false;
  for (size_t i = name.size() - 1; i-- > 0;) {
    if (name[i] != '/') continue;
    if (name.size() - i - 1 > 100) return false;
    if (i <= 155 && i > 0) {
      prefix = name.substr(0, i);
      base = name.substr(i + 1);
      return true;
    }
  }
  return false;
}

// `value` as zero-padded octal digits and a NUL in the `width` bytes at `p`.
void WriteOctal(char* p, size_t width, uint64_t value) {
  p[width - 1] = '\0';
  for (size_t i = width - 1; i-- > 0;) {
    p[i] = static_cast<char>('0' + value % 8);
    value /= 8;
  }
}

void Copy(char* p, std::string_view s, size_t max) { std::memcpy(p, s.data(), std::min(s.size(), max)); }

// One ustar block at `b` (512 bytes, zeroed here).
void Ustar(char* b, const TarHeader& h, std::string_view linkname, std::string_view name, std::string_view prefix, char typeflag, uint64_t size) {
  std::memset(b, 0, kBlock);
  Copy(b, name, 100);
  WriteOctal(b + 100, 8, h.mode & 07777);
  WriteOctal(b + 108, 8, h.uid > kMax7 ? 0 : h.uid);
  WriteOctal(b + 116, 8, h.gid > kMax7 ? 0 : h.gid);
  WriteOctal(b + 124, 12, size > kMax11 ? 0 : size);
  WriteOctal(b + 136, 12, h.mtimeSec < 0 || static_cast<uint64_t>(h.mtimeSec) > kMax11 ? 0 : static_cast<uint64_t>(h.mtimeSec));
  std::memset(b + 148, ' ', 8);
  b[156] = typeflag;
  if (linkname.size() <= 100) Copy(b + 157, linkname, 100);
  std::memcpy(b + 257, "ustar\0" "00", 8);
  WriteOctal(b + 329, 8, h.devmajor);
  WriteOctal(b + 337, 8, h.devminor);
  Copy(b + 345, prefix, 155);
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; i++) sum += static_cast<unsigned char>(b[i]);
  WriteOctal(b + 148, 7, sum);
  b[155] = ' ';
}

size_t Digits(size_t n) { return std::to_string(n).size(); }

// One PAX record "LEN key=value\n", LEN counting the whole record including itself.
void AppendRecord(std::string& out, std::string_view key, std::string_view value) {
  size_t body = key.size() + value.size() + 3;
  size_t len = body + 1;
  while (Digits(len) + body != len) len = Digits(len) + body;
  out += std::to_string(len);
  out += ' ';
  out += key;
  out += '=';
  out += value;
  out += '\n';
}

// The PAX value of an mtime: "SEC" or "SEC.NNNNNNNNN", the exact time (so -1.5 s,
// stored as tv_sec -2 and tv_nsec 500000000, is "-1.500000000").
std::string MtimeText(int64_t sec, uint32_t nsec) {
  if (nsec == 0) return std::to_string(sec);
  char frac[16];
  if (sec >= 0) {
    std::snprintf(frac, sizeof(frac), ".%09u", nsec);
    return std::to_string(sec) + frac;
  }
  std::snprintf(frac, sizeof(frac), ".%09u", 1000000000u - nsec);
  return "-" + std::to_string(-(sec + 1)) + frac;
}

// The PAX header's own name, as Go's archive/tar makes it: "<dir>/PaxHeaders.0/<base>", cut to 100 bytes.
std::string PaxHeaderName(std::string_view name) {
  static constexpr std::string_view kDir = "PaxHeaders.0/";
  size_t end = name.size();
  if (end > 0 && name[end - 1] == '/') end--;
  size_t base = 0;  // just after the last '/' before `end`
  for (size_t i = end; i-- > 0;) {
    if (name[i] == '/') {
      base = i + 1;
      break;
    }
  }
  std::string out;
  out.reserve(end + kDir.size());
  out.append(name.substr(0, base));
  out.append(kDir);
  out.append(name.substr(base, end - base));
  if (out.size() > 100) out.resize(100);
  return out;
}

size_t Padding(size_t n) { return (kBlock - n % kBlock) % kBlock; }

}  // namespace

void TarHeaderEncoder::Append(const TarHeader& h, std::string& out) {
  std::string_view prefix;
  std::string_view base;
  bool split = IsAscii(h.name) && SplitUstarName(h.name, prefix, base);
  pax_.clear();
  if (!split) AppendRecord(pax_, "path", h.name);
  if (!h.linkname.empty() && (h.linkname.size() > 100 || !IsAscii(h.linkname))) AppendRecord(pax_, "linkpath", h.linkname);
  if (h.uid > kMax7) AppendRecord(pax_, "uid", std::to_string(h.uid));
  if (h.gid > kMax7) AppendRecord(pax_, "gid", std::to_string(h.gid));
  if (h.size > kMax11) AppendRecord(pax_, "size", std::to_string(h.size));
  if (h.mtimeNsec != 0 || h.mtimeSec < 0 || static_cast<uint64_t>(h.mtimeSec) > kMax11) AppendRecord(pax_, "mtime", MtimeText(h.mtimeSec, h.mtimeNsec));
  if (h.xattrs != nullptr) {
    std::string key;
    for (const Xattr* x : *h.xattrs) {
      key.assign("SCHILY.xattr.");
      key += x->name;
      AppendRecord(pax_, key, x->value);
    }
  }
  if (!split) {
    prefix = std::string_view();
    base = h.name.substr(0, 100);
  }
  size_t at = out.size();
  if (pax_.empty()) {
    out.resize(at + kBlock);
    Ustar(&out[at], h, h.linkname, base, prefix, h.typeflag, h.size);
    return;
  }
  size_t padded = pax_.size() + Padding(pax_.size());
  out.resize(at + kBlock + padded + kBlock);
  Ustar(&out[at], h, std::string_view(), PaxHeaderName(h.name), std::string_view(), 'x', pax_.size());
  std::memcpy(&out[at + kBlock], pax_.data(), pax_.size());
  std::memset(&out[at + kBlock + pax_.size()], 0, padded - pax_.size());
  Ustar(&out[at + kBlock + padded], h, h.linkname, base, prefix, h.typeflag, h.size);
}

}  // namespace ogd
