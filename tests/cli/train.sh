#!/usr/bin/env bash
# CLI tests for n3-train: interface, partitions, determinism, learning, and every bad input.
source "$(dirname "$0")/lib.sh"
M="$N3_SRC/examples/models"
FULL=/usr/share/datasets/fashion-mnist
# Training runs use the first 5000 training and 2000 test images, uncompressed: decoding the
# whole gzipped set would dominate the suite's time.
F="$T/fmnist"
"${N3_PYTHON:-/usr/bin/python3}" - "$FULL" "$F" <<'PY'
import gzip, os, struct, sys
src, dst = sys.argv[1:3]
os.makedirs(dst)
for pre, n in (("train", 5000), ("t10k", 2000)):
    for kind, dims, size in (("images-idx3", 3, 784), ("labels-idx1", 1, 1)):
        b = gzip.open(f"{src}/{pre}-{kind}-ubyte.gz").read()
        head = bytearray(b[:4 + 4 * dims]); head[4:8] = struct.pack(">I", n)
        open(f"{dst}/{pre}-{kind}-ubyte", "wb").write(bytes(head) + b[4 + 4 * dims:4 + 4 * dims + n * size])
PY
py() { "$N3_PYTHON" "$@"; }
meta() { n3-inspect --json "$1" | py -c "import json,sys; print(json.load(sys.stdin)['metadata'].get('$2',''))"; }
hash_of() { n3-inspect --json "$1" | py -c "import json,sys; print(json.load(sys.stdin)['hash'])"; }

# A small IDX folder writer: mkidx DIR N [label_max] [image_count]
mkidx() {
    py - "$@" <<'PY'
import gzip, os, struct, sys
d, n = sys.argv[1], int(sys.argv[2])
top = int(sys.argv[3]) if len(sys.argv) > 3 else 9
ni = int(sys.argv[4]) if len(sys.argv) > 4 else n
os.makedirs(d, exist_ok=True)
for pre in ("train", "t10k"):
    with gzip.open(f"{d}/{pre}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, ni, 28, 28) + bytes((i * 7) % 256 for i in range(ni * 784)))
    with gzip.open(f"{d}/{pre}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, n) + bytes(i % (top + 1) for i in range(n)))
PY
}

# --- interface ------------------------------------------------------------------------------
expect 0 '' -- n3-train --help
assert_match 'partition' "$T/out" "--help lists --partition"
expect 2 'give --model SPEC.yaml or --init' -- n3-train --data "$F"
expect 2 '--data is required' -- n3-train --model "$M/mlp.yaml"
expect 2 'partition must be iid' -- n3-train --model "$M/mlp.yaml" --data "$F" --partition random
expect 2 'ALPHA must be a positive number' -- n3-train --data "$F" --partition dirichlet:-1 --list-partition
expect 2 'client 5 is out of range for 5 clients' -- n3-train --data "$F" --clients 5 --client 5 --list-partition
expect 2 'optimizer must be sgd or adam' -- n3-train --model "$M/mlp.yaml" --data "$F" --optimizer rmsprop --limit 10 -o "$T/x.n3"
assert_no_file "$T/x.n3"
expect 2 'emit must be update or model' -- n3-train --model "$M/mlp.yaml" --data "$F" --emit delta
expect 2 'cuda' -- n3-train --model "$M/mlp.yaml" --data "$F" --device cuda -o "$T/x.n3"
assert_no_file "$T/x.n3"
expect 2 'takes --model, not --init' -- n3-train --init "$T/none.n3" --init-only
expect 2 'no such file' -- n3-train --model "$M/mlp.yaml" --data "$T/nothing"
expect 2 'cannot tell the data format' -- n3-train --model "$M/mlp.yaml" --data "$M/mlp.yaml"
expect 2 'natural splits text by book' -- n3-train --data "$F" --partition natural --clients 2 --list-partition

# --- partitions -----------------------------------------------------------------------------
for c in 0 1 2 3 4; do
    expect 0 '' -- n3-train --data "$FULL" --partition dirichlet:0.5 --clients 5 --client $c --seed 3 --list-partition
    cp "$T/out" "$T/part$c"
done
assert_eq "$(cat "$T"/part? | wc -l)" 60000 "dirichlet shares cover all 60000 samples"
assert_eq "$(cat "$T"/part? | sort -n | uniq -d | wc -l)" 0 "dirichlet shares are disjoint"
expect 0 '' -- n3-train --data "$FULL" --partition dirichlet:0.5 --clients 5 --client 2 --seed 3 --list-partition
assert_eq "$(cmp -s "$T/out" "$T/part2" && echo same)" same "the same seed gives the same share"
expect 0 '' -- n3-train --data "$FULL" --partition dirichlet:0.5 --clients 5 --client 2 --seed 4 --list-partition
assert_eq "$(cmp -s "$T/out" "$T/part2" && echo same || echo differs)" differs "another seed gives another share"
expect 0 '' -- n3-train --data "$FULL" --partition dirichlet:0.5 --clients 5 --client 2 --seed 8 --partition-seed 3 --list-partition
assert_eq "$(cmp -s "$T/out" "$T/part2" && echo same)" same "--partition-seed overrides --seed for the split"
expect 0 '' -- n3-train --data "$FULL" --partition classes:2 --clients 10 --client 4 --list-partition
zcat "$FULL/train-labels-idx1-ubyte.gz" | tail -c +9 | od -An -v -tu1 -w1 | tr -d ' ' > "$T/labels"
labels=$(awk 'NR==FNR { want[$1 + 1] = 1; next } (FNR in want) { print $1 }' "$T/out" "$T/labels" | sort -u | tr '\n' ' ')
case " $labels" in *" 4 "*) has4=yes ;; *) has4=no ;; esac
assert_eq "$has4" yes "classes:2 client 4 holds label 4 (holds: $labels)"
assert_eq "$(echo $labels | wc -w)" 2 "classes:2 gives exactly 2 labels"
# labels: Flower's seed-42 #C=2 draw, as it is; client 3 holds exactly labels 3 and 4, and
# the 6000 images of label 4 are split among its three holders (clients 2, 3, 4).
C2=labels:0+7,1+6,2+4,3+4,4+8,5+0,6+2,7+0,8+5,9+7
expect 0 '' -- n3-train --data "$FULL" --partition "$C2" --clients 10 --client 3 --list-partition
labels=$(awk 'NR==FNR { want[$1 + 1] = 1; next } (FNR in want) { print $1 }' "$T/out" "$T/labels" | sort -u | tr '\n' ' ')
assert_eq "$labels" "3 4 " "labels: client 3 holds labels 3 and 4"
assert_eq "$(wc -l < "$T/out")" 8000 "labels: client 3 has 6000 of label 3 and 2000 of label 4"
expect 2 'lists 10 label groups for 9 clients' -- n3-train --data "$FULL" --partition "$C2" --clients 9 --list-partition
expect 2 'lists label 7 twice' -- n3-train --data "$F" --partition labels:7+7 --list-partition
expect 2 "'x' in client 1's group is not a label number" -- n3-train --data "$F" --partition labels:1,x --clients 2 --list-partition
expect 2 "label 10 is not in" -- n3-train --data "$F" --partition labels:1,10 --clients 2 --list-partition
expect 2 'labels needs one label group per client' -- n3-train --data "$F" --partition labels: --list-partition
expect 0 '' -- n3-train --data "$FULL" --partition iid --clients 3 --client 0 --limit 100 --list-partition
assert_eq "$(wc -l < "$T/out")" 100 "--limit keeps the first N of the partition"

# --- records, metadata, determinism ---------------------------------------------------------
expect 0 '' -- n3-train --model "$M/mlp.yaml" --init-only --seed 5 -o "$T/init.n3"
expect 0 '' -- n3-inspect "$T/init.n3"
assert_match 'fc1.weight +F32 +200x784' "$T/out" "tensor names match the spec"
assert_eq "$(meta "$T/init.n3" round)" 0 "a fresh model is round 0"
n3-train --model "$M/mlp.yaml" --init-only --seed 5 -o "$T/init2.n3"
assert_eq "$(cmp -s "$T/init.n3" "$T/init2.n3" && echo same)" same "--init-only is reproducible"
# A round-3 model, as n3-merge would write it: training copies the round into the update.
n3-inspect --to-safetensors "$T/init.n3" -o "$T/init.st"
n3-inspect --from-safetensors "$T/init.st" --kind model --meta round=3 -o "$T/r3.n3"
run() { n3-train --init "$T/r3.n3" --data "$F" --partition iid --clients 2 --client 1 --limit 2000 \
          --threads 1 --lr 0.1 --momentum 0.9 "$@"; }
expect 0 '' -- run --seed 9 -o "$T/u1.n3" --json
assert_match '"samples":2000,.*"samples_per_s":.*"loss":' "$T/err" "--json summary on stderr"
expect 0 '' -- run --seed 9 -o "$T/u2.n3"
assert_eq "$(cmp -s "$T/u1.n3" "$T/u2.n3" && echo same)" same "--threads 1 output is bit-identical"
n3-inspect "$T/u1.n3" > "$T/insp"
assert_match 'record 1: update' "$T/insp" "the default output is an update"
assert_eq "$(meta "$T/u1.n3" base)" "$(hash_of "$T/r3.n3")" "update base = hash of the init model"
assert_eq "$(meta "$T/u1.n3" round)" 3 "the update carries the init model's round"
assert_eq "$(meta "$T/u1.n3" samples)" 2000 "samples = partition size after --limit"
assert_eq "$(meta "$T/u1.n3" spec_hash)" "$(meta "$T/init.n3" spec_hash)" "spec hash carried"
run --seed 10 -o "$T/u3.n3"
assert_eq "$(cmp -s "$T/u1.n3" "$T/u3.n3" && echo same || echo differs)" differs "another seed trains differently"
# stdout carries the record when it is not a terminal
expect 0 '' -- run --steps 2
n3-inspect "$T/out" > "$T/insp"
assert_match 'update' "$T/insp" "the record goes to stdout"

# --- learning: far above chance, and --init alone continues --------------------------------
expect 0 '' -- n3-train --model "$M/mlp.yaml" --data "$F" --limit 4000 --epochs 2 --threads 1 \
    --lr 0.1 --momentum 0.9 --emit model -o "$T/m1.n3"
acc() { n3-eval "$1" --data "$F" --limit 2000 --json | py -c "import json,sys; print(json.load(sys.stdin)['accuracy'])"; }
a1=$(acc "$T/m1.n3")
assert_eq "$(py -c "print($a1 > 0.6)")" True "MLP accuracy $a1 beats chance (0.1) by far"
expect 0 '' -- n3-train --init "$T/m1.n3" --data "$F" --limit 4000 --threads 1 --lr 0.05 --emit model -o "$T/m2.n3"
assert_eq "$(meta "$T/m2.n3" spec_hash)" "$(meta "$T/m1.n3" spec_hash)" "--init alone reuses the record's spec"

# --- bad input ------------------------------------------------------------------------------
printf 'task: classify\ninput: [1, 28, 28]\nclasses: 10\nlayers:\n  - flatten\n  - {type: linear, in: 780, out: 10}\n' > "$T/bad.yaml"
expect 2 'bad.yaml:6: linear .*in is 780 but the layer before gives \[784\]' -- n3-train --model "$T/bad.yaml" --data "$F" -o "$T/x.n3"
assert_no_file "$T/x.n3"
printf 'task: classify\ninput: [1, 28, 28\n' > "$T/bad2.yaml"
expect 2 'bad2.yaml:[0-9]+: not valid YAML' -- n3-train --model "$T/bad2.yaml" --init-only -o "$T/x.n3"
expect 1 'built from another spec than --model' -- n3-train --model "$M/cnn.yaml" --init "$T/init.n3" --data "$F" -o "$T/x.n3"
assert_no_file "$T/x.n3"
expect 1 'is a update record, not a model' -- n3-train --init "$T/u1.n3" --data "$F" -o "$T/x.n3"
head -c 1000 "$T/init.n3" > "$T/cut.n3"
expect 1 'truncated' -- n3-train --init "$T/cut.n3" --data "$F" -o "$T/x.n3"
assert_no_file "$T/x.n3"
: > "$T/empty.n3"
expect 1 'empty' -- n3-train --init "$T/empty.n3" --data "$F" -o "$T/x.n3"
mkdir -p "$T/nodata"
expect 1 'no train-images-idx3-ubyte' -- n3-train --model "$M/mlp.yaml" --data "$T/nodata" -o "$T/x.n3"
assert_no_file "$T/x.n3"
mkidx "$T/idx" 50
expect 0 '' -- n3-train --model "$M/mlp.yaml" --data "$T/idx" --steps 1 -o "$T/x.n3"
rm -f "$T/x.n3"
mkidx "$T/count" 50 9 40
expect 1 'holds 40 images but .* holds 50 labels' -- n3-train --model "$M/mlp.yaml" --data "$T/count" -o "$T/x.n3"
mkidx "$T/range" 50 12
expect 1 'label 1[012] of sample [0-9]+ is out of range for a 10-class model' -- n3-train --model "$M/mlp.yaml" --data "$T/range" -o "$T/x.n3"
assert_no_file "$T/x.n3"
mkidx "$T/magic" 50
printf '\x00\x00\x0d\x03' | dd of="$T/magic/m" bs=4 count=1 2>/dev/null
zcat "$T/magic/train-images-idx3-ubyte.gz" | tail -c +5 | cat "$T/magic/m" - | gzip > "$T/magic/i.gz"
mv "$T/magic/i.gz" "$T/magic/train-images-idx3-ubyte.gz"
expect 1 'bad IDX magic' -- n3-train --model "$M/mlp.yaml" --data "$T/magic" -o "$T/x.n3"
mkidx "$T/trunc" 50
zcat "$T/trunc/train-images-idx3-ubyte.gz" | head -c 30000 | gzip > "$T/trunc/i.gz"
mv "$T/trunc/i.gz" "$T/trunc/train-images-idx3-ubyte.gz"
expect 1 'truncated IDX data' -- n3-train --model "$M/mlp.yaml" --data "$T/trunc" -o "$T/x.n3"
mkidx "$T/cutgz" 50
head -c -20 "$T/cutgz/train-images-idx3-ubyte.gz" > "$T/cutgz/i.gz"
mv "$T/cutgz/i.gz" "$T/cutgz/train-images-idx3-ubyte.gz"
expect 1 'truncated or corrupt gzip|truncated IDX' -- n3-train --model "$M/mlp.yaml" --data "$T/cutgz" -o "$T/x.n3"
assert_no_file "$T/x.n3"
# NaN in the data makes the loss NaN: stop, exit 1, no output.
printf 'task: classify\ninput: [2]\nclasses: 2\nlayers:\n  - {type: linear, in: 2, out: 2}\n' > "$T/tiny.yaml"
py -c "
for i in range(40): print(f'{i%7},{i%3},{i%2}')
print('nan,1,0')" > "$T/nan.csv"
expect 1 'training loss became nan' -- n3-train --model "$T/tiny.yaml" --data "$T/nan.csv" --split all --batch 64 -o "$T/x.n3"
assert_no_file "$T/x.n3"
py -c "
for i in range(40): print(f'{i%7},{i%3},{i%2}')" > "$T/ok.csv"
expect 0 '' -- n3-train --model "$T/tiny.yaml" --data "$T/ok.csv" --split all -o "$T/x.n3"
rm -f "$T/x.n3"
expect 1 'data samples have 2 values each, the model.s input needs 784' -- n3-train --model "$M/mlp.yaml" --data "$T/ok.csv" -o "$T/x.n3"

# --- the character LM on King James Bible text ------------------------------------------------
if command -v bible >/dev/null; then
    bible -f gen1:1-exo40:38 > "$T/kjv.txt"
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
    expect 0 '' -- n3-train --model "$T/lm.yaml" --data "$T/kjv.txt" --steps 150 --batch 16 \
        --optimizer adam --lr 0.01 --threads 1 --json --emit model -o "$T/lm.n3"
    loss=$(py -c "import json,sys; print(json.loads(open('$T/err').read().splitlines()[-1])['loss'])")
    unigram=$(py -c "
import collections, math
t = open('$T/kjv.txt', 'rb').read(); c = collections.Counter(t); n = len(t)
print(-sum(v / n * math.log(v / n) for v in c.values()))")
    assert_eq "$(py -c "print($loss < $unigram)")" True "LM loss $loss nats < unigram entropy $unigram nats"
    expect 0 '' -- n3-train --data "$T/kjv.txt" --partition natural --clients 2 --client 1 --split all --list-partition
    assert_eq "$(head -1 "$T/out")" "$(grep -n -m1 '^Exo1:1 ' "$T/kjv.txt" | cut -d: -f1 | awk '{print $1 - 1}')" \
        "natural: client 1 starts at Exodus"
    expect 2 'splits by label' -- n3-train --data "$T/kjv.txt" --partition dirichlet:0.5 --clients 2 --list-partition
    expect 2 'the model classifies, but the data is text' -- n3-train --model "$M/mlp.yaml" --data "$T/kjv.txt" -o "$T/x.n3"
    assert_no_file "$T/x.n3"
fi
finish
