// How a layer apply (apply_tar.cc, tar_reader.cc) stops: thrown from wherever it
// happens and turned into one JS error at the end. kInvalid and kUnsafe become
// InvalidArchiveError / UnsafeLayerError in lib/archive/apply.ts (which words them),
// kSys a Node-style system error.
#pragma once
#include <string>
#include <utility>

#include "sys_error.h"

namespace ogd {

struct ApplyError {
  enum Kind { kSys, kInvalid, kUnsafe, kAborted, kSourceFailed };
  Kind kind;
  SysFailure sys;
  std::string entry;   // the entry's raw name (kUnsafe; kInvalid when it names one)
  std::string reason;  // plain ASCII words

  static ApplyError Sys(SysFailure f) { return ApplyError{kSys, std::move(f), {}, {}}; }
  static ApplyError Invalid(std::string reason, std::string entry = {}) { return ApplyError{kInvalid, {}, std::move(entry), std::move(reason)}; }
  static ApplyError Unsafe(std::string entry, std::string reason) { return ApplyError{kUnsafe, {}, std::move(entry), std::move(reason)}; }
};

}  // namespace ogd
