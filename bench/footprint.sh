#!/usr/bin/env bash
# bench/footprint.sh — what a node without libtorch costs: binary sizes per node profile, the
# shared libraries they load, each tool's start-up time, and peak resident memory of the steps
# a relay, hub or merge node runs on a 1.6 MB update (400,000 float32 weights).
#
#   N3_BIN=build/tools [N3_ARM64_BIN=build-arm64/tools] bash bench/footprint.sh     (make footprint)
#
# Sizes are of the stripped binaries (what `make install` with `strip` or a package ships);
# with N3_ARM64_BIN (make cross-arm64) the arm64 sizes are printed too. Memory is measured on
# this machine's native build (peak RSS from /usr/bin/time): under qemu-user an RSS would be
# the emulator's. Goal (README, On small devices): a relay under 10 MB of binaries and every
# step under 32 MB.
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
PY=/usr/bin/python3
W=$(mktemp -d "${TMPDIR:-/tmp}/n3-footprint.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
cd "$W"

declare -A PROFILE=(
    [relay]="n3-send"
    [edge-sender]="n3-encode n3-seal n3-send n3-keys"
    [merge-node]="n3-merge n3-encode n3-seal n3-send"
    [hub]="n3-send n3-seal n3-encode n3-merge n3-keys n3-inspect"
)
ORDER="relay edge-sender merge-node hub"

stripped() { # BIN STRIP: bytes of the stripped binary
    "$2" --strip-unneeded -o "$W/s.bin" "$1" 2>/dev/null && stat -c %s "$W/s.bin"
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }

sizes() { # DIR STRIP LABEL
    local dir=$1 strip=$2 label=$3
    echo "sizes ($label, stripped):"
    for t in n3-send n3-seal n3-encode n3-merge n3-keys n3-inspect n3-secagg; do
        [ -x "$dir/$t" ] && printf '  %-11s %6s MB\n' "$t" "$(mb "$(stripped "$dir/$t" "$strip")")"
    done
    for p in $ORDER; do
        local total=0
        for t in ${PROFILE[$p]}; do total=$((total + $(stripped "$dir/$t" "$strip"))); done
        printf '  profile %-12s %6s MB  (%s)\n' "$p" "$(mb $total)" "${PROFILE[$p]}"
    done
}
sizes "$N3_BIN" strip "x86-64"
if [ -n "${N3_ARM64_BIN:-}" ] && [ -x "$N3_ARM64_BIN/n3-send" ]; then
    sizes "$N3_ARM64_BIN" aarch64-linux-gnu-strip "arm64"
fi

echo "shared libraries (loaded by the hub profile, from Debian's packages):"
for t in ${PROFILE[hub]}; do ldd "$N3_BIN/$t"; done | awk '$3 ~ /^\// { print $1, $3 }' | sort -u |
    while read -r lib path; do
        real=$(readlink -f "$path")
        pkg=$({ dpkg -S "$real" || dpkg -S "${real#/usr}"; } 2>/dev/null | head -1 | cut -d: -f1 || true)
        printf '  %-28s %7s kB  %s\n' "$lib" "$(( $(stat -L -c %s "$path") / 1024 ))" "${pkg:-?}"
    done

echo "start-up (mean of 20 runs of --version):"
for t in n3-send n3-seal n3-encode n3-merge n3-keys n3-inspect; do
    start=$(date +%s%N)
    for _ in $(seq 20); do "$N3_BIN/$t" --version >/dev/null; done
    printf '  %-11s %5.1f ms\n' "$t" "$(awk -v n=$(( $(date +%s%N) - start )) 'BEGIN { print n / 20 / 1e6 }')"
done

# A 1.6 MB update, its base model, keys.
"$PY" - <<'PY'
import json, struct, random
random.seed(3)
def write(path, n, scale):
    data = struct.pack('<%df' % n, *[random.gauss(0, scale) for _ in range(n)])
    hdr = json.dumps({'w': {'dtype': 'F32', 'shape': [n], 'data_offsets': [0, 4 * n]}}).encode()
    hdr += b' ' * (-len(hdr) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hdr)) + hdr + data)
write('model.st', 400000, 0.05)
for i in range(3):
    write('u%d.st' % i, 400000, 0.01)
PY
B=$N3_BIN
$B/n3-inspect --from-safetensors model.st --kind model --meta round=1 -o model.n3
base=$($B/n3-inspect --json model.n3 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
for i in 0 1 2; do
    $B/n3-inspect --from-safetensors u$i.st --kind update --meta round=1 --meta base="$base" --meta samples=100 -o u$i.n3
done
$B/n3-keys authority -o fed.ask 2>/dev/null
$B/n3-keys public fed.ask >fed.pub
for m in edge hub; do
    $B/n3-keys request --id $m -o $m.secret >$m.req
    $B/n3-keys issue --authority fed.ask $m.req -o $m.partial
    $B/n3-keys complete --secret $m.secret --partial $m.partial -o $m.key 2>/dev/null
    $B/n3-keys public $m.key >$m.pub
done

rss() { # NAME COMMAND...: peak RSS in MB of one run
    local name=$1; shift
    /usr/bin/time -f %M -o "$W/rss" "$@" >/dev/null 2>"$W/err" || { cat "$W/err" >&2; exit 1; }
    printf '  %-34s %5.1f MB\n' "$name" "$(awk '{ print $1 / 1024 }' "$W/rss")"
}
echo "peak resident memory, one 1.6 MB update ($(stat -c %s u0.n3) bytes):"
rss "n3-encode --quantize int8 --zstd" $B/n3-encode --quantize int8 --zstd u0.n3 -o u0.packed
rss "n3-seal (aes-256-gcm)" $B/n3-seal --suite aes-256-gcm --to hub.pub --key edge.key u0.packed -o u0.sealed
rss "n3-seal (xchacha20-poly1305)" $B/n3-seal --suite xchacha20-poly1305 --to hub.pub --key edge.key u0.packed -o u0.sealed1
rss "n3-seal --open" $B/n3-seal --open --key hub.key --authority fed.pub u0.sealed -o u0.opened
port=$((30000 + RANDOM % 20000))
/usr/bin/time -f %M -o "$W/rss.recv" $B/n3-send --recv "tcp://127.0.0.1:$port" --count 1 --timeout 30 -q >got.sealed &
recv=$!
sleep 0.3
rss "n3-send (push, the relay's sender)" $B/n3-send "tcp://127.0.0.1:$port" --timeout 30 -q u0.sealed
wait $recv
printf '  %-34s %5.1f MB\n' "n3-send --recv (the relay's receiver)" "$(awk '{ print $1 / 1024 }' "$W/rss.recv")"
cmp -s got.sealed u0.sealed || { echo "footprint: the relayed record differs"; exit 1; }
rss "n3-encode -d" $B/n3-encode -d u0.opened -o u0.decoded
rss "n3-merge --rule fedavg (3 updates)" $B/n3-merge --rule fedavg --base model.n3 u0.n3 u1.n3 u2.n3 -o global.n3
rss "n3-merge --rule median (3 updates)" $B/n3-merge --rule median --base model.n3 u0.n3 u1.n3 u2.n3 -o global.n3
