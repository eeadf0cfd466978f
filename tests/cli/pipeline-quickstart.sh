#!/usr/bin/env bash
# examples/quickstart.sh (what `make demo` runs) in a small setting: 3 members, 2 rounds over
# ZeroMQ on loopback, every update trained, packed, sealed, sent, opened, unpacked and merged.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
_case="quickstart.sh, 3 members, 2 rounds"
if MEMBERS=3 ROUNDS=2 LIMIT=1500 N3_BIN="$N3_TOOLS" timeout 600 bash "$N3_SRC/examples/quickstart.sh" "$T/demo" \
    > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(wc -l < "$T/demo/rounds.tsv")" 3 "rounds.tsv has a header and two rounds"
_case="the federation learns: round 2 is well above chance (0.1)"
acc=$(awk -F'\t' 'NR == 3 { print $2 }' "$T/demo/rounds.tsv")
awk -v a="$acc" 'BEGIN { exit !(a > 0.25) }' && _pass || _fail "accuracy $acc"
_case="bytes on the wire are counted"
awk -F'\t' 'NR > 1 && $4 <= 0 { bad = 1 } END { exit bad }' "$T/demo/rounds.tsv" && _pass || _fail "$(cat "$T/demo/rounds.tsv")"
expect 0 '' -- n3-inspect --check "$T/demo/global.n3"
if command -v gnuplot >/dev/null; then assert_file "$T/demo/accuracy.png"; fi
finish
