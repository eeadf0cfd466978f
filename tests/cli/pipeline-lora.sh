#!/usr/bin/env bash
# A federated LoRA round end to end on a tiny transformer: two members train adapter updates of
# one frozen model, encode and seal them, send them over ZeroMQ on loopback to the hub, which
# opens, decodes and merges them onto the adapter, applies the new adapter to the model and
# evaluates it; base + adapter at run time gives the applied model's loss.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
command -v bible >/dev/null || skip "bible-kjv not installed"
PY=$N3_PYTHON
cd "$T"
RX=""
trap '[ -n "$RX" ] && kill "$RX" 2>/dev/null; rm -rf "$T"' EXIT
bible -f gen1:1-gen15:21 > gen.txt
bible -f mt5:1-mt7:29 > m0.txt
bible -f lk6:17-lk6:49 > m1.txt
cat > tiny.yaml <<'Y'
task: lm
vocab: 256
context: 32
layers:
  - {type: embedding, name: tok, vocab: 256, dim: 32}
  - {type: transformer, name: block0, dim: 32, heads: 2, hidden: 64, rotary: true}
  - {type: transformer, name: block1, dim: 32, heads: 2, hidden: 64, rotary: true}
  - {type: layernorm, name: ln_f, dim: 32}
  - {type: linear, name: head, tied: tok}
Y
loss() { n3-eval "$@" --json -q | "$PY" -c "import json,sys; print(json.load(sys.stdin)['loss'])"; }

expect 0 '' -- n3-train --model tiny.yaml --init-only --seed 1 -o init.n3
expect 0 '' -- n3-train --init init.n3 --data gen.txt --steps 30 --batch 16 --optimizer adam --lr 0.003 --threads 1 --emit model -o base.n3
expect 0 '' -- n3-train --init base.n3 --lora 4 --init-only --seed 3 -o a0.n3

n3-keys authority -o fed.ask 2>/dev/null; n3-keys public fed.ask > fed.pub
for n in hub m0 m1; do
    n3-keys request --id $n -o $n.secret > $n.req
    n3-keys issue --authority fed.ask $n.req -o $n.partial 2>/dev/null
    n3-keys complete --secret $n.secret --partial $n.partial -o $n.key 2>/dev/null
    n3-keys public $n.key > $n.pub
done
n3-keys roster m0.pub m1.pub > fed.roster

P=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
n3-send --recv "tcp://127.0.0.1:$P" --count 2 --timeout 120 > rx.n3 2> rx.err &
RX=$!
for i in 0 1; do
    expect 0 '' -- n3-train --init base.n3 --adapter a0.n3 --data m$i.txt --steps 15 --batch 16 --optimizer adam --lr 0.01 --threads 1 --seed $i -o u$i.n3
    n3-encode --zstd u$i.n3 | n3-seal --to hub.pub --key m$i.key --round 1 > sealed$i.n3
    expect 0 '' -- n3-send --timeout 60 "tcp://127.0.0.1:$P" sealed$i.n3
done
wait "$RX"; rc=$?; RX=""
assert_eq "$rc" 0 "the hub received both sealed updates ($(head -c 200 rx.err))"
n3-seal --open --key hub.key --authority fed.pub --roster fed.roster --round 1 -q < rx.n3 \
    | n3-encode -d | n3-merge --base a0.n3 -o a1.n3 2> merge.err
assert_eq "$?" 0 "open, decode and merge onto the adapter ($(head -c 200 merge.err))"
expect 0 '' -- n3-inspect --json a1.n3
assert_match '"lora_rank":"4"' out "the merged adapter keeps lora_rank"
assert_match '"round":"1"' out "and is round 1"
expect 0 '' -- n3-merge --base base.n3 --adapter a1.n3 -o full.n3
expect 0 '' -- n3-inspect --check full.n3
la=$(loss base.n3 --adapter a1.n3 --data m1.txt --split all)
lf=$(loss full.n3 --data m1.txt --split all)
lb=$(loss base.n3 --data m1.txt --split all)
echo "loss on the members' text: base $lb, base + merged adapter $la, applied $lf"
_case="the applied model evaluates as base + adapter ($la, $lf) and the round moved it from the base ($lb)"
"$PY" -c "import sys; a, f, b = map(float, sys.argv[1:]); sys.exit(not (abs(a - f) < 1e-4 and a < b))" "$la" "$lf" "$lb" \
    && _pass || _fail "base $lb, adapter $la, applied $lf"
finish
