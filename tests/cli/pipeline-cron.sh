#!/usr/bin/env bash
# examples/cron: members woken by cron send to a hub that spools; the hub's merge job makes the
# next global model; a member woken twice sends again and the hub keeps one copy; a replayed or foreign update is rejected
# with its reason and the round goes on; a missing hub ends a member's run at its timeout (3).
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
C="$N3_SRC/examples/cron"
_case="cron demo, 2 rounds"
if CRON_DIR="$T/c" LIMIT=500 N3_BIN="$N3_TOOLS" timeout 400 bash "$C/demo.sh" 2 > "$T/log" 2>&1
then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(grep -c 'update sent' "$T/log")" 6 "3 members x 2 rounds sent"
assert_eq "$(grep -c 'update already sent; sent it again' "$T/log")" 2 "the second wake-up of a round sent the same update again"
assert_match 'round 1: .* rejected: n3-hub-merge: error: node1 already sent round 1.s update' "$T/log"
assert_match 'round 2: merged 3 updates' "$T/log"
assert_match 'after round 2: test accuracy 0\.[0-9]+' "$T/log"
assert_eq "$(ls "$T/c/hub/spool/done/1" | wc -l)" 3 "round 1's updates moved to done/1"
expect 0 '' -- n3-inspect --check "$T/c/hub/state/global.n3"
assert_match '"round":"2"' <(n3-inspect --json "$T/c/hub/state/global.n3") "the global model is round 2's"

# A merge killed after it replaced the model, before it moved the round's updates to done/:
# the next run finishes the move and merges nothing again.
_case="a merge killed between its commit steps is finished by the next run"
cp "$T/c/hub/state/global.n3" "$T/global-2.n3"
ls "$T/c/hub/spool/done/2" > "$T/names"
{ echo 2; cat "$T/names"; } > "$T/c/hub/spool/work/commit"
mv "$T/c/hub/spool/done/2"/*.n3 "$T/c/hub/spool/incoming/" && rmdir "$T/c/hub/spool/done/2"
if PATH="$N3_TOOLS:$PATH" N3_HUB_CONF="$T/c/hub/hub.conf" bash "$C/hub-merge.sh" > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -3 "$T/log")"; fi
assert_match 'round 2: finished moving its 3 updates to done/2' "$T/log"
assert_eq "$(ls "$T/c/hub/spool/done/2")" "$(cat "$T/names")" "done/2 holds round 2's updates again"
assert_eq "$(ls "$T/c/hub/spool/incoming" | wc -l)" 0 "nothing left to merge twice"
cmp -s "$T/global-2.n3" "$T/c/hub/state/global.n3" && _pass || _fail "the global model changed"
assert_no_file "$T/c/hub/spool/work/commit"
# Killed after writing its list, before replacing the model: the next run starts the round over.
_case="a merge killed before it replaced the model starts the round over"
{ echo 3; cat "$T/names"; } > "$T/c/hub/spool/work/commit"
cp "$T/global-2.n3" "$T/c/hub/state/global.next"
if PATH="$N3_TOOLS:$PATH" N3_HUB_CONF="$T/c/hub/hub.conf" bash "$C/hub-merge.sh" > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -3 "$T/log")"; fi
assert_match 'round 3: 0 of 2 updates so far; waiting' "$T/log"
assert_no_file "$T/c/hub/spool/work/commit"
assert_no_file "$T/c/hub/state/global.next"
assert_eq "$(ls "$T/c/hub/spool/done/2" | wc -l)" 3 "round 2's updates stay in done/2"

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
