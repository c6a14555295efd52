#!/usr/bin/env python3
"""Prints one JSON line per entry of a tree: the test oracle for copies, diffs and applies.

Independent of the code under test on purpose (Python's os module, not our addon):
it walks fd-relative (dir_fd), so paths deeper than PATH_MAX and names that are not
UTF-8 work; names are printed as hex of their raw bytes.
  manifest.py ROOT
"""
import hashlib
import json
import os
import stat
import sys


def xattrs(parent_fd, name):
    # Through /proc/self/fd the path stays short however deep the tree is.
    p = b"/proc/self/fd/%d/%s" % (parent_fd, name)
    out = {}
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        return out
    for n in sorted(names):
        try:
            out[n] = os.getxattr(p, n, follow_symlinks=False).hex()
        except OSError:
            pass
    return out


def digest(parent_fd, name):
    h = hashlib.sha256()
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=parent_fd)
    try:
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            h.update(b)
        # Allocated blocks tell whether holes stayed holes.
        blocks = os.fstat(fd).st_blocks
    finally:
        os.close(fd)
    return h.hexdigest(), blocks


def entry(parent_fd, name, rel):
    st = os.lstat(name, dir_fd=parent_fd)
    m = st.st_mode
    kind = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
            stat.S_IFBLK: "block", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}[stat.S_IFMT(m)]
    e = {"path": rel.hex(), "type": kind, "mode": stat.S_IMODE(m), "uid": st.st_uid, "gid": st.st_gid,
         "mtime": str(st.st_mtime_ns), "atime": str(st.st_atime_ns), "ino": st.st_ino, "nlink": st.st_nlink,
         "xattrs": xattrs(parent_fd, name)}
    if kind == "file":
        e["size"] = st.st_size
        e["sha256"], e["blocks"] = digest(parent_fd, name)
    elif kind == "symlink":
        e["target"] = os.readlink(name, dir_fd=parent_fd).hex()
    elif kind in ("char", "block"):
        e["rdev"] = [os.major(st.st_rdev), os.minor(st.st_rdev)]
    return e, kind


def walk(dir_fd, rel, out):
    for name in sorted(os.listdir(dir_fd)):
        name = os.fsencode(name)
        child = rel + b"/" + name if rel else name
        e, kind = entry(dir_fd, name, child)
        out.write(json.dumps(e) + "\n")
        if kind == "dir":
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                walk(fd, child, out)
            finally:
                os.close(fd)


def main():
    sys.setrecursionlimit(100000)
    root = os.fsencode(sys.argv[1])
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    out = sys.stdout
    st = os.fstat(fd)
    top = {"path": "", "type": "dir", "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
           "mtime": str(st.st_mtime_ns), "atime": str(st.st_atime_ns), "ino": st.st_ino, "nlink": st.st_nlink,
           "xattrs": xattrs(fd, b".")}
    out.write(json.dumps(top) + "\n")
    walk(fd, b"", out)
    os.close(fd)


main()
