#!/bin/sh
# `npm run prebuildify`: the stripped N-API addon for this platform into prebuilds/,
# where node-gyp-build finds it before trying to compile. It builds in a scratch copy
# of the native sources because prebuildify runs `node-gyp rebuild`, which would wipe
# the development build in build/ that tests and other tools are using.
# Extra arguments go to prebuildify, e.g. `npm run prebuildify -- --arch arm64`.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ogd-prebuildify-XXXXXX")
trap 'rm -rf "$scratch"' EXIT INT TERM
cp -R "$root/package.json" "$root/binding.gyp" "$root/native" "$scratch/"
ln -s "$root/node_modules" "$scratch/node_modules"
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
# (npm's nodedir when set, as on Debian) rather than downloading the newest release's.
"$root/node_modules/.bin/prebuildify" --napi --strip --tag-libc --target "node@$(node -p process.versions.node)" \
  --cwd "$scratch" --out "$root" "$@"
ls -l "$root"/prebuilds/*/
