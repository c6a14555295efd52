// The layer tar parser: the one place the header rules live (lib/archive/apply.ts
// feeds it bytes, it never parses a header itself). Byte-exact: names, link targets
// and xattr values are kept as raw bytes. Every malformed or truncated input is an
// ApplyError kInvalid, never a hang or a half-read entry; PAX and GNU long-name
// headers are capped at kMaxMetaBytes, so memory stays bounded.
//
// Rules: ustar prefix + name; GNU ././@LongLink 'L' (name) and 'K' (link name)
// apply to the next header; PAX 'x' records apply to the next header and win over
// both (path, linkpath, size, uid, gid, mtime, atime, SCHILY.xattr.*); global 'g'
// headers are ignored (as Go's archive/tar); numbers are octal or GNU base-256;
// a type '0'/'\0'/'7' entry whose final name ends in '/' is a directory, unless a
// PAX path gave the name (a pre-POSIX writer's convention); GNU sparse files ('S',
// GNU.sparse.*) are refused.
#pragma once
#include <time.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chunk_queue.h"
#include "sha256.h"

namespace ogd {

struct TarEntry {
  std::string name;      // raw bytes
  std::string linkname;  // raw bytes
  char type;             // '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo
  uint32_t mode;         // 07777 bits
  uint64_t uid, gid, size;
  struct timespec mtime;
  struct timespec atime;
  bool hasAtime;
  uint64_t devmajor, devminor;
  std::vector<std::pair<std::string, std::string>> xattrs;  // in record order, a repeated name keeps its first place
  uint64_t offset;  // of the entry's first header
};

// The input side: blocks from a ChunkQueue, consumed in place.
class TarInput {
 public:
  TarInput(ChunkQueue& queue, std::function<bool()> stop, std::function<void()> onDrain)
      : queue_(queue), stop_(std::move(stop)), onDrain_(std::move(onDrain)) {}

  // Up to `max` bytes at the current position (a view valid until the next call); empty at the end of input.
  std::string_view Take(size_t max);
  // False when the input ended before `n` bytes.
  bool Read(char* dst, size_t n);
  bool Skip(uint64_t n);
  // Reads and drops everything up to the end of the input.
  void Drain();
  uint64_t position() const { return position_; }
  // Hashes every block taken from now on (a stream's input; a file's is hashed by its reader).
  void HashInto(Sha256* sha) { sha_ = sha; }
  // Bytes taken from the queue (the whole input, once drained).
  uint64_t taken() const { return taken_; }
  bool AtEnd();

 private:
  bool Ensure();
  ChunkQueue& queue_;
  std::function<bool()> stop_;
  std::function<void()> onDrain_;
  std::string block_;
  size_t at_ = 0;
  bool ended_ = false;
  uint64_t position_ = 0;
  uint64_t taken_ = 0;
  Sha256* sha_ = nullptr;
};

class TarReader {
 public:
  static constexpr uint64_t kMaxMetaBytes = 1 << 20;

  explicit TarReader(TarInput& in) : in_(in) {}

  // The next entry into `e`; false at the end of the archive. Skips what is left of the previous body.
  bool Next(TarEntry& e);
  // The next piece of the current entry's body; empty when it is all read (padding skipped too).
  std::string_view Body();

 private:
  void SkipRest();
  TarInput& in_;
  uint64_t bodyLeft_ = 0;
  uint64_t padLeft_ = 0;
};

}  // namespace ogd
