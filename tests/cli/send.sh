#!/usr/bin/env bash
# CLI tests for n3-send: the real binaries over loopback and ipc:// sockets under $T.
# Every background process is bounded by `timeout` and killed at exit.
source "$(dirname "$0")/lib.sh"
PEER="$N3_SRC/tests/net/peer.py"
PY="$N3_PYTHON"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listen() { # PORT: until something listens on 127.0.0.1:PORT (5 s at most)
    for _ in $(seq 50); do ss -ltnH "sport = :$1" 2>/dev/null | grep -q . && return 0; sleep 0.1; done
    return 1
}
wait_file() { for _ in $(seq 50); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
# bg NAME cmd...: runs in the background, stdout to $T/NAME.out, stderr to $T/NAME.err
bg() {
    local name=$1
    shift
    timeout 60 "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
    PIDS+=($!)
    eval "PID_$name=$!"
}
# bare NAME cmd...: like bg, without the timeout wrapper, so that $PID_NAME is the tool itself
# (for SIGKILL tests); the command must bound its own run time (--timeout)
bare() {
    local name=$1
    shift
    "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
    PIDS+=($!)
    eval "PID_$name=$!"
}
# bgp NAME cmd...: like bg, with the command's stdout a pipe (into cat) rather than a file;
# its exit status is the command's
bgp() {
    local name=$1
    shift
    timeout 60 bash -c '"$@" | cat; exit "${PIPESTATUS[0]}"' bgp "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
    PIDS+=($!)
    eval "PID_$name=$!"
}
# bgat NAME OUT cmd...: like bg, with stdout appended to OUT (>>; a file, or /dev/null)
bgat() {
    local name=$1 out=$2
    shift 2
    timeout 60 "$@" >>"$out" 2>"$T/$name.err" </dev/null &
    PIDS+=($!)
    eval "PID_$name=$!"
}
# rc NAME...: waits for each and sets RC to their exit codes, concatenated
rc() {
    RC=""
    local n p
    for n in "$@"; do
        eval "p=\$PID_$n"
        wait "$p"
        RC="$RC$?"
    done
}
mkrec() { # OUT FLOATS SEED [kind]
    "$PY" "$PEER" st "$T/st.tmp" "$2" "$3" && n3-inspect --from-safetensors "$T/st.tmp" --kind "${4:-update}" -o "$1"
}
same() { _case="$3"; if cmp -s "$1" "$2"; then _pass; else _fail "$1 and $2 differ"; fi; }

for i in 1 2 3 4 5; do mkrec "$T/r$i.n3" $((1000 * i)) "$i"; done
mkrec "$T/big.n3" $((6 * 1024 * 1024)) 9 model # 24 MiB: many frames
cat "$T"/r[1-5].n3 > "$T/five.n3"

# --- usage and bad input -----------------------------------------------------------------------
expect 2 'no endpoint to send to' -- n3-send "$T/r1.n3"
expect 2 "unsupported transport 'udp'" -- n3-send udp://127.0.0.1:9 "$T/r1.n3"
expect 2 "has no transport" -- n3-send --recv localhost:7000 --count 1
expect 2 "bad port '99999'" -- n3-send --recv 'tcp://*:99999' --count 1
expect 2 "'\*' is for listening" -- n3-send 'tcp://*:7000' "$T/r1.n3"
expect 2 "IPv6 address in brackets" -- n3-send tcp://::1:7000 "$T/r1.n3"
expect 2 "unknown host 'nosuchhost.invalid'" -- n3-send tcp://nosuchhost.invalid:7000 "$T/r1.n3"
expect 2 "no such address on this host" -- n3-send --recv tcp://192.0.2.1:7000 --count 1
expect 2 "2 endpoints: say how" -- n3-send tcp://127.0.0.1:9 tcp://127.0.0.1:10 "$T/r1.n3"
expect 2 "is not an endpoint" -- n3-send "$T/r1.n3" tcp://127.0.0.1:9
expect 2 "quorum matters only at a timeout" -- n3-send --recv ipc://$T/q --count 3 --quorum 2
expect 2 "more than --count" -- n3-send --recv ipc://$T/q --count 3 --quorum 4 --timeout 1
expect 2 "are for --recv and --sub" -- n3-send --count 3 ipc://$T/q "$T/r1.n3"
expect 2 "excludes" -- n3-send --recv ipc://$T/q --pub ipc://$T/p
expect 2 "needs --curve-server" -- n3-send --curve-key "$T/none.key" ipc://$T/q "$T/r1.n3"
expect 2 "needs --curve-allow" -- n3-send --recv ipc://$T/q --count 1 --curve-key "$T/none.key"
expect 2 "max-size takes a size" -- n3-send --recv ipc://$T/q --count 1 --max-size 12Q
expect 2 "reserve takes a size" -- n3-send --recv ipc://$T/q --count 1 --reserve 12Q
expect 2 "reserve 2G is more than 1G" -- n3-send --recv ipc://$T/q --count 1 --reserve 2G
expect 2 "are for --recv and --sub" -- n3-send --reserve 64M ipc://$T/q "$T/r1.n3"
expect 2 "spool directory .*/nodir" -- n3-send --recv ipc://$T/q --count 1 --spool "$T/nodir"
expect 2 "excludes" -- n3-send --recv ipc://$T/q --count 1 --spool "$T" -o "$T/x.n3"
expect 2 "are for --recv and --sub" -- n3-send -o "$T/x.n3" ipc://$T/q "$T/r1.n3"
expect 2 "cannot open .*/missing.n3" -- n3-send ipc://$T/q "$T/missing.n3"
: >"$T/empty.n3"
expect 1 "no records \(empty input\)" -- n3-send --timeout 1 ipc://$T/q "$T/empty.n3"
head -c 3000 "$T/r2.n3" >"$T/cut.n3"
expect 1 "truncated record" -- n3-send --timeout 1 ipc://$T/q "$T/cut.n3"
cp "$T/r2.n3" "$T/bad.n3"
printf '\xff' | dd of="$T/bad.n3" bs=1 seek=500 conv=notrunc status=none
expect 1 "checksum mismatch" -- n3-send --timeout 1 ipc://$T/q "$T/bad.n3"
expect_stdin "$T/bad.n3" 1 "stdin: record 1.*checksum mismatch" -- n3-send --timeout 1 ipc://$T/q
printf 'hello\n' >"$T/text.key"
expect 1 "text.key: line 1 is not a CURVE secret key" -- n3-send --curve-key "$T/text.key" \
    --curve-server "$T/text.key" --timeout 1 ipc://$T/q "$T/r1.n3"

# --- many records intact and in order from one sender; a pipe and a mapped file -------------------
for i in $(seq 40); do cat "$T/r$((i % 5 + 1)).n3"; done >"$T/many.n3"
cat "$T/big.n3" >>"$T/many.n3"
bg rx n3-send --recv "ipc://$T/many" --count 41 --timeout 30
expect_stdin "$T/many.n3" 0 '' -- n3-send --timeout 30 "ipc://$T/many"
rc rx; assert_eq "$RC" 0 "receiver of 41 records exits 0"
same "$T/rx.out" "$T/many.n3" "41 records arrive intact and in order (stdin)"
bg rx n3-send --recv "ipc://$T/many" --count 41 --timeout 30
expect 0 '' -- n3-send --timeout 30 "ipc://$T/many" "$T/many.n3"
rc rx; assert_eq "$RC" 0 "receiver of a mapped file exits 0"
same "$T/rx.out" "$T/many.n3" "41 records arrive intact and in order (mapped file)"

# --- a receiver with a reserve smaller than a record and larger than others --------------------
cat "$T/r1.n3" "$T/big.n3" "$T/r2.n3" >"$T/mixed.n3"
bg rx n3-send --recv "ipc://$T/res" --count 3 --reserve 16M --timeout 30
expect 0 '' -- n3-send --timeout 30 "ipc://$T/res" "$T/mixed.n3"
rc rx; assert_eq "$RC" 0 "receiver with --reserve 16M exits 0"
same "$T/rx.out" "$T/mixed.n3" "records around the reserve's size arrive intact"

# --- a receiver that starts after the sender; tcp ------------------------------------------------
P=$(free_port)
bg tx n3-send --timeout 30 "tcp://127.0.0.1:$P" "$T/five.n3"
sleep 1
expect 0 '' -- n3-send --recv "tcp://127.0.0.1:$P" --count 5 --timeout 30
same "$T/out" "$T/five.n3" "a late receiver gets all 5 records"
rc tx; assert_eq "$RC" 0 "the early sender exits 0 once delivered"

# --- IPv6 loopback, when this host has it ---------------------------------------------------------
if "$PY" -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    P=$(free_port)
    bg rx n3-send --recv "tcp://[::1]:$P" --count 1 --timeout 20
    expect 0 '' -- n3-send --timeout 20 "tcp://[::1]:$P" "$T/r2.n3"
    rc rx; assert_eq "$RC" 0 "IPv6 receiver exits 0"
    same "$T/rx.out" "$T/r2.n3" "a record over IPv6"
else
    echo "note: no IPv6 loopback here, IPv6 case skipped"
fi

# --- several senders to one receiver, into a spool ---------------------------------------------
mkdir "$T/spool"
P=$(free_port)
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 4 --timeout 30 --spool "$T/spool"
for i in 1 2 3 4; do bg "tx$i" n3-send --timeout 30 "tcp://127.0.0.1:$P" "$T/r$i.n3"; done
rc rx; assert_eq "$RC" 0 "receiver of 4 senders exits 0"
for i in 1 2 3 4; do rc "tx$i"; assert_eq "$RC" 0 "sender $i exits 0"; done
assert_eq "$(ls "$T/spool" | grep -c '\.n3$')" 4 "4 spool files"
assert_eq "$(cat "$T"/spool/*.n3 | sha256sum | cut -c1-16)" \
    "$(cat "$T"/spool/*.n3 | sha256sum | cut -c1-16)" "spool readable"
want=$(for i in 1 2 3 4; do sha256sum <"$T/r$i.n3"; done | sort)
got=$(for f in "$T"/spool/*.n3; do sha256sum <"$f"; done | sort)
assert_eq "$got" "$want" "each sender's record is one spool file, byte for byte"
assert_no_file "$T/spool/.tmp"

# --- -o FILE: the round in one file, whole or not at all --------------------------------------
bg rx n3-send --recv "ipc://$T/o.sock" --count 2 --timeout 30 -o "$T/round.n3"
bg tx1 n3-send --timeout 30 "ipc://$T/o.sock" "$T/r1.n3"
rc tx1
bg tx2 n3-send --timeout 30 "ipc://$T/o.sock" "$T/r2.n3"
rc rx; assert_eq "$RC" 0 "receiver with -o exits 0"
rc tx2
assert_eq "$(cat "$T/r1.n3" "$T/r2.n3" | sha256sum)" "$(sha256sum <"$T/round.n3")" \
    "-o holds the records in arrival order, byte for byte"
assert_eq "$(wc -c <"$T/rx.out")" 0 "-o writes nothing to stdout"
bg rx n3-send --recv "ipc://$T/o2.sock" --count 2 --timeout 1 -o "$T/short.n3"
bg tx1 n3-send --timeout 30 "ipc://$T/o2.sock" "$T/r1.n3"
rc rx; assert_eq "$RC" 3 "-o below the count at the timeout exits 3"
rc tx1
assert_no_file "$T/short.n3"

# --- quorum met and missed ---------------------------------------------------------------------
bg tx1 n3-send --timeout 10 "ipc://$T/quorum" "$T/r1.n3"
bg tx2 n3-send --timeout 10 "ipc://$T/quorum" "$T/r2.n3"
expect 0 'timed out after 2 s with 2 of 3 records; quorum 2 met' -- \
    n3-send --recv "ipc://$T/quorum" --count 3 --quorum 2 --timeout 2
assert_eq "$(n3-inspect "$T/out" | grep -c ': record ')" 2 "quorum met: both records on stdout"
rc tx1 tx2
bg tx1 n3-send --timeout 10 "ipc://$T/quorum2" "$T/r1.n3"
expect 3 'timed out after 1 s with 1 of 3 records \(quorum 2\)' -- \
    n3-send --recv "ipc://$T/quorum2" --count 3 --quorum 2 --timeout 1
rc tx1
expect 3 'timed out after 1 s: ipc://.* did not take every record' -- \
    n3-send --timeout 1 "ipc://$T/nobody" "$T/r1.n3"
assert_match 'is a receiver running' "$T/err" "the timeout says what to check"

# --- address in use ----------------------------------------------------------------------------
P=$(free_port)
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 20
wait_listen "$P"
expect 2 "cannot listen on tcp://127.0.0.1:$P: address already in use" -- \
    n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 1
bg rx2 n3-send --recv "ipc://$T/inuse" --count 1 --timeout 20
wait_file "$T/inuse"
expect 2 "address already in use" -- n3-send --recv "ipc://$T/inuse" --count 1 --timeout 1
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r1.n3"
expect 0 '' -- n3-send --timeout 10 "ipc://$T/inuse" "$T/r1.n3"
rc rx rx2; assert_eq "$RC" 00 "the first listeners kept serving"

# --- garbage, huge lengths, a raw stranger, a half-sent record: the receiver keeps serving ---------
P=$(free_port)
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 2 --timeout 30 --max-size 30M
wait_listen "$P"
"$PY" "$PEER" zmtp 127.0.0.1 "$P" garbage
"$PY" "$PEER" zmtp 127.0.0.1 "$P" huge
"$PY" "$PEER" zmtp 127.0.0.1 "$P" raw
"$PY" "$PEER" zmtp 127.0.0.1 "$P" partial "$T/big.n3"
"$PY" "$PEER" push "tcp://127.0.0.1:$P" 1000000 "$T/five.n3" # 5 records in one message
mkrec "$T/huge.n3" $((8 * 1024 * 1024)) 10                    # 32 MiB, over --max-size
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/huge.n3"
cat "$T/r3.n3" "$T/r4.n3" >"$T/want34"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/want34"
rc rx; assert_eq "$RC" 0 "the receiver survived every bad peer"
same "$T/rx.out" "$T/want34" "only the honest records came out, whole"
assert_match 'warning: message from 127.0.0.1: not an n3 record.*dropped' "$T/rx.err" "garbage dropped"
assert_match 'more bytes than its record declares.*dropped' "$T/rx.err" "a message of 5 records dropped"
assert_match 'record too large \([0-9]+ bytes, limit 31457280\).*dropped' "$T/rx.err" "--max-size refused"

# --- a sender killed in the middle of a large (chunked) record -----------------------------------
# kill_midway PORT: a sender that dies after 15 MB of the 24 MiB record (15 of its 1 MiB chunks)
kill_midway() {
    rm -f "$T/slow"
    mkfifo "$T/slow"
    (head -c 15000000 "$T/big.n3"; exec sleep 20) >"$T/slow" &
    local writer=$!
    PIDS+=($writer)
    n3-send --timeout 30 "tcp://127.0.0.1:$1" <"$T/slow" 2>/dev/null &
    local slow=$!
    PIDS+=($slow)
    sleep 1
    kill -9 "$slow" "$writer"
    sleep 0.3
}
# Into a spool: nothing of it appears, not even a temporary file once the receiver is done.
P=$(free_port)
mkdir "$T/spool1"
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 30 --spool "$T/spool1" -v
wait_listen "$P"
kill_midway "$P"
assert_eq "$(ls "$T/spool1" | grep -c '\.n3$')" 0 "nothing of the killed sender's record is in the spool"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r5.n3"
rc rx; assert_eq "$RC" 0 "the receiver then took an honest record"
assert_eq "$(ls -A "$T/spool1" | wc -l)" 1 "one file in the spool, no temporary file left"
same "$T"/spool1/*.n3 "$T/r5.n3" "exactly that record"
assert_match 'record [0-9a-f]{16} from 127.0.0.1: the receiver stopped after [0-9]+ of [0-9]+ bytes; record dropped' "$T/rx.err" "the broken record is reported"
# To a pipe: a chunked record is held until checked, so nothing of it comes out either.
P=$(free_port)
bgp rx n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 30
wait_listen "$P"
kill_midway "$P"
assert_eq "$(stat -c %s "$T/rx.out")" 0 "pipe: nothing of the killed sender's record came out"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r5.n3"
rc rx; assert_eq "$RC" 0 "pipe: the receiver then took an honest record"
same "$T/rx.out" "$T/r5.n3" "pipe: exactly that record"
# To a regular file: the record goes in place and the file is cut back when it breaks off
# (here when the receiver stops: the record is dropped then).
P=$(free_port)
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 30
wait_listen "$P"
kill_midway "$P"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r5.n3"
rc rx; assert_eq "$RC" 0 "file: the receiver then took an honest record"
same "$T/rx.out" "$T/r5.n3" "file: exactly that record"
assert_match 'record [0-9a-f]{16} from 127.0.0.1: .*record dropped' "$T/rx.err" "file: the broken record is reported"
# Appending (>>): what the file held before stays, the broken record is cut off after it.
P=$(free_port)
cp "$T/r1.n3" "$T/app.out"
bgat app "$T/app.out" n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 30
wait_listen "$P"
kill_midway "$P"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r5.n3"
rc app; assert_eq "$RC" 0 ">>: the receiver took the honest record"
cat "$T/r1.n3" "$T/r5.n3" >"$T/want15"
same "$T/app.out" "$T/want15" ">>: the earlier content, then only the whole record"
# -o: the same, and the file appears only at the end.
P=$(free_port)
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 30 -o "$T/rxo.n3"
wait_listen "$P"
kill_midway "$P"
assert_eq "$([ -e "$T/rxo.n3" ] && echo yes || echo no)" no "-o: no file yet"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r5.n3"
rc rx; assert_eq "$RC" 0 "-o: the receiver then took an honest record"
same "$T/rxo.n3" "$T/r5.n3" "-o: exactly that record"
# /dev/null takes anything: the run goes on as with a file.
P=$(free_port)
bgat null /dev/null n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 30
wait_listen "$P"
kill_midway "$P"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r5.n3"
rc null; assert_eq "$RC" 0 "/dev/null: a broken record, then an honest one"
# A receiver stopped by SIGTERM in the middle of a record: the file ends with the last whole one.
P=$(free_port)
bare rx n3-send --recv "tcp://127.0.0.1:$P" --count 0 --timeout 30
wait_listen "$P"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r2.n3"
rm -f "$T/slow"
mkfifo "$T/slow"
(head -c 15000000 "$T/big.n3"; exec sleep 20) >"$T/slow" &
PIDS+=($!)
W=$!
n3-send --timeout 30 "tcp://127.0.0.1:$P" <"$T/slow" 2>/dev/null &
PIDS+=($!)
S=$!
for _ in $(seq 50); do [ "$(stat -c %s "$T/rx.out")" -gt 1000000 ] && break; sleep 0.1; done
assert_eq "$([ "$(stat -c %s "$T/rx.out")" -gt 1000000 ] && echo writing || echo no)" writing "SIGTERM: the large record was being written in place"
kill -TERM "$PID_rx"
rc rx; assert_eq "$RC" 143 "SIGTERM ends the receiver with 143"
kill -9 "$S" "$W" 2>/dev/null
same "$T/rx.out" "$T/r2.n3" "SIGTERM: the file was cut back to the whole record before it"
# With --stream into a pipe the record went straight out: the receiver stops with exit 3 and
# what came out is a truncated record that n3's readers refuse.
P=$(free_port)
bgp rx n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 4 --stream
wait_listen "$P"
kill_midway "$P"
rc rx; assert_eq "$RC" 3 "--stream: a record cut short on a pipe ends the run (exit 3)"
assert_match 'error: record .* stdout holds its first [0-9]+ bytes, a truncated record' "$T/rx.err" "and says what stdout holds"
expect 1 'truncated record' -- n3-inspect "$T/rx.out"
expect 2 'excludes' -- n3-send --recv ipc://$T/q --count 1 --stream --spool "$T/spool1"
expect 2 'are for --recv and --sub' -- n3-send --stream ipc://$T/q "$T/r1.n3"

# --- a sender of a large file keeps only its backlog resident ------------------------------------
# Its frames point into the file's mapping; each one's pages leave the resident set once
# ZeroMQ let go of it, and no more than 64 MiB wait in ZeroMQ. A 160 MiB record: the sender
# must stay well under the record's size (keeping the mapping resident would exceed it).
if [ -x /usr/bin/time ] && [ -z "${ASAN_OPTIONS:-}" ] && [ "${N3_EMULATED:-0}" != 1 ]; then
    "$PY" "$PEER" zeros "$T/huge.st" $((40 << 20))
    n3-inspect --from-safetensors "$T/huge.st" --kind update -o "$T/huge.n3"
    rm -f "$T/huge.st"
    bg rx n3-send --recv "ipc://$T/huge" --count 1 --timeout 30 -o "$T/huge.out"
    wait_file "$T/huge"
    /usr/bin/time -f %M -o "$T/tx.rss" n3-send --timeout 30 "ipc://$T/huge" "$T/huge.n3"
    rc rx; assert_eq "$RC" 0 "a 160 MiB record from a file"
    same "$T/huge.out" "$T/huge.n3" "it arrived whole"
    rss=$(tail -1 "$T/tx.rss")
    echo "sender of a 160 MiB file: peak RSS $rss KiB"
    assert_eq "$((rss < 112 * 1024))" 1 "the sender's peak RSS $rss KiB is under 112 MiB"
    rm -f "$T/huge.n3" "$T/huge.out"
else
    echo "note: no GNU time, or a sanitizer or emulator: the sender's resident memory is not checked"
fi

# --- spool files stay whole when the receiver is killed -----------------------------------------
mkdir "$T/spool2"
for i in $(seq 12); do cat "$T/big.n3"; done >"$T/stream.n3"
bare rx n3-send --recv "ipc://$T/spool2.sock" --count 0 --timeout 30 --spool "$T/spool2"
bg tx n3-send --timeout 4 "ipc://$T/spool2.sock" "$T/stream.n3"
for _ in $(seq 100); do [ "$(ls "$T/spool2" | grep -c '\.n3$')" -ge 3 ] && break; sleep 0.05; done
kill -9 "$PID_rx"
rc rx tx # the sender may have handed everything to the receiver's queue before the kill
assert_eq "${RC:0:3}" 137 "the receiver died of SIGKILL"
n=$(ls "$T/spool2" | grep -c '\.n3$')
_case="spool has records after SIGKILL ($n)"; if [ "$n" -ge 3 ]; then _pass; else _fail "only $n"; fi
for f in "$T"/spool2/*.n3; do expect 0 '' -- cmp "$f" "$T/big.n3"; done

# --- CURVE: an allowed client gets through, an unknown one is refused ----------------------------
"$PY" - "$T" <<'PYEOF'
import sys, zmq
for name in ['srv', 'cli', 'stranger']:
    pub, sec = zmq.curve_keypair()
    open('%s/%s.key' % (sys.argv[1], name), 'w').write('# n3 CURVE key\nN3CURVE-SECRET-%s\n' % sec.decode())
    open('%s/%s.pub' % (sys.argv[1], name), 'w').write('N3CURVE-PUBLIC-%s\n' % pub.decode())
PYEOF
{ echo "# members"; echo "$(cat "$T/cli.pub") node-1"; } >"$T/allow"
P=$(free_port)
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 2 --quorum 1 --timeout 4 \
    --curve-key "$T/srv.key" --curve-allow "$T/allow"
expect 2 'refused our CURVE key' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r2.n3" \
    --curve-key "$T/stranger.key" --curve-server "$T/srv.pub"
expect 0 '' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/r1.n3" \
    --curve-key "$T/cli.key" --curve-server "$(cat "$T/srv.pub")"
expect 3 'did not take every record' -- n3-send --timeout 2 "tcp://127.0.0.1:$P" "$T/r3.n3"
assert_match 'handshake' "$T/err" "a plain client to a CURVE server gets a hint"
rc rx; assert_eq "$RC" 0 "CURVE receiver: quorum 1 met"
same "$T/rx.out" "$T/r1.n3" "only the allowed client's record arrived"
assert_match 'rejected CURVE client N3CURVE-PUBLIC-.* from 127.0.0.1' "$T/rx.err" "the receiver names the stranger"

# --- pyzmq peers on each side --------------------------------------------------------------------
bg rx n3-send --recv "ipc://$T/py" --count 3 --timeout 30
"$PY" "$PEER" push "ipc://$T/py" 100000000 "$T/r1.n3"  # one frame
"$PY" "$PEER" push "ipc://$T/py" 777 "$T/r2.n3"        # odd frames
"$PY" "$PEER" push "ipc://$T/py" 1048576 "$T/big.n3"
rc rx; assert_eq "$RC" 0 "n3-send takes records from pyzmq"
cat "$T/r1.n3" "$T/r2.n3" "$T/big.n3" >"$T/want"
same "$T/rx.out" "$T/want" "pyzmq records intact whatever the framing"
# A pyzmq receiver written from the man page's WIRE FORMAT reassembles the large record's
# chunks and takes the small one whole (tests/python/chunk_pull.py).
bg py "$PY" "$N3_SRC/tests/python/chunk_pull.py" "ipc://$T/pyrx" 2 "$T/pyrx" 30
wait_file "$T/pyrx"
cat "$T/big.n3" "$T/r3.n3" >"$T/want"
expect 0 '' -- n3-send --timeout 30 "ipc://$T/pyrx" "$T/want"
rc py; assert_eq "$RC" 0 "pyzmq takes records from n3-send"
same "$T/pyrx.1" "$T/big.n3" "pyzmq: chunks reassemble to the big record"
same "$T/pyrx.2" "$T/r3.n3" "pyzmq: and the small one arrives whole"
assert_match "^chunked $(stat -c %s "$T/big.n3") 25$" "$T/py.out" "pyzmq: the big record came in 1 MiB chunks"
assert_match "^whole $(stat -c %s "$T/r3.n3")$" "$T/py.out" "pyzmq: the small one as one message"

# --- scatter and broadcast ---------------------------------------------------------------------
bg a n3-send --recv "ipc://$T/sa" --count 3 --timeout 30
bg b n3-send --recv "ipc://$T/sb" --count 2 --timeout 30
expect 0 '' -- n3-send --scatter --timeout 30 "ipc://$T/sa" "ipc://$T/sb" "$T/five.n3"
rc a b; assert_eq "$RC" 00 "scatter receivers exit 0"
cat "$T/r1.n3" "$T/r3.n3" "$T/r5.n3" >"$T/want"
same "$T/a.out" "$T/want" "scatter: records 1, 3, 5 to the first"
cat "$T/r2.n3" "$T/r4.n3" >"$T/want"
same "$T/b.out" "$T/want" "scatter: records 2, 4 to the second"
bg a n3-send --recv "ipc://$T/ba" --count 5 --timeout 30
bg b n3-send --recv "ipc://$T/bb" --count 5 --timeout 30
expect 0 '' -- n3-send --broadcast --timeout 30 "ipc://$T/ba" "ipc://$T/bb" "$T/five.n3"
rc a b; assert_eq "$RC" 00 "broadcast receivers exit 0"
same "$T/a.out" "$T/five.n3" "broadcast: all to the first"
same "$T/b.out" "$T/five.n3" "broadcast: all to the second"

bg a n3-send --recv "ipc://$T/live" --count 5 --timeout 30
expect 3 "ipc://$T/dead did not take every record" -- \
    n3-send --broadcast --timeout 1 "ipc://$T/live" "ipc://$T/dead" "$T/five.n3"
rc a; assert_eq "$RC" 0 "broadcast with a dead peer: the live one got everything"
same "$T/a.out" "$T/five.n3" "broadcast with a dead peer: all five records"

# --- pub/sub: a model to every node ----------------------------------------------------------
P=$(free_port)
bg pub n3-send --pub "tcp://127.0.0.1:$P" --subscribers 2 --timeout 30 "$T/big.n3"
bg s1 n3-send --sub "tcp://127.0.0.1:$P" --count 1 --timeout 30
bg s2 n3-send --sub "tcp://127.0.0.1:$P" --count 1 --timeout 30
rc pub s1 s2; assert_eq "$RC" 000 "publisher and both subscribers exit 0"
same "$T/s1.out" "$T/big.n3" "subscriber 1 got the model"
same "$T/s2.out" "$T/big.n3" "subscriber 2 got the model"
expect 3 'no subscriber joined' -- n3-send --pub "ipc://$T/lonely" --timeout 1 "$T/r1.n3"
bg pub n3-send --pub "ipc://$T/cpub" --timeout 30 --curve-key "$T/srv.key" --curve-allow "$T/allow" "$T/r4.n3"
expect 2 'refused our CURVE key' -- n3-send --sub "ipc://$T/cpub" --count 1 --timeout 10 \
    --curve-key "$T/stranger.key" --curve-server "$T/srv.pub"
assert_eq "$(stat -c %s "$T/out")" 0 "a refused subscriber gets nothing"
expect 0 '' -- n3-send --sub "ipc://$T/cpub" --count 1 --timeout 30 --curve-key "$T/cli.key" --curve-server "$T/srv.pub"
rc pub; assert_eq "$RC" 0 "CURVE publisher exits 0 (a stranger does not stop it)"
assert_match 'rejected CURVE client' "$T/pub.err" "the publisher names the stranger"
same "$T/out" "$T/r4.n3" "CURVE subscriber got the record"

# --- chunked records: many senders at once, scatter, broadcast, CURVE, from a pipe --------------
for i in 1 2 3 4; do mkrec "$T/c$i.n3" $((1300000 + 77 * i)) $((20 + i)); done # ~5 MiB: chunked
cat "$T/c1.n3" "$T/r1.n3" "$T/c2.n3" >"$T/mixc.n3"
# Four senders at once (their chunks interleave), into a spool and to stdout.
mkdir "$T/spool3"
bg rx n3-send --recv "ipc://$T/many" --count 12 --timeout 30 --spool "$T/spool3"
bg rx2 n3-send --recv "ipc://$T/many2" --count 12 --timeout 30
wait_file "$T/many"
wait_file "$T/many2"
for i in 1 2 3 4; do bg tx$i n3-send --timeout 30 "ipc://$T/many" "$T/mixc.n3"; done
for i in 1 2 3 4; do bg ty$i n3-send --timeout 30 "ipc://$T/many2" "$T/mixc.n3"; done
rc rx rx2 tx1 tx2 tx3 tx4 ty1 ty2 ty3 ty4
assert_eq "$RC" 0000000000 "four interleaved senders, two receivers: all exit 0"
for f in c1 c2 r1; do
    n=0
    for g in "$T"/spool3/*.n3; do cmp -s "$g" "$T/$f.n3" && n=$((n + 1)); done
    assert_eq "$n" 4 "spool: four whole copies of $f"
done
_case="stdout: twelve whole records, back to back"
"$PY" - "$T/rx2.out" "$T/c1.n3" "$T/c2.n3" "$T/r1.n3" <<'PYEOF' && _pass || _fail "stdout records differ"
import sys
data = open(sys.argv[1], 'rb').read()
want = sorted(open(p, 'rb').read() for p in sys.argv[2:]) * 4
got, at = [], 0
while at < len(data):
    n = 32 + int.from_bytes(data[at + 16:at + 24], 'little') + 8
    got.append(data[at:at + n])
    at += n
sys.exit(0 if sorted(got) == sorted(want) else 1)
PYEOF
# scatter and broadcast of chunked records, read from a pipe
bg a n3-send --recv "ipc://$T/ca" --count 2 --timeout 30
bg b n3-send --recv "ipc://$T/cb" --count 1 --timeout 30
cat "$T/mixc.n3" | n3-send --scatter --timeout 30 "ipc://$T/ca" "ipc://$T/cb"
rc a b; assert_eq "$RC" 00 "scatter of chunked records from a pipe"
cat "$T/c1.n3" "$T/c2.n3" >"$T/want"
same "$T/a.out" "$T/want" "scatter: records 1 and 3 to the first"
same "$T/b.out" "$T/r1.n3" "scatter: record 2 to the second"
bg a n3-send --recv "ipc://$T/ca" --count 3 --timeout 30
bg b n3-send --recv "ipc://$T/cb" --count 3 --timeout 30
expect 0 '' -- n3-send --broadcast --timeout 30 "ipc://$T/ca" "ipc://$T/cb" "$T/mixc.n3"
rc a b; assert_eq "$RC" 00 "broadcast of chunked records"
same "$T/a.out" "$T/mixc.n3" "broadcast: all to the first"
same "$T/b.out" "$T/mixc.n3" "broadcast: all to the second"
# CURVE with the allow list: chunks of an allowed client arrive, a stranger's do not
P=$(free_port)
bg rx n3-send --recv "tcp://127.0.0.1:$P" --count 1 --timeout 30 --curve-key "$T/srv.key" --curve-allow "$T/allow"
wait_listen "$P"
expect 2 'refused our CURVE key' -- n3-send --timeout 10 "tcp://127.0.0.1:$P" "$T/c3.n3" \
    --curve-key "$T/stranger.key" --curve-server "$T/srv.pub"
expect 0 '' -- n3-send --timeout 30 "tcp://127.0.0.1:$P" "$T/c4.n3" --curve-key "$T/cli.key" --curve-server "$T/srv.pub"
rc rx; assert_eq "$RC" 0 "CURVE receiver takes a chunked record"
same "$T/rx.out" "$T/c4.n3" "CURVE: the allowed client's chunked record, whole"
# a corrupt chunked record never completes: its last chunk is never sent
cp "$T/c1.n3" "$T/badc.n3"
printf '\x00' | dd of="$T/badc.n3" bs=1 seek=3000000 conv=notrunc 2>/dev/null
cat "$T/badc.n3" "$T/c2.n3" >"$T/badc2.n3"
bg rx n3-send --recv "ipc://$T/cbad" --count 1 --timeout 30
wait_file "$T/cbad"
expect 1 'checksum mismatch' -- n3-send --timeout 10 "ipc://$T/cbad" "$T/badc2.n3"
expect 0 '' -- n3-send --timeout 10 "ipc://$T/cbad" "$T/c2.n3"
rc rx; assert_eq "$RC" 0 "stdout: the corrupt record is dropped and the next one taken"
same "$T/rx.out" "$T/c2.n3" "stdout: only the honest record"
bgp rx n3-send --recv "ipc://$T/cbad3" --count 1 --timeout 30 --stream
wait_file "$T/cbad3"
expect 1 'checksum mismatch' -- n3-send --timeout 10 "ipc://$T/cbad3" "$T/badc2.n3"
expect 0 '' -- n3-send --timeout 10 "ipc://$T/cbad3" "$T/c2.n3"
rc rx; assert_eq "$RC" 3 "--stream: a corrupt record cut short on a pipe ends the receiver's run"
expect 1 'truncated record' -- n3-inspect "$T/rx.out"
mkdir "$T/spool4"
bg rx n3-send --recv "ipc://$T/cbad2" --count 1 --timeout 30 --spool "$T/spool4"
wait_file "$T/cbad2"
expect 1 'checksum mismatch' -- n3-send --timeout 10 "ipc://$T/cbad2" "$T/badc2.n3"
expect 0 '' -- n3-send --timeout 10 "ipc://$T/cbad2" "$T/c2.n3"
rc rx; assert_eq "$RC" 0 "into a spool the corrupt record is dropped and the next one taken"
assert_eq "$(ls -A "$T/spool4" | wc -l)" 1 "one file in the spool"
same "$T"/spool4/*.n3 "$T/c2.n3" "the spool holds the honest record"

# --- a relay: --count 0 until the timeout, piped into a sender -----------------------------------
bg hub n3-send --recv "ipc://$T/hub" --count 3 --timeout 30
bg relay bash -c "n3-send --recv ipc://$T/relay --count 0 --timeout 3 | n3-send --timeout 30 ipc://$T/hub"
for i in 1 2 3; do expect 0 '' -- n3-send --timeout 10 "ipc://$T/relay" "$T/r$i.n3"; done
rc relay hub; assert_eq "$RC" 00 "relay and hub exit 0"
cat "$T/r1.n3" "$T/r2.n3" "$T/r3.n3" >"$T/want"
same "$T/hub.out" "$T/want" "the relay forwarded three records in order"
bare sig n3-send --recv "ipc://$T/sig" --count 0 --timeout 30
sleep 0.5
kill -INT "$PID_sig"
rc sig; assert_eq "$RC" 130 "SIGINT ends a --count 0 receiver with 130"

finish
