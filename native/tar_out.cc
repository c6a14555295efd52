// OutBuffer and CopyContent (see tar_out.h).
#include "tar_out.h"

#include <poll.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ogd {
namespace {

bool Aborted(const uint8_t* flag) { return flag != nullptr && __atomic_load_n(flag, __ATOMIC_RELAXED) != 0; }

}  // namespace

// A pipe Node's libuv made non-blocking (process.stdout) answers EAGAIN when full.
// With an abort flag the wait wakes every 100 ms to look at it: a stalled reader
// must not hold an aborted export forever.
bool OutBuffer::WaitWritable() {
  struct pollfd p = {fd, POLLOUT, 0};
  for (;;) {
    if (Aborted(abortFlag)) {
      errno = ECANCELED;
      return false;
    }
    int r = ::poll(&p, 1, abortFlag == nullptr ? -1 : 100);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

bool OutBuffer::WriteAll(const char* bytes, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, bytes, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN && WaitWritable()) continue;
      return false;
    }
    bytes += n;
    size -= static_cast<size_t>(n);
    written += static_cast<uint64_t>(n);
  }
  return true;
}

bool OutBuffer::Flush() {
  if (used == 0) return true;
  if (!WriteAll(data, used)) return false;
  used = 0;
  return true;
}

bool OutBuffer::Put(const char* bytes, size_t size) {
  if (size > Room()) {
    if (!Flush()) return false;
    if (size > capacity) return WriteAll(bytes, size);
  }
  std::memcpy(data + used, bytes, size);
  used += size;
  return true;
}

bool OutBuffer::Zeros(size_t size) {
  if (size > Room() && !Flush()) return false;
  std::memset(data + used, 0, size);  // size < 512 < capacity
  used += size;
  return true;
}

namespace {

// Copies `size` bytes of `in` to the output inside the kernel (the buffer flushed
// first); falls back to read/write where sendfile does not go.
uint64_t SendFile(int in, const std::string& path, uint64_t size, OutBuffer& out, SysFailure& failure) {
  if (!out.Flush()) {
    failure = Failure(errno, "write");
    return 0;
  }
  uint64_t done = 0;
  bool plain = false;
  while (done < size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(size - done, 1u << 30));
    ssize_t n;
    if (plain) {
      n = ::pread(in, out.data, std::min(want, out.capacity), static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failure = Failure(errno, "read", path);
        return done;
      }
      out.used = static_cast<size_t>(n);
      if (!out.Flush()) {
        failure = Failure(errno, "write");
        return done;
      }
    } else {
      off_t at = static_cast<off_t>(done);
      n = ::sendfile(out.fd, in, &at, want);
      if (n < 0 && (errno == EINVAL || errno == ENOSYS)) {
        plain = true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN && out.WaitWritable()) continue;
      if (n < 0) {
        failure = Failure(errno, "sendfile");
        return done;
      }
      out.written += static_cast<uint64_t>(n);
    }
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  return done;
}

}  // namespace

uint64_t CopyContent(int in, uint64_t size, const std::string& path, OutBuffer& out, SysFailure& failure) {
  if (size > out.capacity / 4) return SendFile(in, path, size, out, failure);
  // Small: read into the buffer, right behind what it holds.
  if (out.Room() < size && !out.Flush()) {
    failure = Failure(errno, "write");
    return 0;
  }
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(in, out.data + out.used, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      failure = Failure(errno, "read", path);
      return done;
    }
    if (n == 0) break;
    out.used += static_cast<size_t>(n);
    done += static_cast<uint64_t>(n);
  }
  return done;
}

}  // namespace ogd
