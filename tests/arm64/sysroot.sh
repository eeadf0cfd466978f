#!/usr/bin/env bash
# tests/arm64/sysroot.sh DIR — the arm64 (aarch64) libraries n3 builds against, from Debian's own
# arm64 packages, unpacked into DIR (not installed: several of them, libisal and yaml-cpp among
# them, cannot be installed next to their amd64 versions). The C library and the C++ runtime come
# from the cross toolchain (crossbuild-essential-arm64), so they are left out. Run as root on
# Debian 12; adds the arm64 architecture to dpkg and downloads from the configured mirror.
# `make deps-arm64` calls it; a DIR already complete (DIR/.complete) is kept as it is.
set -euo pipefail
die() { echo "sysroot.sh: error: $*" >&2; exit 2; }
[ $# -eq 1 ] || die "usage: tests/arm64/sysroot.sh DIR"
dir=$1
[ -f "$dir/.complete" ] && { echo "sysroot.sh: $dir is complete"; exit 0; }
# What n3 links (no libtorch: the edge profile) and the header-only libraries it builds with.
pkgs="libsodium-dev libzstd-dev libzmq3-dev libyaml-cpp-dev libisal-dev libssl-dev zlib1g-dev
      catch2 cppzmq-dev"
all="libcli11-dev nlohmann-json3-dev" # Architecture: all
# Provided by the cross toolchain (libc6-dev-arm64-cross, libstdc++-12-dev-arm64-cross).
skip="libc6 libc6-dev libgcc-s1 libstdc++6 libstdc++-12-dev libgcc-12-dev gcc-12-base linux-libc-dev
      libcrypt1 libcrypt-dev libnsl2 libnsl-dev libtirpc3 libtirpc-dev libtirpc-common rpcsvc-proto
      debconf libc-dev-bin"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -q
fi
apt-cache show libsodium-dev:arm64 >/dev/null 2>&1 || apt-get update -q
list=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances $(printf '%s:arm64 ' $pkgs) |
    grep -E '^[a-z0-9]' | sed 's/:arm64$//' | sort -u)
want=($all)
for p in $list; do
    case " $(echo $skip) " in *" $p "*) continue ;; esac
    want+=("$p:arm64")
done
tmp="$dir.debs"
rm -rf "$tmp" && mkdir -p "$tmp" "$dir"
id _apt >/dev/null 2>&1 && chown _apt "$tmp" # apt downloads as _apt where it can
(cd "$tmp" && apt-get download -q "${want[@]}" >/dev/null) || die "downloading the arm64 packages failed"
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
# Debian's absolute symlinks (libfoo.so -> /lib/...) point into the host: make them relative.
find "$dir" -type l -lname '/*' | while read -r l; do
    ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$dir$(readlink "$l")")" "$l"
done
rm -rf "$tmp"
echo "${#want[@]} packages" >"$dir/.complete"
echo "sysroot.sh: $dir: ${#want[@]} arm64 packages unpacked"
