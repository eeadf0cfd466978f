#!/usr/bin/env bash
# tests/arm64/sysroot.sh [--torch] DIR — the arm64 (aarch64) libraries n3 builds against, from
# Debian's own arm64 packages, unpacked into DIR (not installed: several of them, libisal and yaml-cpp among
# them, cannot be installed next to their amd64 versions). The C library and the C++ runtime come
# from the cross toolchain (crossbuild-essential-arm64), so they are left out. Run as root on
# Debian 12; adds the arm64 architecture to dpkg and downloads from the configured mirror.
# With --torch, libtorch-dev, libsentencepiece-dev and everything they link (about 240 MB of
# packages) join them, for the arm64 n3-train and n3-eval; Python and Perl, which only libtorch's Python bindings and
# build scripts need, are left out.
# `make deps-arm64` calls it; a DIR already complete (DIR/.complete) is kept as it is, unless it
# lacks libtorch and --torch asks for it.
set -euo pipefail
die() { echo "sysroot.sh: error: $*" >&2; exit 2; }
torch=0
[ "${1:-}" = --torch ] && { torch=1; shift; }
[ $# -eq 1 ] || die "usage: tests/arm64/sysroot.sh [--torch] DIR"
dir=$1
if [ -f "$dir/.complete" ] && { [ $torch -eq 0 ] || grep -q torch "$dir/.complete"; }; then
    echo "sysroot.sh: $dir is complete"; exit 0
fi
# What n3 links (no libtorch: the edge profile) and the header-only libraries it builds with.
pkgs="libsodium-dev libzstd-dev libzmq3-dev libyaml-cpp-dev libisal-dev libssl-dev zlib1g-dev
      catch2 cppzmq-dev"
all="libcli11-dev nlohmann-json3-dev" # Architecture: all
# Provided by the cross toolchain (libc6-dev-arm64-cross, libstdc++-12-dev-arm64-cross).
skip="libc6 libc6-dev libgcc-s1 libstdc++6 libstdc++-12-dev libgcc-12-dev gcc-12-base linux-libc-dev
      libcrypt1 libcrypt-dev libnsl2 libnsl-dev rpcsvc-proto
      debconf libc-dev-bin"
if [ $torch -eq 1 ]; then
    pkgs="$pkgs libtorch-dev libsentencepiece-dev"
    skip="$skip python3 python3-minimal python3-dev python3-distutils python3-lib2to3 python3.11
          python3.11-minimal python3.11-dev libpython3-dev libpython3-stdlib libpython3.11
          libpython3.11-dev libpython3.11-minimal libpython3.11-stdlib perl perl-base
          perl-modules-5.36 libperl5.36"
fi
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    dpkg --add-architecture arm64
    apt-get update -q
fi
apt-cache show libsodium-dev:arm64 >/dev/null 2>&1 || apt-get update -q
# apt-cache prints arm64 packages as NAME:arm64 and Architecture: all ones bare (which are
# followed, in turn, to bare names of their own dependencies that may be architecture-specific).
list=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
        --no-replaces --no-enhances $(printf '%s:arm64 ' $pkgs) | grep -E '^[a-z0-9]' | sort -u)
bare=$(echo "$list" | grep -v ':arm64$' || true)
arch_all=" $(echo $all) "
if [ -n "$bare" ]; then
    arch_all+="$(apt-cache show --no-all-versions $bare 2>/dev/null |
        awk '/^Package:/{p=$2} /^Architecture: all/{printf "%s ", p}' || true)"
fi
want=()
for p in $(echo "$list" | sed 's/:arm64$//' | sort -u) $all; do
    case " $(echo $skip) " in *" $p "*) continue ;; esac
    case "$arch_all" in *" $p "*) want+=("$p") ;; *) want+=("$p:arm64") ;; esac
done
want=($(printf '%s\n' "${want[@]}" | sort -u))
tmp="$dir.debs"
rm -rf "$tmp" && mkdir -p "$tmp" "$dir"
id _apt >/dev/null 2>&1 && chown _apt "$tmp" # apt downloads as _apt where it can
(cd "$tmp" && apt-get download -q "${want[@]}" >/dev/null) || die "downloading the arm64 packages failed"
for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$dir"; done
# Debian's absolute symlinks (libfoo.so -> /lib/...) point into the host: make them relative.
find "$dir" -type l -lname '/*' | while read -r l; do
    ln -sfn "$(realpath -m --relative-to="$(dirname "$l")" "$dir$(readlink "$l")")" "$l"
done
# What update-alternatives would do on an installed system: BLAS and LAPACK from OpenBLAS
# (pthread flavour, as on the host), where libtorch and OpenCV look for libblas.so.3.
lib="$dir/usr/lib/aarch64-linux-gnu"
for so in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
    [ -e "$lib/openblas-pthread/$so" ] && ln -sfn "openblas-pthread/$so" "$lib/$so"
done
rm -rf "$tmp"
echo "${#want[@]} packages$([ $torch -eq 1 ] && echo ', with libtorch')" >"$dir/.complete"
echo "sysroot.sh: $dir: ${#want[@]} arm64 packages unpacked"
