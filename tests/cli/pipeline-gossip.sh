#!/usr/bin/env bash
# examples/gossip.sh in a small setting: 4 nodes on a ring, no hub; one node dies after round 1
# and its neighbours go on at the timeout with the neighbour they have.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
gossip() { N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/gossip.sh" "$@"; }
_case="gossip.sh, 4 nodes, 3 rounds, node 2 dies after round 1"
if gossip --nodes 4 --rounds 3 --limit 800 --eval-limit 1000 --dead 2 --timeout 40 "$T/g" > "$T/log" 2>&1
then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(wc -l < "$T/g/rounds.tsv")" 4 "rounds.tsv has a header and three rounds"
assert_match 'round 2: node1 could not reach node2' "$T/log"
assert_match "the live nodes' average model: test accuracy 0\.[0-9]+" "$T/log"
_case="the three live nodes leave their models; the dead one does not"
assert_file "$T/g/node-1.n3"; assert_file "$T/g/node-3.n3"; assert_file "$T/g/node-4.n3"
assert_no_file "$T/g/node-2.n3"
_case="the models grow together: the accuracy spread of round 3 is below 0.15"
awk -F'\t' 'NR == 4 { exit !($4 - $3 < 0.15) }' "$T/g/rounds.tsv" && _pass || _fail "$(cat "$T/g/rounds.tsv")"
expect 2 'gossip.sh: error: --nodes must be at least 3' -- gossip --nodes 2 "$T/x"
expect 2 'gossip.sh: error: --dead 9: there are only 4 nodes' -- gossip --nodes 4 --dead 9 "$T/x"
assert_no_file "$T/x"
finish
