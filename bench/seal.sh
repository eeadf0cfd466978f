#!/usr/bin/env bash
# bench/seal.sh — n3-seal against age on one 256 MiB record, both ways, in both cipher suites.
#
#   N3_BIN=build/tools bash bench/seal.sh      (N3_BENCH_MIB=256, N3_BENCH_RUNS=9 by default)
#   N3_BENCH_MIB=4096 ... : only the memory lines, on a 4 GiB record (if the disk has room)
#
# age encrypts but does not sign; n3-seal also signs (two Schnorr signatures), hashes the whole
# payload into the digest signature 2 signs (suite 2: SHA-256 leaves; suite 1: BLAKE2b), checks
# the input's and writes the output's CRC-64 and pads to a Padmé bucket. Suite 2 is AES-256-GCM
# (what n3-seal picks on a CPU with AES and SHA instructions), suite 1 XChaCha20-Poly1305. Each
# tool runs N3_BENCH_RUNS times, alternating with its peer so that both see the same machine
# load; lines give the best and the median wall time. Output goes to a file in the same
# tmpfs-or-disk folder for every tool (no fsync for any). The open side is timed twice for
# suite 2: streamed to stdout (released after signature 1, record trailer only after signature
# 2) and held back (-o FILE: temporary file, fsync, rename after everything verified).
# The floor lines time each suite's cryptography alone (bench/seal/crypto_floor.cpp: the AEAD
# and the digest's leaves on buffers in memory; suite 2's leaves also sixteen at a time, as
# n3-seal hashes them on a CPU with AVX-512) on one and two threads: the physical limit of any
# implementation of the envelope on this machine, I/O aside.
# The memory lines give n3-seal's peak resident memory (one run each, getrusage of the process
# tree) sealing and opening, from the file and through pipes: n3-seal streams, so it must not
# grow with the record.
# On a machine others are using, N3_BENCH_RT=1 runs every timed command (n3's and age's alike)
# under chrt -f 1, a real-time priority above every ordinary process: the figures are then
# those of an idle machine (needs the right to set it: root, or CAP_SYS_NICE).
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
MIB=${N3_BENCH_MIB:-256}
RUNS=${N3_BENCH_RUNS:-9}
PY=/usr/bin/python3
for t in age age-keygen; do command -v $t >/dev/null || { echo "bench/seal: $t not installed"; exit 2; }; done
SRC=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d "${TMPDIR:-/tmp}/n3-bench-seal.XXXXXX")
trap 'rm -rf "$W"' EXIT
cd "$W"
need=$((MIB * 4 + 100))
avail=$(df -Pm . | awk 'NR == 2 {print $4}')
[ "$avail" -ge "$need" ] || { echo "bench/seal: $avail MiB free in $W, $need MiB needed for a ${MIB} MiB record"; exit 2; }

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
PRIO=()
if [ "${N3_BENCH_RT:-0}" = 1 ]; then
    chrt -f 1 true 2>/dev/null || { echo "bench/seal: N3_BENCH_RT=1 needs chrt -f (root or CAP_SYS_NICE)"; exit 2; }
    PRIO=(chrt -f 1)
fi
# The physical limit: each suite's cryptography alone (bench/seal/crypto_floor.cpp).
FLOOR=
if ${CXX:-c++} -O2 -std=c++20 -I "$SRC/lib" -o crypto_floor "$SRC/bench/seal/crypto_floor.cpp" \
    "$SRC/lib/crypto/sha256x16.cpp" -lsodium -lcrypto -pthread 2>cc.log; then
    FLOOR=$("${PRIO[@]}" ./crypto_floor "$MIB")
else
    echo "bench/seal: cannot build bench/seal/crypto_floor.cpp (needs a C++ compiler, libsodium-dev and libssl-dev); no floor"
fi
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
AGE_R=$(age-keygen -y age.key)

# run NAME FUNCTION [OUTPUT]: time one run, appending "wall cpu" (seconds; cpu is user + sys of all
# threads, the steadier figure on a shared machine) to NAME.times.
TIMEFORMAT='%R %U %S'
# The output file is removed first, outside the timing: freeing the previous run's pages would
# otherwise land in this run's time (more noise than signal, for every tool alike).
run() {
    local w u s
    [ -n "${3:-}" ] && rm -f "$3"
    # Real-time tasks may take 95% of each second (sched_rt_runtime_us): a pause between runs
    # keeps every run inside that budget rather than stopped for the rest of a second.
    [ ${#PRIO[@]} -gt 0 ] && sleep 0.5
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

seal2() { "${PRIO[@]}" "$N3_BIN/n3-seal" --suite aes-256-gcm --to bob.pub --key alice.key in.n3 >out2.sealed; }
seal1() { "${PRIO[@]}" "$N3_BIN/n3-seal" --suite xchacha20-poly1305 --to bob.pub --key alice.key in.n3 >out1.sealed; }
open2() { "${PRIO[@]}" "$N3_BIN/n3-seal" --open --key bob.key --authority fed.pub out2.sealed >out2.n3; }
open1() { "${PRIO[@]}" "$N3_BIN/n3-seal" --open --key bob.key --authority fed.pub out1.sealed >out1.n3; }
held2() { "${PRIO[@]}" "$N3_BIN/n3-seal" --open --key bob.key --authority fed.pub out2.sealed -o held.n3; }
age_enc() { "${PRIO[@]}" age -r "$AGE_R" in.n3 >out.age; }
age_dec() { "${PRIO[@]}" age -d -i age.key out.age >out.plain; }
copy() { "${PRIO[@]}" cat in.n3 >out.copy; }

# memory: peak RSS (MiB) of each way of sealing and opening, from a file and through pipes
peak() {
    "$PY" -c 'import resource, subprocess, sys
subprocess.run(["sh", "-c", sys.argv[1]], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$1"
}
memory() {
    local s name S=$N3_BIN/n3-seal
    for s in 2 1; do
        name=$([ $s = 2 ] && echo "aes-256-gcm" || echo "xchacha20-poly1305")
        local sf sp of op oh
        sf=$(peak "'$S' --suite $name --to bob.pub --key alice.key in.n3 >m$s.sealed")
        sp=$(peak "cat in.n3 | '$S' --suite $name --to bob.pub --key alice.key | cat >m$s.sealed")
        of=$(peak "'$S' --open --key bob.key --authority fed.pub m$s.sealed >m$s.n3")
        op=$(peak "cat m$s.sealed | '$S' --open --key bob.key --authority fed.pub | cat >m$s.n3")
        cmp -s in.n3 m$s.n3 || { echo "bench/seal: suite $s round trip differs (memory run)"; exit 1; }
        oh=$(peak "cat m$s.sealed | '$S' --open --key bob.key --authority fed.pub -o m$s.held.n3")
        cmp -s in.n3 m$s.held.n3 || { echo "bench/seal: suite $s held round trip differs (memory run)"; exit 1; }
        rm -f m$s.sealed m$s.n3 m$s.held.n3
        echo "memory suite $s ($name), ${MIB} MiB record: seal file $sf MiB, pipe $sp MiB; open file $of MiB, pipe $op MiB, held back (-o) $oh MiB"
    done
}
if [ "$MIB" -ge 2048 ]; then
    memory
    exit 0
fi

for _ in $(seq "$RUNS"); do
    run copy copy out.copy
    run seal2 seal2 out2.sealed
    run age_enc age_enc out.age
    run seal1 seal1 out1.sealed
    run open2 open2 out2.n3
    run age_dec age_dec out.plain
    run open1 open1 out1.n3
    run held2 held2 held.n3
done
for n in copy seal2 seal1 age_enc open2 open1 held2 age_dec; do
    read -r best med cpu < <(stats $n)
    eval "t_$n=$best m_$n=$med c_$n=$cpu"
done
for s in 1 2; do
    cmp -s in.n3 out$s.n3 || { echo "bench/seal: suite $s round trip differs"; exit 1; }
done
cmp -s in.n3 held.n3 || { echo "bench/seal: round trip differs (held)"; exit 1; }
cmp -s in.n3 out.plain || { echo "bench/seal: age round trip differs"; exit 1; }

echo "input: ${MIB} MiB update record; ${RUNS} runs each; cores: $(nproc); load before: $LOAD; after: $(cut -d' ' -f1-3 /proc/loadavg)$([ ${#PRIO[@]} -gt 0 ] && echo "; every command under ${PRIO[*]}")"
echo "copy   cat best ${t_copy} s ($(mbs "$t_copy") MB/s, cpu ${c_copy} s): the file-system reference"
echo "age    age -r best ${t_age_enc} s ($(mbs "$t_age_enc") MB/s, cpu ${c_age_enc} s), median ${m_age_enc} s;  age -d best ${t_age_dec} s ($(mbs "$t_age_dec") MB/s, cpu ${c_age_dec} s), median ${m_age_dec} s"
for s in 2 1; do
    name=$([ $s = 2 ] && echo "aes-256-gcm" || echo "xchacha20-poly1305")
    eval "ts=\$t_seal$s ms=\$m_seal$s cs=\$c_seal$s to=\$t_open$s mo=\$m_open$s co=\$c_open$s"
    echo "suite $s ($name)"
    echo "  seal   n3-seal best ${ts} s ($(mbs "$ts") MB/s, cpu ${cs} s), median ${ms} s"
    echo "  seal   ratio age/n3: wall best $(ratio "$t_age_enc" "$ts"), median $(ratio "$m_age_enc" "$ms"), cpu $(ratio "$c_age_enc" "$cs")  (>= 1.2: the goal)"
    echo "  open   n3-seal --open, streamed, best ${to} s ($(mbs "$to") MB/s, cpu ${co} s), median ${mo} s"
    echo "  open   ratio age/n3: wall best $(ratio "$t_age_dec" "$to"), median $(ratio "$m_age_dec" "$mo"), cpu $(ratio "$c_age_dec" "$co")"
done
echo "held   suite 2 held back (-o FILE, fsync, rename) best ${t_held2} s, median ${m_held2} s, cpu ${c_held2} s; held/streamed wall ratio $(ratio "$t_held2" "$t_open2")"
if [ -n "$FLOOR" ]; then
    read -r _ a1 a2 _ b1 b2 _ x1 x2 <<<"$FLOOR"
    echo "floor  each suite's crypto alone (the AEAD and the digest's leaves per 64 KiB chunk, in memory, no I/O, no checksums):"
    echo "floor  suite 2 (AES-256-GCM, SHA-256): 1 thread ${b1} s, 2 threads ${b2} s; leaves sixteen at a time (AVX-512, as n3-seal): 1 thread ${x1} s, 2 threads ${x2} s"
    echo "floor  suite 1 (XChaCha20-Poly1305, BLAKE2b): 1 thread ${a1} s, 2 threads ${a2} s"
    # n3-seal hashes suite 2's leaves sixteen at a time where the CPU can: that is its floor.
    [ "$x2" != - ] && b2=$x2
    for s in 2 1; do
        f=$([ $s = 2 ] && echo "$b2" || echo "$a2")
        eval "ts=\$t_seal$s to=\$t_open$s"
        bound=$(awk -v f="$f" -v c="$c_copy" 'BEGIN { printf "%.3f", f + c / 2 }')
        echo "floor  suite $s: wall best / 2-thread floor: seal $(ratio "$ts" "$f"), open $(ratio "$to" "$f"); least wall time of a 2-core sealer (floor + half of cat's cpu) ${bound} s"
    done
fi
echo "size   sealed $(stat -c %s out2.sealed) bytes (suite 1: $(stat -c %s out1.sealed)), age $(stat -c %s out.age) bytes, input $(stat -c %s in.n3) bytes"
memory
