#!/usr/bin/env bash
# examples/star.sh — a star federation on one machine: a hub and N members over ZeroMQ.
#
#   examples/star.sh [options] [OUTDIR]                  (OUTDIR defaults to star-out)
#
# An authority and the members get keys; Fashion-MNIST (Debian's dataset-fashion-mnist) is split
# over the members. Every round the hub publishes the global model, each member (its own process)
# trains on its share, packs the update, seals it to the hub and sends it; the hub receives,
# opens, unpacks and merges (FedAvg) into the next global model. A member that vanishes does not
# stall the round: the hub stops waiting at --timeout and merges what arrived if at least
# --quorum updates did. One line per round (round, test accuracy, loss, bytes on the wire,
# updates merged, seconds); OUTDIR gets rounds.tsv, global.n3 and accuracy.png (with gnuplot).
#
# Options (defaults in brackets):
#   --members N       members [5]                 --rounds R       rounds [5]
#   --partition P     iid, dirichlet:A, classes:K, quantity:A [dirichlet:0.5]
#   --model SPEC      model spec [examples/models/cnn.yaml]
#   --epochs E [1]  --batch B [64]  --lr LR [0.05]  --momentum M [0.9]  --weight-decay W [1e-5]
#   --pack P          none, fp16, int8, int4, with +topk:F for top-k sparsification with error
#                     feedback, e.g. int8+topk:0.1; zstd follows any packing [int8]
#   --limit N         samples per member (0: the whole share) [0]
#   --eval-limit N    test samples evaluated per round (0: all 10000) [0]
#   --dead K          K members vanish every round after training, before sending [0]
#   --quorum Q        updates that suffice at the timeout [half the members, rounded up]
#   --timeout S       the hub's wait for updates, per round [600]
#   --seed S          seed of the partition, and of the initial model without --train-seed [1]
#   --train-seed T    seed of the training noise alone: the initial model (seed T) and the
#                     members' batch orders (T*100000 + round*100 + member), so a run can be
#                     repeated on the same partition with other training noise [none: the
#                     initial model from --seed, batch orders round*100 + member]
#   --rule R          the hub's rule: fedavg, fedprox (fedavg with members' --prox-mu), fednova,
#                     scaffold (each member keeps its control variate; the initial model gets
#                     the server's), or any other n3-merge rule without server state [fedavg]
#   --prox-mu MU      the members' FedProx term [0; 0.01 with --rule fedprox]
#   --dp-noise Z      DP-FedAvg at the hub: updates clipped to --clip-norm C, noise of std Z*C
#   --clip-norm C     on their sum; dp_epsilon (delta 1e-5) goes to rounds.tsv [off]
#   --port P          first of two loopback TCP ports [random]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), DATA (Fashion-MNIST IDX
# folder), and for compatibility MEMBERS, ROUNDS, EPOCHS, LR, LIMIT, PORT as defaults.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MEMBERS=${MEMBERS:-5} ROUNDS=${ROUNDS:-5} EPOCHS=${EPOCHS:-1} LR=${LR:-0.05} LIMIT=${LIMIT:-0}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
PARTITION=dirichlet:0.5 MODEL=$here/models/cnn.yaml BATCH=64 MOMENTUM=0.9 WD=1e-5 PACK=int8
EVAL_LIMIT=0 DEAD=0 QUORUM= TIMEOUT=600 SEED=1 OUT=star-out NAME=star.sh
TRAIN_SEED= RULE=fedavg PROX_MU= DP_NOISE= CLIP_NORM=
. "$here/common.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --weight-decay) need "$@"; WD=$2; shift 2 ;;
        --dead) need "$@"; DEAD=$2; shift 2 ;;
        --seed) need "$@"; SEED=$2; shift 2 ;;
        --train-seed) need "$@"; TRAIN_SEED=$2; shift 2 ;;
        --rule) need "$@"; RULE=$2; shift 2 ;;
        --prox-mu) need "$@"; PROX_MU=$2; shift 2 ;;
        --dp-noise) need "$@"; DP_NOISE=$2; shift 2 ;;
        --clip-norm) need "$@"; CLIP_NORM=$2; shift 2 ;;
        --port) need "$@"; PORT=$2; shift 2 ;;
        --name) need "$@"; NAME=$2.sh; shift 2 ;;
        -h|--help) usage ;;
        -*) fed_option "$@" || die "unknown option $1 (see --help)"; shift 2 ;;
        *) OUT=$1; shift ;;
    esac
done
isnum --members "$MEMBERS"; isnum --rounds "$ROUNDS"; isnum --epochs "$EPOCHS"; isnum --limit "$LIMIT"
isnum --eval-limit "$EVAL_LIMIT"; isnum --dead "$DEAD"; isnum --timeout "$TIMEOUT"; isnum --port "$PORT"
QUORUM=${QUORUM:-$(( (MEMBERS + 1) / 2 ))}; isnum --quorum "$QUORUM"
[ -z "$TRAIN_SEED" ] || isnum --train-seed "$TRAIN_SEED"
[ "$MEMBERS" -ge 1 ] || die "--members must be at least 1"
[ "$QUORUM" -ge 1 ] && [ "$QUORUM" -le "$MEMBERS" ] || die "--quorum must be between 1 and --members"
[ $((MEMBERS - DEAD)) -ge "$QUORUM" ] || die "--dead $DEAD leaves fewer than --quorum $QUORUM members"

# --rule: the hub's n3-merge flags and the members' n3-train flags
merge_rule=$RULE train_flags=()
case $RULE in
    fedprox) merge_rule=fedavg; PROX_MU=${PROX_MU:-0.01} ;;
    fedavgm|fedadam|fedyogi|fedadagrad) die "--rule $RULE keeps server state, which star.sh does not" ;;
esac
[ -n "$PROX_MU" ] && train_flags+=(--prox-mu "$PROX_MU")
merge_flags=(--rule "$merge_rule")
[ "$RULE" = scaffold ] && merge_flags+=(--population "$MEMBERS")
if [ -n "$DP_NOISE" ] || [ -n "$CLIP_NORM" ]; then
    [ -n "$DP_NOISE" ] && [ -n "$CLIP_NORM" ] || die "--dp-noise and --clip-norm go together"
    merge_flags+=(--dp-noise "$DP_NOISE" --clip-norm "$CLIP_NORM")
fi
init_seed=${TRAIN_SEED:-$SEED} batch_seed0=$(( ${TRAIN_SEED:-0} * 100000 ))

# --pack: QUANT[+topk:F] -> n3-encode flags
pack_flags=() topk=
case ${PACK%%+*} in
    none) ;;
    fp16|bf16|int8|int4) pack_flags=(--quantize "${PACK%%+*}") ;;
    *) die "--pack: unknown packing '${PACK%%+*}' (none, fp16, bf16, int8, int4)" ;;
esac
case $PACK in
    *+topk:*) topk=${PACK##*+topk:}; [[ $topk =~ ^0?\.[0-9]+$|^1$ ]] || die "--pack: top-k fraction '$topk' is not in (0, 1]" ;;
    *+*) die "--pack: unknown suffix in '$PACK' (QUANT or QUANT+topk:F)" ;;
esac

require n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge bc
[ -f "$MODEL" ] || die "model spec $MODEL not found"
require_fmnist "$DATA"

mkdir -p "$OUT"
workdir
limit=(); [ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")

# --- identities: an authority, a hub and the members, with no certificate authority -------------
authority
enroll hub
for i in $(seq 1 "$MEMBERS"); do enroll "member$i"; cat "$W/member$i.pub"; done > "$W/fed.roster"

# --- round 0: a fresh model ----------------------------------------------------------------------
init_flags=(); [ "$RULE" = scaffold ] && init_flags=(--scaffold-init)
n3-train --model "$MODEL" --init-only --seed "$init_seed" "${init_flags[@]}" -o "$W/global-0.n3"
dp_col=; [ -n "$DP_NOISE" ] && dp_col='\tdp_epsilon'
printf "round\taccuracy\tloss\tbytes_on_wire\tmerged\tseconds$dp_col\n" > "$OUT/rounds.tsv"
printf '%-6s %-9s %-8s %-14s %-7s %s\n' round accuracy loss "bytes on wire" merged seconds

member() { # I ROUND: one member's round; the last --dead members vanish before sending
    local i=$1 r=$2 enc=(n3-encode --zstd "${pack_flags[@]}") sc=()
    [ "$RULE" = scaffold ] && sc=(--scaffold "$W/m$i.scaffold")
    [ -n "$topk" ] && enc+=(--topk "$topk" --residual "$W/m$i.residual")
    n3-send --sub "tcp://127.0.0.1:$((PORT + 1))" --count 1 --timeout "$TIMEOUT" -q > "$W/m$i-global.n3"
    n3-train --init "$W/m$i-global.n3" --data "$DATA" --partition "$PARTITION" \
        --clients "$MEMBERS" --client "$((i - 1))" --partition-seed "$SEED" --seed "$((batch_seed0 + r * 100 + i))" \
        --epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" --momentum "$MOMENTUM" --weight-decay "$WD" \
        --threads 1 "${limit[@]}" "${train_flags[@]}" "${sc[@]}" -q -o "$W/m$i-update.n3"
    [ "$i" -gt $((MEMBERS - DEAD)) ] && return 0 # vanished
    "${enc[@]}" "$W/m$i-update.n3" \
        | n3-seal --to "$W/hub.pub" --key "$W/member$i.key" --round "$r" \
        | tee "$W/m$i-sent.n3" \
        | n3-send "tcp://127.0.0.1:$PORT" --timeout "$TIMEOUT" -q
}

for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s.%N)
    prev="$W/global-$((r - 1)).n3"
    rm -f "$W"/m*-sent.n3
    # The hub: collect sealed updates (up to the timeout, then the quorum suffices), open and
    # verify them, unpack, merge.
    ( n3-send --recv "tcp://127.0.0.1:$PORT" --count "$MEMBERS" --quorum "$QUORUM" --timeout "$TIMEOUT" -q \
        | n3-seal --open --key "$W/hub.key" --authority "$W/fed.pub" --roster "$W/fed.roster" \
              --round "$r" -q \
        | n3-encode -d \
        | n3-merge "${merge_flags[@]}" --base "$prev" --json -o "$W/global-$r.n3" 2> "$W/merge-$r.json" ) &
    hub=$!
    # The hub publishes the global model; each member subscribes, trains, packs, seals, sends.
    n3-send --pub "tcp://127.0.0.1:$((PORT + 1))" --subscribers "$MEMBERS" --timeout "$TIMEOUT" -q "$prev" &
    pub=$!
    members=()
    for i in $(seq 1 "$MEMBERS"); do member "$i" "$r" & members+=($!); done
    pids=("$hub" "$pub" "${members[@]}")
    for p in "${members[@]}"; do wait "$p" || die "round $r: a member failed"; done
    wait "$pub" || die "round $r: publishing the model failed"
    wait "$hub" || die "round $r: the hub failed (fewer than $QUORUM updates arrived by the timeout?)"
    pids=()
    bytes=$(cat "$W"/m*-sent.n3 | wc -c)
    merged=$(grep -o '"name"' "$W/merge-$r.json" | wc -l)
    n3-eval "$W/global-$r.n3" --data "$DATA" --split test "${elimit[@]}" --json > "$W/eval-$r.json"
    acc=$(json_num accuracy < "$W/eval-$r.json")
    loss=$(json_num loss < "$W/eval-$r.json")
    secs=$(elapsed "$start")
    dp=; [ -n "$DP_NOISE" ] && dp=$(printf '\t%s' "$(json_str dp_epsilon < "$W/merge-$r.json")")
    printf '%d\t%.4f\t%.4f\t%d\t%d\t%.1f%s\n' "$r" "$acc" "$loss" "$bytes" "$merged" "$secs" "$dp" >> "$OUT/rounds.tsv"
    printf '%-6d %-9.4f %-8.4f %-14d %-7d %.1f\n' "$r" "$acc" "$loss" "$bytes" "$merged" "$secs"
done
cp "$W/global-$ROUNDS.n3" "$OUT/global.n3"
# The final model's accuracy per class (the label skew shows here first).
n3-eval "$OUT/global.n3" --data "$DATA" --split test "${elimit[@]}" --json -v \
    | tr '{' '\n' | sed -n 's/.*"class":\([0-9]*\),"samples":\([0-9]*\),"accuracy":\([0-9.eE+-]*\).*/\1\t\2\t\3/p' \
    | { printf 'class\tsamples\taccuracy\n'; cat; } > "$OUT/classes.tsv"

if command -v gnuplot >/dev/null; then
    gnuplot <<GP
set terminal pngcairo size 900,500
set output "$OUT/accuracy.png"
set title "n3 ${NAME%.sh}: $RULE, $MEMBERS members, Fashion-MNIST $PARTITION, $(basename "$MODEL" .yaml), packing $PACK"
set xlabel "round"; set ylabel "test accuracy"; set y2label "bytes on the wire"; set yrange [0:1]
set ytics nomirror; set y2tics; set key bottom right; set grid
set xrange [0.5:$ROUNDS + 0.5]; set y2range [0:*]; set boxwidth 0.5
plot "$OUT/rounds.tsv" using 1:2 with linespoints lw 2 title "accuracy", \
     "" using 1:4 axes x1y2 with boxes fill transparent solid 0.3 title "bytes on the wire"
GP
    echo "${NAME%.sh}: final model $OUT/global.n3, table $OUT/rounds.tsv, plot $OUT/accuracy.png"
else
    echo "${NAME%.sh}: final model $OUT/global.n3, table $OUT/rounds.tsv (no plot: gnuplot not found)"
fi
