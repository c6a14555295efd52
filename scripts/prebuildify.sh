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
# N-API: one binary for every Node version. Build against the running Node's headers
# (npm's nodedir when set, as on Debian) rather than downloading the newest release's.
"$root/node_modules/.bin/prebuildify" --napi --strip --tag-libc --target "node@$(node -p process.versions.node)" \
  --cwd "$scratch" --out "$root" "$@"
ls -l "$root"/prebuilds/*/
