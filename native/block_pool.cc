// BlockPool (see block_pool.h).
#include "block_pool.h"

#include <sys/mman.h>

#include <cstdint>

namespace ogd {
namespace {

// `capacity` bytes aligned to kUnit, so whole huge pages back them.
char* Map(size_t capacity) {
  const size_t unit = BlockPool::kUnit;
  size_t span = capacity + unit;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + unit - 1) & ~(static_cast<uintptr_t>(unit) - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  uintptr_t end = aligned + capacity;
  if (start + span > end) ::munmap(reinterpret_cast<void*>(end), start + span - end);
  ::madvise(reinterpret_cast<void*>(aligned), capacity, MADV_HUGEPAGE);  // advice only: fine if refused
  return reinterpret_cast<char*>(aligned);
}

}  // namespace

char* BlockPool::Take(size_t size, size_t& capacity) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = blocks_.size();
    for (size_t i = 0; i < blocks_.size(); i++) {
      if (blocks_[i].capacity >= size && (best == blocks_.size() || blocks_[i].capacity < blocks_[best].capacity)) best = i;
    }
    if (best < blocks_.size()) {
      Block b = blocks_[best];
      blocks_.erase(blocks_.begin() + static_cast<long>(best));
      kept_ -= b.capacity;
      capacity = b.capacity;
      return b.data;
    }
  }
  capacity = (size + kUnit - 1) / kUnit * kUnit;
  if (capacity == 0) capacity = kUnit;
  return Map(capacity);
}

void BlockPool::Give(char* data, size_t capacity) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (kept_ + capacity <= kKeep) {
      blocks_.push_back({data, capacity});
      kept_ += capacity;
      return;
    }
  }
  ::munmap(data, capacity);
}

BlockPool& Pool() {
  static BlockPool* pool = new BlockPool();
  return *pool;
}

}  // namespace ogd
