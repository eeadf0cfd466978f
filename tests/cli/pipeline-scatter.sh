#!/usr/bin/env bash
# examples/scatter.sh: updates cut 4+2 and scattered over 3 relays with one relay down still
# all arrive, bit-exact, and no relay holds a whole update.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
_case="scatter.sh with 2 nodes and a dead relay"
if N3_BIN="$N3_TOOLS" LIMIT=200 timeout 120 bash "$N3_SRC/examples/scatter.sh" 2 > "$T/log" 2>&1; then
    _pass
else
    _fail "exit $?: $(tail -3 "$T/log")"
fi
assert_match '^scatter: 2 of 2 updates arrived whole at the hub$' "$T/log"
assert_match '^scatter: every update arrived bit-exact$' "$T/log"
assert_match '^scatter: relay 1 forwarded [1-9][0-9]* shards' "$T/log"
finish
