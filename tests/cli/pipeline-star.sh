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

niid() { N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/niid-bench.sh" "$@"; }
_case="niid-bench.sh flower-c2 --rule scaffold: Flower's labels, control variates through the pipeline"
if niid flower-c2 1 --rule scaffold "$T/sc" --epochs 1 --limit 100 --eval-limit 500 --train-seed 2 \
        > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(awk -F'\t' 'NR == 2 { print $5 }' "$T/sc/rounds.tsv")" 10 "scaffold: all 10 parties merged"
assert_eq "$(wc -l < "$T/sc/classes.tsv")" 11 "classes.tsv: the final model's accuracy for each of 10 classes"
_case="niid-bench.sh iid --dp: DP-FedAvg at the hub, epsilon per round"
if niid iid 1 --dp 4.5,1 "$T/dp" --epochs 1 --limit 100 --eval-limit 500 > "$T/log" 2>&1; then _pass
else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_eq "$(awk -F'\t' 'NR == 1 { print $7 } NR == 2 { print $7 }' "$T/dp/rounds.tsv" | tr '\n' ' ')" \
    "dp_epsilon 0.890807 " "rounds.tsv has the accountant's epsilon after one round (z 4.5, q 1)"
_case="niid-table.sh runs a missing cell and assembles the table"
if N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/niid-table.sh" --rounds 1 --runs 1 --limit 50 \
        --only 'fednova-flower-c3-*' --results "$T/tab" > "$T/log" 2>&1; then _pass
else _fail "exit $?: $(tail -5 "$T/log")"; fi
assert_file "$T/tab/fednova-flower-c3-p42-t1.tsv"
assert_match '^\| n3 FedNova \| – \| – \| – \| – \| [0-9.]+ ± 0.00 \|$' "$T/tab/TABLE.md" "the cell is in the table"
expect 2 'niid-bench.sh: error: --rule must be fedavg, fedprox, scaffold or fednova' -- niid c2 1 --rule krum "$T/x"
expect 2 'niid-bench.sh: error: --dp takes Z,C' -- niid c2 1 --dp 4.5 "$T/x"
expect 2 'niid-bench.sh: error: --dp is DP-FedAvg' -- niid c2 1 --dp 4.5,1 --rule scaffold "$T/x"
expect 2 'star.sh: error: --train-seed must be a whole number' -- star --train-seed x "$T/x"
expect 2 'star.sh: error: --dp-noise and --clip-norm go together' -- star --dp-noise 1 "$T/x"
expect 2 'star.sh: error: --pack: unknown packing' -- star --pack gzip "$T/x"
expect 2 'star.sh: error: unknown option --memebrs' -- star --memebrs 3 "$T/x"
expect 2 'star.sh: error: --members must be a whole number' -- star --members three "$T/x"
expect 2 'niid-bench.sh: error: unknown partition' -- env N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/niid-bench.sh" dir9
expect 2 'star.sh: error: no Fashion-MNIST in' -- env DATA="$T/none" N3_BIN="$N3_TOOLS" bash "$N3_SRC/examples/star.sh" "$T/x"
assert_no_file "$T/x"
finish
