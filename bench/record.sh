#!/usr/bin/env bash
# bench/record.sh — how fast records are verified: `n3-inspect --check` (preamble, CRC-64 over the
# whole record, tensor header) on a 256 MiB update in the page cache, against `cat` of the same file
# to /dev/null (the cost of just reading it), the same through a pipe against `cat | cat`, and against `b2sum` (what a cryptographic hash costs).
# Prints the ratio; the checksum must not be the slow stage of any pipeline.
set -euo pipefail
: "${N3_BIN:=$(cd "$(dirname "$0")/.." && pwd)/build/tools}"
PY=${N3_PYTHON:-/usr/bin/python3}
MIB=${MIB:-256}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
"$PY" - "$T/u.safetensors" "$MIB" <<'PY'
import sys, json, struct, numpy as np
n = int(sys.argv[2]) * (1 << 20) // 4
a = np.random.default_rng(1).normal(0, 0.01, n).astype("<f4")
h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h); a.tofile(f)
PY
"$N3_BIN/n3-inspect" --from-safetensors "$T/u.safetensors" --kind update --meta samples=1 -o "$T/u.n3"
rm "$T/u.safetensors"
best() { # best wall time of 5 runs of "$@", in seconds
    local b=999 s e t
    for _ in 1 2 3 4 5; do
        s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N)
        t=$(echo "$e - $s" | bc -l); (( $(echo "$t < $b" | bc -l) )) && b=$t
    done
    echo "$b"
}
cat "$T/u.n3" > /dev/null
t_cat=$(best cat "$T/u.n3")
t_chk=$(best "$N3_BIN/n3-inspect" --check "$T/u.n3")
t_pipe=$(best sh -c "cat '$T/u.n3' | '$N3_BIN/n3-inspect' --check")
t_pcat=$(best sh -c "cat '$T/u.n3' | cat > /dev/null")
t_b2=$(best b2sum "$T/u.n3")
gbs() { echo "scale=2; $MIB / 1024 / $1" | bc -l; }
printf 'record verify, %d MiB update, page cache (best of 5)\n' "$MIB"
printf '  cat > /dev/null             %6.3f s  %5s GiB/s\n' "$t_cat" "$(gbs "$t_cat")"
printf '  n3-inspect --check (mmap)   %6.3f s  %5s GiB/s  ratio vs cat %.2fx\n' "$t_chk" "$(gbs "$t_chk")" "$(echo "$t_cat / $t_chk" | bc -l)"
printf '  cat | cat > /dev/null       %6.3f s  %5s GiB/s\n' "$t_pcat" "$(gbs "$t_pcat")"
printf '  cat | n3-inspect --check    %6.3f s  %5s GiB/s  ratio vs cat|cat %.2fx\n' "$t_pipe" "$(gbs "$t_pipe")" "$(echo "$t_pcat / $t_pipe" | bc -l)"
printf '  b2sum (BLAKE2b)             %6.3f s  %5s GiB/s  n3 check is %.1fx faster\n' "$t_b2" "$(gbs "$t_b2")" "$(echo "$t_b2 / $t_chk" | bc -l)"
