#!/bin/sh
# An arm64 Node.js from Debian's arm64 packages, unpacked into a private sysroot, for
# running the arm64 prebuild under qemu-user on an x64 machine:
#   qemu-aarch64-static -L SYSROOT SYSROOT/usr/bin/node …
# It uses a private apt state (its own sources, lists and an empty dpkg status), so the
# machine's dpkg gets no arm64 architecture and no arm64 package is installed: the
# machine's own node is never shadowed. Debian 13's Node 20 is used because the package
# needs Node ≥ 20.5 (Debian 12 has Node 18).
# Usage: sh scripts/arm64-node-sysroot.sh [DIR]   (default /var/cache/ogd/arm64-node)
# Prints DIR/root. Idempotent: once unpacked, it only checks the stamp.
set -eu
dir=${1:-${OGD_ROOTFS_CACHE:-/var/cache/ogd}/arm64-node}
suite=trixie
packages=nodejs
root=$dir/root
stamp="$suite $packages"
ready() { [ -x "$root/usr/bin/node" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; }
if ready; then
  echo "$root"
  exit 0
fi
# One maker at a time (CI and a test may both get here); the second finds it made.
mkdir -p "$dir"
exec 9>"$dir/lock"
flock 9
if ready; then
  echo "$root"
  exit 0
fi

apt_dir=$dir/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$apt_dir/etc/preferences.d"
: >"$apt_dir/status"
cat >"$apt_dir/sources.list" <<EOF
deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $suite main
EOF
private_apt() {
  apt-get -q \
    -o APT::Architecture=arm64 -o APT::Architectures=arm64 \
    -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$apt_dir/etc/preferences.d" \
    -o Dir::State::Lists="$apt_dir/lists" -o Dir::State::status="$apt_dir/status" \
    -o Dir::Cache="$apt_dir/cache" -o Dir::Cache::Archives="$apt_dir/archives" \
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}
private_apt update >&2
# With an empty status every dependency is downloaded: the whole runtime closure.
private_apt install -y --download-only --no-install-recommends $packages >&2

rm -rf "$root.new"
mkdir -p "$root.new"
for deb in "$apt_dir"/archives/*.deb; do dpkg-deb -x "$deb" "$root.new"; done
# Debian's merged /usr: the ELF interpreter is /lib/ld-linux-aarch64.so.1.
for d in lib bin sbin; do
  [ -e "$root.new/$d" ] || ln -s "usr/$d" "$root.new/$d"
done
rm -rf "$root" "$apt_dir/archives"/*.deb
mv "$root.new" "$root"
echo "$stamp" >"$dir/stamp"
echo "$root"
