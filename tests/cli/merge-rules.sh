#!/usr/bin/env bash
# CLI tests for n3-merge's FedNova, SCAFFOLD and DP-FedAvg: each against an independent numpy
# computation of the same formula on small inputs, and every bad input they read.
source "$(dirname "$0")/lib.sh"
PY=$N3_PYTHON
MK="$N3_SRC/tests/merge/make_tensors.py"
cd "$T"
hash_of() { n3-inspect --json "$1" | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])'; }
meta() { n3-inspect --json "$1" | $PY -c "import json,sys; print(json.load(sys.stdin)['metadata'].get('$2',''))"; }
# numpy's view of a record: python3 LOAD.py FILE.n3 -> {name: float64 array}
cat > load.py <<'PY'
import json, struct, subprocess, numpy as np
def load(p):
    b = subprocess.run(["n3-inspect", "--to-safetensors", p, "-o", "-"], capture_output=True, check=True).stdout
    n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).astype(np.float64)
            for k, v in h.items() if k != "__metadata__"}
def meta(p):
    return json.loads(subprocess.run(["n3-inspect", "--json", p], capture_output=True, check=True).stdout)["metadata"]
PY

# --- FedNova --------------------------------------------------------------------------------
$PY "$MK" base.st --seed 100
n3-inspect --from-safetensors base.st --kind model --meta round=2 -o base.n3
H=$(hash_of base.n3)
steps=(0 5 12 40 7) mom=(0 0.9 0.9 0.5 0)
for i in 1 2 3 4; do
    $PY "$MK" n$i.st --seed $i --scale 0.1
    n3-inspect --from-safetensors n$i.st --kind update --meta samples=$((i * 10)) --meta base="$H" \
        --meta round=2 --meta local_steps=${steps[$i]} --meta momentum=${mom[$i]} -o n$i.n3
done
expect 0 '' -- n3-merge --rule fednova --base base.n3 n1.n3 n2.n3 n3.n3 n4.n3 -o nova.n3
expect 0 '' -- n3-merge --rule fednova n4.n3 n2.n3 n1.n3 n3.n3 -o nova-update.n3
$PY - <<'PYEOF' > check.txt
import numpy as np
from load import load
base, out, upd = load("base.n3"), load("nova.n3"), load("nova-update.n3")
us = [load(f"n{i}.n3") for i in range(1, 5)]
p = np.array([10, 20, 30, 40.]); p /= p.sum()
tau = np.array([5, 12, 40, 7.]); rho = np.array([0.9, 0.9, 0.5, 0])
a = np.where(rho == 0, tau, (tau - rho * (1 - rho ** tau) / (1 - np.where(rho == 0, 0.5, rho))) / (1 - rho))
tau_eff = (p * a).sum()
err = 0.0
for k in base:
    step = tau_eff * sum(pi * u[k] / ai for pi, u, ai in zip(p, us, a))
    err = max(err, np.abs(out[k] - (base[k] + step)).max(), np.abs(upd[k] - step).max())
print("ok" if err < 1e-6 else f"error {err}")
PYEOF
assert_match '^ok$' check.txt "fednova matches the numpy reference (normalised by ||a_i||, rescaled by tau_eff)"
# Bad inputs: no local_steps, no momentum, a bad count, momentum outside [0, 1).
n3-inspect --from-safetensors n1.st --kind update --meta samples=10 --meta base="$H" --meta momentum=0.9 -o nosteps.n3
n3-inspect --from-safetensors n1.st --kind update --meta samples=10 --meta base="$H" --meta local_steps=3 -o nomom.n3
n3-inspect --from-safetensors n1.st --kind update --meta samples=10 --meta base="$H" --meta local_steps=0 --meta momentum=0 -o zero.n3
n3-inspect --from-safetensors n1.st --kind update --meta samples=10 --meta base="$H" --meta local_steps=3 --meta momentum=1 -o mom1.n3
expect 1 "nosteps.n3.*no 'local_steps' metadata, which fednova needs" -- n3-merge --rule fednova --base base.n3 nosteps.n3 n2.n3 -o x.n3
assert_no_file x.n3
expect 1 "no 'momentum' metadata" -- n3-merge --rule fednova --base base.n3 nomom.n3 n2.n3 -o x.n3
expect 1 "local_steps '0' is not a positive count" -- n3-merge --rule fednova zero.n3 n2.n3 -o x.n3
expect 1 "momentum '1' is not a number in \[0, 1)" -- n3-merge --rule fednova mom1.n3 n2.n3 -o x.n3
assert_no_file x.n3
expect 0 'warning' -- n3-merge --rule fednova --skip-bad --base base.n3 nosteps.n3 n2.n3 n3.n3 -o x.n3
assert_file x.n3; rm -f x.n3

# --- SCAFFOLD -------------------------------------------------------------------------------
$PY "$MK" sbase.st --seed 200 --tensors w:4x3,b:3,scaffold/w:4x3,scaffold/b:3
n3-inspect --from-safetensors sbase.st --kind model --meta round=0 -o sbase.n3
SH=$(hash_of sbase.n3)
for i in 1 2 3; do
    $PY "$MK" s$i.st --seed $((20 + i)) --scale 0.1 --tensors w:4x3,b:3,scaffold/w:4x3,scaffold/b:3
    n3-inspect --from-safetensors s$i.st --kind update --meta samples=$((i * 7)) --meta base="$SH" -o s$i.n3
done
expect 0 '' -- n3-merge --rule scaffold --base sbase.n3 --population 5 --server-lr 0.5 s1.n3 s2.n3 s3.n3 -o snext.n3
expect 0 '' -- n3-merge --rule scaffold --base sbase.n3 s3.n3 s1.n3 s2.n3 -o sfull.n3
$PY - <<'PYEOF' > check.txt
import numpy as np
from load import load
base, part, full = load("sbase.n3"), load("snext.n3"), load("sfull.n3")
us = [load(f"s{i}.n3") for i in range(1, 4)]
p = np.array([7, 14, 21.]); p /= p.sum()
err = 0.0
for k in ("w", "b"):
    dy = sum(pi * u[k] for pi, u in zip(p, us))
    dc = sum(u["scaffold/" + k] for u in us)
    err = max(err, np.abs(part[k] - (base[k] + 0.5 * dy)).max(),
              np.abs(part["scaffold/" + k] - (base["scaffold/" + k] + dc / 5)).max(),
              np.abs(full[k] - (base[k] + dy)).max(),
              np.abs(full["scaffold/" + k] - (base["scaffold/" + k] + dc / 3)).max())
print("ok" if err < 1e-6 else f"error {err}")
PYEOF
assert_match '^ok$' check.txt "scaffold matches numpy: x += lr * sum p_i dy_i, c += sum dc_i / N (partial and full participation)"
expect 2 'rule scaffold updates the server control variate' -- n3-merge --rule scaffold s1.n3 s2.n3 -o x.n3
expect 2 'population 2 is below the 3 inputs' -- n3-merge --rule scaffold --base sbase.n3 --population 2 s1.n3 s2.n3 s3.n3 -o x.n3
expect 2 'population is for --rule scaffold' -- n3-merge --base sbase.n3 --population 4 s1.n3 -o x.n3
n3-inspect --from-safetensors n1.st --kind update --meta samples=1 --meta base="$H" -o plain.n3
expect 1 'has no server control variate' -- n3-merge --rule scaffold --base base.n3 plain.n3 -o x.n3
expect 1 'plain.n3' -- n3-merge --rule scaffold --base sbase.n3 s1.n3 plain.n3 -o x.n3
$PY "$MK" half.st --seed 5 --tensors w:4x3,b:3,scaffold/w:4x3
n3-inspect --from-safetensors half.st --kind model -o half.n3
n3-inspect --from-safetensors half.st --kind update --meta samples=1 --meta base="$(hash_of half.n3)" -o halfu.n3
expect 1 'do not match the model' -- n3-merge --rule scaffold --base half.n3 halfu.n3 -o x.n3
assert_no_file x.n3

# --- DP-FedAvg ------------------------------------------------------------------------------
$PY "$MK" dbase.st --seed 300 --numel 100000
n3-inspect --from-safetensors dbase.st --kind model --meta round=0 -o dbase.n3
DH=$(hash_of dbase.n3)
for i in 1 2 3 4; do
    $PY "$MK" d$i.st --seed $((30 + i)) --numel 100000 --scale 0.01 --offset $((i % 2))e-3
    n3-inspect --from-safetensors d$i.st --kind update --meta samples=$((i * 10)) --meta base="$DH" -o d$i.n3
done
D="d1.n3 d2.n3 d3.n3 d4.n3"
# The same updates, as if trained from model $1: updates_for MODEL -> $D2
updates_for() {
    local h i; h=$(hash_of "$1"); D2=
    for i in 1 2 3 4; do
        n3-inspect --from-safetensors d$i.st --kind update --meta samples=10 --meta base="$h" -o "${1%.n3}-u$i.n3"
        D2+=" ${1%.n3}-u$i.n3"
    done
}
expect 0 '' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 2 --dp-delta 1e-5 $D -o dp1.n3
n3-inspect dp1.n3 > dp1.txt
assert_match 'dp_epsilon' dp1.txt "n3-inspect shows dp_epsilon"
updates_for dp1.n3
expect 0 '' -- n3-merge --base dp1.n3 --clip-norm 1 --dp-noise 2 $D2 -o dp2.n3
$PY - <<'PYEOF' > check.txt
import numpy as np
from load import load, meta
base, out = load("dbase.n3")["w"], load("dp1.n3")["w"]
us = [load(f"d{i}.n3")["w"] for i in range(1, 5)]
clipped = [u * min(1.0, 1.0 / np.linalg.norm(u)) for u in us]
noise = out - (base + sum(clipped) / 4)          # equal weights, noise z*C/n per coordinate
sd, mean = noise.std(), noise.mean()
# The accountant, independently: q = 1, RDP of the Gaussian = a / (2 z^2) per round, converted
# with eps = rdp + log((a-1)/a) - (log(delta) + log(a)) / (a-1) over n3's orders.
orders = np.array([1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5] + list(range(5, 64)) + [128, 256])
def eps(rounds, z=2.0, delta=1e-5):
    rdp = rounds * orders / (2 * z * z)
    return (rdp + np.log((orders - 1) / orders) - (np.log(delta) + np.log(orders)) / (orders - 1)).min()
m1, m2 = meta("dp1.n3"), meta("dp2.n3")
bad = []
if not abs(sd - 0.5) < 0.01: bad.append(f"noise std {sd}, want 0.5")
if not abs(mean) < 0.01: bad.append(f"noise mean {mean}")
if not abs(float(m1["dp_epsilon"]) / eps(1) - 1) < 1e-4: bad.append(f"eps1 {m1['dp_epsilon']} vs {eps(1)}")
if not abs(float(m2["dp_epsilon"]) / eps(2) - 1) < 1e-4: bad.append(f"eps2 {m2['dp_epsilon']} vs {eps(2)}")
if (m1["dp_rounds"], m2["dp_rounds"], m1["dp_delta"]) != ("1", "2", "1e-05"): bad.append("rounds/delta")
print("ok" if not bad else "; ".join(bad))
PYEOF
assert_match '^ok$' check.txt "DP-FedAvg: clipped equal-weight mean plus noise of std z*C/n; epsilon as numpy's accountant, cumulative"
E2=$(meta dp2.n3 dp_epsilon)
echo "$E2" > e2.txt; assert_match "^[0-9.]+$" e2.txt "dp2.n3 has a dp_epsilon"
updates_for dp2.n3
expect 3 "round 3 of DP-FedAvg would spend epsilon .* above --dp-budget $E2" -- n3-merge --base dp2.n3 --clip-norm 1 --dp-noise 2 --dp-budget "$E2" $D2 -o x.n3
assert_no_file x.n3
expect 0 '' -- n3-merge --base dp2.n3 --clip-norm 1 --dp-noise 2 --dp-budget 1000 --dp-rate 0.5 $D2 -o dp3.n3
assert_eq "$(meta dp3.n3 dp_rounds)" 3 "a third round counts"
expect 0 'adds no noise: the output drops the dp_ metadata' -- n3-merge --base dp2.n3 $D2 -o nodp.n3
assert_eq "$(meta nodp.n3 dp_epsilon)" "" "a round without noise drops dp_epsilon"
# Adaptive clipping: every update is above C = 1, so none is unclipped; the sum's noise is
# z_delta = (z^-2 - (2 sigma_b)^-2)^-1/2; the next round clips at the base's dp_clip_norm.
expect 0 '' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 2 --clip-quantile 0.5 --clip-count-noise 2 $D -o ad1.n3
updates_for ad1.n3
expect 0 '' -- n3-merge --base ad1.n3 --clip-norm 1 --dp-noise 2 --clip-quantile 0.5 --clip-count-noise 2 $D2 -o ad2.n3
$PY - <<'PYEOF' > check.txt
import numpy as np
from load import load, meta
zd = 1 / np.sqrt(1 / 4 - 1 / 16)
bad = []
for base, out, ups in (("dbase.n3", "ad1.n3", [f"d{i}.n3" for i in range(1, 5)]),
                       ("ad1.n3", "ad2.n3", [f"ad1-u{i}.n3" for i in range(1, 5)])):
    c = float(meta(base).get("dp_clip_norm", 1))
    us = [load(u)["w"] for u in ups]
    clipped = [u * min(1.0, c / np.linalg.norm(u)) for u in us]
    noise = load(out)["w"] - (load(base)["w"] + sum(clipped) / 4)
    if not abs(noise.std() / (zd * c / 4) - 1) < 0.02: bad.append(f"{out}: noise std {noise.std()} for C {c}")
    nxt = float(meta(out)["dp_clip_norm"])
    # share = (0 + 2 N(0,1)) / 4: the next norm is C exp(-0.2 (share - 0.5)), share within +-3 sd
    if not c * np.exp(-0.2 * (1.5 - 0.5)) < nxt < c * np.exp(-0.2 * (-1.5 - 0.5)): bad.append(f"{out}: next C {nxt}")
print("ok" if not bad else "; ".join(bad))
PYEOF
assert_match '^ok$' check.txt "adaptive clipping: noise z_delta*C/n at the base's dp_clip_norm, the next norm from the noised count"
expect 2 'needs a count noise above 1, not 0.5' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 2 --clip-quantile 0.5 --clip-count-noise 0.5 $D -o x.n3
expect 2 'needs a count noise above 1, not 0.2' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 2 --clip-quantile 0.5 $D -o x.n3
expect 2 'clip-quantile is DP-FedAvg' -- n3-merge --base dbase.n3 --clip-norm 1 --clip-quantile 0.5 $D -o x.n3
expect 2 'clip-quantile must be in' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 1 --clip-quantile 1 $D -o x.n3
n3-inspect --from-safetensors dbase.st --kind model --meta dp_clip_norm=-1 -o badclip.n3
expect 1 "dp_clip_norm '-1' is not a positive number" -- n3-merge --base badclip.n3 --clip-norm 1 --dp-noise 1 --clip-quantile 0.5 --clip-count-noise 9 $D -o x.n3
assert_no_file x.n3
expect 2 'dp-noise needs --clip-norm' -- n3-merge --base dbase.n3 --dp-noise 1 $D -o x.n3
expect 2 'dp-noise needs --base' -- n3-merge --clip-norm 1 --dp-noise 1 $D -o x.n3
expect 2 'averages with equal weights' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 1 --weights samples $D -o x.n3
expect 2 'not median' -- n3-merge --rule median --base dbase.n3 --clip-norm 1 --dp-noise 1 $D -o x.n3
expect 2 'dp-noise must be positive' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 0 $D -o x.n3
expect 2 'dp-delta must be in' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 1 --dp-delta 2 $D -o x.n3
expect 2 'dp-rate must be in' -- n3-merge --base dbase.n3 --clip-norm 1 --dp-noise 1 --dp-rate 0 $D -o x.n3
expect 2 'dp-budget needs --dp-noise' -- n3-merge --base dbase.n3 --dp-budget 3 $D -o x.n3
n3-inspect --from-safetensors dbase.st --kind model --meta dp_rounds=2 -o norpd.n3
expect 1 'dp_rounds without dp_rdp' -- n3-merge --base norpd.n3 --clip-norm 1 --dp-noise 1 $D -o x.n3
n3-inspect --from-safetensors dbase.st --kind model --meta dp_rounds=2 --meta dp_rdp=1,2 -o badrdp.n3
expect 1 'dp_rdp: 2 values' -- n3-merge --base badrdp.n3 --clip-norm 1 --dp-noise 1 $D -o x.n3
assert_no_file x.n3
finish
