// Path probes: a handful of lookups (lstat, statfs, a small file's content) made back
// to back on one pool thread. A store operation needs half a dozen of them under a
// layer's lock; made as separate jobs, each cost a wake-up of a pool thread and of
// the JS thread, which on a VM cost more than the lookups.
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sys_error.h"

namespace ogd {

struct PathProbe {
  enum class Op { kLstat, kStatfs, kRead };
  Op op;
  std::string path;
};

struct ProbeOutcome {
  bool missing = false;   // ENOENT or ENOTDIR
  SysFailure failure;     // failure.err != 0: another error
  int64_t number = 0;     // lstat: st_mode; statfs: f_type
  bool isData = false;    // a read: `data` is the answer, not `number`
  std::string data;       // read: the content
};

// The probes in argument `i`: a flat array [op, path, op, path, …]; undefined: none.
std::vector<PathProbe> ProbesArg(const Napi::CallbackInfo& info, size_t i);

std::vector<ProbeOutcome> RunProbes(const std::vector<PathProbe>& probes);

// One JS value per probe: undefined (missing), an Error shaped like node:fs's, a
// number (lstat: st_mode, statfs: f_type) or a Buffer (read).
Napi::Array ProbeValues(Napi::Env env, const std::vector<ProbeOutcome>& outcomes);

}  // namespace ogd
