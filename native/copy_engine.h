// The tree copy engine, free of N-API: copy_tree.cc runs it on a libuv pool thread
// and turns its outcome into a Promise. Kept apart so it can be read (and reasoned
// about for thread safety) without any JS in view.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "sys_error.h"

namespace ogd {

struct CopyRequest {
  std::string src;
  std::string dst;
  bool hardlink = false;
  int threads = 0;  // 0: kDefaultCopyThreads
  // Set to non-zero by the JS thread to stop the copy; read with a relaxed atomic load.
  const uint8_t* abortFlag = nullptr;
};

struct CopyCounts {
  uint64_t entries = 0;
  uint64_t directories = 0;
  uint64_t files = 0;
  uint64_t symlinks = 0;
  uint64_t hardlinks = 0;
  uint64_t devices = 0;
  uint64_t fifos = 0;
  uint64_t sockets = 0;
  uint64_t bytes = 0;
  void Add(const CopyCounts& o);
};

enum class CopyOutcome { Done, Failed, Aborted };

struct CopyResult {
  CopyOutcome outcome = CopyOutcome::Done;
  CopyCounts counts;
  SysFailure failure;        // when Failed
  bool leftBehind = false;   // dst was created, or something was created inside it
};

// Called from the engine's coordinating thread at most every 100 ms.
using CopyProgressFn = std::function<void(uint64_t entries, uint64_t bytes)>;

// Worker threads used when the caller does not say: the fastest setting measured by
// bench/copy.ts on 2 cores (see bench/README.md).
constexpr int kDefaultCopyThreads = 4;
constexpr int kMaxCopyThreads = 64;

// Copies the tree; blocks the calling thread until done, failed or aborted.
CopyResult RunCopy(const CopyRequest& request, const CopyProgressFn& progress);

}  // namespace ogd
