#!/usr/bin/env bash
# CLI tests for n3-merge: the real binary on real records, every bad input, exit codes,
# messages and no output left behind by a failed run.
source "$(dirname "$0")/lib.sh"
PY=$N3_PYTHON
MK="$N3_SRC/tests/merge/make_tensors.py"
CRAFT="$N3_SRC/tests/merge/craft_record.py"
cd "$T"

# A base model and six updates trained from it.
$PY "$MK" base.st --seed 100
n3-inspect --from-safetensors base.st --kind model --meta round=4 --meta spec_hash=s1 -o base.n3
H=$(n3-inspect --json base.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
for i in 1 2 3 4 5 6; do
    $PY "$MK" u$i.st --seed $i --scale 0.1
    n3-inspect --from-safetensors u$i.st --kind update --meta samples=$((i * 10)) \
        --meta base="$H" --meta round=4 --meta spec_hash=s1 -o u$i.n3
done
U="u1.n3 u2.n3 u3.n3 u4.n3 u5.n3 u6.n3"

# Happy paths ----------------------------------------------------------------------------------
expect 0 '' -- n3-merge $U -o avg.n3
assert_file avg.n3
expect 0 '' -- n3-merge --rule fedavg --base base.n3 $U -o next.n3
n3-inspect next.n3 > next.txt
assert_match '^n3-record|model' next.txt "the output with --base is a model"
assert_match 'round +5' next.txt "the round is the base's plus one"
assert_match 'spec_hash +s1' next.txt "the base's spec metadata is carried"
n3-inspect --to-safetensors next.n3 -o next.st
n3-inspect --to-safetensors avg.n3 -o avg.st
# numpy reference in double precision
$PY - <<'PYEOF' > check.txt
import json, struct, numpy as np
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).astype(np.float64)
            for k, v in h.items() if k != "__metadata__"}
us = [load(f"u{i}.st") for i in range(1, 7)]; w = [10 * i for i in range(1, 7)]
base, nxt, avg = load("base.st"), load("next.st"), load("avg.st")
err = 0.0
for k in base:
    ref = sum(wi * u[k] for wi, u in zip(w, us)) / sum(w)
    err = max(err, np.abs(avg[k] - ref).max(), np.abs(nxt[k] - (base[k] + ref)).max())
print("ok" if err < 1e-6 else f"error {err}")
PYEOF
assert_match '^ok$' check.txt "fedavg and fedavg --base match a numpy reference"

# Order invariance: files in another order, a stream on stdin, mixed files and stdin.
expect 0 '' -- n3-merge u6.n3 u3.n3 u1.n3 u5.n3 u2.n3 u4.n3 -o avg2.n3
cmp -s avg.n3 avg2.n3; assert_eq $? 0 "reordered inputs give identical bytes"
cat u4.n3 u2.n3 u6.n3 u1.n3 u5.n3 u3.n3 > stream.n3
expect_stdin stream.n3 0 '' -- n3-merge -o avg3.n3
cmp -s avg.n3 avg3.n3; assert_eq $? 0 "a stream on stdin gives identical bytes"
cat u5.n3 u1.n3 | n3-merge u2.n3 - u6.n3 u4.n3 u3.n3 -o avg4.n3 2>/dev/null
cmp -s avg.n3 avg4.n3; assert_eq $? 0 "files and a piped stream give identical bytes"
# stdin from a socket cannot be spliced: the copying fallback must give the same bytes.
$PY -c 'import socket, subprocess, sys
a, b = socket.socketpair()
p = subprocess.Popen(["n3-merge", "-o", "sock.n3"], stdin=b)
b.close()
a.sendall(open("stream.n3", "rb").read())
a.close()
sys.exit(p.wait())'
assert_eq $? 0 "a stream from a socket merges"
cmp -s avg.n3 sock.n3; assert_eq $? 0 "a stream from a socket gives identical bytes"
expect 0 '' -- n3-merge -j 1 $U -o avg5.n3
cmp -s avg.n3 avg5.n3; assert_eq $? 0 "one thread gives identical bytes"
expect_stdin stream.n3 0 '' -- n3-merge -o - -q
cmp -s avg.n3 "$T/out"; assert_eq $? 0 "stdout carries the same record"

for rule in median trimmed-mean:0.2 krum krum:1 multi-krum:1,3 fedavgm; do
    state=""
    [ "$rule" = fedavgm ] && state="--state $rule.state"
    expect 0 '' -- n3-merge --rule $rule $state --base base.n3 $U -o r.n3
    assert_file r.n3
done
expect 0 'weight' -- n3-merge -v --weights uniform --clip-norm 0.5 $U -o clip.n3
expect 0 '' -- n3-merge --weights 1,0,0,0,0,1 $U -o w.n3

# FedAdam over three rounds, state carried in a file.
cp base.n3 g0.n3
for r in 0 1 2; do
    G=$(n3-inspect --json g$r.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
    for i in 1 2 3; do
        $PY "$MK" a.st --seed $((r * 10 + i)) --scale 0.1
        n3-inspect --from-safetensors a.st --kind update --meta samples=5 --meta base="$G" -o a$i.n3
    done
    expect 0 '' -- n3-merge --rule fedadam --state adam.state --base g$r.n3 a1.n3 a2.n3 a3.n3 -o g$((r + 1)).n3
    assert_file adam.state
done
n3-inspect g3.n3 > g3.txt
assert_match 'round +7' g3.txt "three fedadam rounds advance the round by three"
G1=$(n3-inspect --json g1.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
n3-inspect --from-safetensors a.st --kind update --meta samples=5 --meta base="$G1" -o old.n3
expect 1 'adam.state was written for model .*, not --base g1.n3' -- n3-merge --rule fedadam --state adam.state --base g1.n3 old.n3 -o fail.n3
assert_no_file fail.n3
expect 1 'holds fedadam state, not fedyogi' -- n3-merge --rule fedyogi --state adam.state --base g2.n3 a1.n3 -o fail.n3
assert_no_file fail.n3

# Gossip mixing of models.
for i in 1 2 3; do n3-inspect --from-safetensors u$i.st --kind model -o m$i.n3; done
expect 0 '' -- n3-merge --rule mix m1.n3 m2.n3 m3.n3 -o mix.n3
expect 0 '' -- n3-merge --rule mix --self m1.n3 --self-weight 0.5 m2.n3 m3.n3 -o mix2.n3
expect 1 'u1.n3: is an update record, but mix averages models' -- n3-merge --rule mix m1.n3 u1.n3 -o fail.n3
assert_no_file fail.n3

# Memory: the resident set does not grow with the number of inputs. Ten updates of 2M
# parameters (8 MiB each) merge in well under half their total size, and in about what two
# of them need (the output model dominates).
for i in $(seq 1 10); do
    $PY "$MK" big.st --seed $((200 + i)) --numel 2097152 --scale 0.01
    n3-inspect --from-safetensors big.st --kind update --meta samples=$i -o big$i.n3
done
rm big.st
# peak RSS (KiB) of a command, from getrusage(RUSAGE_CHILDREN)
maxrss() {
    $PY -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}
maxrss n3-merge big1.n3 big2.n3 big3.n3 big4.n3 big5.n3 big6.n3 big7.n3 \
    big8.n3 big9.n3 big10.n3 -o big.n3 > rss10.txt
maxrss n3-merge big1.n3 big2.n3 -o big2out.n3 > rss2.txt
rss10=$(tail -1 rss10.txt)
rss2=$(tail -1 rss2.txt)
echo "peak RSS: $((rss10 / 1024)) MiB for 10 inputs of 8 MiB, $((rss2 / 1024)) MiB for 2"
# Under a sanitizer or an emulator the absolute figure is not n3's own; the relative one holds.
if [ -z "${ASAN_OPTIONS:-}" ] && [ "${N3_EMULATED:-0}" != 1 ]; then
    assert_eq "$([ "$rss10" -lt $((40 * 1024)) ] && echo ok)" ok "10 x 8 MiB merge within 40 MiB RSS (got ${rss10} KiB)"
fi
assert_eq "$([ "$rss10" -lt $((rss2 + 8 * 1024)) ] && echo ok)" ok "RSS for 10 inputs within 8 MiB of RSS for 2 (${rss10} vs ${rss2} KiB)"
rm -f big*.n3

# Bad inputs: exit 1, the input named, no output ------------------------------------------------
bad() { # bad NAME PATTERN [n3-merge args...]
    local name=$1 pattern=$2
    shift 2
    expect 1 "$pattern" -- n3-merge "$@" -o out.n3
    assert_no_file out.n3
}
head -c 100 u3.n3 > trunc.n3
bad truncated 'trunc.n3: record 1 at byte 0: truncated record' u1.n3 trunc.n3
head -c 20 u3.n3 > trunc2.n3
bad truncated-header 'trunc2.n3: .*truncated record header' u1.n3 trunc2.n3
cp u3.n3 flip.n3; printf '\x55' | dd of=flip.n3 bs=1 seek=$(( $(stat -c %s u3.n3) - 30 )) conv=notrunc status=none
bad corrupted 'flip.n3: corrupted record \(checksum mismatch\)' u1.n3 u2.n3 flip.n3
cat u2.n3 flip.n3 > flipstream.n3
expect_stdin flipstream.n3 1 'stdin: record 2: corrupted record \(checksum mismatch\)' -- n3-merge u1.n3 - -o out.n3
assert_no_file out.n3
expect 1 'stdin: record 2: corrupted record \(checksum mismatch\)' -- sh -c 'cat flipstream.n3 | n3-merge u1.n3 - -o out.n3'
assert_no_file out.n3
head -c 500 flipstream.n3 > cutstream.n3
expect 1 'stdin: record 2 at byte 388: truncated record' -- sh -c 'cat cutstream.n3 | n3-merge u1.n3 - -o out.n3'
assert_no_file out.n3
: > empty.n3
bad empty 'empty.n3: no records' u1.n3 empty.n3
expect_stdin empty.n3 1 'stdin: no records' -- n3-merge -o out.n3
assert_no_file out.n3
printf 'not a record at all, just some text long enough for a header\n' > text.n3
bad not-a-record 'text.n3: record 1 at byte 0: .*magic' u1.n3 text.n3
$PY "$CRAFT" u3.st packed.n3 --type 3
bad packed 'packed.n3: is a packed record.*' u1.n3 packed.n3
assert_match 'hint: decode it first: n3-encode -d' "$T/err" "packed input hints at n3-encode -d"
$PY "$CRAFT" u3.st v2.n3 --type 2 --version 2
bad version 'v2.n3: .*version 2' u1.n3 v2.n3
$PY "$CRAFT" u3.st t9.n3 --type 9
bad type 't9.n3: .*type' u1.n3 t9.n3
$PY "$MK" nan.st --seed 7 --nan b
n3-inspect --from-safetensors nan.st --kind update --meta samples=3 --meta base="$H" -o nan.n3
bad nan "nan.n3: tensor 'b' holds NaN or Inf" u1.n3 nan.n3 u2.n3
bad nan-median "nan.n3: tensor 'b' holds NaN or Inf" --rule median u1.n3 nan.n3 u2.n3
$PY "$MK" inf.st --seed 8 --inf w
n3-inspect --from-safetensors inf.st --kind update --meta samples=3 --meta base="$H" -o inf.n3
bad inf "inf.n3: tensor 'w' holds NaN or Inf" --base base.n3 u1.n3 inf.n3
$PY "$MK" shape.st --seed 9 --tensors w:3x4,b:3
n3-inspect --from-safetensors shape.st --kind update --meta samples=3 --meta base="$H" -o shape.n3
bad shape "shape.n3: tensor 'w' has shape 3x4, expected 4x3" u1.n3 u2.n3 shape.n3
bad shape-base "shape.n3: tensor 'w' has shape 3x4, expected 4x3 \(as in --base base.n3\)" --base base.n3 u1.n3 shape.n3
$PY "$MK" name.st --seed 9 --tensors v:4x3,b:3
n3-inspect --from-safetensors name.st --kind update --meta samples=3 --meta base="$H" -o name.n3
bad name "name.n3: has no tensor 'w'" u1.n3 u2.n3 name.n3
$PY "$MK" f16.st --seed 9 --dtype F16
n3-inspect --from-safetensors f16.st --kind update --meta samples=3 --meta base="$H" -o f16.n3
bad dtype "f16.n3: tensor '.' has dtype F16, expected F32" u1.n3 u2.n3 f16.n3
$PY "$MK" int.st --seed 9 --dtype I32
n3-inspect --from-safetensors int.st --kind update --meta samples=3 -o int.n3
bad int-dtype "int.n3: tensor '.' has dtype I32; n3-merge merges F32, F16 and BF16" int.n3
n3-inspect --from-safetensors u1.st --kind update --meta samples=3 --meta base=$(printf 'e%.0s' $(seq 64)) -o other.n3
bad base "other.n3: was trained from model eeeeeeeeeeeeeeee…, not --base base.n3" --base base.n3 u1.n3 other.n3
bad base-majority "other.n3: was trained from model eeee" u1.n3 u2.n3 other.n3
$PY "$MK" huge.st --seed 11 --scale 10
n3-inspect --from-safetensors huge.st --kind update --meta samples=3 --meta base="$H" -o huge.n3
bad norm-outlier 'huge.n3: has L2 norm [0-9.]+, above --max-norm 5' --max-norm 5 u1.n3 huge.n3 u2.n3
expect 0 'warning: huge.n3: has L2 norm' -- n3-merge --skip-bad --max-norm 5 u1.n3 huge.n3 u2.n3 -o outlier.n3
expect 0 '' -- n3-merge u1.n3 u2.n3 -o two.n3
cmp -s outlier.n3 two.n3; assert_eq $? 0 "--max-norm --skip-bad merges the others"
n3-inspect --from-safetensors u2.st --kind update --meta samples=3 --meta base="$H" --meta spec_hash=s2 -o spec.n3
bad spec "spec.n3: was built from model spec s2…, not s1…" --base base.n3 u1.n3 spec.n3
bad model-and-update 'm1.n3: is a model record, but --base applies updates' --base base.n3 u1.n3 m1.n3
bad models-and-updates 'm1.n3: is a model record, and the other inputs are updates' u1.n3 u2.n3 m1.n3
cp u2.n3 dup.n3
bad duplicate 'dup.n3: is a duplicate of u2.n3' u1.n3 u2.n3 dup.n3
cat u2.n3 u2.n3 > dupstream.n3
expect_stdin dupstream.n3 1 'stdin: record 2: is a duplicate of stdin: record 1' -- n3-merge -o out.n3
assert_no_file out.n3
n3-inspect --from-safetensors u1.st --kind update --meta base="$H" -o nosamples.n3
bad no-samples 'nosamples.n3: has no sample count' u1.n3 nosamples.n3
assert_match 'hint: --weights uniform' "$T/err" "missing samples hints at --weights uniform"
n3-inspect --from-safetensors u1.st --kind update --meta samples=0 --meta base="$H" -o zero1.n3
n3-inspect --from-safetensors u2.st --kind update --meta samples=0 --meta base="$H" -o zero2.n3
bad zero-weight 'total weight of the 2 inputs is zero' zero1.n3 zero2.n3
n3-inspect --from-safetensors base.st --kind update --meta samples=1 -o notamodel.n3
bad base-not-model '--base notamodel.n3 is an update record, not a model' --base notamodel.n3 u1.n3
expect 0 '' -- n3-merge --base <(cat base.n3) $U -o piped.n3
cmp -s piped.n3 next.n3; assert_eq $? 0 "a base model from a pipe gives the same model"
cp base.n3 badbase.n3; printf '\x55' | dd of=badbase.n3 bs=1 seek=200 conv=notrunc status=none
bad base-corrupted '--base badbase.n3: corrupted record' --base badbase.n3 u1.n3

# --skip-bad drops them with a warning; --min-inputs then counts what is left (exit 3).
expect 0 'warning: .*nan.n3: tensor .b. holds NaN or Inf \(skipped\)' -- n3-merge --skip-bad --base base.n3 \
    u1.n3 nan.n3 shape.n3 other.n3 dup.n3 trunc.n3 flip.n3 u2.n3 m1.n3 -o skip.n3
assert_file skip.n3
assert_eq "$(grep -c 'warning:' "$T/err")" 7 "one warning per bad input"
expect 0 '' -- n3-merge --base base.n3 u1.n3 u2.n3 -o ref.n3
cmp -s skip.n3 ref.n3; assert_eq $? 0 "--skip-bad gives the merge of the good inputs"
expect 3 'error: 2 usable inputs, fewer than --min-inputs 3' -- n3-merge --skip-bad --min-inputs 3 u1.n3 nan.n3 u2.n3 -o out.n3
assert_no_file out.n3
expect 3 'krum with f=2 needs at least 7 inputs' -- n3-merge --rule krum:2 u1.n3 u2.n3 u3.n3 -o out.n3
assert_no_file out.n3

# More inputs than file descriptors allowed: the data passes fall back to the mappings.
mkdir many
for i in $(seq 1 60); do
    $PY "$MK" many/u.st --seed $((300 + i)) --scale 0.1
    n3-inspect --from-safetensors many/u.st --kind update --meta samples=$i --meta base="$H" -o many/u$i.n3
done
rm many/u.st
expect 0 '' -- n3-merge many/u*.n3 -o many.n3
expect 0 '' -- sh -c 'ulimit -n 40 && exec n3-merge many/u*.n3 -o many40.n3'
cmp -s many.n3 many40.n3; assert_eq $? 0 "60 inputs under 'ulimit -n 40' give the same bytes"

# --json: a one-line summary on stderr.
n3-merge --json --rule multi-krum:1,4 --skip-bad $U nan.n3 -o mk.n3 2> summary.json || true
$PY -c 'import json; j = json.loads(open("summary.json").read().splitlines()[-1])
assert j["rule"] == "multi-krum" and j["output"] == "update", j
assert sum(i["selected"] for i in j["inputs"]) == 4 and len(j["inputs"]) == 6, j
assert abs(sum(i["weight"] for i in j["inputs"]) - 1) < 1e-12 and len(j["skipped"]) == 1, j
print("ok")' > json.txt 2>&1
assert_match '^ok$' json.txt "--json summarises rule, inputs, weights, Krum choice and skipped inputs"

# A signal while records are still arriving: exit 128+signal, no output file left behind.
mkfifo slow.fifo
(cat u1.n3; exec sleep 30) > slow.fifo &
writer=$!
n3-merge -o sig.n3 < slow.fifo 2> sig.err &
merger=$!
sleep 0.5
kill -TERM $merger
wait $merger
assert_eq $? 143 "SIGTERM while reading stdin exits 143"
kill $writer 2> /dev/null
wait $writer 2> /dev/null
assert_no_file sig.n3

# Usage errors: exit 2 ----------------------------------------------------------------------------
expect 2 "unknown rule 'fedsgd'" -- n3-merge --rule fedsgd u1.n3 -o out.n3
assert_match 'hint: rules: fedavg' "$T/err" "unknown rule lists the rules"
expect 2 'keeps server state' -- n3-merge --rule fedadam --base base.n3 u1.n3 -o out.n3
expect 2 '--state is for' -- n3-merge --rule fedavg --state s u1.n3 -o out.n3
expect 2 'trimmed-mean:BETA must be in' -- n3-merge --rule trimmed-mean:0.7 u1.n3 -o out.n3
expect 2 '--weights lists 2 weights for 3 inputs' -- n3-merge --weights 1,2 u1.n3 u2.n3 u3.n3 -o out.n3
expect 2 'output u1.n3 is also an input' -- n3-merge u1.n3 u2.n3 -o u1.n3
expect 2 '--self and --self-weight are for --rule mix' -- n3-merge --self m1.n3 m2.n3 -o out.n3
expect 2 'missing.n3' -- n3-merge u1.n3 missing.n3 -o out.n3
expect 2 'stdin' -- n3-merge - - -o out.n3
expect 2 'only one of the inputs, --base and --self may read stdin' -- n3-merge --base - - -o out.n3
expect 2 'output adam.state is also an input' -- n3-merge --rule fedadam --state adam.state --base g3.n3 a1.n3 -o adam.state
assert_no_file out.n3
expect 0 '' -- n3-merge --help
assert_match 'fedadam' "$T/out" "--help lists the rules"

finish
