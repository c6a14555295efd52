// The functions addon.cc exports, one concern per source file.
#pragma once
#include <napi.h>

namespace ogd {
Napi::Value Mount(const Napi::CallbackInfo& info);        // mount.cc
Napi::Value Unmount(const Napi::CallbackInfo& info);      // mount.cc
Napi::Value Mknod(const Napi::CallbackInfo& info);        // mknod.cc
Napi::Value GetXattr(const Napi::CallbackInfo& info);     // xattr.cc
Napi::Value SetXattr(const Napi::CallbackInfo& info);     // xattr.cc
Napi::Value ListXattr(const Napi::CallbackInfo& info);    // xattr.cc
Napi::Value RemoveXattr(const Napi::CallbackInfo& info);  // xattr.cc
Napi::Value ResolveInRoot(const Napi::CallbackInfo& info);  // resolve.cc
Napi::Value Rename2(const Napi::CallbackInfo& info);      // rename.cc
Napi::Value CopyTree(const Napi::CallbackInfo& info);     // copy_tree.cc
Napi::Value SetMeta(const Napi::CallbackInfo& info);      // set_meta.cc
Napi::Value ScanTree(const Napi::CallbackInfo& info);     // scan_tree.cc
Napi::Value ReadFiles(const Napi::CallbackInfo& info);    // read_files.cc
Napi::Value PackTree(const Napi::CallbackInfo& info);     // pack_tree.cc
Napi::Value CompareTrees(const Napi::CallbackInfo& info);  // compare_trees.cc
Napi::Value RemoveTree(const Napi::CallbackInfo& info);   // remove_tree.cc
Napi::Value ApplyTar(const Napi::CallbackInfo& info);      // apply_tar.cc
Napi::Value ApplyTarPush(const Napi::CallbackInfo& info);  // apply_tar.cc
Napi::Value ApplyTarEnd(const Napi::CallbackInfo& info);   // apply_tar.cc
Napi::Value OfdTryLock(const Napi::CallbackInfo& info);   // ofd_lock.cc
Napi::Value OfdLock(const Napi::CallbackInfo& info);      // ofd_lock.cc
Napi::Value OfdTryLockPath(const Napi::CallbackInfo& info);  // ofd_lock.cc
Napi::Value ReadSmallFile(const Napi::CallbackInfo& info);  // small_files.cc
Napi::Value ProbePaths(const Napi::CallbackInfo& info);     // path_probes.cc
Napi::Value WriteNewFile(const Napi::CallbackInfo& info);    // small_files.cc
Napi::Value MountOverlayFs(const Napi::CallbackInfo& info);  // fs_mount.cc
Napi::Value SyncFs(const Napi::CallbackInfo& info);          // sync.cc
Napi::Value FsyncPaths(const Napi::CallbackInfo& info);      // sync.cc
}  // namespace ogd
