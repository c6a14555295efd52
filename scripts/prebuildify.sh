#!/bin/sh
# `npm run prebuildify`: the stripped N-API addon for this platform into prebuilds/,
# where node-gyp-build finds it before trying to compile. It builds in a scratch copy
# of the native sources because prebuildify runs `node-gyp rebuild`, which would wipe
# the development build in build/ that tests and other tools are using.
# Extra arguments go to prebuildify, e.g. `npm run prebuildify -- --arch arm64`.
# OGD_PREBUILDS_OUT: where prebuilds/ is written (default: the checkout, which npm packs).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OGD_PREBUILDS_OUT:-$root}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ogd-prebuildify-XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
cp -R "$root/package.json" "$root/binding.gyp" "$root/native" "$scratch/"
ln -s "$root/node_modules" "$scratch/node_modules"
# libstdc++ is linked in, its symbols kept private, and what the addon does not use of it
# dropped (--gc-sections; else archive members it drags in need glibc 2.36's arc4random):
# the binary then needs glibc ≥ 2.34 and libgcc_s, which every glibc system with Node has,
# and not the GCC 12 libstdc++ (GLIBCXX_3.4.30) it is built with, which RHEL 9, Amazon
# Linux 2023 and older Debian and Ubuntu images lack. libgcc_s stays shared: a static
# unwinder would need glibc 2.35's _dl_find_object.
export LDFLAGS="${LDFLAGS:+$LDFLAGS }-static-libstdc++ -Wl,--gc-sections -Wl,--exclude-libs,ALL"
# `--arch arm64` on an x64 machine cross-compiles with Debian's g++-aarch64-linux-gnu.
case " $* " in
  *" --arch arm64 "*)
    if [ "$(uname -m)" != aarch64 ]; then
      command -v aarch64-linux-gnu-g++ >/dev/null || { echo "prebuildify: install g++-aarch64-linux-gnu to cross-build for arm64" >&2; exit 1; }
      export CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ LINK=aarch64-linux-gnu-g++ AR=aarch64-linux-gnu-ar
      set -- "$@" --strip-bin aarch64-linux-gnu-strip
    fi
    ;;
esac
# N-API: one binary for every Node version. Build against the running Node's headers
# (npm's nodedir when set, as on Debian, else the headers installed beside node) rather
# than downloading the newest release's.
if [ -z "${npm_config_nodedir:-}" ]; then
  prefix=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
  if [ -f "$prefix/include/node/node_api.h" ]; then export npm_config_nodedir="$prefix"; fi
fi
"$root/node_modules/.bin/prebuildify" --napi --strip --tag-libc --target "node@$(node -p process.versions.node)" \
  --cwd "$scratch" --out "$out" "$@"
ls -l "$out"/prebuilds/*/
