#!/usr/bin/env bash
# bench/send.sh — n3-send against socat and against bare libzmq, over tcp loopback, all three
# moving the same bytes in the same run.
#   N3_BIN=build/tools bash bench/send.sh            (RUNS=5 repetitions by default)
# 1. one 256 MiB record: n3-send (PUSH -> PULL, 1 MiB frames, CRC checked on both sides,
#    written to /dev/null) against socat -b 1M (target >= 0.7x socat), and against a bare
#    libzmq program moving the file as one multipart message of 1 MiB frames
#    (bench/send/zmq_limit.cpp: no checks, the speed of ZeroMQ itself, a physical limit).
#    Then a stream of four such records.
#    The single record is also sent to a receiver started with --reserve 300M, whose frame
#    memory is faulted in before it listens (as it is for every record after the first), and
#    all of it again with the receivers writing to a file instead of /dev/null.
# 2. small records (about 200 bytes each): records per second, against the same peers.
# Every transfer is timed from the sender's start to the receiver's exit, process start-up
# and exit included on all sides. The three kinds take turns in each repetition so that they
# share the machine's load; lines give the median and the best of RUNS, and the load average.
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
RUNS=${RUNS:-5}
PY=${N3_PYTHON:-/usr/bin/python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
command -v socat >/dev/null || { echo "bench/send: socat not installed (apt-get install socat)"; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/n3-bench-send.XXXXXX")
trap 'rm -rf "$T"' EXIT
export PATH="$N3_BIN:$PATH"

ZL=$T/zmq_limit
if ! ${CXX:-c++} -O2 -std=c++17 -o "$ZL" "$SRC/bench/send/zmq_limit.cpp" -lzmq 2>"$T/cc.log"; then
    echo "bench/send: cannot build bench/send/zmq_limit.cpp (needs a C++ compiler and libzmq3-dev); no libzmq comparison"
    ZL=
fi

port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { for _ in $(seq 100); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.02; done; return 1; }
now() { date +%s.%N; }
load() { cut -d' ' -f1 /proc/loadavg; }

# one_run KIND FILE COUNT: prints seconds for one transfer
one_run() {
    local kind=$1 file=$2 count=$3 p r s e
    p=$(port)
    case $kind in
    n3 | n3r)
        # n3r: the receiver faults its frame memory in before it listens (--reserve)
        local reserve=()
        [ "$kind" = n3r ] && reserve=(--reserve 300M)
        n3-send --recv "tcp://127.0.0.1:$p" --count "$count" --timeout 120 "${reserve[@]}" >"$SINK" &
        r=$!
        wait_listen "$p"
        s=$(now)
        n3-send --timeout 120 "tcp://127.0.0.1:$p" "$file"
        ;;
    zmq)
        "$ZL" recv "tcp://127.0.0.1:$p" "$count" >"$SINK" &
        r=$!
        wait_listen "$p"
        s=$(now)
        "$ZL" send "tcp://127.0.0.1:$p" "$file" "$count"
        ;;
    socat)
        socat -b 1048576 -u "TCP-LISTEN:$p,reuseaddr,bind=127.0.0.1" - >"$SINK" &
        r=$!
        wait_listen "$p"
        s=$(now)
        socat -b 1048576 -u "FILE:$file" "TCP:127.0.0.1:$p"
        ;;
    esac
    wait "$r"
    e=$(now)
    [ "$SINK" = /dev/null ] || rm -f "$SINK"
    echo "$e - $s" | bc -l
}
SINK=/dev/null # where receivers write

# compare FILE COUNT [n3r]: RUNS rounds of n3, zmq, socat (and n3r); leaves median and best
# seconds in n3_med n3_best zmq_med ... n3r_best, and the load averages in load_at.
compare() {
    local file=$1 count=$2 with_reserve=${3:-} k
    load_at=$(load)
    : >"$T/times"
    for _ in $(seq "$RUNS"); do
        echo "n3 $(one_run n3 "$file" "$count")" >>"$T/times"
        [ -n "$with_reserve" ] && echo "n3r $(one_run n3r "$file" "$count")" >>"$T/times"
        [ -n "$ZL" ] && echo "zmq $(one_run zmq "$file" "$count")" >>"$T/times"
        echo "sc $(one_run socat "$file" "$count")" >>"$T/times"
    done
    load_at="$load_at-$(load)"
    for k in n3 n3r zmq sc; do
        read -r med best < <(awk -v k="$k" '$1 == k {print $2}' "$T/times" | sort -g |
            awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)], a[1]; else print 0, 0}')
        printf -v "${k}_med" %s "$med"
        printf -v "${k}_best" %s "$best"
    done
}

# report WHAT BYTES [UNIT RECORDS]: one line for median, one for best
report() {
    local what=$1 bytes=$2
    for which in median best; do
        if [ $which = median ]; then n=$n3_med z=$zmq_med s=$sc_med; else n=$n3_best z=$zmq_best s=$sc_best; fi
        awk -v what="$what" -v which="$which" -v b="$bytes" -v n="$n" -v z="$z" -v s="$s" \
            -v recs="${3:-0}" -v runs="$RUNS" -v load="$load_at" 'BEGIN {
            if (recs > 0) head = sprintf("n3-send %.0f records/s (%.3f s), socat %.3f s", recs / n, n, s)
            else head = sprintf("n3-send %.2f GB/s (%.3f s), socat %.2f GB/s (%.3f s)", b / n / 1e9, n, b / s / 1e9, s)
            zl = z > 0 ? sprintf(", libzmq %.3f s; ratio %.2fx socat, %.2fx libzmq", z, s / n, z / n) \
                       : sprintf("; ratio %.2fx socat", s / n)
            printf "send: %s, %s of %d: %s%s (load %s)\n", what, which, runs, head, zl, load }'
    done
}

"$PY" "$SRC/tests/net/peer.py" st "$T/big.st" $((64 * 1024 * 1024)) 1
n3-inspect --from-safetensors "$T/big.st" --kind update -o "$T/big.n3"
rm "$T/big.st"
bytes=$(stat -c %s "$T/big.n3")
compare "$T/big.n3" 1 n3r
report "256 MiB record, tcp loopback (target >= 0.7x socat)" "$bytes"
n3_med=$n3r_med n3_best=$n3r_best
report "256 MiB record, receiver with --reserve 300M" "$bytes"

# The same into a file (page cache, no fsync), where socat's receiver also takes fresh memory.
SINK=$T/received
compare "$T/big.n3" 1 n3r
report "256 MiB record into a file" "$bytes"
n3_med=$n3r_med n3_best=$n3r_best
report "256 MiB record into a file, receiver with --reserve 300M" "$bytes"
SINK=/dev/null

cat "$T/big.n3" "$T/big.n3" "$T/big.n3" "$T/big.n3" >"$T/big4.n3"
compare "$T/big4.n3" 4
report "4 x 256 MiB records, tcp loopback" $((4 * bytes))
rm "$T/big4.n3"

"$PY" "$SRC/tests/net/peer.py" st "$T/small.st" 16 2
n3-inspect --from-safetensors "$T/small.st" --kind update -o "$T/small.n3"
N=20000
for _ in $(seq 100); do cat "$T/small.n3"; done >"$T/x100"
for _ in $(seq $((N / 100))); do cat "$T/x100"; done >"$T/smalls.n3"
rec=$(stat -c %s "$T/small.n3")
compare "$T/smalls.n3" "$N"
report "$N records of $rec bytes, tcp loopback" $((N * rec)) "$N"
