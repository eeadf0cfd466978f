#!/usr/bin/env bash
# bench/send.sh — n3-send against socat over tcp loopback, both moving the same bytes.
#   N3_BIN=build/tools bash bench/send.sh
# 1. one 256 MiB record: n3-send (PUSH -> PULL, 1 MiB frames, CRC checked on arrival, written
#    to /dev/null) against socat -b 1M moving the file's bytes; target >= 0.7x socat. Then a
#    stream of four such records, where the receiver's frame memory is warm after the first.
# 2. small records (about 200 bytes each): records per second, against socat moving the
#    same stream.
# Each figure is the median of RUNS runs (default 5), timed from the sender's start to the
# receiver's exit, process start-up included on both sides.
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
RUNS=${RUNS:-5}
PY=${N3_PYTHON:-/usr/bin/python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
command -v socat >/dev/null || { echo "bench/send: socat not installed (apt-get install socat)"; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/n3-bench-send.XXXXXX")
trap 'rm -rf "$T"' EXIT
export PATH="$N3_BIN:$PATH"

port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { for _ in $(seq 100); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.02; done; return 1; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# one_run KIND FILE COUNT: prints seconds for one transfer
one_run() {
    local kind=$1 file=$2 count=$3 p r s e
    p=$(port)
    if [ "$kind" = n3 ]; then
        n3-send --recv "tcp://127.0.0.1:$p" --count "$count" --timeout 120 >/dev/null &
        r=$!
        wait_listen "$p"
        s=$(now)
        n3-send --timeout 120 "tcp://127.0.0.1:$p" "$file"
    else
        socat -b 1048576 -u "TCP-LISTEN:$p,reuseaddr,bind=127.0.0.1" - >/dev/null &
        r=$!
        wait_listen "$p"
        s=$(now)
        socat -b 1048576 -u "FILE:$file" "TCP:127.0.0.1:$p"
    fi
    wait "$r"
    e=$(now)
    echo "$e - $s" | bc -l
}

timed() { # KIND FILE COUNT: median seconds over RUNS
    for _ in $(seq "$RUNS"); do one_run "$@"; done | median
}

"$PY" "$SRC/tests/net/peer.py" st "$T/big.st" $((64 * 1024 * 1024)) 1
n3-inspect --from-safetensors "$T/big.st" --kind update -o "$T/big.n3"
rm "$T/big.st"
bytes=$(stat -c %s "$T/big.n3")
n3=$(timed n3 "$T/big.n3" 1)
sc=$(timed socat "$T/big.n3" 1)
awk -v b="$bytes" -v n="$n3" -v s="$sc" 'BEGIN {
    printf "send: 256 MiB record, tcp loopback: n3-send %.2f GB/s (%.3f s), socat %.2f GB/s (%.3f s), ratio %.2fx socat (target >= 0.7x)\n",
        b / n / 1e9, n, b / s / 1e9, s, s / n }'

cat "$T/big.n3" "$T/big.n3" "$T/big.n3" "$T/big.n3" >"$T/big4.n3"
n3=$(timed n3 "$T/big4.n3" 4)
sc=$(timed socat "$T/big4.n3" 1)
awk -v b="$bytes" -v n="$n3" -v s="$sc" 'BEGIN {
    printf "send: 4 x 256 MiB records, tcp loopback: n3-send %.2f GB/s (%.3f s), socat %.2f GB/s (%.3f s), ratio %.2fx socat\n",
        4 * b / n / 1e9, n, 4 * b / s / 1e9, s, s / n }'
rm "$T/big4.n3"

"$PY" "$SRC/tests/net/peer.py" st "$T/small.st" 16 2
n3-inspect --from-safetensors "$T/small.st" --kind update -o "$T/small.n3"
N=20000
for _ in $(seq 100); do cat "$T/small.n3"; done >"$T/x100"
for _ in $(seq $((N / 100))); do cat "$T/x100"; done >"$T/smalls.n3"
rec=$(stat -c %s "$T/small.n3")
n3=$(timed n3 "$T/smalls.n3" "$N")
sc=$(timed socat "$T/smalls.n3" "$N")
awk -v N="$N" -v r="$rec" -v n="$n3" -v s="$sc" 'BEGIN {
    printf "send: %d records of %d bytes, tcp loopback: n3-send %.0f records/s (%.3f s), socat moves the same bytes in %.3f s, ratio %.2fx socat\n",
        N, r, N / n, n, s, s / n }'
