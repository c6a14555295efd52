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

// Each writer has its own lane, and a file goes to the lane of its directory: two
// writers creating in one directory serialise on its inode lock, and the kernel's
// optimistic spinning on that lock burned more CPU than the second writer saved
// (100k small files after a mass deletion: 22 s of system time with shared
// batches against 5 s on one thread). Lanes by directory keep them apart.
class FileWriters {
 public:
  static constexpr size_t kMaxQueuedBytes = 16 << 20;
  static constexpr size_t kMaxQueuedTasks = 256;
  static constexpr size_t kBatch = 16;

  explicit FileWriters(int threads) {
    for (int i = 0; i < threads; i++) lanes_.push_back(std::make_unique<Lane>());
    for (int i = 0; i < threads; i++) threads_.emplace_back([this, i] { Loop(*lanes_[static_cast<size_t>(i)]); });
  }

  ~FileWriters() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    for (auto& lane : lanes_) lane->work.notify_all();
    for (auto& t : threads_) t.join();
  }

  bool enabled() const { return !threads_.empty(); }

  // Queues a task on its directory's lane; waits while the queues are full.
  void Submit(std::unique_ptr<FileTask> task) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (queuedBytes_ >= kMaxQueuedBytes || queuedTasks_ >= kMaxQueuedTasks) {
      WakeAll();
      full_ = true;
      room_.wait(lock, [this] { return queuedBytes_ < kMaxQueuedBytes && queuedTasks_ < kMaxQueuedTasks; });
      full_ = false;
    }
    Lane& lane = *lanes_[static_cast<size_t>(task->parentFd) % lanes_.size()];
    queuedBytes_ += task->data.size();
    queuedTasks_++;
    lane.todo.push_back(std::move(task));
    pending_++;
    // Wake a writer only when it sleeps and there is a batch's worth (or the parser is about to wait):
    // one futex per task would cost as much as the handover saves.
    if (lane.sleeping && (lane.todo.size() >= kBatch || queuedBytes_ >= kMaxQueuedBytes / 2)) lane.work.notify_one();
  }

  // Waits until every queued task is done. Tasks whose name was taken come back in
  // `retry`; returns false with `failure` set when a task failed (the first failure).
  bool Wait(std::vector<std::unique_ptr<FileTask>>& retry, SysFailure& failure) {
    std::unique_lock<std::mutex> lock(mutex_);
    WakeAll();
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
  struct Lane {
    std::deque<std::unique_ptr<FileTask>> todo;
    std::condition_variable work;
    bool sleeping = false;
  };

  // Under mutex_.
  void WakeAll() {
    for (auto& lane : lanes_)
      if (lane->sleeping && !lane->todo.empty()) lane->work.notify_one();
  }

  void Loop(Lane& lane) {
    std::vector<std::unique_ptr<FileTask>> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        lane.sleeping = true;
        lane.work.wait(lock, [&] { return stopping_ || !lane.todo.empty(); });
        lane.sleeping = false;
        if (lane.todo.empty()) return;
        for (size_t i = 0; i < kBatch && !lane.todo.empty(); i++) {
          queuedBytes_ -= lane.todo.front()->data.size();
          queuedTasks_--;
          batch.push_back(std::move(lane.todo.front()));
          lane.todo.pop_front();
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
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::mutex mutex_;
  std::condition_variable room_, idle_;
  std::vector<std::unique_ptr<FileTask>> retry_;
  size_t queuedBytes_ = 0;
  size_t queuedTasks_ = 0;
  size_t pending_ = 0;
  bool full_ = false;     // the parser waits for room
  bool waiting_ = false;  // the parser waits for all to be done
  bool stopping_ = false;
  bool failed_ = false;
  SysFailure failure_;
};

}  // namespace ogd
