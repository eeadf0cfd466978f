#!/usr/bin/env bash
# examples/cron/hub-merge.sh — the hub's periodic merge: spooled updates in, next global model out.
#
# The hub runs three things (systemd units here): n3-hub-spool.service receives sealed updates
# at any time and writes each one, whole, to $N3_SPOOL/incoming (n3-send --recv --spool);
# n3-hub-serve.service hands the current global model to every node that asks (n3-send --pub);
# and this job, from n3-hub-merge.timer or cron, which for the next round:
#   1. opens every spooled update (n3-seal --open: a member of the roster, sealed to the hub,
#      for this round) and unpacks it; a file that fails goes to $N3_SPOOL/rejected with the
#      reason in rejected/FILE.why (another round's update, a stranger, a corrupted file);
#   2. if at least $N3_QUORUM updates are good, merges them (FedAvg) into the next global model,
#      replaces $N3_STATE/global.n3 atomically and moves the updates to $N3_SPOOL/done/ROUND;
#      otherwise leaves them for the next run.
# Configuration, from the environment or the file named by $N3_HUB_CONF (default /etc/n3/hub.conf):
#   N3_STATE   directory with global.n3, hub.key, fed.pub, fed.roster (default /var/lib/n3-hub)
#   N3_SPOOL   spool directory (default /var/spool/n3)
#   N3_QUORUM  updates needed to merge a round (default 2)
#   N3_MERGE_ARGS  more n3-merge options (default "--rule fedavg")
# Exit status: 0 merged, or waiting for more updates; 2 bad configuration; 1 the merge failed.
set -euo pipefail
conf=${N3_HUB_CONF:-/etc/n3/hub.conf}
# shellcheck disable=SC1090
[ -f "$conf" ] && . "$conf"
die() { echo "n3-hub-merge: error: $*" >&2; exit "${2:-2}"; }
STATE=${N3_STATE:-/var/lib/n3-hub}
SPOOL=${N3_SPOOL:-/var/spool/n3}
QUORUM=${N3_QUORUM:-2}
read -r -a merge_args <<< "${N3_MERGE_ARGS:---rule fedavg}"
[[ $QUORUM =~ ^[1-9][0-9]*$ ]] || die "the quorum N3_QUORUM must be a positive whole number, not '$QUORUM'"
for f in global.n3 hub.key fed.pub fed.roster; do
    [ -r "$STATE/$f" ] || die "cannot read $STATE/$f"
done
[ -d "$SPOOL/incoming" ] || die "no spool directory $SPOOL/incoming"
for t in n3-seal n3-encode n3-merge n3-inspect flock; do
    command -v "$t" >/dev/null || die "$t not found on PATH ($PATH)"
done
mkdir -p "$SPOOL/rejected" "$SPOOL/work"
exec 9> "$SPOOL/work/lock"
flock -n 9 || { echo "n3-hub-merge: another merge is still going" >&2; exit 0; }

round=$(n3-inspect --json "$STATE/global.n3" | sed -n 's/.*"round":"\([0-9]*\)".*/\1/p')
next=$(( ${round:-0} + 1 ))
rm -f "$SPOOL"/work/*.update
good=()
shopt -s nullglob
for f in "$SPOOL"/incoming/*.n3; do
    name=$(basename "$f" .n3)
    if n3-seal --open --key "$STATE/hub.key" --authority "$STATE/fed.pub" --roster "$STATE/fed.roster" \
            --round "$next" -q "$f" 2> "$SPOOL/work/$name.why" \
        | n3-encode -d -o "$SPOOL/work/$name.update" 2>> "$SPOOL/work/$name.why"; then
        good+=("$f")
        rm -f "$SPOOL/work/$name.why"
    else
        echo "n3-hub-merge: round $next: $f rejected: $(head -1 "$SPOOL/work/$name.why")" >&2
        mv "$f" "$SPOOL/rejected/" && mv "$SPOOL/work/$name.why" "$SPOOL/rejected/"
        rm -f "$SPOOL/work/$name.update"
    fi
done
if [ "${#good[@]}" -lt "$QUORUM" ]; then
    echo "n3-hub-merge: round $next: ${#good[@]} of $QUORUM updates so far; waiting"
    rm -f "$SPOOL"/work/*.update
    exit 0
fi
n3-merge "${merge_args[@]}" --base "$STATE/global.n3" "$SPOOL"/work/*.update -o "$STATE/global.next" \
    || die "round $next: the merge failed; updates left in $SPOOL/incoming" 1
mkdir -p "$SPOOL/done/$next"
mv "${good[@]}" "$SPOOL/done/$next/"
mv "$STATE/global.next" "$STATE/global.n3"
rm -f "$SPOOL"/work/*.update
echo "n3-hub-merge: round $next: merged ${#good[@]} updates into $STATE/global.n3"
