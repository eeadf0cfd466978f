#!/usr/bin/env bash
# examples/star.sh and examples/niid-bench.sh in small settings: a member that vanishes ends the
# round at the timeout with the survivors; int8 + top-k packing; the NIID-Bench wrapper; bad flags.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
star() { N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/star.sh" "$@"; }

_case="star.sh, 4 members, one dead, quorum 3, int8+topk:0.1"
if star --members 4 --rounds 2 --limit 600 --eval-limit 1000 --dead 1 --quorum 3 --timeout 20 \
        --pack int8+topk:0.1 "$T/star" > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(wc -l < "$T/star/rounds.tsv")" 3 "rounds.tsv has a header and two rounds"
_case="the dead member is missing from every merge, the others are in"
assert_eq "$(awk -F'\t' 'NR > 1 { print $5 }' "$T/star/rounds.tsv" | sort -u)" 3 "3 updates merged per round"
_case="top-k + int8 updates are small on the wire (3 sealed updates of a 44k-parameter CNN)"
awk -F'\t' 'NR > 1 && ($4 <= 0 || $4 > 3 * 20000) { bad = 1 } END { exit bad }' "$T/star/rounds.tsv" \
    && _pass || _fail "$(cat "$T/star/rounds.tsv")"
expect 0 '' -- n3-inspect --check "$T/star/global.n3"

expect 2 'star.sh: error: --dead 1 leaves fewer than --quorum 3 members' -- star --members 3 --dead 1 --quorum 3 "$T/q"
assert_no_file "$T/q"

_case="niid-bench.sh c2 in a small setting (10 parties, 1 round, 1 local epoch)"
if N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/niid-bench.sh" c2 1 "$T/niid" --epochs 1 --limit 200 \
        --eval-limit 1000 > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(awk -F'\t' 'NR == 2 { print $5 }' "$T/niid/rounds.tsv")" 10 "all 10 parties merged"

expect 2 'star.sh: error: --pack: unknown packing' -- star --pack gzip "$T/x"
expect 2 'star.sh: error: unknown option --memebrs' -- star --memebrs 3 "$T/x"
expect 2 'star.sh: error: --members must be a whole number' -- star --members three "$T/x"
expect 2 'niid-bench.sh: error: unknown partition' -- env N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/niid-bench.sh" dir9
expect 2 'star.sh: error: no Fashion-MNIST in' -- env DATA="$T/none" N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/star.sh" "$T/x"
assert_no_file "$T/x"
finish
