#!/usr/bin/env bash
# examples/cron/demo.sh [ROUNDS] — the cron/systemd deployment of this folder, run on one machine.
#
# Sets up an authority, a hub (spool service, model server) and 3 members, each with its own
# state directory and configuration file, as they would be on separate machines; then, for each
# round, wakes every member once (what cron or n3-node.timer does: node.sh) and runs the hub's
# merge (hub-merge.sh). A member woken twice in one round sends the same update again, and
# the hub keeps one of the two.
# Prints the test accuracy of the global model after each round. ROUNDS defaults to 2.
# Environment: N3_BIN (default build/tools), DATA (Fashion-MNIST IDX folder), LIMIT (samples
# per member, 1000), PORT (random), CRON_DIR (keep every machine's files in this new folder
# instead of a temporary one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROUNDS=${1:-2}
N3_BIN=${N3_BIN:-$here/../../build/tools} NAME=demo.sh
. "$here/../common.sh"
LIMIT=${LIMIT:-1000}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "the ROUNDS argument must be a positive whole number, not '$ROUNDS'"
require n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge n3-inspect flock
require_fmnist "$DATA"
if [ -n "${CRON_DIR:-}" ]; then
    mkdir "$CRON_DIR" || die "cannot create CRON_DIR=$CRON_DIR (it must not exist yet)"
    W=$(cd "$CRON_DIR" && pwd) keep=1
else
    W=$(mktemp -d "${TMPDIR:-/tmp}/n3-cron.XXXXXX") keep=0
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null; [ "$keep" = 1 ] || rm -rf "$W"' EXIT

# The authority enrolls the hub and the members (on their own machines, in real life).
mkdir -p "$W/hub/state" "$W/hub/spool/incoming"
keys authority -o "$W/fed.ask"
keys public "$W/fed.ask" > "$W/hub/state/fed.pub"
enroll() { # NAME DIR
    keys request --id "$1" -o "$2/$1.secret" > "$2/$1.req"
    keys issue --authority "$W/fed.ask" --log "$W/issued.log" < "$2/$1.req" > "$2/$1.partial"
    keys complete --secret "$2/$1.secret" --partial "$2/$1.partial" -o "$2/$1.key"
}
enroll hub "$W/hub/state"
keys public "$W/hub/state/hub.key" > "$W/hub.pub"
for i in 1 2 3; do
    mkdir -p "$W/node$i"
    enroll "node$i" "$W/node$i"
    keys public "$W/node$i/node$i.key"
    cat > "$W/node$i/node.conf" <<CONF
N3_HUB_MODEL=tcp://127.0.0.1:$((PORT + 1))
N3_HUB_UPDATES=tcp://127.0.0.1:$PORT
N3_HUB_PUB=$W/hub.pub
N3_KEY=$W/node$i/node$i.key
N3_DATA=$DATA
N3_TRAIN_ARGS="--partition dirichlet:0.5 --clients 3 --client $((i - 1)) --partition-seed 1 --limit $LIMIT --lr 0.05 --momentum 0.9 --threads 1"
N3_STATE=$W/node$i/state
N3_TIMEOUT=60
CONF
done > "$W/hub/state/fed.roster"
cat > "$W/hub/hub.conf" <<CONF
N3_STATE=$W/hub/state
N3_SPOOL=$W/hub/spool
N3_QUORUM=2
CONF

# The hub: a fresh model, the spool service and the model server.
n3-train --model "$here/../models/cnn.yaml" --init-only --seed 1 -o "$W/hub/state/global.n3"
n3-send --recv "tcp://127.0.0.1:$PORT" --count 0 --spool "$W/hub/spool/incoming" -q & pids+=($!)
"$here/hub-serve.sh" "tcp://127.0.0.1:$((PORT + 1))" "$W/hub/state/global.n3" & pids+=($!)

for r in $(seq 1 "$ROUNDS"); do
    for i in 1 2 3; do N3_NODE_CONF="$W/node$i/node.conf" "$here/node.sh"; done
    N3_NODE_CONF="$W/node1/node.conf" "$here/node.sh"          # woken twice: sent again
    for _ in $(seq 1 50); do                                     # the spool writes as updates land
        [ "$(find "$W/hub/spool/incoming" -name '*.n3' | wc -l)" -ge 4 ] && break; sleep 0.2
    done
    N3_HUB_CONF="$W/hub/hub.conf" "$here/hub-merge.sh"
    acc=$(n3-eval "$W/hub/state/global.n3" --data "$DATA" --limit 2000 --json \
          | sed -n 's/.*"accuracy":\([0-9.eE+-]*\).*/\1/p')
    echo "cron demo: after round $r: test accuracy $acc"
done
