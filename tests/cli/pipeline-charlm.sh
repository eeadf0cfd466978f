#!/usr/bin/env bash
# examples/charlm.sh in a small setting: 2 nodes with different books of the Bible, 2 rounds;
# bits per character fall, the comparison with one node alone is printed, a sample is written.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
command -v bible >/dev/null || skip "bible-kjv not installed"
bible -f gen1:1-deu34:12 > "$T/kjv.txt"   # the five books of Moses: both nodes get books
_case="charlm.sh, 2 nodes, 2 rounds of 30 steps"
if KJV="$T/kjv.txt" N3_BIN="$N3_TOOLS" timeout 400 bash "$N3_SRC/examples/charlm.sh" --nodes 2 --rounds 2 \
        --steps 30 --eval-limit 100 --tokens 40 "$T/lm" > "$T/log" 2>&1
then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_match 'node 1 starts with Ge, node 2 with Exo' "$T/log"
_case="bits per character fall from round 1 to round 2 and are below 8 (uniform over bytes)"
awk -F'\t' 'NR == 2 { a = $2 } NR == 3 { b = $2 } END { exit !(b < a && b < 8) }' "$T/lm/rounds.tsv" \
    && _pass || _fail "$(cat "$T/lm/rounds.tsv")"
assert_match '^alone	[0-9.]+' "$T/lm/rounds.tsv"
assert_match 'federated [0-9.]+, node 1 alone [0-9.]+' "$T/log"
_case="the sample starts with the prompt and has 40 more characters"
s=$(cat "$T/lm/sample.txt")
[[ $s == "And God said"* ]] && [ "${#s}" -ge 52 ] && _pass || _fail "sample: $s"
expect 0 '' -- n3-inspect --check "$T/lm/global.n3" "$T/lm/alone.n3"
expect 2 'charlm.sh: error: no text in KJV=.*no such file' -- env KJV="$T/none.txt" N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/charlm.sh" "$T/x"
expect 2 'charlm.sh: error: --nodes must be at least 2' -- env N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/charlm.sh" --nodes 1 "$T/x"
finish
