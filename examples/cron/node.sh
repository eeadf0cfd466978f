#!/usr/bin/env bash
# examples/cron/node.sh — one wake-up of a federation member: fetch, train, send, sleep again.
#
# Run it from cron or a systemd timer (see crontab and n3-node.timer here). Each run:
#   1. fetches the hub's current global model (n3-send --sub from $N3_HUB_MODEL);
#   2. if this node already sent an update for that round, sends the same sealed update again
#      and stops: the hub has not merged the round yet, and may never have spooled the first
#      copy (a hub killed while the bytes were in flight); it keeps one update per member;
#   3. trains on the local data, packs the update (int8 + zstd), seals it to the hub for the
#      round after the model's, and sends it to $N3_HUB_UPDATES, where the hub spools it;
#   4. records the round in $N3_STATE/last-round.
# A second run while one is still going exits at once (flock). Configuration, from the
# environment or from the file named by $N3_NODE_CONF (default /etc/n3/node.conf):
#   N3_HUB_MODEL    endpoint serving the global model            (e.g. tcp://hub.example.org:7001)
#   N3_HUB_UPDATES  endpoint the hub spools updates from         (e.g. tcp://hub.example.org:7000)
#   N3_HUB_PUB      the hub's public key file (n3-keys public)
#   N3_KEY          this member's key file (n3-keys complete)
#   N3_DATA         the local training data (IDX folder, CSV or text file)
#   N3_TRAIN_ARGS   more n3-train options, e.g. "--epochs 2 --lr 0.05 --threads 1"
#   N3_PACK_ARGS    n3-encode options (default "--quantize int8 --zstd")
#   N3_STATE        this node's state directory (default /var/lib/n3-node)
#   N3_TIMEOUT      seconds to wait for the hub, each way (default 60)
# Exit status: 0 sent, or nothing to do; 2 bad configuration; 3 the hub did not answer in time;
# anything else is the failing tool's own status (see its man page).
set -euo pipefail
conf=${N3_NODE_CONF:-/etc/n3/node.conf}
# shellcheck disable=SC1090
[ -f "$conf" ] && . "$conf"
die() { echo "n3-node: error: $*" >&2; exit "${2:-2}"; }
for v in N3_HUB_MODEL N3_HUB_UPDATES N3_HUB_PUB N3_KEY N3_DATA; do
    [ -n "${!v:-}" ] || die "the setting $v is missing (in the environment and in $conf)"
done
[ -r "$N3_HUB_PUB" ] || die "cannot read N3_HUB_PUB=$N3_HUB_PUB"
[ -r "$N3_KEY" ] || die "cannot read N3_KEY=$N3_KEY"
[ -e "$N3_DATA" ] || die "no data at N3_DATA=$N3_DATA"
STATE=${N3_STATE:-/var/lib/n3-node}
TIMEOUT=${N3_TIMEOUT:-60}
read -r -a train_args <<< "${N3_TRAIN_ARGS:-}"
read -r -a pack_args <<< "${N3_PACK_ARGS:---quantize int8 --zstd}"
for t in n3-send n3-train n3-encode n3-seal n3-inspect flock; do
    command -v "$t" >/dev/null || die "$t not found on PATH ($PATH)"
done
mkdir -p "$STATE"
exec 9> "$STATE/lock"
flock -n 9 || { echo "n3-node: another run is still going; not starting a second one" >&2; exit 0; }

rc=0
n3-send --sub "$N3_HUB_MODEL" --count 1 --timeout "$TIMEOUT" -q > "$STATE/global.tmp" || rc=$?
[ "$rc" -eq 0 ] || { rm -f "$STATE/global.tmp"; die "no global model from $N3_HUB_MODEL" "$rc"; }
mv "$STATE/global.tmp" "$STATE/global.n3"
round=$(n3-inspect --json "$STATE/global.n3" | sed -n 's/.*"round":"\([0-9]*\)".*/\1/p')
next=$(( ${round:-0} + 1 ))
last=$(cat "$STATE/last-round" 2>/dev/null || echo 0)
if [ "$last" -ge "$next" ]; then
    if [ "$last" -eq "$next" ] && [ -f "$STATE/sealed.n3" ]; then
        n3-send "$N3_HUB_UPDATES" --timeout "$TIMEOUT" -q "$STATE/sealed.n3" || rc=$?
        [ "$rc" -eq 0 ] || die "the hub at $N3_HUB_UPDATES did not take the update" "$rc"
        echo "n3-node: round $next: update already sent; sent it again"
    else
        echo "n3-node: round $next: update already sent; nothing to do"
    fi
    exit 0
fi
n3-train --init "$STATE/global.n3" --data "$N3_DATA" "${train_args[@]}" -q -o "$STATE/update.n3"
n3-encode "${pack_args[@]}" "$STATE/update.n3" \
    | n3-seal --to "$N3_HUB_PUB" --key "$N3_KEY" --round "$next" -o "$STATE/sealed.n3"
n3-send "$N3_HUB_UPDATES" --timeout "$TIMEOUT" -q "$STATE/sealed.n3" || rc=$?
[ "$rc" -eq 0 ] || die "the hub at $N3_HUB_UPDATES did not take the update" "$rc"
echo "$next" > "$STATE/last-round.tmp" && mv "$STATE/last-round.tmp" "$STATE/last-round"
echo "n3-node: round $next: update sent ($(wc -c < "$STATE/sealed.n3") bytes)"
