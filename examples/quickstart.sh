#!/usr/bin/env bash
# examples/quickstart.sh — a whole federation on one machine, in under ten minutes.
#
#   examples/quickstart.sh [OUTDIR]          (what `make demo` runs; OUTDIR defaults to demo-out)
#
# An authority and 5 members get keys; Fashion-MNIST (Debian's dataset-fashion-mnist) is split
# Dirichlet(0.5) over the members; the NIID-Bench simple CNN is trained for 5 rounds of a star
# topology over ZeroMQ on loopback. Every round the hub publishes the global model, each member
# (its own process) trains on its share, packs the update (int8 + zstd), seals it to the hub and
# sends it; the hub receives, opens, unpacks and merges (FedAvg) into the next global model.
# It prints one line per round and writes OUTDIR/rounds.tsv and OUTDIR/accuracy.png.
#
# Environment: MEMBERS (5), ROUNDS (5), EPOCHS (1), LR (0.05), LIMIT (0 = all samples), PORT (random),
# N3_BIN (the folder with the n3 tools; default build/tools, then PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-demo-out}
MEMBERS=${MEMBERS:-5}
ROUNDS=${ROUNDS:-5}
EPOCHS=${EPOCHS:-1}
LIMIT=${LIMIT:-0}
LR=${LR:-0.05}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
N3_BIN=${N3_BIN:-$here/../build/tools}
[ -x "$N3_BIN/n3-train" ] && export PATH="$N3_BIN:$PATH"

die() { echo "quickstart: $*" >&2; exit 2; }
for t in n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge; do
    command -v "$t" >/dev/null || die "$t not found: run 'make build' first (or set N3_BIN)"
done
[ -f "$DATA/train-images-idx3-ubyte.gz" ] || die "Fashion-MNIST not found in $DATA: apt-get install dataset-fashion-mnist"

mkdir -p "$OUT"
W=$(mktemp -d "${TMPDIR:-/tmp}/n3-quickstart.XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT
limit=(); [ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")

# --- identities: an authority, a hub and the members, with no certificate authority -------------
n3-keys authority -o "$W/fed.ask"
n3-keys public "$W/fed.ask" > "$W/fed.pub"
enroll() { # NAME: the member makes its secrets, the authority issues, the member completes
    n3-keys request --id "$1" -o "$W/$1.secret" > "$W/$1.req"
    n3-keys issue --authority "$W/fed.ask" --log "$W/issued.log" < "$W/$1.req" > "$W/$1.partial"
    n3-keys complete --secret "$W/$1.secret" --partial "$W/$1.partial" -o "$W/$1.key"
    n3-keys public "$W/$1.key" > "$W/$1.pub"
}
enroll hub
for i in $(seq 1 "$MEMBERS"); do enroll "member$i"; cat "$W/member$i.pub"; done > "$W/fed.roster"

# --- round 0: a fresh model ----------------------------------------------------------------------
n3-train --model "$here/models/cnn.yaml" --init-only --seed 1 -o "$W/global-0.n3"
printf 'round\taccuracy\tloss\tbytes_on_wire\tseconds\n' > "$OUT/rounds.tsv"
printf '%-6s %-9s %-8s %-14s %s\n' round accuracy loss "bytes on wire" seconds

for r in $(seq 1 "$ROUNDS"); do
    start=$(date +%s.%N)
    prev="$W/global-$((r - 1)).n3"
    # The hub: collect sealed updates, open and verify them, unpack, merge.
    ( n3-send --recv "tcp://127.0.0.1:$PORT" --count "$MEMBERS" --quorum $(( (MEMBERS + 1) / 2 )) --timeout 300 \
        | n3-seal --open --key "$W/hub.key" --authority "$W/fed.pub" --roster "$W/fed.roster" \
              --round "$r" -q \
        | n3-encode -d \
        | n3-merge --rule fedavg --base "$prev" -o "$W/global-$r.n3" ) &
    hub=$!
    # The hub publishes the global model; each member subscribes, trains, packs, seals, sends.
    n3-send --pub "tcp://127.0.0.1:$((PORT + 1))" --subscribers "$MEMBERS" --timeout 120 "$prev" &
    pub=$!
    members=()
    for i in $(seq 1 "$MEMBERS"); do
        ( n3-send --sub "tcp://127.0.0.1:$((PORT + 1))" --count 1 --timeout 120 > "$W/m$i-global.n3"
          n3-train --init "$W/m$i-global.n3" --data "$DATA" --partition dirichlet:0.5 \
              --clients "$MEMBERS" --client "$((i - 1))" --partition-seed 1 --seed "$((r * 100 + i))" \
              --epochs "$EPOCHS" --batch 64 --lr "$LR" --momentum 0.9 --weight-decay 1e-5 \
              --threads 1 "${limit[@]}" \
            | n3-encode --quantize int8 --zstd \
            | n3-seal --to "$W/hub.pub" --key "$W/member$i.key" --round "$r" \
            | tee "$W/m$i-sent.n3" \
            | n3-send "tcp://127.0.0.1:$PORT" --timeout 120 ) &
        members+=($!)
    done
    pids=("$hub" "$pub" "${members[@]}")
    for p in "${members[@]}"; do wait "$p" || die "round $r: a member failed"; done
    wait "$pub" || die "round $r: publishing the model failed"
    wait "$hub" || die "round $r: the hub failed"
    pids=()
    bytes=$(cat "$W"/m*-sent.n3 | wc -c)
    n3-eval "$W/global-$r.n3" --data "$DATA" --split test --json > "$W/eval-$r.json"
    acc=$(sed -n 's/.*"accuracy":\([0-9.eE+-]*\).*/\1/p' "$W/eval-$r.json")
    loss=$(sed -n 's/.*"loss":\([0-9.eE+-]*\).*/\1/p' "$W/eval-$r.json")
    secs=$(echo "$(date +%s.%N) - $start" | bc -l)
    printf '%d\t%.4f\t%.4f\t%d\t%.1f\n' "$r" "$acc" "$loss" "$bytes" "$secs" >> "$OUT/rounds.tsv"
    printf '%-6d %-9.4f %-8.4f %-14d %.1f\n' "$r" "$acc" "$loss" "$bytes" "$secs"
done
cp "$W/global-$ROUNDS.n3" "$OUT/global.n3"

if command -v gnuplot >/dev/null; then
    gnuplot <<GP
set terminal pngcairo size 900,500
set output "$OUT/accuracy.png"
set title "n3 quickstart: FedAvg, $MEMBERS members, Fashion-MNIST Dirichlet(0.5), simple CNN"
set xlabel "round"; set ylabel "test accuracy"; set y2label "bytes on the wire"
set ytics nomirror; set y2tics; set key bottom right; set grid
set xrange [0.5:$ROUNDS + 0.5]; set xtics 1; set y2range [0:*]; set boxwidth 0.5
plot "$OUT/rounds.tsv" using 1:2 with linespoints lw 2 title "accuracy", \
     "" using 1:4 axes x1y2 with boxes fill transparent solid 0.3 title "bytes on the wire"
GP
fi
echo "quickstart: final model $OUT/global.n3, table $OUT/rounds.tsv${OUT:+, plot $OUT/accuracy.png}"
