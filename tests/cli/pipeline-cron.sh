#!/usr/bin/env bash
# examples/cron: members woken by cron send to a hub that spools; the hub's merge job makes the
# next global model; a member woken twice does nothing; a replayed or foreign update is rejected
# with its reason and the round goes on; a missing hub ends a member's run at its timeout (3).
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
C="$N3_SRC/examples/cron"
_case="cron demo, 2 rounds"
if CRON_DIR="$T/c" LIMIT=500 N3_BIN="$N3_TOOLS" timeout 400 bash "$C/demo.sh" 2 > "$T/log" 2>&1
then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(grep -c 'update sent' "$T/log")" 6 "3 members x 2 rounds sent"
assert_eq "$(grep -c 'update already sent; nothing to do' "$T/log")" 2 "the second wake-up of a round did nothing"
assert_match 'round 2: merged 3 updates' "$T/log"
assert_match 'after round 2: test accuracy 0\.[0-9]+' "$T/log"
assert_eq "$(ls "$T/c/hub/spool/done/1" | wc -l)" 3 "round 1's updates moved to done/1"
expect 0 '' -- n3-inspect --check "$T/c/hub/state/global.n3"
assert_match '"round":"2"' <(n3-inspect --json "$T/c/hub/state/global.n3") "the global model is round 2's"

_case="a replayed round-2 update is rejected in round 3, with the reason, and nothing is merged"
cp "$T/c/node1/state/sealed.n3" "$T/c/hub/spool/incoming/0000-replay.n3"
head -c 5000 "$T/c/node2/state/sealed.n3" > "$T/c/hub/spool/incoming/0001-cut.n3"
cp "$T/c/hub/state/global.n3" "$T/global-before.n3"
PATH="$N3_TOOLS:$PATH" N3_HUB_CONF="$T/c/hub/hub.conf" bash "$C/hub-merge.sh" > "$T/log" 2>&1
assert_eq "$?" 0 "the merge job exits 0 while it waits"
assert_match 'round 3: .*0000-replay.n3 rejected: n3-seal: error: .*round' "$T/log"
assert_match 'round 3: .*0001-cut.n3 rejected: n3-seal: error: .*(truncated|ends)' "$T/log"
assert_match 'round 3: 0 of 2 updates so far; waiting' "$T/log"
assert_file "$T/c/hub/spool/rejected/0000-replay.n3"; assert_file "$T/c/hub/spool/rejected/0000-replay.why"
cmp -s "$T/global-before.n3" "$T/c/hub/state/global.n3" && _pass || _fail "the global model changed"

_case="no hub: a member's run ends at its timeout with exit 3 and says why"
sed -e 's/^N3_TIMEOUT=.*/N3_TIMEOUT=3/' -e 's#^N3_HUB_MODEL=.*#N3_HUB_MODEL=tcp://127.0.0.1:9#' \
    "$T/c/node1/node.conf" > "$T/nohub.conf"
expect 3 'n3-node: error: no global model from tcp://127.0.0.1:9' -- env PATH="$N3_TOOLS:$PATH" N3_NODE_CONF="$T/nohub.conf" bash "$C/node.sh"
grep -v '^N3_KEY=' "$T/nohub.conf" > "$T/nokey.conf"
expect 2 'n3-node: error: the setting N3_KEY is missing' -- env PATH="$N3_TOOLS:$PATH" N3_NODE_CONF="$T/nokey.conf" bash "$C/node.sh"
sed 's/^N3_QUORUM=.*/N3_QUORUM=x/' "$T/c/hub/hub.conf" > "$T/badq.conf"
expect 2 'n3-hub-merge: error: the quorum N3_QUORUM must be a positive whole number' -- env PATH="$N3_TOOLS:$PATH" N3_HUB_CONF="$T/badq.conf" bash "$C/hub-merge.sh"
finish
