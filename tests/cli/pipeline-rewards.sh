#!/usr/bin/env bash
# examples/rewards.sh in a small setting: the honest members split the reward pool, the two
# free riders (a zero update, a random one) get under 2% each, the ledger verifies; bad flags.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || skip "no Fashion-MNIST (dataset-fashion-mnist)"
rewards() { N3_BIN="$N3_TOOLS" PYTHON="$N3_PYTHON" timeout 300 bash "$N3_SRC/examples/rewards.sh" "$@"; }

_case="rewards.sh, 6 members (2 free riders, 1 scaled), 2 rounds"
if rewards --members 6 --rounds 2 --limit 100 --eval-limit 500 --timeout 60 --auc "$T/r" > "$T/log" 2>&1; then
    _pass
else
    _fail "exit $?: $(tail -5 "$T/log")"
fi
assert_eq "$(awk -F'\t' 'NR > 1' "$T/r/rewards.tsv" | wc -l)" 6 "one row per member"
_case="the free riders get under 2% of the pool each"
awk -F'\t' '$2 ~ /^free-rider/ && $5 >= 0.02 { bad = 1 } END { exit bad }' "$T/r/rewards.tsv" \
    && _pass || _fail "$(cat "$T/r/rewards.tsv")"
_case="the honest members split the rest, each with a share"
awk -F'\t' '$2 == "honest" { h += $5; if ($5 <= 0.05) bad = 1 } END { exit bad || h < 0.9 }' "$T/r/rewards.tsv" \
    && _pass || _fail "$(cat "$T/r/rewards.tsv")"
assert_eq "$(awk -F'\t' 'NR > 1 { s += $5 } END { printf "%.3f", s }' "$T/r/rewards.tsv")" 1.000 "the shares sum to 1"
assert_match 'member 1 proved its round-1 receipt' "$T/log" "a member claimed a receipt"
assert_eq "$(grep -c '^[0-9]' "$T/r/rewards.ledger")" 12 "12 receipts: every update of both rounds"
expect 0 'chain intact' -- n3-keys ledger "$T/r/rewards.ledger" --merger "$T/r/hub.pub" --authority "$T/r/fed.pub"
assert_match '^score	' "$T/r/auc.tsv" "--auc writes auc.tsv"

expect 2 'rewards.sh: error: --free-riders and --scaled leave no honest member' -- rewards --members 3 --free-riders 2 --scaled 1 "$T/x"
expect 2 'rewards.sh: error: unknown option --memebrs' -- rewards --memebrs 3 "$T/x"
expect 2 'rewards.sh: error: --scale must be a positive number' -- rewards --scale ten "$T/x"
assert_no_file "$T/x"
finish
