// Writing a tar to a file descriptor from native code (readFiles' fd mode and
// packTree): one reused buffer gathers headers, small files and padding, several
// MiB per write(2); big files go from file to fd inside the kernel (sendfile).
// The fd may be a file (O_APPEND too), a pipe, a socket or a character device,
// blocking or not: a non-blocking one that is full (EAGAIN) is waited for.
#pragma once
#include <cstdint>
#include <string>

#include "sys_error.h"

namespace ogd {

// Zero bytes that round `size` up to a whole tar block.
inline uint64_t Padding(uint64_t size) { return (512 - size % 512) % 512; }

// The buffer's size (see block_pool.h for where its memory comes from).
constexpr size_t kOutBuffer = 4 << 20;

struct OutBuffer {
  int fd;
  char* data;
  size_t capacity;
  size_t used = 0;
  uint64_t written = 0;
  // Set (by JS, byte 0 non-zero): a wait for a full fd gives up with ECANCELED.
  const uint8_t* abortFlag = nullptr;

  size_t Room() const { return capacity - used; }
  // Each false with errno set.
  bool Flush();
  bool Put(const char* bytes, size_t size);
  bool Zeros(size_t size);
  // Writes straight to the fd (the buffer must be empty).
  bool WriteAll(const char* bytes, size_t size);
  // Waits until the fd takes more bytes.
  bool WaitWritable();
};

// Copies the first `size` bytes of the open file `in` (named `path` in errors) to
// `out`: read into the buffer when small, by sendfile(2) when big (read/write where
// sendfile does not go, e.g. O_APPEND). Returns the bytes copied: fewer than `size`
// when the file ended early, or on a failure, which sets `failure.err`.
uint64_t CopyContent(int in, uint64_t size, const std::string& path, OutBuffer& out, SysFailure& failure);

}  // namespace ogd
