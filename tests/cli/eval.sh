#!/usr/bin/env bash
# CLI tests for n3-eval: classifier metrics, per-class output, LM metrics, sampling, bad input.
source "$(dirname "$0")/lib.sh"
M="$N3_SRC/examples/models"
FULL=/usr/share/datasets/fashion-mnist
# Training runs use the first 4000 training and 2000 test images, uncompressed: decoding the
# whole gzipped set would dominate the suite's time.
F="$T/fmnist"
"${N3_PYTHON:-/usr/bin/python3}" - "$FULL" "$F" <<'PY'
import gzip, os, struct, sys
src, dst = sys.argv[1:3]
os.makedirs(dst)
for pre, n in (("train", 4000), ("t10k", 2000)):
    for kind, dims, size in (("images-idx3", 3, 784), ("labels-idx1", 1, 1)):
        b = gzip.open(f"{src}/{pre}-{kind}-ubyte.gz").read()
        head = bytearray(b[:4 + 4 * dims]); head[4:8] = struct.pack(">I", n)
        open(f"{dst}/{pre}-{kind}-ubyte", "wb").write(bytes(head) + b[4 + 4 * dims:4 + 4 * dims + n * size])
PY
py() { "$N3_PYTHON" "$@"; }
field() { py -c "import json,sys; print(json.load(sys.stdin)['$1'])" < "$T/out"; }

n3-train --model "$M/mlp.yaml" --data "$F" --limit 3000 --threads 1 --lr 0.1 --momentum 0.9 \
    --emit model -o "$T/m.n3" || echo "FAIL: setup training" >&2
n3-train --model "$M/mlp.yaml" --init-only -o "$T/fresh.n3"

expect 0 '' -- n3-eval --help
expect 0 '' -- n3-eval "$T/m.n3" --data "$F" --limit 1000
assert_match '^accuracy 0\.[0-9]{4}  loss [0-9.]+  samples 1000$' "$T/out" "text summary"
expect 0 '' -- n3-eval "$T/m.n3" --data "$F" --limit 1000 --json
acc=$(field accuracy)
assert_eq "$(py -c "print($acc > 0.55)")" True "trained accuracy $acc beats chance (0.1) by far"
assert_eq "$(field samples)" 1000 "--limit"
expect 0 '' -- n3-eval "$T/fresh.n3" --data "$F" --limit 1000 --json
fresh=$(field accuracy)
assert_eq "$(py -c "print($fresh < 0.35)")" True "an untrained model is near chance ($fresh)"
expect 0 '' -- n3-eval "$T/m.n3" --data "$F" --limit 1000 -v
assert_eq "$(grep -c '^  class [0-9]' "$T/out")" 10 "-v prints ten per-class lines"
expect 0 '' -- n3-eval "$T/m.n3" --data "$F" --limit 1000 -v --json
assert_match '"classes":\[\{"class":0,"samples":[0-9]+,"accuracy"' "$T/out" "-v --json per class"
expect_stdin "$T/m.n3" 0 '' -- n3-eval - --data "$F" --limit 100 --split train
assert_match 'samples 100' "$T/out" "model from stdin, train split"

# bad input
expect 2 '--data is required' -- n3-eval "$T/m.n3"
expect 2 'split must be train, test or all' -- n3-eval "$T/m.n3" --data "$F" --split dev
expect 2 'needs a language model' -- n3-eval "$T/m.n3" --generate "In the"
head -c 3000 "$T/m.n3" > "$T/cut.n3"
expect 1 'truncated' -- n3-eval "$T/cut.n3" --data "$F"
: > "$T/empty.n3"
expect 1 'empty' -- n3-eval "$T/empty.n3" --data "$F"
n3-train --init "$T/m.n3" --data "$F" --limit 100 --threads 1 -o "$T/u.n3"
expect 1 'is a update record, not a model' -- n3-eval "$T/u.n3" --data "$F"
# A model whose tensor no longer matches its spec.
n3-inspect --to-safetensors "$T/m.n3" -o "$T/m.st"
py - "$T/m.st" "$T/bad.st" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n])
h['fc1.weight']['shape'] = [784, 200]
hb = json.dumps(h).encode()
hb += b' ' * ((8 - len(hb) % 8) % 8)
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(hb)) + hb + b[8 + n:])
PY
n3-inspect --from-safetensors "$T/bad.st" --kind model -o "$T/bad.n3"
expect 1 "tensor 'fc1.weight' has shape 784x200, the spec says 200x784" -- n3-eval "$T/bad.n3" --data "$F"

# the character LM: metrics and sampling
if command -v bible >/dev/null; then
    bible -f gen1:1-gen50:26 > "$T/kjv.txt"
    cat > "$T/lm.yaml" <<'Y'
task: lm
context: 32
layers:
  - {type: embedding, name: tok, vocab: 256, dim: 32}
  - {type: position, name: pos, context: 32, dim: 32}
  - {type: transformer, name: block0, dim: 32, heads: 2, hidden: 64}
  - {type: layernorm, name: ln_f, dim: 32}
  - {type: linear, name: head, in: 32, out: 256}
Y
    n3-train --model "$T/lm.yaml" --data "$T/kjv.txt" --steps 120 --batch 16 --optimizer adam \
        --lr 0.01 --threads 1 --emit model -o "$T/lm.n3"
    expect 0 '' -- n3-eval "$T/lm.n3" --data "$T/kjv.txt" --json
    bpc=$(field bits_per_char)
    assert_eq "$(py -c "print($bpc < 4.0)")" True "bits per char $bpc below the ~4.3 of a unigram model"
    assert_match '"accuracy":0\.[2-9]' "$T/out" "next-character accuracy well above 1/256"
    expect 0 '' -- n3-eval "$T/lm.n3" --data "$T/kjv.txt"
    assert_match '^bits/char [0-9.]+  next-char accuracy' "$T/out" "LM text summary"
    expect 0 '' -- n3-eval "$T/lm.n3" --generate "And God said" --tokens 40 --seed 3
    cp "$T/out" "$T/g1"
    assert_eq "$(head -c 12 "$T/g1")" "And God said" "generation starts with the prompt"
    assert_eq "$(tr -d '\n' < "$T/g1" | wc -c)" 52 "prompt + 40 generated characters"
    expect 0 '' -- n3-eval "$T/lm.n3" --generate "And God said" --tokens 40 --seed 3
    assert_eq "$(cmp -s "$T/out" "$T/g1" && echo same)" same "sampling is reproducible from --seed"
    expect 2 'temperature must be zero or positive' -- n3-eval "$T/lm.n3" --generate "x" --temperature -1
    expect 2 'takes no --data' -- n3-eval "$T/lm.n3" --generate "x" --data "$T/kjv.txt"
    expect 2 'language model, but the data is not text' -- n3-eval "$T/lm.n3" --data "$F"
fi
finish
