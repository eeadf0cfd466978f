#!/usr/bin/env bash
# bench/send.sh — n3-send against socat and against bare libzmq, over tcp loopback, all of them
# moving the same bytes in the same run, with the n3 receiver's peak resident memory.
#   N3_BIN=build/tools bash bench/send.sh     (N3_BENCH_RUNS=5 repetitions by default)
# 1. one 256 MiB record: n3-send (PUSH -> PULL, 1 MiB chunks, CRC checked on both sides)
#    against socat -b 1M (target >= 0.8x socat with default flags, and a receiver under 64 MiB
#    resident), each receiver writing to the same kind of sink:
#    - /dev/null (n3 writes the chunks through), also against a bare libzmq program moving the
#      file as one multipart message of 1 MiB frames (bench/send/zmq_limit.cpp: no checks,
#      ZeroMQ's speed when a message is held whole);
#    - a regular file (n3 writes the record in place, cut back if it broke off);
#    - a pipe into cat (n3 holds the record in a temporary file until checked, or with the
#      receiver's --stream writes it as it arrives).
# 2. eight senders of a 256 MiB record each at once: one n3 receiver (--count 8) against eight
#    socat pairs on eight ports (target >= 0.8x socat, receiver under 128 MiB), to /dev/null
#    and to pipes.
# 3. one 4 GiB record (over every 32-bit limit), into a file, three runs: n3-send against socat, the
#    received file compared with the original (cmp), receiver under 64 MiB. The record is
#    generated on disk (a sparse safetensors file made into a record) and deleted after.
# 4. small records (about 200 bytes each): records per second, against the same peers.
# Every transfer is timed from the senders' start to the receivers' exit, process start-up
# and exit included on all sides. The kinds take turns in each repetition so that they share
# the machine's load; lines give the median and the best, and the load average.
# On a machine others are using, N3_BENCH_RT=1 runs every process of every transfer (n3's,
# socat's and libzmq's alike, and the cat of a pipe) under chrt -f 1, a real-time priority
# above every ordinary process, with a pause between transfers (real-time tasks get 95% of
# each second): the figures are then those of an idle machine (root, or CAP_SYS_NICE).
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
RUNS=${N3_BENCH_RUNS:-${RUNS:-5}}
PY=${N3_PYTHON:-/usr/bin/python3}
SRC=$(cd "$(dirname "$0")/.." && pwd)
command -v socat >/dev/null || { echo "bench/send: socat not installed (apt-get install socat)"; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/send: /usr/bin/time not installed (apt-get install time)"; exit 2; }
T=$(mktemp -d "${TMPDIR:-/tmp}/n3-bench-send.XXXXXX")
trap 'rm -rf "$T"' EXIT
export PATH="$N3_BIN:$PATH"
PRIO=()
if [ "${N3_BENCH_RT:-0}" = 1 ]; then
    chrt -f 1 true 2>/dev/null || { echo "bench/send: N3_BENCH_RT=1 needs chrt -f (root or CAP_SYS_NICE)"; exit 2; }
    PRIO=(chrt -f 1)
fi

ZL=$T/zmq_limit
if ! ${CXX:-c++} -O2 -std=c++17 -o "$ZL" "$SRC/bench/send/zmq_limit.cpp" -lzmq 2>"$T/cc.log"; then
    echo "bench/send: cannot build bench/send/zmq_limit.cpp (needs a C++ compiler and libzmq3-dev); no libzmq comparison"
    ZL=
fi

port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { for _ in $(seq 250); do ss -ltnH "sport = :$1" | grep -q . && return 0; sleep 0.02; done; return 1; }
now() { date +%s.%N; }
# to_sink CMD...: runs CMD in the background with its stdout on $SINK: a redirection to the
# file (or /dev/null), or for "pipe" a pipe into cat, as in `n3-send --recv ... | cmd`; $! is
# the pipeline's last process either way
to_sink() { if [ "$SINK" = pipe ]; then "$@" | "${PRIO[@]}" cat >/dev/null & else "$@" >"$SINK" & fi; }
load() { cut -d' ' -f1 /proc/loadavg; }
SINK=/dev/null # where receivers write: a file, or "pipe" (into cat >/dev/null)
RSS=0          # the last n3 receiver's peak resident memory, KiB

# one_run KIND FILE COUNT SENDERS: prints seconds for SENDERS senders of FILE (COUNT records
# each); n3's receiver peak RSS goes to $T/rss
one_run() {
    local kind=$1 file=$2 count=$3 senders=$4 p r s e i ports=() pids=()
    case $kind in
    n3 | n3s)
        # n3s: the receiver writes large records as they arrive (--stream)
        local stream=()
        [ "$kind" = n3s ] && stream=(--stream)
        p=$(port)
        to_sink "${PRIO[@]}" /usr/bin/time -f %M -o "$T/rss" \
            n3-send --recv "tcp://127.0.0.1:$p" --count $((count * senders)) --timeout 300 "${stream[@]}"
        r=$!
        wait_listen "$p"
        s=$(now)
        for i in $(seq "$senders"); do "${PRIO[@]}" /usr/bin/time -f %M -o "$T/txrss.$i" n3-send --timeout 300 "tcp://127.0.0.1:$p" "$file" & pids+=($!); done
        wait "${pids[@]}"
        wait "$r"
        ;;
    zmq)
        p=$(port)
        to_sink "${PRIO[@]}" "$ZL" recv "tcp://127.0.0.1:$p" "$count"
        r=$!
        wait_listen "$p"
        s=$(now)
        "${PRIO[@]}" "$ZL" send "tcp://127.0.0.1:$p" "$file" "$count"
        wait "$r"
        ;;
    socat)
        for i in $(seq "$senders"); do
            p=$(port)
            ports+=("$p")
            to_sink "${PRIO[@]}" socat -b 1048576 -u "TCP-LISTEN:$p,reuseaddr,bind=127.0.0.1" -
            pids+=($!)
        done
        for p in "${ports[@]}"; do wait_listen "$p"; done
        s=$(now)
        for p in "${ports[@]}"; do "${PRIO[@]}" socat -b 1048576 -u "FILE:$file" "TCP:127.0.0.1:$p" & done
        wait
        ;;
    esac
    e=$(now)
    echo "$e - $s" | bc -l
}

# compare FILE COUNT SENDERS [KINDS]: RUNS rounds of each kind; leaves median and best seconds
# in n3_med n3_best zmq_med zmq_best sc_med sc_best, the n3 receiver's largest peak RSS (MiB)
# in rss_mib, its senders' largest in tx_mib, and the load averages in load_at.
compare() {
    local file=$1 count=$2 senders=$3 kinds=${4:-n3 zmq socat} k t
    load_at=$(load)
    : >"$T/times"
    rss_mib=0
    tx_mib=0
    local run order
    for run in $(seq "$RUNS"); do
        # every other repetition in reverse order: no kind always runs after another's writes
        order=$kinds
        [ $((run % 2)) = 0 ] && order=$(echo "$kinds" | tr ' ' '\n' | tac | tr '\n' ' ')
        for k in $order; do
            [ "$k" = zmq ] && [ -z "$ZL" ] && continue
            [ ${#PRIO[@]} -gt 0 ] && sleep 0.5
            t=$(one_run "$k" "$file" "$count" "$senders")
            echo "${k/socat/sc} $t" >>"$T/times"
            if [ "${k:0:2}" = n3 ]; then
                local m=$(($(tail -1 "$T/rss") / 1024)) f
                [ "$m" -gt "$rss_mib" ] && rss_mib=$m
                for f in "$T"/txrss.*; do
                    m=$(($(tail -1 "$f") / 1024))
                    [ "$m" -gt "$tx_mib" ] && tx_mib=$m
                done
                rm -f "$T"/txrss.*
            fi
        done
    done
    load_at="$load_at-$(load)"
    [ ${#PRIO[@]} -gt 0 ] && load_at="$load_at; every process under ${PRIO[*]}"
    for k in n3 n3s zmq sc; do
        read -r med best < <(awk -v k="$k" '$1 == k {print $2}' "$T/times" | sort -g |
            awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)], a[1]; else print 0, 0}')
        printf -v "${k}_med" %s "$med"
        printf -v "${k}_best" %s "$best"
    done
}

# report WHAT BYTES [RECORDS]: one line for the median, one for the best
report() {
    local what=$1 bytes=$2
    for which in median best; do
        if [ $which = median ]; then n=$n3_med z=$zmq_med s=$sc_med; else n=$n3_best z=$zmq_best s=$sc_best; fi
        awk -v what="$what" -v which="$which" -v b="$bytes" -v n="$n" -v z="$z" -v s="$s" \
            -v recs="${3:-0}" -v runs="$RUNS" -v load="$load_at" -v rss="$rss_mib" -v tx="$tx_mib" 'BEGIN {
            if (recs > 0) head = sprintf("n3-send %.0f records/s (%.3f s), socat %.3f s", recs / n, n, s)
            else head = sprintf("n3-send %.2f GB/s (%.3f s), socat %.2f GB/s (%.3f s)", b / n / 1e9, n, b / s / 1e9, s)
            zl = z > 0 ? sprintf(", libzmq %.3f s; ratio %.2fx socat, %.2fx libzmq", z, s / n, z / n) \
                       : sprintf("; ratio %.2fx socat", s / n)
            printf "send: %s, %s of %d: %s%s; n3 peak RSS: receiver %d MiB, sender %d MiB (load %s)\n", what, which, runs, head, zl, rss, tx, load }'
    done
}

"$PY" "$SRC/tests/net/peer.py" st "$T/big.st" $((64 * 1024 * 1024)) 1
n3-inspect --from-safetensors "$T/big.st" --kind update -o "$T/big.n3"
rm "$T/big.st"
bytes=$(stat -c %s "$T/big.n3")
compare "$T/big.n3" 1 1
report "256 MiB record to /dev/null (target >= 0.8x socat, < 64 MiB)" "$bytes"
SINK=$T/received
compare "$T/big.n3" 1 1 "n3 socat"
report "256 MiB record into a file (target >= 0.8x socat, < 64 MiB)" "$bytes"
rm -f "$T/received"
SINK=pipe
compare "$T/big.n3" 1 1 "n3 n3s socat"
report "256 MiB record into a pipe (target >= 0.8x socat, < 64 MiB)" "$bytes"
n3_med=$n3s_med n3_best=$n3s_best
report "256 MiB record into a pipe, receiver with --stream" "$bytes"
SINK=/dev/null

compare "$T/big.n3" 1 8 "n3 socat"
report "8 senders of a 256 MiB record at once to /dev/null (target >= 0.8x socat, < 128 MiB)" $((8 * bytes))
SINK=pipe
compare "$T/big.n3" 1 8 "n3 socat"
report "8 senders of a 256 MiB record at once into pipes (target >= 0.8x socat, < 128 MiB)" $((8 * bytes))
SINK=/dev/null

# 4 GiB: a sparse safetensors file of 2^30 F32 zeros, made into a record; received into a file.
need=$((3 * 4400))
avail=$(df -Pm "$T" | awk 'NR == 2 {print $4}')
if [ "$avail" -lt "$need" ]; then
    echo "send: 4 GiB record skipped: $avail MiB free in $T, $need MiB needed"
else
    "$PY" "$SRC/tests/net/peer.py" zeros "$T/huge.st" $((1 << 30))
    n3-inspect --from-safetensors "$T/huge.st" --kind update -o "$T/huge.n3"
    rm "$T/huge.st"
    hbytes=$(stat -c %s "$T/huge.n3")
    SINK=$T/received
    saved=$RUNS
    RUNS=3
    compare "$T/huge.n3" 1 1 "socat n3"
    report "4 GiB record into a file (target >= 0.8x socat, < 64 MiB)" "$hbytes"
    RUNS=$saved
    # compare() ran n3 last (three runs, every other one reversed): the file it received is still there
    if cmp -s "$T/received" "$T/huge.n3"; then
        echo "send: 4 GiB record ($hbytes bytes) arrived intact (cmp)"
    else
        echo "send: 4 GiB record CORRUPTED in transfer (cmp)"
    fi
    rm -f "$T/received" "$T/huge.n3"
    SINK=/dev/null
fi

"$PY" "$SRC/tests/net/peer.py" st "$T/small.st" 16 2
n3-inspect --from-safetensors "$T/small.st" --kind update -o "$T/small.n3"
N=20000
for _ in $(seq 100); do cat "$T/small.n3"; done >"$T/x100"
for _ in $(seq $((N / 100))); do cat "$T/x100"; done >"$T/smalls.n3"
rec=$(stat -c %s "$T/small.n3")
compare "$T/smalls.n3" "$N" 1
report "$N records of $rec bytes, tcp loopback" $((N * rec)) "$N"
