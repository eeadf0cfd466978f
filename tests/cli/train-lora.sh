#!/usr/bin/env bash
# CLI tests for LoRA: fresh adapters (n3-train --init-only --lora), training with the model frozen,
# adapter updates merged onto their adapter, an adapter applied with n3-merge --adapter against
# numpy (W + alpha/r B A for every weight), n3-eval with base + adapter against the applied model,
# KV-cache generation with an adapter, and every refusal: another base, mixed ranks, bad flags.
source "$(dirname "$0")/lib.sh"
command -v n3-train >/dev/null || skip "n3-train not built (no libtorch)"
command -v bible >/dev/null || skip "bible-kjv not installed"
PY=$N3_PYTHON
"$PY" -c 'import numpy' 2>/dev/null || skip "no numpy for $PY (apt-get install python3-numpy)"
cd "$T"
bible -f gen1:1-gen20:18 > gen.txt
bible -f mt1:1-mt10:42 > mt.txt
bible -f mk1:1-mk8:38 > mk.txt
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
meta() { n3-inspect --json "$1" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['metadata'].get('$2',''))"; }
names() { n3-inspect --json "$1" | "$PY" -c "import json,sys; print(' '.join(t['name'] for t in json.load(sys.stdin)['tensors']))"; }
loss() { n3-eval "$@" --json -q | "$PY" -c "import json,sys; print(json.load(sys.stdin)['loss'])"; }
cat > load.py <<'PY'
import json, struct, subprocess, numpy as np
def load(p):
    b = subprocess.run(["n3-inspect", "--to-safetensors", p, "-o", "-"], capture_output=True, check=True).stdout
    n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    t = {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).reshape(v["shape"])
         for k, v in h.items() if k != "__metadata__"}
    return t, h.get("__metadata__", {})
PY
train() { n3-train --threads 1 -q "$@"; }

# --- a base model, pretrained a little, and a fresh adapter ---------------------------------
expect 0 '' -- n3-train --model tiny.yaml --init-only --seed 1 -o init.n3
expect 0 '' -- train --init init.n3 --data gen.txt --steps 30 --batch 16 --optimizer adam --lr 0.003 --emit model -o base.n3
expect 0 '' -- n3-train --init base.n3 --lora 4:8 --init-only --seed 2 -o a0.n3
expect 0 '' -- n3-inspect a0.n3
assert_match "lora_base +$(n3-inspect --json base.n3 | "$PY" -c "import json,sys; print(json.load(sys.stdin)['hash'])")" out "lora_base is the base record's hash"
assert_match 'lora_rank +4$' out "n3-inspect shows lora_rank"
assert_match 'lora_alpha +8$' out "n3-inspect shows lora_alpha"
assert_match 'lora_targets +attn,mlp$' out "the default targets: attn,mlp"
assert_match 'lora/block1\.mlp\.fc2\.weight\.B +F32 +32x4 ' out "B is [out, r]"
assert_match 'lora/block0\.attn\.qkv\.weight\.A +F32 +4x32 ' out "A is [r, in]"
assert_eq "$(names a0.n3 | wc -w)" 16 "2 blocks x 4 weights x (A, B), nothing else"
expect 0 '' -- n3-train --init base.n3 --lora 4:8 --init-only --seed 2 -o a0b.n3
assert_eq "$(cmp -s a0.n3 a0b.n3 && echo same)" same "a fresh adapter is reproducible from --seed"
expect 0 '' -- n3-train --init base.n3 --lora 2 --lora-targets attn --init-only -o attn.n3
assert_eq "$(meta attn.n3 lora_alpha) $(meta attn.n3 lora_targets) $(names attn.n3 | wc -w)" "2 attn 8" \
    "--lora 2 --lora-targets attn: alpha = rank, the attention weights only"
expect 0 '' -- n3-train --init base.n3 --lora 2 --lora-targets mlp,attn --init-only -o both.n3
assert_eq "$(meta both.n3 lora_targets)" attn,mlp "targets are written in one order"

# --- training an adapter: the base is frozen, the update holds only the adapter -------------
cp base.n3 base.copy
for i in 0 1; do
    f=$([ $i = 0 ] && echo mt.txt || echo mk.txt)
    expect 0 '' -- train --init base.n3 --adapter a0.n3 --data $f --steps 20 --batch 16 --optimizer adam --lr 0.01 --seed $i -o u$i.n3
done
assert_eq "$(cmp -s base.n3 base.copy && echo same)" same "training with --adapter leaves the base file as it was"
assert_eq "$(names u0.n3 | tr ' ' '\n' | grep -vc '^lora/')" 0 "the adapter update holds only lora/* tensors"
assert_eq "$(names u0.n3 | wc -w)" 16 "one delta per adapter tensor"
assert_eq "$(meta u0.n3 base)" "$(n3-inspect --json a0.n3 | "$PY" -c "import json,sys; print(json.load(sys.stdin)['hash'])")" \
    "the update's base is the adapter"
assert_eq "$(meta u0.n3 lora_base)" "$(meta a0.n3 lora_base)" "the update carries lora_base"
assert_eq "$(meta u0.n3 lora_rank)/$(meta u0.n3 lora_alpha)" "4/8" "and the rank and alpha"
expect 0 '' -- n3-train --threads 1 --init base.n3 --adapter a0.n3 --data mt.txt --steps 2 --batch 16 --json -o u-json.n3
"$PY" -c "import json,sys; j = json.loads(sys.stdin.read().splitlines()[-1]); print(j['trainable_parameters'], j['frozen_with_grad'])" < err > trainable.txt
# per block: qkv 4x32 + 96x4, proj 4x32 + 32x4, fc1 4x32 + 64x4, fc2 4x64 + 32x4 = 1536
assert_eq "$(cat trainable.txt)" "3072 0" "the optimizer steps the adapter's 3072 elements and no model weight"
expect 0 '' -- train --init base.n3 --data mt.txt --steps 20 --batch 16 --optimizer adam --lora 4:8 --seed 2 --emit model -o local.n3
assert_eq "$(names local.n3 | wc -w)" 16 "--lora --emit model writes the trained adapter"
expect 0 '' -- train --init base.n3 --data mt.txt --steps 5 --batch 16 --optimizer adam --lr 0.01 -o full-update.n3
lb=$(stat -c %s u0.n3); fb=$(stat -c %s full-update.n3)
echo "bytes of an update: LoRA rank 4 $lb, full $fb ($((100 * lb / fb))%)"
_case="the adapter update is a small fraction of a full update ($lb of $fb bytes)"
[ $((lb * 5)) -lt "$fb" ] && _pass || _fail "$lb >= $fb / 5"
# The B matrices start at zero and moved (the adapter trained) and the base weights did not: an
# adapter with B still zero would leave base + adapter equal to the base.
"$PY" - <<'PY' > frozen.txt
import numpy as np
from load import load
u, _ = load("u0.n3")
b = max(np.abs(v).max() for k, v in u.items() if k.endswith(".B"))
print("ok" if b > 0 else f"B did not move: {b}")
PY
assert_match '^ok$' frozen.txt "training moved the B matrices"

# --- merging adapter updates onto the adapter -----------------------------------------------
expect 0 '' -- n3-merge --base a0.n3 u0.n3 u1.n3 -o a1.n3
assert_eq "$(meta a1.n3 round) $(meta a1.n3 lora_rank) $(meta a1.n3 lora_base)" "1 4 $(meta a0.n3 lora_base)" \
    "the merged adapter keeps the metadata, round 1"
"$PY" - "$(meta u0.n3 samples)" "$(meta u1.n3 samples)" <<'PY' > fedavg.txt
import sys, numpy as np
from load import load
n0, n1 = float(sys.argv[1]), float(sys.argv[2])
a0, _ = load("a0.n3"); a1, _ = load("a1.n3"); u0, _ = load("u0.n3"); u1, _ = load("u1.n3")
err = max(np.abs(a1[k] - (a0[k].astype(np.float64) + (n0 * u0[k] + n1 * u1[k]) / (n0 + n1))).max() for k in a0)
print("ok" if err < 1e-6 else f"error {err}")
PY
assert_match '^ok$' fedavg.txt "the merged adapter is a0 + the sample-weighted mean of the updates"
expect 0 '' -- n3-merge u0.n3 u1.n3 -o agg.n3
assert_eq "$(meta agg.n3 lora_targets) $(meta agg.n3 base)" "attn,mlp $(meta u0.n3 base)" \
    "adapter updates aggregate without --base, keeping the lora keys"

# --- the applied adapter equals base + alpha/r B A (numpy, float64) -------------------------
expect 0 '' -- n3-merge --base base.n3 --adapter a1.n3 -o full.n3
expect 0 '' -- n3-inspect --json full.n3
assert_eq "$(grep -c 'lora' out)" 0 "the applied model holds no lora tensor and no lora key"
"$PY" - <<'PY' > apply.txt
import numpy as np
from load import load
W, wm = load("base.n3"); F, fm = load("full.n3"); A, am = load("a1.n3")
s = float(am["lora_alpha"]) / int(am["lora_rank"])
assert set(F) == set(W), "tensor names differ"
assert fm == wm, "metadata differs from the base's"
adapted = 0; worst = 0.0; moved = 0.0
for k in W:
    if "lora/" + k + ".A" in A:
        want = (W[k].astype(np.float64) + s * (A["lora/" + k + ".B"].astype(np.float64) @ A["lora/" + k + ".A"].astype(np.float64))).astype(np.float32)
        worst = max(worst, float(np.abs(F[k].astype(np.float64) - want).max() / (np.abs(want).max() + 1e-30)))
        moved = max(moved, float(np.abs(F[k] - W[k]).max()))
        adapted += 1
    else:
        assert np.array_equal(F[k], W[k]), k + " changed"
assert adapted == 8, adapted
print("ok" if worst < 1e-6 and moved > 0 else f"relative error {worst}, moved {moved}")
PY
assert_match '^ok$' apply.txt "every adapted weight is W + alpha/r B A, the others are the base's"
lf=$(loss full.n3 --data mk.txt --limit 200)
la=$(loss base.n3 --adapter a1.n3 --data mk.txt --limit 200)
lb=$(loss base.n3 --data mk.txt --limit 200)
echo "loss on Mark: base $lb, base + adapter $la, applied $lf"
_case="n3-eval base --adapter a gives the applied model's loss ($la, $lf), not the base's ($lb)"
"$PY" -c "import sys; a, f, b = map(float, sys.argv[1:]); sys.exit(not (abs(a - f) < 1e-4 and abs(a - b) > 1e-3))" "$la" "$lf" "$lb" \
    && _pass || _fail "base $lb, adapter $la, applied $lf"

# --- generation with an adapter: the KV cache gives the uncached tokens ---------------------
expect 0 '' -- n3-eval base.n3 --adapter a1.n3 --generate "And Jesus said" --tokens 60 --temperature 0
cp out cached.txt
expect 0 '' -- n3-eval base.n3 --adapter a1.n3 --generate "And Jesus said" --tokens 60 --temperature 0 --no-cache
assert_eq "$(cat out)" "$(cat cached.txt)" "KV-cache generation with an adapter equals no-cache generation"
expect 0 '' -- n3-eval full.n3 --generate "And Jesus said" --tokens 60 --temperature 0
assert_eq "$(cat out)" "$(cat cached.txt)" "and the applied model's greedy text"

# --- another base model: exit 1 everywhere, naming both hashes, no output -------------------
expect 0 '' -- n3-train --model tiny.yaml --init-only --seed 9 -o other.n3
short_a=$(meta a0.n3 lora_base | cut -c1-16)
expect 1 "adapts model $short_a…, not --init other.n3 \([0-9a-f]{16}…\)" -- train --init other.n3 --adapter a0.n3 --data mt.txt --steps 2 -o x.n3
assert_eq "$(wc -l < err)" 1 "one line"
expect 1 "adapts model $short_a…, not other.n3" -- n3-eval other.n3 --adapter a1.n3 --data mk.txt
expect 1 "adapts model $short_a…, not other.n3" -- n3-eval other.n3 --adapter a1.n3 --generate "And"
expect 1 "adapts model $short_a…, not --base other.n3 \([0-9a-f]{16}…\)" -- n3-merge --base other.n3 --adapter a1.n3 -o x.n3
assert_no_file x.n3
expect 1 'is a LoRA adapter, not a model' -- n3-eval a1.n3 --data mk.txt
expect 1 'is a LoRA adapter, not a model' -- n3-train --init a1.n3 --data mk.txt --steps 1 -o x.n3
expect 1 'itself a LoRA adapter' -- n3-merge --base a1.n3 --adapter a1.n3 -o x.n3
expect 1 'is not a LoRA adapter' -- n3-merge --base base.n3 --adapter other.n3 -o x.n3
expect 1 'is not a LoRA adapter' -- n3-eval base.n3 --adapter other.n3 --data mk.txt
assert_no_file x.n3

# --- mixtures: another rank, a full update, an adapter update onto the model ----------------
expect 0 '' -- n3-train --init base.n3 --lora 2:8 --init-only --seed 2 -o r2.n3
expect 0 '' -- train --init base.n3 --adapter r2.n3 --data mk.txt --steps 3 --batch 16 -o ur2.n3
expect 1 'ur2.n3: is a LoRA adapter update of model .*rank 2, alpha 8.*; --base a0.n3: a LoRA adapter of .*rank 4, alpha 8' -- \
    n3-merge --base a0.n3 u0.n3 ur2.n3 -o x.n3
expect 1 'ur2.n3: is a LoRA adapter update .*rank 2.*; the other inputs: a LoRA adapter update .*rank 4' -- \
    n3-merge u0.n3 u1.n3 ur2.n3 -o x.n3
expect 1 'full-update.n3: is not a LoRA adapter update; --base a0.n3: a LoRA adapter' -- \
    n3-merge --base a0.n3 u0.n3 full-update.n3 -o x.n3
expect 1 'u0.n3: is a LoRA adapter update .*; --base base.n3: not a LoRA adapter' -- \
    n3-merge --base base.n3 u0.n3 -o x.n3
assert_match 'merge onto their adapter' err "with a hint"
assert_no_file x.n3
expect 0 '' -- n3-merge --skip-bad --base a0.n3 u0.n3 ur2.n3 -o x.n3
assert_match 'ur2.n3: .*\(skipped\)' err "--skip-bad drops the other rank's update"
rm -f x.n3

# --- bad flags: exit 2, one line, no output -------------------------------------------------
for v in 0 -1 x 4x 4: :4 4:0 4:-1 4:x 4:nan 4:inf 99999999999; do
    expect 2 "error: --lora .*(RANK a positive integer|ALPHA must be a positive number)" -- \
        n3-train --init base.n3 --lora "$v" --init-only -o x.n3
    assert_eq "$(grep -c 'error:' err) $(grep -vc '^n3-train: \(error\|hint\):' err)" "1 0" "--lora $v: one error line"
done
for v in "" attn, bogus attn,attn mlp,x; do
    expect 2 "error: --lora-targets takes attn, mlp or attn,mlp, not '$v'" -- \
        n3-train --init base.n3 --lora 4 --lora-targets "$v" --init-only -o x.n3
done
expect 2 'lora-targets needs --lora' -- n3-train --init base.n3 --lora-targets attn --init-only -o x.n3
expect 2 'give --init MODEL.n3' -- n3-train --model tiny.yaml --lora 4 --init-only -o x.n3
expect 2 'takes no --adapter' -- n3-train --init base.n3 --adapter a0.n3 --lora 4 --init-only -o x.n3
expect 2 'takes no --adapter' -- n3-train --init base.n3 --adapter a0.n3 --init-only -o x.n3
expect 2 'it takes --model, not --init' -- n3-train --init base.n3 --init-only -o x.n3
assert_match 'hint: or --lora RANK' err "with a hint to --lora"
expect 2 'do not combine' -- train --init base.n3 --adapter a0.n3 --data mt.txt --scaffold m.state -o x.n3
expect 1 'is an adapter of rank 4, alpha 8, attn,mlp, not of --lora 8' -- \
    train --init base.n3 --adapter a0.n3 --lora 8 --data mt.txt --steps 2 -o x.n3
expect 1 'not of --lora .* --lora-targets attn$' -- \
    train --init base.n3 --adapter a0.n3 --lora-targets attn --data mt.txt --steps 2 -o x.n3
expect 0 '' -- train --init base.n3 --adapter a0.n3 --lora 4:8 --lora-targets mlp,attn --data mt.txt --steps 2 -o agree.n3
expect 2 'give --base MODEL' -- n3-merge --adapter a1.n3 -o x.n3
expect 2 'takes no INPUT' -- n3-merge --base base.n3 --adapter a1.n3 u0.n3 -o x.n3
expect 2 '--rule is for merges, not --adapter' -- n3-merge --base base.n3 --adapter a1.n3 --rule median -o x.n3
cat > mlp.yaml <<'Y'
task: classify
input: [4]
classes: 2
layers:
  - {type: linear, in: 4, out: 2}
Y
expect 0 '' -- n3-train --model mlp.yaml --init-only -o mlp.n3
expect 2 'only transformer blocks take LoRA adapters' -- n3-train --init mlp.n3 --lora 2 --init-only -o x.n3
assert_no_file x.n3
assert_no_file m.state
finish
