#!/usr/bin/env bash
# examples/chaos.sh in a small setting (3 rounds, 3 members, a high kill rate): the cron/spool
# federation survives SIGKILLs of members, the hub's receiver and its merge; no record lost or
# merged twice; every round equals the merge of its spooled records; the accuracy of the
# undisturbed run. Then a merge killed between its commit steps, and bad flags.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || skip "no Fashion-MNIST (dataset-fashion-mnist)"
chaos() { N3_BIN="$N3_TOOLS" timeout 900 bash "$N3_SRC/examples/chaos.sh" "$@"; }

_case="chaos.sh, 3 rounds, 3 members, kill rate 60%"
if chaos --rounds 3 --members 3 --limit 100 --eval-limit 500 --kill-rate 60 --chaos-seed 7 "$T/c" > "$T/log" 2>&1; then
    _pass
else
    _fail "exit $?: $(tail -5 "$T/log")"
fi
cat "$T/log"
f() { awk -F'\t' -v c="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == c) k = i } NR == 2 { print $k }' "$T/c/summary.tsv"; }
_case="faults were injected ($(f faults))"; [ "$(f faults)" -ge 3 ] && _pass || _fail "$(cat "$T/c/faults.tsv")"
assert_eq "$(f records_lost)" 0 "no record lost"
assert_eq "$(f merged_twice)" 0 "no record merged twice"
assert_eq "$(f remerge_mismatch)" 0 "every round equals the merge of its spooled records"
assert_match '^chaos.sh: 3 rounds, [0-9]+ faults injected, 0 records lost' "$T/log" "the summary line"

expect 2 'chaos.sh: error: --kill-rate is a percentage' -- chaos --kill-rate 101 "$T/x"
expect 2 'chaos.sh: error: unknown option --rouns' -- chaos --rouns 3 "$T/x"
expect 2 'chaos.sh: error: --soak needs more than 10 rounds' -- chaos --soak --rounds 5 "$T/x"
finish
