// The apply engine's interface (apply_engine.cc), free of N-API: what apply_tar.cc,
// the N-API glue, hands it and gets back. Kept apart, as copy_engine.h is, so the
// engine can be read (and reasoned about for thread safety) without any JS in view.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "apply_error.h"
#include "chunk_queue.h"
#include "id_maps.h"

namespace ogd {

struct ApplyRequest {
  std::string root;
  std::vector<IdRange> uidMaps, gidMaps;
  bool allowPrivileged = false;
  int threads = 0;  // writer threads (file_writers.h); 0: every file written by the parsing thread
  // Where the tar's bytes come from: fed by JS, or (fileFd >= 0) by a thread that
  // reads the file itself (inflating it when gzip). The engine takes fileFd over.
  std::shared_ptr<ChunkQueue> queue;
  int fileFd = -1;
  std::string filePath;
  bool gzip = false;
};

// Called on the engine's thread.
struct ApplyHooks {
  std::function<bool()> aborted;                           // true once the caller asked to stop
  std::function<void()> drained;                           // the queue has room again
  std::function<void(uint64_t, uint64_t)> progress;        // entries, content bytes; may be empty
};

struct ApplyOutcome {
  uint64_t entries = 0;
  uint64_t bytes = 0;    // content bytes applied
  uint64_t tarSize = 0;  // bytes of tar read, past its end too
  std::string digest;    // sha256 hex of them
  bool failed = false;
  ApplyError error{ApplyError::kSys, {}, {}, {}};
  std::string current;   // the raw name of the entry being applied when it failed
};

// Applies the tar; blocks the calling thread until done or failed. Once it returns,
// nothing writes into the root any more.
ApplyOutcome RunApply(const ApplyRequest& request, const ApplyHooks& hooks);

}  // namespace ogd
