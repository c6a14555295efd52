// The input of a layer apply read from a regular file by a thread of the job itself
// (lib/archive/layer-file.ts decides when): no JS stream, no JS thread and no
// hand-over copy in the data path. gzip is inflated here (Node's own zlib), so the
// decompression runs on one core while the apply runs on the other. The thread also
// hashes the tar it produces (the layer's uncompressed digest) and feeds the
// ChunkQueue the parser reads, bounded as any input.
//
// A regular file never blocks a read for long, so the abort flag, polled per block,
// stops it within milliseconds.
#pragma once
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>

#include "chunk_queue.h"
#include "sha256.h"
#include "sys_error.h"

namespace ogd {

class LayerFileReader {
 public:
  // `fd` is owned (closed by the destructor); `path` only names it in errors.
  LayerFileReader(int fd, std::string path, bool gzip, ChunkQueue& queue, std::function<bool()> stop)
      : fd_(fd), path_(std::move(path)), gzip_(gzip), queue_(queue), stop_(std::move(stop)) {}

  ~LayerFileReader() {
    Join();
    if (fd_ >= 0) ::close(fd_);
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  // Once the apply failed on the tar: inflates what is left without queuing it, so a
  // corrupt gzip stream is reported as such rather than as the garbage it produced.
  void FinishDiscarding() {
    discard_ = true;
    Join();
  }

  void Join() {
    if (thread_.joinable()) thread_.join();
  }

  // After Join(): what failed (errno and syscall, or a zlib message in `zlibError`).
  const SysFailure& failure() const { return failure_; }
  bool failed() const { return failure_.err != 0 || !zlibError_.empty(); }
  const std::string& zlibError() const { return zlibError_; }
  uint64_t size() const { return size_; }
  std::string Digest() { return sha_.Hex(); }

 private:
  static constexpr size_t kIn = 256 << 10;

  bool Stopped() { return stop_(); }

  // Queues a filled block (or drops it once discarding); false to stop reading.
  bool Emit(std::string block) {
    if (block.empty() || discard_) return true;
    sha_.Update(block.data(), block.size());
    size_ += block.size();
    // A push the job stopped waiting for (it failed) is dropped once discarding.
    return queue_.PushBlock(std::move(block), [this] { return discard_ || stop_(); }) || discard_;
  }

  // Reads up to n bytes at the file offset; -1 with failure_ set on an error.
  ssize_t ReadSome(char* dst, size_t n) {
    for (;;) {
      ssize_t got = ::pread(fd_, dst, n, static_cast<off_t>(offset_));
      if (got >= 0) {
        offset_ += static_cast<uint64_t>(got);
        return got;
      }
      if (errno == EINTR) continue;
      failure_ = Failure(errno, "read", path_);
      return -1;
    }
  }

  void Run() {
    bool ok = gzip_ ? Inflate() : Copy();
    if (!discard_) queue_.End(!ok);
  }

  bool Copy() {
    for (;;) {
      if (Stopped()) return false;
      std::string block = queue_.SpareBlock();
      ssize_t n = ReadSome(block.data(), block.size());
      if (n < 0) return false;
      if (n == 0) return true;
      block.resize(static_cast<size_t>(n));
      if (!Emit(std::move(block))) return false;
    }
  }

  bool Inflate() {
    z_stream z = {};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
      zlibError_ = "cannot start inflating";
      return false;
    }
    std::string in(kIn, '\0');
    std::string block = queue_.SpareBlock();
    size_t have = 0;  // bytes of `block` inflated so far
    bool ok = true, atEof = false, done = false;
    // More input once the last is used up (none past the end); false on a read error.
    auto refill = [&]() -> bool {
      if (z.avail_in != 0 || atEof) return true;
      ssize_t n = ReadSome(in.data(), in.size());
      if (n < 0) return false;
      atEof = n == 0;
      z.next_in = reinterpret_cast<Bytef*>(in.data());
      z.avail_in = static_cast<uInt>(n);
      return true;
    };
    while (!done) {
      if (Stopped() || !refill()) {
        ok = false;
        break;
      }
      z.next_out = reinterpret_cast<Bytef*>(block.data() + have);
      z.avail_out = static_cast<uInt>(block.size() - have);
      int r = inflate(&z, Z_NO_FLUSH);
      have = block.size() - z.avail_out;
      if (r == Z_STREAM_END) {
        // Another member may follow (as gzip and node:zlib take it); zero bytes after a member are padding.
        if (!refill()) {
          ok = false;
          break;
        }
        if (z.avail_in == 0 || z.next_in[0] == 0) {
          done = true;
        } else {
          inflateReset(&z);
        }
      } else if (r == Z_BUF_ERROR && z.avail_in == 0 && atEof) {
        zlibError_ = "unexpected end of file";  // node:zlib's words for a truncated stream
        ok = false;
        break;
      } else if (r != Z_OK && r != Z_BUF_ERROR) {
        zlibError_ = z.msg != nullptr ? z.msg : "inflate failed";
        ok = false;
        break;
      }
      if (have == block.size() || done) {
        block.resize(have);
        if (!Emit(std::move(block))) {
          ok = false;
          break;
        }
        if (!done) block = queue_.SpareBlock(), have = 0;
      }
    }
    inflateEnd(&z);
    return ok;
  }

  int fd_;
  std::string path_;
  bool gzip_;
  ChunkQueue& queue_;
  std::function<bool()> stop_;
  std::atomic<bool> discard_{false};
  std::thread thread_;
  uint64_t offset_ = 0;
  uint64_t size_ = 0;
  Sha256 sha_;
  SysFailure failure_;
  std::string zlibError_;
};

}  // namespace ogd
