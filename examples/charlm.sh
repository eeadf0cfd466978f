#!/usr/bin/env bash
# examples/charlm.sh — a character-level language model trained federatedly on the King James
# Bible, one group of books per node, then sampled locally.
#
#   examples/charlm.sh [options] [OUTDIR]                (OUTDIR defaults to charlm-out)
#
# The Bible comes from Debian's bible-kjv (`bible -f gen1:1-rev22:21`). With --partition natural
# the books are dealt to the nodes in turn (node 1: Genesis, Numbers, ...; node 2: Exodus,
# Deuteronomy, ...), so every node knows only its own books. Each round every node (its own
# process) trains the small transformer of examples/models/charlm.yaml from the global model,
# packs its update (int8 + zstd) and seals it to the hub; the hub opens, unpacks and merges
# them (FedAvg). For comparison, node 1 also trains a model on its own books alone for as many
# steps as it trained in the federation. Both are evaluated in bits per character on the test
# lines of the whole Bible (every tenth line, which no node trains on), and the federated model
# writes a sample with n3-eval --generate. OUTDIR gets rounds.tsv, global.n3, alone.n3, sample.txt.
#
# Options (defaults in brackets):
#   --nodes N [4]   --rounds R [8]   --steps S local steps per round [150]   --batch B [32]
#   --lr LR [0.003] (Adam)   --eval-limit N test lines evaluated (0: all) [1000]
#   --prompt TEXT ["And God said"]   --tokens N [300]   --seed S [1]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), KJV (a text file in the
# format of bible(1) to use instead of running bible).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NODES=4 ROUNDS=8 STEPS=150 BATCH=32 LR=0.003 EVAL_LIMIT=1000 PROMPT="And God said" TOKENS=300 SEED=1
OUT=charlm-out NAME=charlm.sh
. "$here/common.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --nodes) need "$@"; NODES=$2; shift 2 ;;
        --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
        --steps) need "$@"; STEPS=$2; shift 2 ;;
        --batch) need "$@"; BATCH=$2; shift 2 ;;
        --lr) need "$@"; LR=$2; shift 2 ;;
        --eval-limit) need "$@"; EVAL_LIMIT=$2; shift 2 ;;
        --prompt) need "$@"; PROMPT=$2; shift 2 ;;
        --tokens) need "$@"; TOKENS=$2; shift 2 ;;
        --seed) need "$@"; SEED=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) OUT=$1; shift ;;
    esac
done
isnum --nodes "$NODES"; isnum --rounds "$ROUNDS"; isnum --steps "$STEPS"; isnum --batch "$BATCH"
isnum --eval-limit "$EVAL_LIMIT"; isnum --tokens "$TOKENS"; isnum --seed "$SEED"
[ "$NODES" -ge 2 ] || die "--nodes must be at least 2"
[ "$ROUNDS" -ge 1 ] && [ "$STEPS" -ge 1 ] || die "--rounds and --steps must be at least 1"
require n3-keys n3-train n3-eval n3-encode n3-seal n3-merge bc
if [ -n "${KJV:-}" ]; then
    [ -s "$KJV" ] || die "no text in KJV=$KJV (no such file, or empty)"
else
    require bible
fi
mkdir -p "$OUT"
workdir
if [ -n "${KJV:-}" ]; then cp "$KJV" "$W/kjv.txt"; else bible -f gen1:1-rev22:21 > "$W/kjv.txt"; fi
elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")
bpc() { n3-eval "$1" --data "$W/kjv.txt" --split test "${elimit[@]}" --threads 2 --json | json_num bits_per_char; }
books() { # CLIENT: the first book of this client's share
    local first
    first=$(n3-train --data "$W/kjv.txt" --partition natural --clients "$NODES" --client "$1" --split all \
                --list-partition | awk 'NR == 1 { print $1 + 1 }')
    sed -n "${first}s/^\([0-9]*[A-Za-z]*\).*/\1/p" "$W/kjv.txt"
}

# --- identities ----------------------------------------------------------------------------------
authority
enroll hub
for i in $(seq 1 "$NODES"); do enroll "node$i"; cat "$W/node$i.pub"; done > "$W/fed.roster"

n3-train --model "$here/models/charlm.yaml" --init-only --seed "$SEED" -o "$W/global-0.n3"
echo "charlm: $NODES nodes, books dealt in turn (node 1 starts with $(books 0), node 2 with $(books 1)); $ROUNDS rounds of $STEPS steps"
printf 'round\tbits_per_char\tbytes_on_wire\tseconds\n' > "$OUT/rounds.tsv"
printf '%-6s %-14s %-14s %s\n' round bits/char "bytes on wire" seconds
train() { # NODE INIT STEPS SEED: n3-train on the node's books
    n3-train --init "$2" --data "$W/kjv.txt" --partition natural --clients "$NODES" --client "$(($1 - 1))" \
        --optimizer adam --lr "$LR" --steps "$3" --batch "$BATCH" --seed "$4" --threads 1 -q "${@:5}"
}
for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s.%N)
    nodes=()
    for i in $(seq 1 "$NODES"); do
        ( train "$i" "$W/global-$((r - 1)).n3" "$STEPS" "$((r * 100 + i))" \
            | n3-encode --quantize int8 --zstd \
            | n3-seal --to "$W/hub.pub" --key "$W/node$i.key" --round "$r" -o "$W/sent-$i.n3" ) &
        nodes+=($!)
    done
    pids=("${nodes[@]}")
    for p in "${nodes[@]}"; do wait "$p" || die "round $r: a node failed"; done
    pids=()
    cat "$W"/sent-*.n3 \
        | n3-seal --open --key "$W/hub.key" --authority "$W/fed.pub" --roster "$W/fed.roster" --round "$r" -q \
        | n3-encode -d \
        | n3-merge --rule fedavg --base "$W/global-$((r - 1)).n3" -o "$W/global-$r.n3"
    bytes=$(cat "$W"/sent-*.n3 | wc -c)
    b=$(bpc "$W/global-$r.n3")
    secs=$(elapsed "$start")
    printf '%d\t%.4f\t%d\t%.1f\n' "$r" "$b" "$bytes" "$secs" >> "$OUT/rounds.tsv"
    printf '%-6d %-14.4f %-14d %.1f\n' "$r" "$b" "$bytes" "$secs"
done
cp "$W/global-$ROUNDS.n3" "$OUT/global.n3"

# The same number of steps on node 1's books alone.
train 1 "$W/global-0.n3" "$((ROUNDS * STEPS))" "$SEED" --emit model -o "$OUT/alone.n3"
alone=$(bpc "$OUT/alone.n3")
fed=$(awk -F'\t' 'END { print $2 }' "$OUT/rounds.tsv")
printf 'charlm: bits per character on the whole Bible'"'"'s test lines: federated %.4f, node 1 alone %.4f\n' "$fed" "$alone"
printf 'alone\t%.4f\t0\t0\n' "$alone" >> "$OUT/rounds.tsv"
n3-eval "$OUT/global.n3" --generate "$PROMPT" --tokens "$TOKENS" --seed "$SEED" > "$OUT/sample.txt"
echo "charlm: a sample from the federated model ($OUT/sample.txt):"
cat "$OUT/sample.txt"
