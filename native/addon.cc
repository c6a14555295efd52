// The addon's exports table and constants, nothing else.
#include <fcntl.h>
#include <napi.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/xattr.h>

#include "exports.h"

namespace ogd {
namespace {

Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
#define OGD_CONST(name) c.Set(#name, Napi::Number::New(env, static_cast<double>(name)))
  OGD_CONST(MS_RDONLY);
  OGD_CONST(MS_NOSUID);
  OGD_CONST(MS_NODEV);
  OGD_CONST(MS_NOEXEC);
  OGD_CONST(MS_REMOUNT);
  OGD_CONST(MS_BIND);
  OGD_CONST(MS_REC);
  OGD_CONST(MS_PRIVATE);
  OGD_CONST(MS_SLAVE);
  OGD_CONST(MS_SHARED);
  OGD_CONST(MS_UNBINDABLE);
  OGD_CONST(MNT_FORCE);
  OGD_CONST(MNT_DETACH);
  OGD_CONST(MNT_EXPIRE);
  OGD_CONST(UMOUNT_NOFOLLOW);
  OGD_CONST(XATTR_CREATE);
  OGD_CONST(XATTR_REPLACE);
  OGD_CONST(RENAME_NOREPLACE);
  OGD_CONST(RENAME_EXCHANGE);
#undef OGD_CONST
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("mount", Napi::Function::New(env, Mount, "mount"));
  exports.Set("unmount", Napi::Function::New(env, Unmount, "unmount"));
  exports.Set("mknod", Napi::Function::New(env, Mknod, "mknod"));
  exports.Set("getXattr", Napi::Function::New(env, GetXattr, "getXattr"));
  exports.Set("setXattr", Napi::Function::New(env, SetXattr, "setXattr"));
  exports.Set("listXattr", Napi::Function::New(env, ListXattr, "listXattr"));
  exports.Set("removeXattr", Napi::Function::New(env, RemoveXattr, "removeXattr"));
  exports.Set("resolveInRoot", Napi::Function::New(env, ResolveInRoot, "resolveInRoot"));
  exports.Set("rename2", Napi::Function::New(env, Rename2, "rename2"));
  exports.Set("copyTree", Napi::Function::New(env, CopyTree, "copyTree"));
  exports.Set("setMeta", Napi::Function::New(env, SetMeta, "setMeta"));
  exports.Set("scanTree", Napi::Function::New(env, ScanTree, "scanTree"));
  exports.Set("readFiles", Napi::Function::New(env, ReadFiles, "readFiles"));
  exports.Set("packTree", Napi::Function::New(env, PackTree, "packTree"));
  exports.Set("compareTrees", Napi::Function::New(env, CompareTrees, "compareTrees"));
  exports.Set("removeTree", Napi::Function::New(env, RemoveTree, "removeTree"));
  exports.Set("applyTar", Napi::Function::New(env, ApplyTar, "applyTar"));
  exports.Set("applyTarPush", Napi::Function::New(env, ApplyTarPush, "applyTarPush"));
  exports.Set("applyTarEnd", Napi::Function::New(env, ApplyTarEnd, "applyTarEnd"));
  exports.Set("ofdTryLock", Napi::Function::New(env, OfdTryLock, "ofdTryLock"));
  exports.Set("ofdLock", Napi::Function::New(env, OfdLock, "ofdLock"));
  exports.Set("ofdTryLockPath", Napi::Function::New(env, OfdTryLockPath, "ofdTryLockPath"));
  exports.Set("readSmallFile", Napi::Function::New(env, ReadSmallFile, "readSmallFile"));
  exports.Set("probePaths", Napi::Function::New(env, ProbePaths, "probePaths"));
  exports.Set("writeNewFile", Napi::Function::New(env, WriteNewFile, "writeNewFile"));
  exports.Set("mountOverlayFs", Napi::Function::New(env, MountOverlayFs, "mountOverlayFs"));
  exports.Set("syncFs", Napi::Function::New(env, SyncFs, "syncFs"));
  exports.Set("fsyncPaths", Napi::Function::New(env, FsyncPaths, "fsyncPaths"));
  exports.Set("constants", Constants(env));
  return exports;
}

}  // namespace
}  // namespace ogd

static Napi::Object InitOgd(Napi::Env env, Napi::Object exports) { return ogd::Init(env, exports); }
NODE_API_MODULE(ogd_native, InitOgd)
