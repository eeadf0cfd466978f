#!/usr/bin/env bash
# Full disks: every tool that writes a file runs against a small tmpfs that is full. Each must
# exit 2 with one clear error line, leave no file (nor its temporary) under the final name,
# keep the previous state, residual, key or log file byte for byte, and a receiver's spool
# must hold only whole records. Needs mount(8) of a tmpfs (root or a user namespace that
# allows it): skipped otherwise.
source "$(dirname "$0")/lib.sh"
cd "$T"
D="$T/disk"
mkdir "$D"
mount -t tmpfs -o size=2m,mode=0755 n3-fulldisk "$D" 2>/dev/null || skip "cannot mount a tmpfs here"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    umount "$D" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

# fill [KIB]: fills the disk up to KIB kilobytes left free (0 by default); unfill empties it.
fill() {
    rm -f "$D/.fill"
    local free_kib left=${1:-0}
    free_kib=$(($(stat -f -c '%a * %S / 1024' "$D")))
    if [ "$free_kib" -gt "$left" ]; then
        dd if=/dev/zero of="$D/.fill" bs=1k count=$((free_kib - left)) 2>/dev/null
    fi
    if [ "$left" = 0 ]; then # whatever rounding left over
        cat /dev/zero >>"$D/.fill" 2>/dev/null
    fi
}
unfill() { rm -f "$D/.fill"; }
# full CODE -- cmd...: the command fails on the full disk with exit 2 and a disk-full line.
full() {
    expect 2 'error: .*(no space left on device|disk full)' "$@"
    _case="one error line: $*"
    if [ "$(grep -c 'error:' "$T/err")" = 1 ]; then _pass; else _fail "$(cat "$T/err")"; fi
}
# no_temp: no temporary output file is left anywhere on the disk.
no_temp() {
    _case="no temporary file left on the disk${1:+ ($1)}"
    local left
    left=$(find "$D" -name '.*.tmp.*' | head -3)
    if [ -z "$left" ]; then _pass; else _fail "left: $left"; fi
}
same() { # same A B WHAT
    _case="$3"
    if cmp -s "$1" "$2"; then _pass; else _fail "$1 and $2 differ"; fi
}

# Inputs live outside the disk: keys, two updates of 40 KB, a model.
R() { "$N3_PYTHON" "$N3_SRC/tests/cli/encode/recs.py" "$@"; }
R update 1 u.st
R update 2 v.st
n3-inspect --from-safetensors u.st --kind update --meta round=3 -o u.n3
n3-inspect --from-safetensors v.st --kind update --meta round=3 -o v.n3
n3-keys authority -o fed.ask 2>/dev/null
n3-keys public fed.ask >fed.pub
for m in alice bob; do
    n3-keys request --id $m -o $m.secret >$m.req
    n3-keys issue --authority fed.ask $m.req -o $m.partial 2>/dev/null
    n3-keys complete --keep-secret --secret $m.secret --partial $m.partial -o $m.key 2>/dev/null
    n3-keys public $m.key >$m.pub
done

# --- n3-encode: -o, --shard-dir, --residual --------------------------------------------------
fill
full -- n3-encode --quantize fp16 -o "$D/u.enc" u.n3
assert_no_file "$D/u.enc"
mkdir "$D/sd"
full -- n3-encode --shards 4+2 --shard-dir "$D/sd" u.n3
_case="--shard-dir: every shard file left is whole"
bad=""
for f in "$D"/sd/*; do
    [ -e "$f" ] || continue
    n3-inspect "$f" >/dev/null 2>&1 || bad+=" $f"
done
if [ -z "$bad" ]; then _pass; else _fail "partial shards:$bad"; fi
no_temp "--shard-dir"
# The temporary file a record is packed or spooled into ($TMPDIR) cannot grow: the same.
for mode in "--quantize int8" "--shards 4+2"; do
    # shellcheck disable=SC2086
    full -- env TMPDIR="$D" n3-encode $mode -o "$T/tmpdir-full.n3" u.n3
    assert_no_file "$T/tmpdir-full.n3"
done
n3-encode --zstd -o "$T/z.enc" u.n3
full -- sh -c 'cat "$3" | TMPDIR="$1" n3-encode -d -o "$2" -' sh "$D" "$T/z.dec" "$T/z.enc"
assert_no_file "$T/z.dec"
unfill
rm -rf "$D/sd"
expect 0 '' -- n3-encode --topk 0.05 --residual "$D/res.n3" -o r1.n3 u.n3
cp "$D/res.n3" res.before
fill
full -- n3-encode --topk 0.05 --residual "$D/res.n3" -o r2.n3 v.n3
same "$D/res.n3" res.before "the residual file is kept when the new one cannot be written"
assert_no_file r2.n3
no_temp "--residual"
unfill
# The same residual still works once there is room again.
expect 0 '' -- n3-encode --topk 0.05 --residual "$D/res.n3" -o r2.n3 v.n3

# --- n3-seal -o --------------------------------------------------------------------------------
fill
full -- n3-seal --to bob.pub --key alice.key u.n3 -o "$D/u.sealed"
assert_no_file "$D/u.sealed"
n3-seal --to bob.pub --key alice.key u.n3 -o u.sealed
full -- n3-seal --open --key bob.key --authority fed.pub u.sealed -o "$D/u.open"
assert_no_file "$D/u.open"
unfill

# --- n3-keys: key files and the issuance log ----------------------------------------------------
fill
full -- n3-keys authority -o "$D/fed2.ask"
assert_no_file "$D/fed2.ask"
full -- n3-keys request --id carol -o "$D/carol.secret"
assert_no_file "$D/carol.secret"
full -- n3-keys issue --authority fed.ask alice.req -o "$D/alice.partial"
assert_no_file "$D/alice.partial"
full -- n3-keys complete --keep-secret --secret alice.secret --partial alice.partial -o "$D/alice.key"
assert_no_file "$D/alice.key"
unfill
# An existing key is not replaced by a failed --force.
cp alice.key "$D/alice.key"
fill
full -- n3-keys complete --keep-secret --force --secret alice.secret --partial alice.partial -o "$D/alice.key"
same "$D/alice.key" alice.key "a key file is kept when its replacement cannot be written"
unfill
# The log: entries are appended until the disk is full; the one that does not fit fails and
# leaves the log as it was, still auditing.
expect 0 '' -- n3-keys issue --authority fed.ask --log "$D/issued.log" alice.req -o p0.partial
fill
failed=""
for i in $(seq 40); do
    cp "$D/issued.log" log.before
    n3-keys request --id m$i -o m$i.secret >m$i.req
    if ! n3-keys issue --authority fed.ask --log "$D/issued.log" m$i.req -o p$i.partial 2>log.err; then
        failed=$i
        break
    fi
done
_case="the issuance log fills the disk within 40 entries"
if [ -n "$failed" ]; then _pass; else _fail "no append failed"; fi
cp log.err "$T/err"
_case="the failed append says the disk is full"
if grep -Eq '^n3-keys: error: .*no space left on device' log.err; then _pass; else _fail "$(cat log.err)"; fi
same "$D/issued.log" log.before "the issuance log is unchanged by the append that failed"
unfill
expect 0 '' -- n3-keys audit --authority fed.pub "$D/issued.log"

# --- n3-merge -o and --state -------------------------------------------------------------------
MK="$N3_SRC/tests/merge/make_tensors.py"
"$N3_PYTHON" "$MK" base.st --seed 100
n3-inspect --from-safetensors base.st --kind model --meta round=3 -o base.n3
H=$(n3-inspect --json base.n3 | "$N3_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
for i in 1 2; do
    "$N3_PYTHON" "$MK" m$i.st --seed $i --scale 0.1
    n3-inspect --from-safetensors m$i.st --kind update --meta samples=10 --meta base="$H" \
        --meta round=3 -o m$i.n3
done
fill
full -- n3-merge m1.n3 m2.n3 -o "$D/avg.n3"
assert_no_file "$D/avg.n3"
unfill
expect 0 '' -- n3-merge --rule fedadam --state "$D/adam.state" --base base.n3 m1.n3 m2.n3 -o g1.n3
cp "$D/adam.state" state.before
H1=$(n3-inspect --json g1.n3 | "$N3_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
for i in 1 2; do
    n3-inspect --from-safetensors m$i.st --kind update --meta samples=10 --meta base="$H1" \
        --meta round=4 -o n$i.n3
done
fill
full -- n3-merge --rule fedadam --state "$D/adam.state" --base g1.n3 n1.n3 n2.n3 -o g2.n3
same "$D/adam.state" state.before "the server state is kept when the new one cannot be written"
assert_no_file g2.n3
no_temp "--state"
# The output on the full disk, the state elsewhere: neither moves.
cp state.before adam.state
full -- n3-merge --rule fedadam --state adam.state --base g1.n3 n1.n3 n2.n3 -o "$D/g2.n3"
same adam.state state.before "the state does not move when the model cannot be written"
assert_no_file "$D/g2.n3"
unfill

# --- n3-train -o and --scaffold ----------------------------------------------------------------
if command -v n3-train >/dev/null; then
    printf 'task: classify\ninput: [2]\nclasses: 2\nlayers:\n  - {type: linear, in: 2, out: 2}\n' >tiny.yaml
    "$N3_PYTHON" -c "
for i in range(40): print(f'{i%7},{i%3},{i%2}')" >ok.csv
    n3-train --model tiny.yaml --init-only --seed 1 --scaffold-init -o s0.n3
    fill
    full -- n3-train --model tiny.yaml --init-only --seed 1 -o "$D/m.n3"
    assert_no_file "$D/m.n3"
    unfill
    expect 0 '' -- n3-train --init s0.n3 --data ok.csv --split all --scaffold "$D/m.state" -q -o t1.n3
    cp "$D/m.state" m.before
    fill
    full -- n3-train --init s0.n3 --data ok.csv --split all --scaffold "$D/m.state" -q -o t2.n3
    same "$D/m.state" m.before "the member's SCAFFOLD state is kept when it cannot be written"
    assert_no_file t2.n3
    no_temp "--scaffold"
    cp m.before m.state
    full -- n3-train --init s0.n3 --data ok.csv --split all --scaffold m.state -q -o "$D/t2.n3"
    same m.state m.before "the SCAFFOLD state does not move when the update cannot be written"
    assert_no_file "$D/t2.n3"
    unfill
else
    echo "note: n3-train not built (no libtorch), its cases skipped"
fi

# --- n3-send --recv -o and --spool -------------------------------------------------------------
bg() { # bg NAME cmd...: in the background, bounded by timeout; stdout/stderr in $T/NAME.*
    local name=$1
    shift
    timeout 60 "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
    PIDS+=($!)
    eval "PID_$name=$!"
}
rc() { # rc NAME: waits, RC is the exit code
    local p
    eval "p=\$PID_$1"
    wait "$p"
    RC=$?
}
fill
bg rx n3-send --recv "ipc://$T/rx.sock" --count 1 --timeout 30 -o "$D/rx.n3"
bg tx n3-send --timeout 30 "ipc://$T/rx.sock" u.n3
rc rx
assert_eq "$RC" 2 "--recv -o on a full disk exits 2"
cp "$T/rx.err" "$T/err"
assert_match '^n3-send: error: .*no space left on device' "$T/err" "--recv -o says the disk is full"
rc tx
assert_no_file "$D/rx.n3"
unfill
# The spool has room for two of the five records: it keeps those two, whole, and nothing else.
mkdir "$D/spool"
fill 100
bg rx n3-send --recv "ipc://$T/sp.sock" --count 5 --timeout 30 --spool "$D/spool"
for i in 1 2 3 4 5; do bg tx$i n3-send --timeout 30 "ipc://$T/sp.sock" u.n3; done
rc rx
assert_eq "$RC" 2 "--spool on a full disk exits 2"
cp "$T/rx.err" "$T/err"
assert_match '^n3-send: error: .*no space left on device' "$T/err" "--spool says the disk is full"
for i in 1 2 3 4 5; do rc tx$i; done
n=0
for f in "$D"/spool/*; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    same "$f" u.n3 "spool file $(basename "$f") is a whole record"
done
_case="the spool kept the records that fit ($n)"
if [ "$n" -ge 1 ] && [ "$n" -le 2 ]; then _pass; else _fail "$n spool files"; fi
no_temp "--spool"
unfill

finish
