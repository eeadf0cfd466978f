#!/usr/bin/env bash
# bench/seal.sh — n3-seal against age on one 256 MiB record, both ways.
#
#   N3_BIN=build/tools bash bench/seal.sh      (N3_BENCH_MIB=256 by default)
#
# age encrypts but does not sign; n3-seal also signs (two Schnorr signatures), hashes the whole
# payload (BLAKE2b tree) and pads to a Padmé bucket. Each timing is the best of 3 runs, output
# to a file in the same tmpfs-or-disk folder for both tools (no fsync for either). The open side
# is timed twice: streamed to stdout (released after signature 1, record trailer only after
# signature 2) and held back (-o FILE: temporary file, fsync, rename after everything verified).
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
MIB=${N3_BENCH_MIB:-256}
PY=/usr/bin/python3
for t in age age-keygen; do command -v $t >/dev/null || { echo "bench/seal: $t not installed"; exit 2; }; done
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
    "$N3_BIN/n3-keys" issue --authority fed.ask $m.req >$m.partial
    "$N3_BIN/n3-keys" complete --secret $m.secret --partial $m.partial -o $m.key 2>/dev/null
    "$N3_BIN/n3-keys" public $m.key >$m.pub
done
age-keygen -o age.key 2>/dev/null
AGE_R=$(age-keygen -y age.key)

# best CMD...: best wall time of 3 runs, in seconds
best() {
    local b=999999 s e t
    for _ in 1 2 3; do
        s=$(date +%s%N)
        "$@"
        e=$(date +%s%N)
        t=$(((e - s) / 1000))
        [ $t -lt $b ] && b=$t
    done
    awk -v u=$b 'BEGIN { printf "%.3f", u / 1e6 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
mbs() { awk -v s="$1" -v m="$MIB" 'BEGIN { printf "%.0f", m * 1.048576 / s }'; }

seal() { "$N3_BIN/n3-seal" --to bob.pub --key alice.key in.n3 >out.sealed; }
open_stream() { "$N3_BIN/n3-seal" --open --key bob.key --authority fed.pub out.sealed >out.n3 2>/dev/null; }
open_held() { rm -f held.n3; "$N3_BIN/n3-seal" --open --key bob.key --authority fed.pub out.sealed -o held.n3 2>/dev/null; }
age_enc() { age -r "$AGE_R" in.n3 >out.age; }
age_dec() { age -d -i age.key out.age >out.plain; }
copy() { cat in.n3 >out.copy; }

t_copy=$(best copy)
t_seal=$(best seal)
t_age_enc=$(best age_enc)
t_open=$(best open_stream)
t_held=$(best open_held)
t_age_dec=$(best age_dec)
cmp -s in.n3 out.n3 || { echo "bench/seal: round trip differs"; exit 1; }
cmp -s in.n3 held.n3 || { echo "bench/seal: round trip differs (held)"; exit 1; }
cmp -s in.n3 out.plain || { echo "bench/seal: age round trip differs"; exit 1; }

echo "input: ${MIB} MiB update record; cores: $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cat (copy, physical reference) ${t_copy} s  $(mbs "$t_copy") MB/s"
echo "seal   n3-seal ${t_seal} s ($(mbs "$t_seal") MB/s)  age -r ${t_age_enc} s ($(mbs "$t_age_enc") MB/s)  age/n3 ratio $(ratio "$t_age_enc" "$t_seal") (>= 1 means n3 is as fast)"
echo "open   n3-seal --open (stream) ${t_open} s ($(mbs "$t_open") MB/s)  age -d ${t_age_dec} s ($(mbs "$t_age_dec") MB/s)  age/n3 ratio $(ratio "$t_age_dec" "$t_open")"
echo "open   n3-seal --open -o FILE (held back, fsync) ${t_held} s  held/stream ratio $(ratio "$t_held" "$t_open")"
echo "size   sealed $(stat -c %s out.sealed) bytes, age $(stat -c %s out.age) bytes, input $(stat -c %s in.n3) bytes"
