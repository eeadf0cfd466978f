#!/usr/bin/env bash
# examples/byzantine.sh — Byzantine members: how FedAvg and the robust rules fare when some
# members send sign-flipped or scaled updates.
#
#   examples/byzantine.sh [options] [OUTDIR]             (OUTDIR defaults to byzantine-out)
#
# For every rule (--rules) a federation of --members members trains on Fashion-MNIST for
# --rounds rounds: once clean, and once under each attack (--attacks), in which the last
# --attackers members send, instead of their honest update U (the delta from the global model):
#   flip    -U (its sign flipped)
#   scale   10 U (--scale)
# An attacker's update is its honest one transformed by a small NumPy program over the
# safetensors payload (n3-inspect --to-safetensors / --from-safetensors), its metadata
# (samples, base model, round) kept, so the hub cannot tell it apart by its header; n3-train
# has no flag for this on purpose, and n3-merge --weights refuses negative weights, so the
# n3 tools alone cannot make a flipped update. The members' updates go straight to n3-merge: the transport
# plays no part in what a rule does with an update (examples/star.sh runs rounds over ZeroMQ).
# Same seeds in every run: the partition, the initial model and each member's batch order.
# OUTDIR gets table.tsv (rule, then the final test accuracy clean and under each attack, and
# whether the rule held: no more than 2 points below the clean FedAvg run under every attack) and
# rounds.tsv (every run's accuracy per round, and its model's hash); the table is printed too.
#
# Options (defaults in brackets):
#   --members N       members [10]                   --attackers K    attacking members [2]
#   --rounds R        rounds [20]                    --limit N        samples per member [600]
#   --eval-limit N    test samples evaluated [2000]  --seed S         seed [1]
#   --rules "R..."    n3-merge rules [fedavg median trimmed-mean:0.2 krum:2]
#   --attacks "A..."  flip, scale [flip scale]       --scale F        the scaling attack's factor [10]
#   --partition P     iid, dirichlet:A, classes:K [iid]
#   --model SPEC      model spec [examples/models/mlp.yaml]
#   --lr LR [0.05]  --batch B [32]  --jobs J (members trained at once) [2]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), DATA (Fashion-MNIST IDX
# folder), PYTHON (a python3 with numpy; default /usr/bin/python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MEMBERS=10 ATTACKERS=2 ROUNDS=20 LIMIT=600 EVAL_LIMIT=2000 SEED=1 SCALE=10 PARTITION=iid
RULES="fedavg median trimmed-mean:0.2 krum:2" ATTACKS="flip scale" MODEL=$here/models/mlp.yaml
LR=0.05 BATCH=32 JOBS=2 OUT=byzantine-out NAME=byzantine.sh
. "$here/common.sh"
PYTHON=${PYTHON:-/usr/bin/python3}
while [ $# -gt 0 ]; do
    case $1 in
        --members) need "$@"; MEMBERS=$2; shift 2 ;;
        --attackers) need "$@"; ATTACKERS=$2; shift 2 ;;
        --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
        --limit) need "$@"; LIMIT=$2; shift 2 ;;
        --eval-limit) need "$@"; EVAL_LIMIT=$2; shift 2 ;;
        --seed) need "$@"; SEED=$2; shift 2 ;;
        --rules) need "$@"; RULES=$2; shift 2 ;;
        --attacks) need "$@"; ATTACKS=$2; shift 2 ;;
        --scale) need "$@"; SCALE=$2; shift 2 ;;
        --partition) need "$@"; PARTITION=$2; shift 2 ;;
        --model) need "$@"; MODEL=$2; shift 2 ;;
        --lr) need "$@"; LR=$2; shift 2 ;;
        --batch) need "$@"; BATCH=$2; shift 2 ;;
        --jobs) need "$@"; JOBS=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) OUT=$1; shift ;;
    esac
done
isnum --members "$MEMBERS"; isnum --attackers "$ATTACKERS"; isnum --rounds "$ROUNDS"; isnum --limit "$LIMIT"
isnum --eval-limit "$EVAL_LIMIT"; isnum --seed "$SEED"; isnum --batch "$BATCH"; isnum --jobs "$JOBS"
[ "$ROUNDS" -ge 1 ] || die "--rounds must be at least 1"
[ "$JOBS" -ge 1 ] || die "--jobs must be at least 1"
[ "$ATTACKERS" -lt "$MEMBERS" ] || die "--attackers $ATTACKERS leaves no honest member of $MEMBERS"
[[ $SCALE =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--scale must be a positive number, not '$SCALE'"
[ -n "$RULES" ] || die "--rules needs at least one rule"
for a in $ATTACKS; do
    case $a in flip|scale) ;; *) die "--attacks: unknown attack '$a' (flip, scale)" ;; esac
done
[ -f "$MODEL" ] || die "model spec $MODEL not found"
require n3-train n3-eval n3-merge n3-inspect bc sha256sum
[ -x "$PYTHON" ] && "$PYTHON" -c 'import numpy' 2> /dev/null \
    || die "$PYTHON with numpy not found: apt-get install python3-numpy (or set PYTHON)"
require_fmnist "$DATA"
mkdir -p "$OUT"
workdir
elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")
# Every rule is checked before any training: a typo fails now, not after the first run.
n3-train --model "$MODEL" --init-only --seed "$SEED" -o "$W/global-0.n3"
# (n3-merge checks its flags before its input: exit 2 is a bad rule, 1 the empty input.)
for rule in $RULES; do
    rc=0
    n3-merge --rule "$rule" --base "$W/global-0.n3" /dev/null -o "$W/probe.n3" 2> "$W/probe.err" || rc=$?
    [ "$rc" != 2 ] || die "--rules: $(sed -n 's/^n3-merge: error: //p' "$W/probe.err" | head -1)"
done

# attack IN.n3 OUT.n3 FACTOR: the update's tensors times FACTOR, its metadata kept.
attack() {
    n3-inspect --to-safetensors "$1" -o "$1.st"
    "$PYTHON" - "$1.st" "$2.st" "$3" <<'PY'
import json, struct, sys, numpy as np
src, dst, factor = sys.argv[1], sys.argv[2], np.float32(float(sys.argv[3]))
b = open(src, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
names = [k for k in h if k != "__metadata__"]
out, off, blobs = {"__metadata__": h["__metadata__"]}, 0, []
for k in names:
    if h[k]["dtype"] != "F32":
        sys.exit("byzantine.sh: tensor %s is %s, not F32" % (k, h[k]["dtype"]))
    v = np.frombuffer(d[h[k]["data_offsets"][0]:h[k]["data_offsets"][1]], "<f4") * factor
    raw = v.astype("<f4").tobytes()
    out[k] = {"dtype": "F32", "shape": h[k]["shape"], "data_offsets": [off, off + len(raw)]}
    blobs.append(raw); off += len(raw)
text = json.dumps(out, separators=(",", ":")).encode(); text += b" " * ((8 - len(text) % 8) % 8)
open(dst, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
PY
    n3-inspect --from-safetensors "$2.st" --kind update -o "$2"
}

# member DIR ROUND I FACTOR: member I's update for ROUND (FACTOR 1: honest)
member() {
    local d=$1 r=$2 i=$3 f=$4 up="$1/u$3.n3"
    n3-train --init "$d/global-$((r - 1)).n3" --data "$DATA" --partition "$PARTITION" \
        --clients "$MEMBERS" --client "$((i - 1))" --partition-seed "$SEED" --seed "$((r * 100 + i))" \
        --epochs 1 --batch "$BATCH" --lr "$LR" --threads 1 --limit "$LIMIT" -q -o "$up.honest"
    if [ "$f" = 1 ]; then mv "$up.honest" "$up"; else attack "$up.honest" "$up" "$f"; fi
}

accuracy() { n3-eval "$1" --data "$DATA" --split test "${elimit[@]}" --json | json_num accuracy; }

# federation RULE ATTACK: ROUNDS rounds; prints the final accuracy
federation() {
    local rule=$1 atk=$2 d="$W/run" r i f running
    rm -rf "$d" && mkdir "$d"
    cp "$W/global-0.n3" "$d/global-0.n3"
    case $atk in clean) f=1 ;; flip) f=-1 ;; scale) f=$SCALE ;; esac
    for r in $(seq 1 "$ROUNDS"); do
        rm -f "$d"/u*.n3*
        running=0
        for i in $(seq 1 "$MEMBERS"); do
            if [ "$i" -gt $((MEMBERS - ATTACKERS)) ]; then member "$d" "$r" "$i" "$f" &
            else member "$d" "$r" "$i" 1 & fi
            running=$((running + 1))
            if [ "$running" -ge "$JOBS" ]; then wait -n || die "$rule, $atk, round $r: a member failed"; running=$((running - 1)); fi
        done
        while [ "$running" -gt 0 ]; do wait -n || die "$rule, $atk, round $r: a member failed"; running=$((running - 1)); done
        n3-merge --rule "$rule" --base "$d/global-$((r - 1)).n3" "$d"/u*.n3 -q -o "$d/global-$r.n3" \
            || die "$rule, $atk, round $r: the merge failed"
        printf '%s\t%s\t%d\t%.4f\t%s\n' "$rule" "$atk" "$r" "$(accuracy "$d/global-$r.n3")" \
            "$(sha256sum < "$d/global-$r.n3" | cut -c1-16)" >> "$OUT/rounds.tsv"
    done
    tail -1 "$OUT/rounds.tsv" | cut -f4
}

printf 'rule\tattack\tround\taccuracy\tmodel\n' > "$OUT/rounds.tsv"
header="rule\tclean"
for a in $ATTACKS; do header+="\t$a"; done
printf "$header\tholds\n" > "$OUT/table.tsv"
clean_fedavg=
for rule in $RULES; do
    row=$rule holds=yes
    acc=$(federation "$rule" clean)
    row+=$'\t'$acc
    [ "$rule" = fedavg ] && clean_fedavg=$acc
    for a in $ATTACKS; do
        acc=$(federation "$rule" "$a")
        row+=$'\t'$acc
        ref=${clean_fedavg:-$(cut -f2 <<< "$row")}
        [ "$(echo "$ref - $acc <= 0.02" | bc -l)" = 1 ] || holds=no
    done
    printf '%s\t%s\n' "$row" "$holds" >> "$OUT/table.tsv"
    echo "$NAME: $row $holds" >&2
done
column -t -s $'\t' "$OUT/table.tsv" 2>/dev/null || cat "$OUT/table.tsv"
echo "$NAME: $MEMBERS members, $ATTACKERS attacking, $ROUNDS rounds; 'holds': no more than 2 points below the clean FedAvg run ($OUT/table.tsv)"
