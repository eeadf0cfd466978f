#!/usr/bin/env bash
# examples/simulate.sh in a small setting: a seeded fraction of the members per round, each a
# process chain run through xargs -P, the hub's receive | open | unpack | merge; over ipc:// and
# loopback tcp; the same seed draws the same members; bad flags.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
sim() { N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/simulate.sh" "$@"; }

_case="simulate.sh: 12 members, a quarter sampled per round, 2 rounds, 2 jobs, ipc"
if sim --members 12 --fraction 0.25 --rounds 2 --jobs 2 --limit 300 --eval-limit 1000 "$T/a" > "$T/log" 2>&1
then _pass; else _fail "exit $?: $(tail -n 5 "$T/log")"; fi
assert_eq "$(wc -l < "$T/a/rounds.tsv")" 3 "rounds.tsv: a header and two rounds"
assert_eq "$(awk -F'\t' 'NR > 1 { print $4 "/" $5 }' "$T/a/rounds.tsv" | tr '\n' ' ')" "3/3 3/3 " \
    "3 of 12 members sampled and merged every round"
_case="every sampled member is a distinct member of the 12"
awk -F'\t' 'NR > 1 { n = split($2, m, " "); if (n != 3) bad = 1
    for (i = 1; i <= n; i++) { if (m[i] < 1 || m[i] > 12 || seen[NR, m[i]]++) bad = 1 } } END { exit bad }' \
    "$T/a/samples.tsv" && _pass || _fail "$(cat "$T/a/samples.tsv")"
_case="the hub's four processes have their peak RSS in rounds.tsv"
awk -F'\t' 'NR > 1 { for (i = 11; i <= 14; i++) if ($i !~ /^[0-9]+$/ || $i < 1000) bad = 1 } END { exit bad }' \
    "$T/a/rounds.tsv" && _pass || _fail "$(cat "$T/a/rounds.tsv")"
_case="the second round's model is better than chance"
awk -F'\t' 'NR == 3 { exit !($2 > 0.3) }' "$T/a/rounds.tsv" && _pass || _fail "$(cat "$T/a/rounds.tsv")"
expect 0 '' -- n3-inspect --check "$T/a/global.n3"

_case="the same seed draws the same members, over loopback tcp"
if sim --members 12 --fraction 0.25 --rounds 2 --jobs 2 --limit 100 --eval-limit 200 --transport tcp "$T/b" \
        > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -n 5 "$T/log")"; fi
assert_eq "$(cat "$T/b/samples.tsv")" "$(cat "$T/a/samples.tsv")" "samples.tsv is the seed's"
_case="another seed draws other members"
if sim --members 12 --fraction 0.1 --rounds 1 --jobs 2 --limit 100 --eval-limit 200 --seed 7 "$T/c" \
        > "$T/log" 2>&1; then _pass; else _fail "exit $?: $(tail -n 5 "$T/log")"; fi
assert_eq "$(awk -F'\t' 'NR == 2 { print $4 }' "$T/c/rounds.tsv")" 1 "round(0.1 x 12) = 1 member"

_case="a member that fails ends the round at once: exit 2, no hub or member left running"
port=$((20000 + RANDOM % 20000))
sim --members 6 --fraction 1 --rounds 1 --jobs 2 --limit 50 --partition bogus --timeout 280 \
    --transport tcp --port "$port" "$T/d" > "$T/log" 2>&1
rc=$?
if [ "$rc" = 2 ] && grep -q 'simulate.sh: error: round 1: a member failed' "$T/log"; then _pass
else _fail "exit $rc (124: it waited for the hub's --timeout): $(tail -n 3 "$T/log")"; fi
_case="nothing of that round still runs"
sleep 0.5
left=$(grep -l "127[.]0[.]0[.]1:$port" /proc/[0-9]*/cmdline 2>/dev/null || true) # the bracket keeps grep from finding itself
[ -z "$left" ] && _pass || _fail "still running: $(for f in $left; do tr '\0' ' ' < "$f"; echo; done)"

expect 2 'simulate.sh: error: --fraction must be more than 0' -- sim --fraction 0 "$T/x"
expect 2 'simulate.sh: error: --fraction must be a number in \(0, 1\]' -- sim --fraction 1.5 "$T/x"
expect 2 'simulate.sh: error: --quorum must be between 1 and the 3 members sampled' -- sim --members 12 --fraction 0.25 --quorum 4 "$T/x"
expect 2 'simulate.sh: error: --transport must be ipc or tcp' -- sim --transport udp "$T/x"
expect 2 'simulate.sh: error: --jobs must be at least 1' -- sim --jobs 0 "$T/x"
expect 2 'simulate.sh: error: unknown option --member' -- sim --member 3 "$T/x"
assert_no_file "$T/x"
finish
