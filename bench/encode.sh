#!/bin/bash
# bench/encode.sh — n3-encode on a 256 MiB float32 update against its peers and limits:
#   Reed-Solomon 10+4 through n3 vs raw ISA-L in the same process (n3-bench-rs), and the whole
#   n3-encode --shards 10+4 vs par2 create -b10 -r40 (10 blocks + 4 recovery blocks);
#   lossless --zstd (byte-plane shuffle + zstd) vs zstd -3: size and time;
#   bytes after int8+zstd and after top-k 1% + int8 + zstd as a fraction of fp32;
#   the peak RSS of every mode and of -d of its output, from a file and from a pipe, as a
#   fraction of the record (n3-encode streams: it should not grow with the record).
# Run: N3_BIN=build/tools bash bench/encode.sh   (N3_BENCH_MIB=256 sets the size;
#   N3_BENCH_MIB=4096 runs only the memory part, on a 4 GiB update, if the disk has room)
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder, e.g. build/tools}"
N3_BIN=$(cd "$N3_BIN" && pwd)
RS_BENCH=${N3_BENCH_RS:-$N3_BIN/../bench/encode/n3-bench-rs}
PY=/usr/bin/python3
MIB=${N3_BENCH_MIB:-256}
HERE=$(cd "$(dirname "$0")" && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/n3-bench-encode.XXXXXX")
trap 'rm -rf "$W"' EXIT

now() { date +%s.%N; }
# best of N (default 3) wall-clock seconds of a shell command
best() {
    local best=999999 t0 t1 d
    for _ in $(seq "${2:-3}"); do
        t0=$(now); eval "$1" >/dev/null 2>&1; t1=$(now)
        d=$(echo "$t1 - $t0" | bc -l)
        best=$(echo "if ($d < $best) $d else $best" | bc -l)
    done
    echo "$best"
}
ratio() { echo "scale=3; $1 / $2" | bc -l; }
size() { stat -c %s "$1"; }

echo "n3-encode bench: ${MIB} MiB float32 update, N(0, 0.01); $(nproc) cores"
# The record, its outputs and the tools' temporary files (TMPDIR is the work folder here).
need=$((MIB * 4 + 1024))
free=$(($(df -Pm "$W" | awk 'NR == 2 { print $4 }')))
if [ "$free" -lt "$need" ]; then
    echo "skipped: ${MIB} MiB needs about $need MiB free in ${TMPDIR:-/tmp}, $free MiB there" >&2
    exit 1
fi
export TMPDIR="$W"
MEMORY_ONLY=0
[ "$MIB" -ge 2048 ] && MEMORY_ONLY=1
$PY "$HERE/encode/make_update.py" "$W/u.safetensors" "$MIB"
"$N3_BIN/n3-inspect" --from-safetensors "$W/u.safetensors" --kind update -o "$W/u.n3"
rm -f "$W/u.safetensors"
FP32=$(size "$W/u.n3")

# memory: peak RSS of each mode and of -d of its output, from a file and from a pipe
rss() { # peak RSS in KiB of a shell command, the largest of its processes (getrusage)
    $PY -c 'import resource, subprocess, sys
subprocess.run(["sh", "-c", sys.argv[1]], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$1"
}
memory() {
    echo "--- memory: peak RSS against the ${MIB} MiB record (n3-encode streams; goal < 256 MiB)"
    local mode f p d dp
    for mode in "--quantize int8" "--zstd" "--quantize int8 --zstd" "--topk 0.01" "--shards 10+4" \
        "--quantize int8 --residual" "--topk 0.01 --residual"; do
        # error feedback: the file run starts the residual, the pipe run reads and rewrites it
        rm -f "$W/res.n3"
        [[ $mode == *--residual ]] && mode="$mode '$W/res.n3'"
        f=$(rss "'$N3_BIN/n3-encode' $mode -o '$W/m.n3' '$W/u.n3'")
        p=$(rss "cat '$W/u.n3' | '$N3_BIN/n3-encode' $mode -o '$W/m2.n3'")
        rm -f "$W/m2.n3"
        d=$(rss "'$N3_BIN/n3-encode' -d -o '$W/m.dec.n3' '$W/m.n3'")
        rm -f "$W/m.dec.n3"
        dp=$(rss "cat '$W/m.n3' | '$N3_BIN/n3-encode' -d -o '$W/m.dec.n3'")
        rm -f "$W/m.n3" "$W/m.dec.n3" "$W/res.n3"
        mode=${mode%% \'*}
        printf 'memory %-24s file %5d MiB, pipe %5d MiB; -d file %5d MiB, pipe %5d MiB: peak %.4f of the record\n' \
            "$mode:" $((f / 1024)) $((p / 1024)) $((d / 1024)) $((dp / 1024)) \
            "$(echo "m = $f; if ($p > m) m = $p; if ($d > m) m = $d; if ($dp > m) m = $dp; m * 1024 / $FP32" | bc -l)"
    done
}
if [ "$MEMORY_ONLY" = 1 ]; then
    memory
    exit 0
fi

echo "--- Reed-Solomon"
if [ -x "$RS_BENCH" ]; then
    "$RS_BENCH" "$W/u.n3" 10 4
else
    echo "n3-bench-rs not built (configure with tests on); skipping the in-process comparison"
fi
# Outputs go to files through stdout, as zstd and par2 write theirs (no fsync).
T_N3=$(best "'$N3_BIN/n3-encode' --shards 10+4 '$W/u.n3' > '$W/s.n3'")
T_DEC=$(best "'$N3_BIN/n3-encode' -d '$W/s.n3' > '$W/s.dec.n3'")
# Lose the first 4 data shards: the most a 10+4 group can lose.
"$PY" - "$W/s.n3" "$W/s.lost.n3" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read(); o = 0; out = []
while o < len(b):
    n, = struct.unpack_from("<Q", b, o + 16); out.append(b[o:o + 40 + n]); o += 40 + n
open(sys.argv[2], "wb").write(b"".join(out[4:]))
PY
T_LOST=$(best "'$N3_BIN/n3-encode' -d '$W/s.lost.n3' > '$W/s.dec.n3'")
cmp "$W/u.n3" "$W/s.dec.n3"
cmp "$W/u.n3" "$W/s.dec.n3"
rm -f "$W/s.n3" "$W/s.dec.n3" "$W/s.lost.n3"
if command -v par2 >/dev/null; then
    cp "$W/u.n3" "$W/p.bin"
    # -b10 -r40: 10 source blocks and 4 recovery blocks, the same code shape as 10+4 (par2's
    # default of 2000 blocks took 190 s on 256 MiB here, too long for this bench).
    T_PAR=$(best "rm -f '$W'/p.bin*.par2; par2 create -q -q -b10 -r40 '$W/p.bin'" 2)
    rm -f "$W"/p.bin*
    echo "rs 10+4 whole tool, file to file: n3-encode --shards 10+4 $T_N3 s, par2 create -b10 -r40 $T_PAR s: n3 is $(ratio "$T_PAR" "$T_N3")x faster"
else
    echo "rs 10+4 whole tool: n3-encode $T_N3 s (par2 not installed)"
fi
echo "rs 10+4 rebuild, whole tool: no shard lost $T_DEC s ($(ratio "$FP32" "$(echo "$T_DEC * 1000000000" | bc -l)") GB/s), 4 data shards lost $T_LOST s ($(ratio "$FP32" "$(echo "$T_LOST * 1000000000" | bc -l)") GB/s)"

echo "--- lossless"
T_Z=$(best "'$N3_BIN/n3-encode' --zstd '$W/u.n3' > '$W/z.n3'")
T_ZD=$(best "'$N3_BIN/n3-encode' -d '$W/z.n3' > '$W/z.dec.n3'")
cmp "$W/u.n3" "$W/z.dec.n3"
T_REF=$(best "zstd -3 -q -f '$W/u.n3' -o '$W/u.zst'")
T_REFD=$(best "zstd -d -q -f '$W/u.zst' -o '$W/u.unz'")
S_Z=$(size "$W/z.n3"); S_REF=$(size "$W/u.zst")
echo "lossless size: n3-encode --zstd $(ratio "$S_Z" "$FP32") of fp32, zstd -3 $(ratio "$S_REF" "$FP32"): n3 output is $(ratio "$S_Z" "$S_REF")x the size of zstd -3's"
echo "lossless time: n3-encode --zstd $T_Z s, zstd -3 $T_REF s: n3 is $(ratio "$T_REF" "$T_Z")x the speed of zstd -3"
echo "lossless decode: n3-encode -d $T_ZD s, zstd -d $T_REFD s: $(ratio "$T_REFD" "$T_ZD")x"
T_Z2=$(best "zstd -3 -T2 -q -f '$W/u.n3' -o '$W/u.zst'")
echo "lossless time vs zstd -3 -T2 (both cores): $(ratio "$T_Z2" "$T_Z")x"
rm -f "$W/z.n3" "$W/z.dec.n3" "$W/u.zst" "$W/u.unz"

echo "--- lossy"
T_Q=$(best "'$N3_BIN/n3-encode' --quantize int8 --zstd '$W/u.n3' > '$W/q.n3'")
T_K=$(best "'$N3_BIN/n3-encode' --topk 0.01 --quantize int8 --zstd '$W/u.n3' > '$W/k.n3'")
echo "int8+zstd: $(size "$W/q.n3") bytes = $(ratio "$(size "$W/q.n3")" "$FP32") of fp32 ($T_Q s, $(ratio "$FP32" "$(echo "$T_Q * 1000000" | bc -l)") MB/s)"
echo "top-k 1% + int8 + zstd: $(size "$W/k.n3") bytes = $(ratio "$(size "$W/k.n3")" "$FP32") of fp32 ($T_K s)"

memory
