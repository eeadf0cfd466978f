#!/usr/bin/env bash
# CLI tests for n3-train's side of FedNova, SCAFFOLD and DP-SGD: the metadata FedNova reads, the
# member's control-variate state (created, round-tripped, refused when foreign or damaged),
# SCAFFOLD's option II formula against numpy, a SCAFFOLD round through encode, seal and merge
# with partial participation, and DP-SGD's per-example clipping and accounting.
source "$(dirname "$0")/lib.sh"
command -v n3-train >/dev/null || skip "n3-train not built (no libtorch)"
PY=$N3_PYTHON
M="$N3_SRC/examples/models"
F=/usr/share/datasets/fashion-mnist
[ -f "$F/train-images-idx3-ubyte.gz" ] || skip "no Fashion-MNIST (apt-get install dataset-fashion-mnist)"
cd "$T"
meta() { n3-inspect --json "$1" | $PY -c "import json,sys; print(json.load(sys.stdin)['metadata'].get('$2',''))"; }
cat > load.py <<'PY'
import json, struct, subprocess, numpy as np
def st(b):
    n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).astype(np.float64)
            for k, v in h.items() if k != "__metadata__"}
def load(p):
    return st(subprocess.run(["n3-inspect", "--to-safetensors", p, "-o", "-"], capture_output=True, check=True).stdout)
def load_st(p):
    return st(open(p, "rb").read())
PY
train() { n3-train --data "$F" --partition labels:0+7,1+6,2+4 --clients 3 --limit 200 --threads 1 \
    -q "$@"; }

# --- FedNova's metadata ---------------------------------------------------------------------
expect 0 '' -- n3-train --model "$M/cnn.yaml" --init-only --seed 1 -o g.n3
expect 0 '' -- train --init g.n3 --client 1 --epochs 2 --batch 50 --momentum 0.9 -o nova.n3
assert_eq "$(meta nova.n3 local_steps)" 8 "local_steps: 2 epochs of 4 batches"
assert_eq "$(meta nova.n3 momentum)" 0.9 "momentum as given"
expect 0 '' -- train --init g.n3 --client 1 --steps 3 --optimizer adam -o adam.n3
assert_eq "$(meta adam.n3 local_steps)" 3 "local_steps with --steps"
assert_eq "$(meta adam.n3 momentum)" "" "no momentum for adam (fednova refuses it)"

# --- SCAFFOLD -------------------------------------------------------------------------------
expect 0 '' -- n3-train --model "$M/cnn.yaml" --init-only --seed 1 --scaffold-init -o s0.n3
n3-inspect s0.n3 > s0.txt
assert_match 'scaffold/fc3.bias +F32 +10 ' s0.txt "--scaffold-init adds the server control variate"
expect 0 '' -- n3-eval s0.n3 --data "$F" --split test --limit 200
assert_match '^accuracy' "$T/out" "n3-eval reads a model with a control variate"
expect 0 '' -- n3-train --init s0.n3 --data "$F" --emit model --limit 50 --threads 1 -o plain-from-s0.n3
expect 2 'scaffold-init is for --init-only' -- train --init g.n3 --client 0 --scaffold-init -o x.n3
expect 1 'carries no SCAFFOLD server control variate' -- train --init g.n3 --client 0 --scaffold m0.state -o x.n3
assert_no_file x.n3
assert_no_file m0.state
expect 2 'scaffold emits updates' -- train --init s0.n3 --client 0 --scaffold m0.state --emit model -o x.n3
expect 2 'is for training' -- n3-train --model "$M/cnn.yaml" --init-only --scaffold m0.state -o x.n3
assert_no_file m0.state
for i in 0 1; do
    expect 0 '' -- train --init s0.n3 --client $i --momentum 0 --scaffold m$i.state -o su$i.n3
    assert_file m$i.state
done
# Option II: dc = c_i+ - c_i = -c + (x - y) / (K lr), and the state holds c_i+ = c_i + dc.
K=$(meta su0.n3 local_steps)
$PY - "$K" <<'PYEOF' > check.txt
import sys, numpy as np
from load import load, load_st
K = int(sys.argv[1]); lr = 0.01  # n3-train's default
g, u, s = load("s0.n3"), load("su0.n3"), load_st("m0.state")
err = 0.0
for k in (k for k in g if not k.startswith("scaffold/")):
    dc = -g["scaffold/" + k] - u[k] / (K * lr)
    err = max(err, np.abs(u["scaffold/" + k] - dc).max() / (np.abs(dc).max() + 1e-12),
              np.abs(s[k] - dc).max() / (np.abs(dc).max() + 1e-12))
print("ok" if err < 1e-4 else f"error {err}")
PYEOF
assert_match '^ok$' check.txt "scaffold's dc and the member state follow option II (numpy)"
# A round through the pipeline: encode, seal, open, decode, merge with 2 of 3 members.
n3-keys authority -o fed.ask 2>/dev/null; n3-keys public fed.ask > fed.pub
for n in hub m0 m1; do
    n3-keys request --id $n -o $n.secret > $n.req
    n3-keys issue --authority fed.ask $n.req -o $n.partial 2>/dev/null
    n3-keys complete --secret $n.secret --partial $n.partial -o $n.key 2>/dev/null
    n3-keys public $n.key > $n.pub
done
n3-keys roster m0.pub m1.pub > fed.roster
for i in 0 1; do
    n3-encode --zstd --quantize fp16 su$i.n3 | n3-seal --to hub.pub --key m$i.key --round 1 > sealed$i.n3
done
cat sealed0.n3 sealed1.n3 | n3-seal --open --key hub.key --authority fed.pub --roster fed.roster --round 1 -q \
    | n3-encode -d | n3-merge --rule scaffold --base s0.n3 --population 3 -o s1.n3 2> merge.err
assert_eq "$?" 0 "a SCAFFOLD round through encode, seal and merge ($(head -c 200 merge.err))"
expect 0 '' -- n3-eval s1.n3 --data "$F" --split test --limit 200
assert_match '^accuracy' "$T/out" "n3-eval reads the merged SCAFFOLD model"
$PY <<'PYEOF' > check.txt
import numpy as np
from load import load
s0, s1, u0, u1 = load("s0.n3"), load("s1.n3"), load("su0.n3"), load("su1.n3")
k = "scaffold/fc3.weight"
want = s0[k] + (u0[k] + u1[k]) / 3
print("ok" if np.abs(s1[k] - want).max() < 1e-3 * np.abs(want).max() + 1e-6 else "error")
PYEOF
assert_match '^ok$' check.txt "the merged c is c + (dc_0 + dc_1) / 3 (fp16 on the wire)"
# Round 2 reads the state written in round 1: c_i+ = c_i + dc.
cp m0.state m0.before
expect 0 '' -- train --init s1.n3 --client 0 --momentum 0 --scaffold m0.state -o su0b.n3
$PY <<'PYEOF' > check.txt
import numpy as np
from load import load, load_st
a, b, u = load_st("m0.before"), load_st("m0.state"), load("su0b.n3")
print("ok" if max(np.abs(b[k] - (a[k] + u["scaffold/" + k])).max() for k in a) < 1e-5 else "error")
PYEOF
assert_match '^ok$' check.txt "the member state round-trips: round 2 adds its dc to round 1's c_i"
# Bad states: another spec, not a state, truncated; none is touched.
expect 0 '' -- n3-train --model "$M/mlp.yaml" --init-only --scaffold-init -o mlp0.n3
expect 1 'belongs to another model spec' -- n3-train --init mlp0.n3 --data "$F" --limit 50 --threads 1 --scaffold m0.state -o x.n3
n3-inspect --to-safetensors s0.n3 -o notstate.st
expect 1 'is not a SCAFFOLD member state' -- train --init s0.n3 --client 0 --scaffold notstate.st -o x.n3
head -c 1000 m0.state > trunc.state
expect 1 'trunc.state' -- train --init s0.n3 --client 0 --scaffold trunc.state -o x.n3
assert_no_file x.n3
assert_eq "$(wc -c < trunc.state)" 1000 "a refused state file is left as it was"
expect 2 'scaffold must name a file' -- train --init s0.n3 --client 0 --scaffold - -o x.n3

# --- DP-SGD ---------------------------------------------------------------------------------
# One step of plain SGD with every example's gradient clipped to C: |update| <= lr * C.
expect 0 '' -- train --init g.n3 --client 2 --momentum 0 --lr 1 --steps 1 --batch 64 --dp-clip 0.01 -o clip.n3
$PY <<'PYEOF' > check.txt
import numpy as np
from load import load
u = load("clip.n3"); n = np.sqrt(sum((v ** 2).sum() for v in u.values()))
print("ok" if 0.001 < n <= 0.01 * (1 + 1e-5) else f"norm {n}")
PYEOF
assert_match '^ok$' check.txt "DP-SGD clips each example's gradient (update norm <= lr * C)"
expect 0 '' -- train --init g.n3 --client 2 --steps 4 --batch 50 --dp-clip 1 --dp-noise 1.1 -o dp1.n3
expect 0 '' -- train --init g.n3 --client 2 --steps 4 --batch 50 --dp-clip 1 --dp-noise 2 -o dp2.n3
e1=$(meta dp1.n3 dp_sgd_epsilon) e2=$(meta dp2.n3 dp_sgd_epsilon)
assert_eq "$($PY -c "print($e2 < $e1 and $e2 > 0)")" True "more noise spends less epsilon ($e1, $e2)"
assert_eq "$(meta dp1.n3 dp_sgd_delta)" 1e-05 "dp_sgd_delta defaults to 1e-5"
expect 0 '' -- train --init g.n3 --client 2 --steps 4 --batch 50 --dp-clip 1 --dp-noise 1.1 -o dp1b.n3
cmp -s dp1.n3 dp1b.n3 && same=yes || same=no
assert_eq "$same" no "DP-SGD noise comes from the CSPRNG, not --seed"
expect 2 'dp-noise needs --dp-clip' -- train --init g.n3 --client 2 --dp-noise 1 -o x.n3
expect 2 'dp-clip and --prox-mu do not combine' -- train --init g.n3 --client 2 --dp-clip 1 --prox-mu 0.1 -o x.n3
expect 2 'dp-delta must be in' -- train --init g.n3 --client 2 --dp-clip 1 --dp-delta 0 -o x.n3
assert_no_file x.n3
finish
