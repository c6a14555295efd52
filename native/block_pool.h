// Big output buffers, kept for reuse and mapped in 2 MiB huge pages where the kernel
// allows: faulting in fresh 4 KiB pages one by one cost as much as reading the files
// (measured on a virtualised machine), and an export goes through a layer's worth.
#pragma once
#include <cstddef>
#include <mutex>
#include <vector>

namespace ogd {

class BlockPool {
 public:
  static constexpr size_t kUnit = 2 << 20;
  static constexpr size_t kKeep = 32 << 20;

  // A block of at least `size` bytes and its capacity; nullptr when out of memory.
  char* Take(size_t size, size_t& capacity);
  // Gives a block back, kept while the pool holds under kKeep bytes.
  void Give(char* data, size_t capacity);

 private:
  struct Block {
    char* data;
    size_t capacity;
  };
  std::mutex mutex_;
  std::vector<Block> blocks_;
  size_t kept_ = 0;
};

// The process's pool (never destroyed: finalizers may run at exit).
BlockPool& Pool();

}  // namespace ogd
