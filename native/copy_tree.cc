// Placeholder until the copy engine lands: rejects with ENOSYS.
#include <cerrno>

#include "args.h"
#include "exports.h"
#include "worker.h"

namespace ogd {

Napi::Value CopyTree(const Napi::CallbackInfo& info) {
  Napi::Error e = SysError(info.Env(), Failure(ENOSYS, "copyTree"));
  throw e;
}

}  // namespace ogd
