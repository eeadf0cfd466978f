#!/usr/bin/env bash
# examples/scatter.sh — updates erasure-coded 4+2 and scattered over 3 relays, one relay down:
# every update still arrives, and no relay ever holds a whole update.
#
#   examples/scatter.sh [NODES]        (default 3 nodes; prints what arrived at the hub)
#
# Each node trains an update, cuts it into 6 Reed-Solomon shards (any 4 rebuild it) and deals
# them round-robin over the relays it can reach (n3-send --scatter); relay 3 is down, so its
# address is dead. The relays forward whatever they get to the hub, which decodes each update
# as soon as 4 of its shards are in. Environment: N3_BIN, PORT (random), LIMIT (300).
set -euo pipefail
NODES=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
NAME=scatter.sh
. "$here/common.sh"
PORT=${PORT:-$((20000 + RANDOM % 20000))}
LIMIT=${LIMIT:-300}
require n3-train n3-encode n3-send n3-inspect
require_fmnist "$DATA"
W=$(mktemp -d "${TMPDIR:-/tmp}/n3-scatter.XXXXXX")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$W"' EXIT
hub="tcp://127.0.0.1:$PORT"
relay() { echo "tcp://127.0.0.1:$((PORT + $1))"; }

n3-train --model "$here/models/mlp.yaml" --init-only --seed 1 -o "$W/global.n3"
for i in $(seq 1 "$NODES"); do
    n3-train --init "$W/global.n3" --data "$DATA" --partition iid --clients "$NODES" --client $((i - 1)) \
        --limit "$LIMIT" --threads 1 -q -o "$W/update-$i.n3"
done

# The hub takes shards until every update could be rebuilt (4 of 6 each) or the timeout.
( n3-send --recv "$hub" --count 0 --timeout 12 -q | n3-encode -d -q > "$W/arrived.n3" ) &
hubpid=$!
# Relays 1 and 2 forward to the hub; relay 3 is down.
for r in 1 2; do
    ( n3-send --recv "$(relay "$r")" --count 0 --timeout 10 -q | tee "$W/relay-$r.n3" \
        | n3-send "$hub" --timeout 10 -q ) &
    pids+=($!)
done
pids+=("$hubpid")
for i in $(seq 1 "$NODES"); do
    n3-encode --shards 4+2 < "$W/update-$i.n3" \
      | n3-send --scatter "$(relay 1)" "$(relay 2)" "$(relay 3)" --timeout 3 -q \
      || echo "scatter: node $i: relay 3 is unreachable (exit $?): its shards are lost; 4 of 6 rebuild the update"
done
wait "$hubpid" || true
for r in 1 2; do
    n=$(n3-inspect --json "$W/relay-$r.n3" 2>/dev/null | grep -c '"type":"shard"' || true)
    echo "scatter: relay $r forwarded $n shards (never a whole update)"
done
got=$(n3-inspect --json "$W/arrived.n3" 2>/dev/null | grep -c '"type":"update"' || true)
echo "scatter: $got of $NODES updates arrived whole at the hub"
for i in $(seq 1 "$NODES"); do
    n3-inspect --json "$W/update-$i.n3" | grep -o '"hash":"[0-9a-f]*"'
done | sort > "$W/sent.txt"
n3-inspect --json "$W/arrived.n3" | grep -o '"hash":"[0-9a-f]*"' | sort > "$W/got.txt"
if cmp -s "$W/sent.txt" "$W/got.txt"; then
    echo "scatter: every update arrived bit-exact"
else
    echo "scatter: the updates that arrived differ from those sent" >&2
    exit 1
fi
