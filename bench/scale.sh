#!/usr/bin/env bash
# bench/scale.sh — what a round costs as the federation grows to 1,000 members on one machine:
# one round of examples/simulate.sh (every member sampled, Fashion-MNIST, the MLP of
# examples/models/mlp.yaml, 1 local epoch on LIMIT samples per member so that training does not
# hide the rest) for each N in SIZES, then the memory of one n3-train of the MLP and the CNN and
# the start-up time of every tool (which a round pays once per member and stage).
#
#   N3_BIN=build/tools bash bench/scale.sh       (SIZES="10 100 1000" LIMIT=60 JOBS=cores FRACTION=1)
#
# Per N: seconds of the round; seconds of enrolment per member; training seconds (all
# members' n3-train, wall clock); the non-training seconds per sampled member (the member's encode |
# seal | send, wall clock, plus its share of the hub's CPU time for receive, open, unpack and
# merge); the hub's peak RSS (the largest of its four processes, from GNU time); bytes on the
# wire. Goals (issue 14), printed as ratios: the hub's peak RSS within 2x from the smallest N to
# the largest, the non-training seconds per member within 2x, and at the largest N the round's
# non-training seconds (members' and hub's) under its training seconds. Heavy at N = 1,000
# (about 1,000 n3-train start-ups): run it once, on an otherwise quiet machine. FRACTION < 1
# samples that share of every N (the enrolment, roster and hub still see all N members).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
: "${N3_BIN:=$here/build/tools}"
export N3_BIN PATH="$N3_BIN:$PATH"
SIZES=${SIZES:-10 100 1000} LIMIT=${LIMIT:-60} JOBS=${JOBS:-$(nproc)} FRACTION=${FRACTION:-1}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
[ -x /usr/bin/time ] || { echo "scale.sh: error: GNU time not found: apt-get install time" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/n3-scale.XXXXXX")
trap 'rm -rf "$W"' EXIT

printf 'one round per N, fraction %s sampled: MLP, 1 epoch on %d samples per member, %d jobs, %d cores\n' \
    "$FRACTION" "$LIMIT" "$JOBS" "$(nproc)"
printf '%-6s %-9s %-10s %-9s %-10s %-12s %-11s %-10s %-8s %-9s %-9s %s\n' N accuracy round_s enrol_s/m \
    train_s other_s/m hub_cpu_s/m hub_rss_MB recv_MB open_MB merge_MB bytes_on_wire
for n in $SIZES; do
    bash "$here/examples/simulate.sh" --members "$n" --rounds 1 --fraction "$FRACTION" --jobs "$JOBS" \
        --limit "$LIMIT" --eval-limit 2000 --timeout 3600 "$W/n$n" > "$W/n$n.log" 2>&1 ||
        { echo "scale.sh: error: simulate.sh --members $n failed:" >&2; tail -n 5 "$W/n$n.log" >&2; exit 1; }
    enrol=$(sed -n 's/.* members enrolled in \([0-9.]*\) s/\1/p' "$W/n$n.log")
    # round accuracy loss sampled merged bytes seconds train member hub_cpu recv open decode merge
    awk -F'\t' -v n="$n" -v enrol="$enrol" 'NR == 2 {
        hub = $11; for (i = 12; i <= 14; i++) if ($i > hub) hub = $i
        printf "%-6d %-9.4f %-10.1f %-9.3f %-10.1f %-12.3f %-11.4f %-10.1f %-8.1f %-9.1f %-9.1f %d\n",
            n, $2, $7, enrol / n, $8, $9 / $4, $10 / $4, hub / 1024, $11 / 1024, $12 / 1024, $14 / 1024, $6
        printf "%d %s %s %s %s %s\n", n, hub, $9 / $4 + $10 / $4, $9 + $10, $8, $5 > "/dev/stderr"
    }' "$W/n$n/rounds.tsv" 2>> "$W/figures"
done
awk 'NR == 1 { n0 = $1; rss0 = $2; per0 = $3 } { n = $1; rss = $2; per = $3; other = $4; train = $5; merged = $6 }
END {
    printf "goals: hub peak RSS at N=%d / N=%d = %.2fx (goal <= 2)  %s\n", n, n0, rss / rss0, rss / rss0 <= 2 ? "met" : "NOT MET"
    printf "       non-training s per member at N=%d / N=%d = %.2fx (goal <= 2)  %s\n", n, n0, per / per0, per / per0 <= 2 ? "met" : "NOT MET"
    printf "       non-training s of the round at N=%d: %.1f s vs training %.1f s = %.2fx (goal < 1)  %s\n", n, other, train, other / train, other < train ? "met" : "NOT MET"
    printf "       updates merged at N=%d: %d\n", n, merged
}' "$W/figures"

# Memory of one member's training, and every tool's start-up (a round of N members pays N of
# each member tool and one of each hub tool).
n3-train --model "$here/examples/models/mlp.yaml" --init-only -o "$W/mlp.n3"
n3-train --model "$here/examples/models/cnn.yaml" --init-only -o "$W/cnn.n3"
for m in mlp cnn; do
    /usr/bin/time -f %M -o "$W/$m.rss" n3-train --init "$W/$m.n3" --data "$DATA" --partition iid \
        --clients 1000 --client 0 --limit "$LIMIT" --threads 1 -q -o "$W/$m.update"
done
printf 'peak RSS of one n3-train (%d samples, 1 thread): MLP %.0f MB, CNN %.0f MB\n' "$LIMIT" \
    "$(($(cat "$W/mlp.rss") / 1024))" "$(($(cat "$W/cnn.rss") / 1024))"
printf 'start-up, mean of 20 runs of TOOL --version:'
for t in n3-train n3-eval n3-encode n3-seal n3-send n3-merge n3-keys n3-inspect n3-secagg; do
    command -v "$t" >/dev/null || continue
    s=${EPOCHREALTIME/,/.}
    for _ in $(seq 1 20); do "$t" --version > /dev/null; done
    printf ' %s %.1f ms' "${t#n3-}" "$(echo "(${EPOCHREALTIME/,/.} - $s) * 1000 / 20" | bc -l)"
done
echo
