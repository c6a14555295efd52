// The bytes of a stream handed to a native job: JS pushes the chunks it reads (a
// stream's, gunzip's), or a reader thread of the job its blocks (layer_file_reader.h);
// the job's thread takes them in order. Small
// chunks are gathered into blocks of up to kBlock, so the job wakes once per block,
// not per chunk. Bounded: Push says "stop" above kHigh bytes queued, and the job
// calls onDrain once it has taken the queue down to kLow (JS then pushes again).
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace ogd {

class ChunkQueue {
 public:
  static constexpr size_t kBlock = 1 << 20;
  static constexpr size_t kHigh = 8 << 20;
  static constexpr size_t kLow = 2 << 20;
  // Consumed blocks kept for reuse: enough for the reader to refill from kLow to kHigh
  // without a fresh block (each costs a page fault per 4 KiB and a zero-fill).
  static constexpr size_t kMaxSpare = (kHigh - kLow) / kBlock + 1;

  enum class Pull { kData, kEnd, kFailed, kStopped };

  // JS thread. False when the producer should wait for onDrain before pushing again.
  bool Push(const char* data, size_t n) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_ || ended_) return true;  // nobody takes it any more: dropped
    if (blocks_.empty() || blocks_.back().size() + n > kBlock) {
      blocks_.emplace_back();
      if (!spare_.empty()) {
        blocks_.back().swap(spare_.back());
        spare_.pop_back();
        blocks_.back().clear();
      }
      blocks_.back().reserve(n > kBlock ? n : kBlock);
    }
    blocks_.back().append(data, n);
    queued_ += n;
    if (consumerWaiting_) cv_.notify_one();
    if (queued_ >= kHigh) {
      producerWaiting_ = true;
      return false;
    }
    return true;
  }

  // Reader thread: a block of kBlock bytes to fill, of unspecified content: the memory
  // of one already consumed when there is one. Consumed blocks keep their size, so
  // this resize zero-fills nothing (a std::string cannot grow without filling, and
  // clearing and refilling every block cost a memset of the whole layer).
  std::string SpareBlock() {
    std::string out;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!spare_.empty()) {
        out.swap(spare_.back());
        spare_.pop_back();
      }
    }
    out.resize(kBlock);
    return out;
  }

  // Reader thread: queues a filled block, waiting while kHigh bytes are queued. False
  // once the queue is closed (the job is done, the block is dropped) or `stop` says so.
  bool PushBlock(std::string block, const std::function<bool()>& stop) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!closed_ && queued_ >= kHigh) {
      if (stop()) return false;
      readerWaiting_ = true;
      room_.wait_for(lock, std::chrono::milliseconds(10));
      readerWaiting_ = false;
    }
    if (closed_) return false;
    queued_ += block.size();
    blocks_.push_back(std::move(block));
    if (consumerWaiting_) cv_.notify_one();
    return true;
  }

  // JS thread (or reader thread): no more input; `failed` when the source failed rather than ended.
  void End(bool failed) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ended_) return;
    ended_ = true;
    failed_ = failed;
    cv_.notify_one();
  }

  // Job thread, once it is done: what JS pushes from now on is dropped.
  void Close() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    blocks_.clear();
    spare_.clear();
    queued_ = 0;
    room_.notify_all();
  }

  // Job thread: the next block into `out` (its old content is dropped, its memory
  // reused: fresh blocks would cost a page fault per 4 KiB). Waits for
  // data, polling `stop` every few milliseconds (the abort flag).
  Pull Next(std::string& out, const std::function<bool()>& stop, const std::function<void()>& onDrain) {
    bool drained = false;
    Pull result;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      for (;;) {
        if (!blocks_.empty()) {
          if (out.capacity() >= kBlock && spare_.size() < kMaxSpare) {
            spare_.push_back(std::move(out));  // content dropped, size kept (see SpareBlock)
            out = std::string();
          }
          out.swap(blocks_.front());
          blocks_.pop_front();
          queued_ -= out.size();
          if (readerWaiting_ && queued_ <= kLow) room_.notify_one();
          if (producerWaiting_ && queued_ <= kLow) {
            producerWaiting_ = false;
            drained = true;
          }
          result = Pull::kData;
          break;
        }
        if (ended_) {
          result = failed_ ? Pull::kFailed : Pull::kEnd;
          break;
        }
        if (stop()) {
          result = Pull::kStopped;
          break;
        }
        if (producerWaiting_) {  // cannot happen with an empty queue, but never leave JS waiting
          producerWaiting_ = false;
          drained = true;
          lock.unlock();
          onDrain();
          lock.lock();
          drained = false;
          continue;
        }
        consumerWaiting_ = true;
        cv_.wait_for(lock, std::chrono::milliseconds(10));
        consumerWaiting_ = false;
      }
    }
    if (drained) onDrain();
    return result;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::condition_variable room_;  // a reader thread waits for room
  std::deque<std::string> blocks_;
  std::vector<std::string> spare_;  // consumed blocks, for Push to fill again
  size_t queued_ = 0;
  bool ended_ = false;
  bool failed_ = false;
  bool closed_ = false;
  bool consumerWaiting_ = false;
  bool producerWaiting_ = false;
  bool readerWaiting_ = false;
};

}  // namespace ogd
