#!/usr/bin/env bash
# examples/byzantine.sh in a tiny setting (1 round, 4 members, 1 attacker): a table row per
# rule with an accuracy clean and under each attack; bad flags refused before any training.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || skip "no Fashion-MNIST (dataset-fashion-mnist)"
byz() { N3_BIN="$N3_TOOLS" PYTHON="$N3_PYTHON" timeout 600 bash "$N3_SRC/examples/byzantine.sh" "$@"; }

_case="byzantine.sh, 4 members, 1 attacker, 1 round"
if byz --members 4 --attackers 1 --rounds 1 --limit 100 --eval-limit 300 --rules "fedavg median" \
    --attacks "flip scale" "$T/b" > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
cat "$T/log"
assert_eq "$(head -1 "$T/b/table.tsv")" "$(printf 'rule\tclean\tflip\tscale\tholds')" "the table's columns"
assert_eq "$(awk -F'\t' 'NR > 1 { print $1 }' "$T/b/table.tsv" | tr '\n' ' ')" "fedavg median " "one row per rule"
_case="accuracies between 0 and 1"
awk -F'\t' 'NR > 1 { for (i = 2; i <= 4; i++) if ($i !~ /^0\.[0-9]+$/) bad = 1 } END { exit bad }' "$T/b/table.tsv" \
    && _pass || _fail "$(cat "$T/b/table.tsv")"
assert_eq "$(awk 'NR > 1' "$T/b/rounds.tsv" | wc -l)" 6 "rounds.tsv: 2 rules x 3 runs x 1 round"
model() { awk -F'\t' -v r="$1" -v a="$2" '$1 == r && $2 == a { print $5 }' "$T/b/rounds.tsv"; }
_case="the attacks change fedavg's model"
[ "$(model fedavg clean)" != "$(model fedavg flip)" ] && [ "$(model fedavg clean)" != "$(model fedavg scale)" ] \
    && [ "$(model fedavg flip)" != "$(model fedavg scale)" ] && _pass || _fail "$(cat "$T/b/rounds.tsv")"

expect 2 'byzantine.sh: error: --rules: unknown rule .medain.' -- byz --rules "fedavg medain" "$T/x"
expect 2 'byzantine.sh: error: --attacks: unknown attack .negate.' -- byz --attacks negate "$T/x"
expect 2 'byzantine.sh: error: --attackers 4 leaves no honest member of 4' -- byz --members 4 --attackers 4 "$T/x"
finish
