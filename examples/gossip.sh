#!/usr/bin/env bash
# examples/gossip.sh — a decentralised federation: nodes on a ring, no hub, no global model.
#
#   examples/gossip.sh [options] [OUTDIR]                (OUTDIR defaults to gossip-out)
#
# Every node (its own processes) holds its own model. Each round it trains on its share of
# Fashion-MNIST, seals its model once to both ring neighbours (one envelope, two recipients),
# sends it to each of them over ZeroMQ, receives theirs, opens them, and mixes
# (n3-merge --rule mix: weight 1/3 on its own model, the rest shared by the neighbours that
# answered). Gossip averaging pulls the models together: the spread of the nodes' test accuracies
# shrinks round by round, and at the end the nodes' average model is evaluated too.
# A node that dies (--dead I) stops answering from round 2; its neighbours wait for it until
# --timeout, then mix with the neighbour they have (the ring becomes a line) and go on.
# One line per round: round, mean / lowest / highest test accuracy over the live nodes, bytes on
# the wire, seconds. OUTDIR gets rounds.tsv and the final models node-I.n3.
#
# Options (defaults in brackets):
#   --nodes N [6]   --rounds R [8]   --partition P [dirichlet:0.5]   --model SPEC [models/cnn.yaml]
#   --epochs E [1]  --batch B [64]   --lr LR [0.05]   --limit N samples per node (0: all) [0]
#   --eval-limit N  test images per evaluation (0: all 10000) [2000]
#   --dead I        node I (1..N) dies after round 1 [none]
#   --timeout S     how long a node waits for its neighbours each round, once its own model is
#                   ready [300]
#   --seed S [1]    --port P first of N loopback TCP ports [random]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), DATA (Fashion-MNIST folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NODES=6 ROUNDS=8 PARTITION=dirichlet:0.5 MODEL=$here/models/cnn.yaml EPOCHS=1 BATCH=64 LR=0.05
LIMIT=0 EVAL_LIMIT=2000 DEAD=0 TIMEOUT=300 SEED=1 PORT=$((20000 + RANDOM % 20000)) OUT=gossip-out
NAME=gossip.sh
. "$here/common.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --nodes) need "$@"; NODES=$2; shift 2 ;;
        --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
        --partition) need "$@"; PARTITION=$2; shift 2 ;;
        --model) need "$@"; MODEL=$2; shift 2 ;;
        --epochs) need "$@"; EPOCHS=$2; shift 2 ;;
        --batch) need "$@"; BATCH=$2; shift 2 ;;
        --lr) need "$@"; LR=$2; shift 2 ;;
        --limit) need "$@"; LIMIT=$2; shift 2 ;;
        --eval-limit) need "$@"; EVAL_LIMIT=$2; shift 2 ;;
        --dead) need "$@"; DEAD=$2; shift 2 ;;
        --timeout) need "$@"; TIMEOUT=$2; shift 2 ;;
        --seed) need "$@"; SEED=$2; shift 2 ;;
        --port) need "$@"; PORT=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) OUT=$1; shift ;;
    esac
done
isnum --nodes "$NODES"; isnum --rounds "$ROUNDS"; isnum --epochs "$EPOCHS"; isnum --limit "$LIMIT"
isnum --eval-limit "$EVAL_LIMIT"; isnum --dead "$DEAD"; isnum --timeout "$TIMEOUT"; isnum --port "$PORT"
[ "$NODES" -ge 3 ] || die "--nodes must be at least 3 (a ring)"
[ "$DEAD" -le "$NODES" ] || die "--dead $DEAD: there are only $NODES nodes"
require n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge bc
[ -f "$MODEL" ] || die "model spec $MODEL not found"
require_fmnist "$DATA"

mkdir -p "$OUT"
workdir
limit=(); [ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")
left() { echo $(( ($1 + NODES - 2) % NODES + 1 )); }
right() { echo $(( $1 % NODES + 1 )); }
endpoint() { echo "tcp://127.0.0.1:$((PORT + $1 - 1))"; }
alive() { [ "$DEAD" -ne "$1" ] || [ "$2" -le 1 ]; } # NODE ROUND

# --- identities: every node is a member of one federation --------------------------------------
authority
for i in $(seq 1 "$NODES"); do enroll "node$i"; cat "$W/node$i.pub"; done > "$W/fed.roster"

# Every node starts from the same initial model (a shared seed, as agreed out of band).
n3-train --model "$MODEL" --init-only --seed "$SEED" -o "$W/init.n3"
for i in $(seq 1 "$NODES"); do cp "$W/init.n3" "$W/node$i-0.n3"; done

node_round() { # I ROUND
    local i=$1 r=$2 l r_ n
    l=$(left "$i"); r_=$(right "$i")
    n3-train --init "$W/node$i-$((r - 1)).n3" --data "$DATA" --partition "$PARTITION" \
        --clients "$NODES" --client "$((i - 1))" --partition-seed "$SEED" --seed "$((r * 100 + i))" \
        --epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" --momentum 0.9 --weight-decay 1e-5 \
        --threads 1 "${limit[@]}" --emit model -q -o "$W/node$i-trained.n3"
    n3-encode --zstd "$W/node$i-trained.n3" \
        | n3-seal --to "$W/node$l.pub" --to "$W/node$r_.pub" --key "$W/node$i.key" --round "$r" \
            -o "$W/node$i-sent.n3"
    # Listen once our own model is ready: the wait covers the neighbours' lag, not our training.
    n3-send --recv "$(endpoint "$i")" --count 2 --quorum 1 --timeout "$TIMEOUT" -q > "$W/node$i-in.n3" &
    local recv=$!
    for n in "$l" "$r_"; do # a dead neighbour costs the timeout, nothing more
        n3-send "$(endpoint "$n")" --timeout "$TIMEOUT" -q "$W/node$i-sent.n3" \
            || echo "gossip: round $r: node$i could not reach node$n" >&2 &
    done
    wait "$recv" || { echo "gossip: round $r: node$i heard from no neighbour" >&2; return 1; }
    wait
    n3-seal --open --key "$W/node$i.key" --authority "$W/fed.pub" --roster "$W/fed.roster" \
            --round "$r" -q "$W/node$i-in.n3" \
        | n3-encode -d \
        | n3-merge --rule mix --self "$W/node$i-trained.n3" --self-weight 0.3333333333 -o "$W/node$i-$r.n3"
}

printf 'round\tmean_accuracy\tmin_accuracy\tmax_accuracy\tbytes_on_wire\tseconds\n' > "$OUT/rounds.tsv"
printf '%-6s %-9s %-9s %-9s %-14s %s\n' round mean lowest highest "bytes on wire" seconds
for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s.%N)
    nodes=()
    for i in $(seq 1 "$NODES"); do
        alive "$i" "$r" || continue
        node_round "$i" "$r" & nodes+=($!)
    done
    pids=("${nodes[@]}")
    for p in "${nodes[@]}"; do wait "$p" || die "round $r: a node failed"; done
    pids=()
    bytes=0 accs=()
    for i in $(seq 1 "$NODES"); do
        alive "$i" "$r" || continue
        bytes=$((bytes + 2 * $(wc -c < "$W/node$i-sent.n3")))
        accs+=("$(n3-eval "$W/node$i-$r.n3" --data "$DATA" "${elimit[@]}" --json | json_num accuracy)")
    done
    secs=$(elapsed "$start")
    printf '%s\n' "${accs[@]}" | awk -v r="$r" -v b="$bytes" -v s="$secs" -v tsv="$OUT/rounds.tsv" '
        NR == 1 { lo = hi = $1 } { sum += $1; if ($1 < lo) lo = $1; if ($1 > hi) hi = $1 }
        END { printf "%d\t%.4f\t%.4f\t%.4f\t%d\t%.1f\n", r, sum / NR, lo, hi, b, s >> tsv
              printf "%-6d %-9.4f %-9.4f %-9.4f %-14d %.1f\n", r, sum / NR, lo, hi, b, s }'
done

final=()
for i in $(seq 1 "$NODES"); do
    alive "$i" "$ROUNDS" || continue
    cp "$W/node$i-$ROUNDS.n3" "$OUT/node-$i.n3"; final+=("$OUT/node-$i.n3")
done
n3-merge --rule mix "${final[@]}" -o "$W/average.n3"
acc=$(n3-eval "$W/average.n3" --data "$DATA" "${elimit[@]}" --json | json_num accuracy)
echo "gossip: the live nodes' average model: test accuracy $acc; final models in $OUT/node-*.n3"
