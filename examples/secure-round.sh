#!/usr/bin/env bash
# examples/secure-round.sh — one round of secure aggregation on one machine.
#
#   examples/secure-round.sh OUTDIR CLIENTS DROPPED [NEIGHBOURS]
#
# CLIENTS members train on their own shares of Fashion-MNIST; the aggregator ("hub") learns only
# the weighted mean of their updates. DROPPED members vanish after masking: their masked inputs
# never arrive, and the round still completes from the survivors (it needs at least a majority).
# With NEIGHBOURS = K (SecAgg+), each member masks with and shares with its K neighbours only,
# and the round needs a majority of each member's neighbourhood instead; 0 (default) is the
# complete graph.
# Every record between members and hub is sealed with n3-seal. Leaves in OUTDIR:
#   update-I.n3   member I's plain update (never leaves member I)
#   masked-I.n3   member I's masked input (U32 tensors: n3-inspect --to-safetensors exports it)
#   secure.n3     the secure aggregate: weighted mean of the survivors' updates
#   plain.n3      plain fedavg of the survivors' updates, for comparison
# Environment: ROUND (1), LIMIT (samples per member, 600), NEIGHBOURS (when not an argument),
# N3_BIN (default build/tools).
set -euo pipefail
[ $# -eq 3 ] || [ $# -eq 4 ] || { echo "usage: $0 OUTDIR CLIENTS DROPPED [NEIGHBOURS]" >&2; exit 2; }
OUT=$1 CLIENTS=$2 DROPPED=$3 NEIGHBOURS=${4:-${NEIGHBOURS:-0}}
here=$(cd "$(dirname "$0")" && pwd)
NAME=secure-round.sh
. "$here/common.sh"
ROUND=${ROUND:-1}
LIMIT=${LIMIT:-600}
require n3-keys n3-train n3-seal n3-secagg n3-merge n3-inspect
require_fmnist "$DATA"
[ "$CLIENTS" -ge 2 ] || die "at least 2 CLIENTS are needed"
[ "$DROPPED" -ge 0 ] && [ "$DROPPED" -lt "$CLIENTS" ] || die "the DROPPED members must number 0 to CLIENTS-1"
[[ "$NEIGHBOURS" =~ ^[0-9]+$ ]] || die "the NEIGHBOURS argument must be a number (0: every member)"

mkdir -p "$OUT"
rm -f "$OUT"/update-*.n3 "$OUT"/masked-*.n3 "$OUT"/secure.n3 "$OUT"/plain.n3
workdir
# Each member records its adverts, one per round, so that no "please redo the round" can make it
# advertise twice (n3-seal(1)); these simulated members keep that record in the work folder.
export N3_STATE_DIR="${N3_STATE_DIR:-$W/state}"

# Identities: an authority, the hub, the members; the roster lists the members in order.
authority
enroll hub
for i in $(seq 1 "$CLIENTS"); do enroll "m$i"; cat "$W/m$i.pub"; done > "$W/fed.roster"
round=(--roster "$W/fed.roster" --authority "$W/fed.pub" --round "$ROUND")
[ "$NEIGHBOURS" -gt 0 ] && round+=(--neighbours "$NEIGHBOURS")

# Each member trains from the same global model on its own share.
n3-train --model "$here/models/mlp.yaml" --init-only --seed 3 -o "$W/global.n3"
for i in $(seq 1 "$CLIENTS"); do
    n3-train --init "$W/global.n3" --data "$DATA" --partition iid --clients "$CLIENTS" \
        --client $((i - 1)) --limit "$LIMIT" --epochs 1 --seed 5 --threads 1 -q \
        -o "$OUT/update-$i.n3"
done

# 1. Adverts: fresh round keys and sealed, verifiable shares for every other member.
for i in $(seq 1 "$CLIENTS"); do
    n3-secagg advertise --key "$W/m$i.key" "${round[@]}" --state "$W/m$i.state" > "$W/advert-$i.n3"
done
cat "$W"/advert-*.n3 > "$W/adverts.n3" # the hub hands every member all adverts

# 2. Masked inputs, sealed to the hub. The last DROPPED members vanish after masking.
survivors=$((CLIENTS - DROPPED))
for i in $(seq 1 "$CLIENTS"); do
    n3-secagg mask --key "$W/m$i.key" "${round[@]}" --state "$W/m$i.state" \
        --adverts "$W/adverts.n3" "$OUT/update-$i.n3" -o "$OUT/masked-$i.n3"
    if [ "$i" -le "$survivors" ]; then
        n3-seal --to "$W/hub.pub" --key "$W/m$i.key" "$OUT/masked-$i.n3" > "$W/to-hub-$i.n3"
    fi
done

# 3. The hub opens what arrived and forwards the survivor list (the survivors' signed statements
#    of the adverts they masked over); each survivor checks it, then reveals shares to the hub.
cat "$W"/to-hub-*.n3 | n3-seal --open --key "$W/hub.key" --authority "$W/fed.pub" \
    --roster "$W/fed.roster" --round "$ROUND" -q > "$W/arrived.n3"
n3-secagg survivors "${round[@]}" \
    "$W/arrived.n3" > "$W/survivors.n3"
for i in $(seq 1 "$survivors"); do
    n3-secagg reveal --key "$W/m$i.key" "${round[@]}" --state "$W/m$i.state" \
        --survivors "$W/survivors.n3" \
      | n3-seal --to "$W/hub.pub" --key "$W/m$i.key" --round "$ROUND" > "$W/reveal-$i.n3"
done
cat "$W"/reveal-*.n3 | n3-seal --open --key "$W/hub.key" --authority "$W/fed.pub" \
    --roster "$W/fed.roster" --round "$ROUND" -q > "$W/reveals.n3"

# 4. The secure sum, and the plain fedavg of the same updates for comparison.
n3-secagg sum "${round[@]}" --adverts "$W/adverts.n3" -v \
    "$W/arrived.n3" "$W/reveals.n3" -o "$OUT/secure.n3"
plain=()
for i in $(seq 1 "$survivors"); do plain+=("$OUT/update-$i.n3"); done
n3-merge --rule fedavg "${plain[@]}" -o "$OUT/plain.n3"
graph="every member masks with every other"
[ "$NEIGHBOURS" -gt 0 ] && graph="SecAgg+, $NEIGHBOURS neighbours per member"
echo "secure-round: $survivors of $CLIENTS members survived (members $(seq -s ' ' 1 "$survivors")); $graph"
echo "secure-round: secure.n3 and plain.n3 in $OUT; compare their tensors with n3-inspect"
