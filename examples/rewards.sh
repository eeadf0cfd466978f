#!/usr/bin/env bash
# examples/rewards.sh — a star federation that pays its members by contribution, from the
# merger's signed receipt ledger, without learning who they are.
#
#   examples/rewards.sh [options] [OUTDIR]               (OUTDIR defaults to rewards-out)
#
# As examples/star.sh (a hub and N members over ZeroMQ on loopback, Fashion-MNIST), except
# that every update carries a fresh one-time receipt key (n3-keys receipt, n3-train
# --receipt-key) sealed inside it, and the hub merges with n3-merge --scores --receipts, so
# each accepted update gets a signed ledger entry naming its receipt key, weight and scores.
# Among the members, --free-riders do no work: the first sends the global model back
# unchanged (a zero update), the next ones a random update of the norm of the last global step;
# --scaled members multiply their honest update by --scale. At the end the hub's ledger is
# verified (n3-keys ledger), member 1 proves one receipt is its own (n3-keys claim and
# verify-claim), and each member's share of a reward pool is computed from the ledger: the sum
# over its receipts of weight times score, over the same sum for every receipt. OUTDIR gets
# rounds.tsv, rewards.tsv, scores.tsv (every input of every round, with its role), the ledger
# and global.n3; with --auc also auc.tsv, the ROC AUC of each score for telling honest
# updates from the others.
#
# Options (defaults in brackets):
#   --members N       members [10]                --rounds R       rounds [10]
#   --free-riders K   members that send no work [2] --scaled K     members that scale [1]
#   --scale F         the scaled members' factor [10]
#   --rule RULE       the hub's n3-merge rule [fedavg]
#   --min-score T     the hub skips updates whose score is below T [off]
#   --partition P     iid, dirichlet:A, classes:K, quantity:A [iid]
#   --model SPEC      model spec [examples/models/mlp.yaml]
#   --epochs E [1]  --batch B [32]  --lr LR [0.05]
#   --limit N         samples per member (0: the whole share) [300]
#   --eval-limit N    test samples evaluated per round (0: all 10000) [2000]
#   --auc             also write auc.tsv (ROC AUC per score, honest vs the others)
#   --timeout S       the hub's wait for updates, per round [300]
#   --seed S          seed of the initial model and the partition [1]
#   --port P          first of two loopback TCP ports [random]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), DATA (Fashion-MNIST IDX
# folder), PYTHON (a python3 with numpy; default /usr/bin/python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MEMBERS=10 ROUNDS=10 FREE=2 SCALED=1 SCALE=10 RULE=fedavg MIN_SCORE= PARTITION=iid
MODEL=$here/models/mlp.yaml EPOCHS=1 BATCH=32 LR=0.05 LIMIT=300 EVAL_LIMIT=2000 AUC=0
TIMEOUT=300 SEED=1 PORT=$((20000 + RANDOM % 20000)) OUT=rewards-out NAME=rewards.sh
PYTHON=${PYTHON:-/usr/bin/python3}
. "$here/common.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --members) need "$@"; MEMBERS=$2; shift 2 ;;
        --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
        --free-riders) need "$@"; FREE=$2; shift 2 ;;
        --scaled) need "$@"; SCALED=$2; shift 2 ;;
        --scale) need "$@"; SCALE=$2; shift 2 ;;
        --rule) need "$@"; RULE=$2; shift 2 ;;
        --min-score) need "$@"; MIN_SCORE=$2; shift 2 ;;
        --partition) need "$@"; PARTITION=$2; shift 2 ;;
        --model) need "$@"; MODEL=$2; shift 2 ;;
        --epochs) need "$@"; EPOCHS=$2; shift 2 ;;
        --batch) need "$@"; BATCH=$2; shift 2 ;;
        --lr) need "$@"; LR=$2; shift 2 ;;
        --limit) need "$@"; LIMIT=$2; shift 2 ;;
        --eval-limit) need "$@"; EVAL_LIMIT=$2; shift 2 ;;
        --auc) AUC=1; shift ;;
        --timeout) need "$@"; TIMEOUT=$2; shift 2 ;;
        --seed) need "$@"; SEED=$2; shift 2 ;;
        --port) need "$@"; PORT=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) OUT=$1; shift ;;
    esac
done
isnum --members "$MEMBERS"; isnum --rounds "$ROUNDS"; isnum --free-riders "$FREE"
isnum --scaled "$SCALED"; isnum --epochs "$EPOCHS"; isnum --limit "$LIMIT"
isnum --eval-limit "$EVAL_LIMIT"; isnum --timeout "$TIMEOUT"; isnum --port "$PORT"
[[ $SCALE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--scale must be a positive number, not '$SCALE'"
[ $((FREE + SCALED)) -lt "$MEMBERS" ] || die "--free-riders and --scaled leave no honest member"
[ "$ROUNDS" -ge 1 ] || die "--rounds must be at least 1"

require n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge n3-inspect
[ -x "$PYTHON" ] && "$PYTHON" -c 'import numpy' 2> /dev/null \
    || die "$PYTHON with numpy not found: apt-get install python3-numpy (or set PYTHON)"
[ -f "$MODEL" ] || die "model spec $MODEL not found"
require_fmnist "$DATA"

mkdir -p "$OUT"
rm -f "$OUT/rewards.ledger" # a new hub key each run: an old ledger is another merger's
workdir
limit=(); [ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")
merge_flags=(--rule "$RULE"); [ -n "$MIN_SCORE" ] && merge_flags+=(--min-score "$MIN_SCORE")

# Members 1..HONEST are honest, then the free riders, then the scaled ones.
HONEST=$((MEMBERS - FREE - SCALED))
role() { # I
    if [ "$1" -le "$HONEST" ]; then echo honest
    elif [ "$1" -eq $((HONEST + 1)) ]; then echo free-rider-zero
    elif [ "$1" -le $((HONEST + FREE)) ]; then echo free-rider-random
    else echo scaled; fi
}

# mutate IN.n3 OUT.n3 MODE ARG: the update's tensors replaced (random NORM) or scaled (scale F),
# its metadata (samples, base, round, receipt_key) kept.
mutate() {
    n3-inspect --to-safetensors "$1" -o "$1.st"
    "$PYTHON" - "$1.st" "$2.st" "$3" "$4" <<'PY'
import json, struct, sys, numpy as np
src, dst, mode, arg = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
b = open(src, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
names = [k for k in h if k != "__metadata__"]
t = {k: np.frombuffer(d[h[k]["data_offsets"][0]:h[k]["data_offsets"][1]], np.float32) for k in names}
if mode == "scale":
    t = {k: v * np.float32(arg) for k, v in t.items()}
else:
    rng = np.random.default_rng(int.from_bytes(bytes.fromhex(h["__metadata__"]["base"][:8]), "little"))
    t = {k: rng.normal(0, 1, v.shape).astype(np.float32) for k, v in t.items()}
    norm = np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in t.values()))
    t = {k: (v * np.float32(arg / norm)).astype(np.float32) for k, v in t.items()}
out, off = {"__metadata__": h["__metadata__"]}, 0
blobs = []
for k in names:
    raw = t[k].astype("<f4").tobytes()
    out[k] = {"dtype": "F32", "shape": h[k]["shape"], "data_offsets": [off, off + len(raw)]}
    blobs.append(raw); off += len(raw)
text = json.dumps(out, separators=(",", ":")).encode(); text += b" " * ((8 - len(text) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
    n3-inspect --from-safetensors "$2.st" --kind update -o "$2"
}

# step_norm A.n3 B.n3: the L2 norm of B - A (the last global step), 1 when there is none.
step_norm() {
    [ -f "$1" ] || { echo 1; return; }
    n3-inspect --to-safetensors "$1" -o "$W/a.st"; n3-inspect --to-safetensors "$2" -o "$W/b.st"
    "$PYTHON" - "$W/a.st" "$W/b.st" <<'PY'
import json, struct, sys, numpy as np
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return {k: np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).astype(np.float64)
            for k, v in h.items() if k != "__metadata__"}
a, b = load(sys.argv[1]), load(sys.argv[2])
print(max(1e-3, float(np.sqrt(sum(np.sum((b[k] - a[k]) ** 2) for k in a)))))
PY
}

# --- identities ------------------------------------------------------------------------------------
authority
enroll hub
for i in $(seq 1 "$MEMBERS"); do enroll "member$i"; cat "$W/member$i.pub"; done > "$W/fed.roster"
mkdir -p "$W/receipts"

n3-train --model "$MODEL" --init-only --seed "$SEED" -o "$W/global-0.n3"
printf 'round\taccuracy\tloss\tmerged\tseconds\n' > "$OUT/rounds.tsv"
printf 'round\trole\trecord\tweight\taccepted\tcosine\tkrum\tnorm_ratio\tscore\n' > "$OUT/scores.tsv"
printf '%-6s %-9s %-8s %-7s %s\n' round accuracy loss merged seconds

member() { # I ROUND NORM: one member's round, under a receipt key made for this update only
    local i=$1 r=$2 norm=$3 rk="$W/receipts/m$1-r$2" up="$W/m$1-update.n3"
    keys receipt -o "$rk.key" > "$rk.pub"
    n3-send --sub "tcp://127.0.0.1:$((PORT + 1))" --count 1 --timeout "$TIMEOUT" -q > "$W/m$i-global.n3"
    local train=(n3-train --init "$W/m$i-global.n3" --data "$DATA" --partition "$PARTITION"
        --clients "$MEMBERS" --client "$((i - 1))" --partition-seed "$SEED" --seed "$((r * 100 + i))"
        --epochs "$EPOCHS" --batch "$BATCH" --threads 1 "${limit[@]}" --receipt-key "$rk.pub" -q)
    case $(role "$i") in
        honest) "${train[@]}" --lr "$LR" -o "$up" ;;
        # Free riders take one step only for the update's metadata (samples, base, round).
        free-rider-zero) "${train[@]}" --steps 1 --lr "$LR" -o "$up.0"; mutate "$up.0" "$up" scale 0 ;;
        free-rider-random) "${train[@]}" --steps 1 --lr "$LR" -o "$up.0"; mutate "$up.0" "$up" random "$norm" ;;
        scaled) "${train[@]}" --lr "$LR" -o "$up.0"; mutate "$up.0" "$up" scale "$SCALE" ;;
    esac
    n3-encode --quantize int8 --zstd "$up" \
        | n3-seal --to "$W/hub.pub" --key "$W/member$i.key" --round "$r" \
        | n3-send "tcp://127.0.0.1:$PORT" --timeout "$TIMEOUT" -q
}

for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s.%N)
    prev="$W/global-$((r - 1)).n3"
    norm=$(step_norm "$W/global-$((r - 2)).n3" "$prev")
    ( n3-send --recv "tcp://127.0.0.1:$PORT" --count "$MEMBERS" --timeout "$TIMEOUT" -q \
        | n3-seal --open --key "$W/hub.key" --authority "$W/fed.pub" --roster "$W/fed.roster" \
              --round "$r" -q \
        | n3-encode -d \
        | n3-merge "${merge_flags[@]}" --base "$prev" --scores "$W/scores-$r.json" \
              --receipts "$OUT/rewards.ledger" --key "$W/hub.key" --json \
              -o "$W/global-$r.n3" 2> "$W/merge-$r.json" ) &
    hub=$!
    n3-send --pub "tcp://127.0.0.1:$((PORT + 1))" --subscribers "$MEMBERS" --timeout "$TIMEOUT" -q "$prev" &
    pub=$!
    members=()
    for i in $(seq 1 "$MEMBERS"); do member "$i" "$r" "$norm" & members+=($!); done
    pids=("$hub" "$pub" "${members[@]}")
    for p in "${members[@]}"; do wait "$p" || die "round $r: a member failed"; done
    wait "$pub" || die "round $r: publishing the model failed"
    wait "$hub" || die "round $r: the hub failed: $(grep -v '^{' "$W/merge-$r.json" | tail -1)"
    pids=()
    # Label each scored input with its sender's role (the script knows whose receipt key is
    # whose; the hub does not).
    for i in $(seq 1 "$MEMBERS"); do printf '%s\t%s\n' "$(cat "$W/receipts/m$i-r$r.pub")" "$(role "$i")"; done > "$W/roles"
    "$PYTHON" - "$W/roles" "$W/scores-$r.json" "$r" >> "$OUT/scores.tsv" <<'PY'
import json, sys
roles = dict(l.rstrip("\n").split("\t") for l in open(sys.argv[1]))
for l in open(sys.argv[2]):
    s = json.loads(l)
    print("\t".join([sys.argv[3], roles[s["receipt_key"]], s["record"], repr(s["weight"]),
                     "yes" if s["accepted"] else "no", repr(s["cosine"]), repr(s["krum"]),
                     repr(s["norm_ratio"]), repr(s["score"])]))
PY
    merged=$(awk -F'\t' -v r="$r" '$1 == r && $5 == "yes"' "$OUT/scores.tsv" | wc -l)
    n3-eval "$W/global-$r.n3" --data "$DATA" --split test "${elimit[@]}" --json > "$W/eval-$r.json"
    acc=$(json_num accuracy < "$W/eval-$r.json")
    loss=$(json_num loss < "$W/eval-$r.json")
    secs=$(elapsed "$start")
    printf '%d\t%.4f\t%.4f\t%d\t%.1f\n' "$r" "$acc" "$loss" "$merged" "$secs" >> "$OUT/rounds.tsv"
    printf '%-6d %-9.4f %-8.4f %-7d %.1f\n' "$r" "$acc" "$loss" "$merged" "$secs"
done
cp "$W/global-$ROUNDS.n3" "$OUT/global.n3"
cp "$W/hub.pub" "$W/fed.pub" "$OUT/"

# --- the ledger: verified, one receipt claimed, the pool shared ---------------------------------
keys ledger "$OUT/rewards.ledger" --merger "$W/hub.pub" --authority "$W/fed.pub" > /dev/null
claimed=$(grep -c "$(cat "$W/receipts/m1-r1.pub")" "$OUT/rewards.ledger" || true)
if [ "$claimed" -gt 0 ]; then
    challenge="rewards $(date +%s) $RANDOM"
    proof=$(keys claim --key "$W/receipts/m1-r1.key" --challenge "$challenge")
    keys verify-claim "$OUT/rewards.ledger" --merger "$W/hub.pub" --authority "$W/fed.pub" \
        --receipt "$W/receipts/m1-r1.pub" --challenge "$challenge" --proof "$proof" > /dev/null
    echo "member 1 proved its round-1 receipt with its receipt key (n3-keys verify-claim)"
fi
# Every member sums what its own receipt keys earned; the pool is split by those sums.
for i in $(seq 1 "$MEMBERS"); do
    for r in $(seq 1 "$ROUNDS"); do printf '%s\t%d\n' "$(cat "$W/receipts/m$i-r$r.pub")" "$i"; done
done > "$W/keys"
awk -F'\t' -v roles="$(for i in $(seq 1 "$MEMBERS"); do printf '%s ' "$(role "$i")"; done)" '
    FILENAME == ARGV[1] { owner[$1] = $2; next }
    /^[0-9]/ { split($0, f, " "); m = owner[f[6]]; earned[m] += f[7] * f[12]; n[m]++; total += f[7] * f[12] }
    END {
        split(roles, role, " ")
        printf "member\trole\treceipts\tearned\tshare\n"
        for (i = 1; i in role; i++)
            printf "%d\t%s\t%d\t%.6f\t%.4f\n", i, role[i], n[i] + 0, earned[i] + 0,
                   (total > 0 ? earned[i] / total : 0)
    }' "$W/keys" FS=' ' "$OUT/rewards.ledger" > "$OUT/rewards.tsv"
echo
echo "reward pool shares (weight x score, summed over each member's receipts):"
awk -F'\t' 'NR == 1 { printf "%-7s %-18s %-9s %-10s %s\n", $1, $2, $3, $4, $5; next }
            { printf "%-7s %-18s %-9s %-10s %5.1f%%\n", $1, $2, $3, $4, 100 * $5 }' "$OUT/rewards.tsv"

if [ "$AUC" = 1 ]; then
    # ROC AUC of each score for ranking honest updates above the others (krum and the norm
    # ratio's distance from 1 rank lower as better). The Mann-Whitney statistic, ties half.
    "$PYTHON" - "$OUT/scores.tsv" > "$OUT/auc.tsv" <<'PY'
import math, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
honest = [r[1] == "honest" for r in rows]
def auc(vals):
    pos = [v for v, h in zip(vals, honest) if h]; neg = [v for v, h in zip(vals, honest) if not h]
    if not pos or not neg: return float("nan")
    wins = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))
print("score\tauc")
for name, col, sign in (("score", 8, 1), ("cosine", 5, 1), ("krum", 6, -1)):
    print(f"{name}\t{auc([sign * float(r[col]) for r in rows]):.4f}")
print(f"norm_ratio\t{auc([-abs(math.log(max(float(r[7]), 1e-12))) for r in rows]):.4f}")
PY
    echo
    echo "ROC AUC, honest updates against the others ($(wc -l < "$OUT/scores.tsv") - 1 updates):"
    column -t "$OUT/auc.tsv" 2> /dev/null || cat "$OUT/auc.tsv"
fi
echo "${NAME%.sh}: ledger $OUT/rewards.ledger, shares $OUT/rewards.tsv, scores $OUT/scores.tsv, rounds $OUT/rounds.tsv"
