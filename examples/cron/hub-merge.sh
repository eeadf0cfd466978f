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
#      A second update from the same sender for the round (a member that sent again because it
#      was killed, or woken again, before the round was merged) is rejected the same way, so
#      that each member counts once;
#   2. if at least $N3_QUORUM updates are good, merges them (FedAvg) into the next global model,
#      replaces $N3_STATE/global.n3 atomically and moves the updates to $N3_SPOOL/done/ROUND;
#      otherwise leaves them for the next run.
# A run killed at any point (SIGKILL, power loss after the fsyncs) loses and repeats nothing:
# the names of the updates being merged are written to $N3_SPOOL/work/commit (atomically)
# before the new model replaces the old one, and the next run finishes moving them to done/
# when the model was replaced, or starts the round over when it was not (examples/chaos.sh).
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

round_of() { n3-inspect --json "$1" | sed -n 's/.*"round":"\([0-9]*\)".*/\1/p'; }
round=$(round_of "$STATE/global.n3")
round=${round:-0}
shopt -s nullglob
# An earlier run was killed after it merged: finish its work, or start the round over.
if [ -f "$SPOOL/work/commit" ]; then
    { read -r committed; mapfile -t names; } < "$SPOOL/work/commit"
    if [ "$committed" = "$round" ]; then
        mkdir -p "$SPOOL/done/$round"
        for n in "${names[@]}"; do
            [ -e "$SPOOL/incoming/$n" ] && mv "$SPOOL/incoming/$n" "$SPOOL/done/$round/"
        done
        echo "n3-hub-merge: round $round: finished moving its ${#names[@]} updates to done/$round"
    fi
    rm -f "$SPOOL/work/commit" "$STATE/global.next"
fi
next=$((round + 1))
rm -f "$SPOOL"/work/*.update "$SPOOL"/work/*.sender
good=()
declare -A sent_by=()
for f in "$SPOOL"/incoming/*.n3; do
    name=$(basename "$f" .n3)
    why="$SPOOL/work/$name.why"
    if n3-seal --open --key "$STATE/hub.key" --authority "$STATE/fed.pub" --roster "$STATE/fed.roster" \
            --round "$next" --sender "$SPOOL/work/$name.sender" -q "$f" 2> "$why" \
        | n3-encode -d -o "$SPOOL/work/$name.update" 2>> "$why"; then
        sender=$(cut -d' ' -f1 "$SPOOL/work/$name.sender")
        if [ -z "${sent_by[$sender]:-}" ]; then
            sent_by[$sender]=$f
            good+=("$f")
            rm -f "$why"
            continue
        fi
        echo "n3-hub-merge: error: $sender already sent round $next's update in $(basename "${sent_by[$sender]}")" > "$why"
    fi
    echo "n3-hub-merge: round $next: $f rejected: $(head -1 "$why")" >&2
    mv "$f" "$SPOOL/rejected/" && mv "$why" "$SPOOL/rejected/"
    rm -f "$SPOOL/work/$name.update"
done
if [ "${#good[@]}" -lt "$QUORUM" ]; then
    echo "n3-hub-merge: round $next: ${#good[@]} of $QUORUM updates so far; waiting"
    rm -f "$SPOOL"/work/*.update
    exit 0
fi
updates=()
for f in "${good[@]}"; do updates+=("$SPOOL/work/$(basename "$f" .n3).update"); done
n3-merge "${merge_args[@]}" --base "$STATE/global.n3" "${updates[@]}" -o "$STATE/global.next" \
    || die "round $next: the merge failed; updates left in $SPOOL/incoming" 1
# The commit: first the list of what was merged, then the model (each step atomic).
{ echo "$next"; for f in "${good[@]}"; do basename "$f"; done; } > "$SPOOL/work/commit.tmp"
sync "$SPOOL/work/commit.tmp"
mv "$SPOOL/work/commit.tmp" "$SPOOL/work/commit"
mv "$STATE/global.next" "$STATE/global.n3"
mkdir -p "$SPOOL/done/$next"
mv "${good[@]}" "$SPOOL/done/$next/"
rm -f "$SPOOL/work/commit" "$SPOOL"/work/*.update "$SPOOL"/work/*.sender
echo "n3-hub-merge: round $next: merged ${#good[@]} updates into $STATE/global.n3"
