// The small regular files of a layer apply, created and written on a few threads
// while the apply's own thread goes on parsing (apply_tar.cc decides which files
// may go: never two on the same path, or one above another, and never across an
// entry of another type, which waits for all of them). A task only ever creates a
// new inode (O_EXCL): when its name is taken it gives the task back (`retry`), and
// the apply's thread replaces what is there in stream order.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <algorithm>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sys_error.h"

namespace ogd {

struct FileTask {
  std::shared_ptr<void> keepParent;  // keeps parentFd open while the task is queued
  int parentFd;
  std::string name, path;
  uid_t uid;
  gid_t gid;
  mode_t mode;
  struct timespec times[2];
  std::string data;
  std::vector<std::pair<std::string, std::string>> xattrs;  // already filtered by policy
};

// Writes a new file's content and metadata on `fd` (created O_EXCL by the caller);
// 0, or the errno with `syscall` set. fchown before fchmod (chown clears setuid and
// setgid), xattrs after fchown (it drops security.capability), times last.
inline int FinishFile(int fd, const char* data, size_t size, const FileTask& t, const char*& syscall) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      syscall = "write";
      return errno;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  if (::fchown(fd, t.uid, t.gid) != 0) return syscall = "fchown", errno;
  if (::fchmod(fd, t.mode) != 0) return syscall = "fchmod", errno;
  for (const auto& [k, v] : t.xattrs)
    if (::fsetxattr(fd, k.c_str(), v.data(), v.size(), 0) != 0) return syscall = "fsetxattr", errno;
  if (::futimens(fd, t.times) != 0) return syscall = "futimens", errno;
  return 0;
}

class FileWriters {
 public:
  static constexpr size_t kMaxQueuedBytes = 16 << 20;
  static constexpr size_t kMaxQueuedTasks = 256;
  static constexpr size_t kBatch = 16;

  explicit FileWriters(int threads) {
    for (int i = 0; i < threads; i++) threads_.emplace_back([this] { Loop(); });
  }

  ~FileWriters() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    work_.notify_all();
    for (auto& t : threads_) t.join();
  }

  bool enabled() const { return !threads_.empty(); }

  // Queues a task; waits while the queue is full.
  void Submit(std::unique_ptr<FileTask> task) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (queuedBytes_ >= kMaxQueuedBytes || todo_.size() >= kMaxQueuedTasks) {
      work_.notify_all();
      full_ = true;
      room_.wait(lock, [this] { return queuedBytes_ < kMaxQueuedBytes && todo_.size() < kMaxQueuedTasks; });
      full_ = false;
    }
    queuedBytes_ += task->data.size();
    todo_.push_back(std::move(task));
    pending_++;
    // Wake a writer only when one sleeps and there is a batch's worth (or the parser is about to wait):
    // one futex per task would cost as much as the handover saves.
    if (sleepers_ > 0 && (todo_.size() >= kBatch || queuedBytes_ >= kMaxQueuedBytes / 2)) work_.notify_one();
  }

  // Waits until every queued task is done. Tasks whose name was taken come back in
  // `retry`; returns false with `failure` set when a task failed (the first failure).
  bool Wait(std::vector<std::unique_ptr<FileTask>>& retry, SysFailure& failure) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!todo_.empty()) work_.notify_all();
    waiting_ = true;
    idle_.wait(lock, [this] { return pending_ == 0; });
    waiting_ = false;
    retry.swap(retry_);
    retry_.clear();
    if (failed_) {
      failure = failure_;
      failed_ = false;
      return false;
    }
    return true;
  }

 private:
  void Loop() {
    std::vector<std::unique_ptr<FileTask>> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_++;
        work_.wait(lock, [this] { return stopping_ || !todo_.empty(); });
        sleepers_--;
        if (todo_.empty()) return;
        // A share of what is queued, so the other writers get theirs.
        size_t take = std::max<size_t>(1, std::min(kBatch, todo_.size() / threads_.size()));
        for (size_t i = 0; i < take; i++) {
          queuedBytes_ -= todo_.front()->data.size();
          batch.push_back(std::move(todo_.front()));
          todo_.pop_front();
        }
        if (full_) room_.notify_one();
      }
      // Done as a batch too: one lock per batch, not per file.
      std::vector<std::unique_ptr<FileTask>> taken;
      SysFailure failure;
      for (auto& task : batch) {
        if (Run(*task, failure)) taken.push_back(std::move(task));
      }
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto& t : taken) retry_.push_back(std::move(t));
      if (failure.err != 0 && !failed_) {
        failed_ = true;
        failure_ = failure;
      }
      pending_ -= batch.size();
      batch.clear();
      if (pending_ == 0 && waiting_) idle_.notify_all();
    }
  }

  // True when the name was taken (EEXIST): the task goes back to the parser. Records the first failure in `failure`.
  static bool Run(const FileTask& t, SysFailure& failure) {
    {
      const char* syscall = "open";
      int err = 0;
      bool taken = false;
      int fd = ::openat(t.parentFd, t.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) {
        err = errno;
        taken = err == EEXIST;
      } else {
        err = FinishFile(fd, t.data.data(), t.data.size(), t, syscall);
        if (::close(fd) != 0 && err == 0) err = errno, syscall = "close";
      }
      if (err != 0 && !taken && failure.err == 0) failure = Failure(err, syscall, t.path);
      return taken;
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable work_, room_, idle_;
  std::deque<std::unique_ptr<FileTask>> todo_;
  std::vector<std::unique_ptr<FileTask>> retry_;
  size_t queuedBytes_ = 0;
  size_t pending_ = 0;
  size_t sleepers_ = 0;  // writers waiting for work
  bool full_ = false;     // the parser waits for room
  bool waiting_ = false;  // the parser waits for all to be done
  bool stopping_ = false;
  bool failed_ = false;
  SysFailure failure_;
};

}  // namespace ogd
