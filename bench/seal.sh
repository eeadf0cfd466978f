#!/usr/bin/env bash
# bench/seal.sh — n3-seal against age on one 256 MiB record, both ways.
#
#   N3_BIN=build/tools bash bench/seal.sh      (N3_BENCH_MIB=256, N3_BENCH_RUNS=5 by default)
#
# age encrypts but does not sign; n3-seal also signs (two Schnorr signatures), authenticates
# and hashes every chunk with keyed BLAKE2b (age: Poly1305, which hashes nothing) and pads to
# a Padmé bucket. Each tool runs N3_BENCH_RUNS times, alternating with its peer so that both
# see the same machine load; lines give the best and the median wall time. Output goes to a
# file in the same tmpfs-or-disk folder for both tools (no fsync for either). The open side
# is timed twice: streamed to stdout (released after signature 1, record trailer only after
# signature 2) and held back (-o FILE: temporary file, fsync, rename after everything verified).
# The floor lines time the construction's cryptography alone (bench/seal/crypto_floor.cpp: the
# AEAD and the digest's leaves on buffers in memory) on one and two threads: the physical
# limit of any implementation of the envelope on this machine, I/O aside.
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
MIB=${N3_BENCH_MIB:-256}
RUNS=${N3_BENCH_RUNS:-5}
PY=/usr/bin/python3
for t in age age-keygen; do command -v $t >/dev/null || { echo "bench/seal: $t not installed"; exit 2; }; done
SRC=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/n3-bench-seal.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"

"$PY" - "$MIB" <<'PY'
import json, struct, os, sys
n = int(sys.argv[1]) * (1 << 20) // 4
hdr = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, n * 4]}}).encode()
hdr += b' ' * (-len(hdr) % 8)
with open('in.st', 'wb') as f:
    f.write(struct.pack('<Q', len(hdr)) + hdr)
    chunk = os.urandom(1 << 20)
    for _ in range(n * 4 >> 20):
        f.write(chunk)
PY
"$N3_BIN/n3-inspect" --from-safetensors in.st --kind update --meta round=1 -o in.n3
rm in.st
"$N3_BIN/n3-keys" authority -o fed.ask 2>/dev/null
"$N3_BIN/n3-keys" public fed.ask >fed.pub
for m in alice bob; do
    "$N3_BIN/n3-keys" request --id $m -o $m.secret >$m.req
    "$N3_BIN/n3-keys" issue --authority fed.ask $m.req -o $m.partial
    "$N3_BIN/n3-keys" complete --secret $m.secret --partial $m.partial -o $m.key 2>/dev/null
    "$N3_BIN/n3-keys" public $m.key >$m.pub
done
age-keygen -o age.key 2>/dev/null
# The physical limit: the construction's libsodium work alone (bench/seal/crypto_floor.cpp).
FLOOR=
if ${CXX:-c++} -O2 -std=c++17 -o crypto_floor "$SRC/bench/seal/crypto_floor.cpp" -lsodium -pthread 2>cc.log; then
    FLOOR=$(./crypto_floor "$MIB")
else
    echo "bench/seal: cannot build bench/seal/crypto_floor.cpp (needs a C++ compiler and libsodium-dev); no floor"
fi
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
AGE_R=$(age-keygen -y age.key)

# run NAME FUNCTION: time one run, appending "wall cpu" (seconds; cpu is user + sys of all
# threads, the steadier figure on a shared machine) to NAME.times.
TIMEFORMAT='%R %U %S'
run() {
    local w u s
    { time "$2" 2>/dev/null; } 2>time.txt
    read -r w u s <time.txt
    awk -v w="$w" -v u="$u" -v s="$s" 'BEGIN { printf "%s %.2f\n", w, u + s }' >>"$1.times"
}
# stats NAME: "best median least-cpu" of NAME.times.
stats() {
    sort -n "$1.times" | awk '{ w[NR] = $1; if (NR == 1 || $2 < c) c = $2 }
        END { m = (NR % 2) ? w[(NR + 1) / 2] : (w[NR / 2] + w[NR / 2 + 1]) / 2; printf "%s %.3f %s\n", w[1], m, c }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mbs() { awk -v s="$1" -v m="$MIB" 'BEGIN { printf "%.0f", m * 1.048576 / s }'; }

seal() { "$N3_BIN/n3-seal" --to bob.pub --key alice.key in.n3 >out.sealed; }
open_stream() { "$N3_BIN/n3-seal" --open --key bob.key --authority fed.pub out.sealed >out.n3; }
open_held() { rm -f held.n3; "$N3_BIN/n3-seal" --open --key bob.key --authority fed.pub out.sealed -o held.n3; }
age_enc() { age -r "$AGE_R" in.n3 >out.age; }
age_dec() { age -d -i age.key out.age >out.plain; }
copy() { cat in.n3 >out.copy; }

for _ in $(seq "$RUNS"); do
    run copy copy
    run seal seal
    run age_enc age_enc
    run open open_stream
    run held open_held
    run age_dec age_dec
done
read -r t_copy m_copy c_copy < <(stats copy)
read -r t_seal m_seal c_seal < <(stats seal)
read -r t_age_enc m_age_enc c_age_enc < <(stats age_enc)
read -r t_open m_open c_open < <(stats open)
read -r t_held m_held c_held < <(stats held)
read -r t_age_dec m_age_dec c_age_dec < <(stats age_dec)
cmp -s in.n3 out.n3 || { echo "bench/seal: round trip differs"; exit 1; }
cmp -s in.n3 held.n3 || { echo "bench/seal: round trip differs (held)"; exit 1; }
cmp -s in.n3 out.plain || { echo "bench/seal: age round trip differs"; exit 1; }

echo "input: ${MIB} MiB update record; ${RUNS} runs each; cores: $(nproc); load before: $LOAD; after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "copy   cat best ${t_copy} s ($(mbs "$t_copy") MB/s, cpu ${c_copy} s): the file-system reference"
echo "seal   n3-seal best ${t_seal} s ($(mbs "$t_seal") MB/s, cpu ${c_seal} s), median ${m_seal} s;  age -r best ${t_age_enc} s ($(mbs "$t_age_enc") MB/s, cpu ${c_age_enc} s), median ${m_age_enc} s"
echo "seal   ratio age/n3: wall best $(ratio "$t_age_enc" "$t_seal"), median $(ratio "$m_age_enc" "$m_seal"), cpu $(ratio "$c_age_enc" "$c_seal")  (>= 1: n3 as fast as age)"
echo "open   n3-seal --open, streamed, best ${t_open} s ($(mbs "$t_open") MB/s, cpu ${c_open} s), median ${m_open} s;  age -d best ${t_age_dec} s ($(mbs "$t_age_dec") MB/s, cpu ${c_age_dec} s), median ${m_age_dec} s"
echo "open   ratio age/n3: wall best $(ratio "$t_age_dec" "$t_open"), median $(ratio "$m_age_dec" "$m_open"), cpu $(ratio "$c_age_dec" "$c_open")"
echo "open   held back (-o FILE, fsync, rename) best ${t_held} s, median ${m_held} s, cpu ${c_held} s; held/streamed wall ratio $(ratio "$t_held" "$t_open")"
if [ -n "$FLOOR" ]; then
    read -r _ f1 _ f2 <<<"$FLOOR"
    echo "floor  the construction's crypto alone (XChaCha20-Poly1305 and BLAKE2b leaves per 64 KiB chunk, in memory, no I/O, no checksums): 1 thread ${f1} s, 2 threads ${f2} s"
    echo "floor  wall best / 2-thread floor: n3-seal $(ratio "$t_seal" "$f2"), age -r $(ratio "$t_age_enc" "$f2"); n3-seal --open $(ratio "$t_open" "$f2"), age -d $(ratio "$t_age_dec" "$f2")"
    bound=$(awk -v f="$f2" -v c="$c_copy" 'BEGIN { printf "%.3f", f + c / 2 }')
    echo "floor  least wall time of any 2-core sealer of this construction: 2-thread floor + half of cat's cpu (reading and writing the bytes) = ${bound} s; age -r best ${t_age_enc} s, age -d best ${t_age_dec} s"
fi
echo "size   sealed $(stat -c %s out.sealed) bytes, age $(stat -c %s out.age) bytes, input $(stat -c %s in.n3) bytes"
