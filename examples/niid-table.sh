#!/usr/bin/env bash
# examples/niid-table.sh — the whole NIID-Bench Fashion-MNIST table, resumable: runs every cell
# that has no result yet with examples/niid-bench.sh, then assembles the table from the results
# that exist, next to Flower's published figures.
#
#   examples/niid-table.sh [options]
#
# Cells (each RUNS times, training seeds 1..RUNS, one after the other):
#   fedavg, fedprox, scaffold, fednova  x  iid, dir0.5, flower-c1, flower-c2, flower-c3
#        (#C=k with Flower's seed-42 label assignment; iid and dir0.5 drawn by n3 from seed 42)
#   fedavg  x  c1, c2, c3 on n3's own partition seeds 0, 1, 2 (training seed 1): how much the
#        label draw alone moves the result
#   fedavg with DP-FedAvg on iid (--dp Z,C, default 4.5,1: epsilon 8.0 at delta 1e-5 after 50
#        rounds)
# Each run's per-round table goes to RESULTS/RULE-PARTITION-pP-tT.tsv (written when the run has
# finished, so an interrupted run is redone next time) and the final model's per-class accuracy
# to the same name with .classes.tsv. The table (best round of ROUNDS and last round, mean +- std
# over the runs that exist, population std as numpy's default; n=k when fewer than RUNS) is
# written to RESULTS/TABLE.md and printed; with --docs it also replaces the text between the
# markers <!-- niid-table --> and <!-- /niid-table --> in README.md and examples/RESULTS.md.
#
# Options (defaults in brackets):
#   --results DIR   where results live [examples/results/niid50]
#   --rounds R      rounds per run [50]        --runs N    training seeds per cell [3]
#   --only PATTERN  run only the cells whose name (RULE-PARTITION-pP-tT) matches the shell
#                   pattern, e.g. 'fedavg-flower-c2-*' [every cell]
#   --dp Z,C        the DP row's noise multiplier and clip norm [4.5,1]
#   --limit N       samples per member, for a quick check (results then say nothing) [0: all]
#   --assemble      run nothing, only assemble the table
#   --docs          also put the table into README.md and examples/RESULTS.md
# Every run takes about 40 minutes on two cores; the whole table is about 70 runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
NAME=niid-table.sh
. "$here/common.sh"
RESULTS=$here/results/niid50 ROUNDS=50 RUNS=3 ONLY='*' DP=4.5,1 LIMIT=0 ASSEMBLE=0 DOCS=0
while [ $# -gt 0 ]; do
    case $1 in
        --results) need "$@"; RESULTS=$2; shift 2 ;;
        --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
        --runs) need "$@"; RUNS=$2; shift 2 ;;
        --only) need "$@"; ONLY=$2; shift 2 ;;
        --dp) need "$@"; DP=$2; shift 2 ;;
        --limit) need "$@"; LIMIT=$2; shift 2 ;;
        --assemble) ASSEMBLE=1; shift ;;
        --docs) DOCS=1; shift ;;
        -h|--help) usage ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
isnum --rounds "$ROUNDS"; isnum --runs "$RUNS"; isnum --limit "$LIMIT"
[[ $DP =~ ^[0-9.]+,[0-9.]+$ ]] || die "--dp takes Z,C, not '$DP'"
require python3
mkdir -p "$RESULTS"

# cell NAME RULE PARTITION PSEED TSEED [niid-bench options...]
cell() {
    local name=$1 rule=$2 part=$3 pseed=$4 tseed=$5; shift 5
    # shellcheck disable=SC2254
    case $name in $ONLY) ;; *) return 0 ;; esac
    local tsv="$RESULTS/$name.tsv"
    if [ -f "$tsv" ] && [ "$(($(wc -l < "$tsv") - 1))" -ge "$ROUNDS" ]; then return 0; fi
    local out; out=$(mktemp -d "${TMPDIR:-/tmp}/n3-niid-table.XXXXXX")
    local limit=(); [ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
    echo "$NAME: $name ($(date -u +%H:%M))" >&2
    if "$here/niid-bench.sh" "$part" "$ROUNDS" --rule "$rule" --seed "$pseed" --train-seed "$tseed" \
        "${limit[@]}" "$@" "$out/run" > "$out/log" 2>&1; then
        cp "$out/run/classes.tsv" "$RESULTS/$name.classes.tsv.tmp"
        mv "$RESULTS/$name.classes.tsv.tmp" "$RESULTS/$name.classes.tsv"
        cp "$out/run/rounds.tsv" "$tsv.tmp" && mv "$tsv.tmp" "$tsv"
    else
        echo "$NAME: $name failed; its log:" >&2; tail -5 "$out/log" >&2
    fi
    rm -rf "$out"
}

if [ "$ASSEMBLE" -eq 0 ]; then
    for t in $(seq 1 "$RUNS"); do
        for part in iid dir0.5 flower-c1 flower-c2 flower-c3; do
            for rule in fedavg fedprox scaffold fednova; do
                cell "$rule-$part-p42-t$t" "$rule" "$part" 42 "$t"
            done
        done
        cell "fedavg-dp-iid-p42-t$t" fedavg iid 42 "$t" --dp "$DP"
    done
    for p in 0 1 2; do
        for part in c1 c2 c3; do cell "fedavg-$part-p$p-t1" fedavg "$part" "$p" 1; done
    done
fi

python3 - "$RESULTS" "$ROUNDS" "$RUNS" "$DP" > "$RESULTS/TABLE.md" <<'PY'
import glob, math, os, sys
res, rounds, runs, dp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
flower = {  # baselines/niid_bench README, Fashion-MNIST, best of 50 rounds, 3 runs, seed 42
    "fedavg": ["89.23 ± 0.45", "88.09 ± 0.29", "28.39 ± 17.09", "78.10 ± 2.51", "82.43 ± 1.52"],
    "scaffold": ["89.33 ± 0.27", "88.44 ± 0.25", "10.00 ± 0.00", "33.80 ± 41.22", "80.32 ± 5.03"],
    "fedprox": ["89.42 ± 0.09", "88.15 ± 0.42", "32.65 ± 6.68", "78.05 ± 0.99", "82.99 ± 0.48"],
    "fednova": ["89.36 ± 0.09", "88.22 ± 0.12", "16.86 ± 9.30", "71.67 ± 2.34", "81.97 ± 1.34"],
}
names = {"fedavg": "FedAvg", "fedprox": "FedProx", "scaffold": "SCAFFOLD", "fednova": "FedNova"}
cols = ["iid", "dir0.5", "flower-c1", "flower-c2", "flower-c3"]
heads = ["IID", "Dir(0.5)", "#C=1", "#C=2", "#C=3"]

def runs_of(pattern):
    out = []
    for f in sorted(glob.glob(os.path.join(res, pattern + ".tsv"))):
        if f.endswith(".classes.tsv"):
            continue
        acc = [float(l.split("\t")[1]) for l in open(f).read().splitlines()[1:] if l.strip()]
        if len(acc) >= rounds:
            out.append((100 * max(acc[:rounds]), 100 * acc[rounds - 1]))
    return out

def stat(v):
    m = sum(v) / len(v)
    return m, math.sqrt(sum((x - m) ** 2 for x in v) / len(v))

def cell(pattern, which):
    r = runs_of(pattern)
    if not r:
        return "–"
    m, s = stat([x[which] for x in r])
    return f"{m:.2f} ± {s:.2f}" + ("" if len(r) >= runs else f" (n={len(r)})")

print(f"Best round of {rounds} (last round in the second table), test accuracy in percent, mean ± std "
      f"over training seeds; Flower's figures are the best of 50 rounds, 3 runs.\n")
print("| | " + " | ".join(heads) + " |")
print("|---|" + "---|" * len(heads))
for rule in ["fedavg", "scaffold", "fedprox", "fednova"]:
    print(f"| n3 {names[rule]} | " + " | ".join(cell(f"{rule}-{c}-p42-t*", 0) for c in cols) + " |")
    print(f"| Flower {names[rule]} | " + " | ".join(flower[rule]) + " |")
own = ["–", "–"] + [cell(f"fedavg-c{k}-p*-t1", 0) for k in (1, 2, 3)]
print("| n3 FedAvg, n3's own label draws (partition seeds 0, 1, 2) | " + " | ".join(own) + " |")
print(f"| n3 FedAvg + DP-FedAvg (z, C = {dp}; epsilon 8.0 at delta 1e-5 after 50 rounds) | "
      + cell("fedavg-dp-iid-p42-t*", 0) + " | – | – | – | – |")
print(f"\nLast round ({rounds}):\n")
print("| | " + " | ".join(heads) + " |")
print("|---|" + "---|" * len(heads))
for rule in ["fedavg", "scaffold", "fedprox", "fednova"]:
    print(f"| n3 {names[rule]} | " + " | ".join(cell(f"{rule}-{c}-p42-t*", 1) for c in cols) + " |")
print("| n3 FedAvg, own label draws | – | – | " + " | ".join(cell(f"fedavg-c{k}-p*-t1", 1) for k in (1, 2, 3)) + " |")
print("| n3 FedAvg + DP-FedAvg | " + cell("fedavg-dp-iid-p42-t*", 1) + " | – | – | – | – |")
# The final models' per-class accuracy on #C=2 (Flower's assignment), mean over seeds.
rows = []
for rule in ["fedavg", "scaffold", "fedprox", "fednova"]:
    files = sorted(glob.glob(os.path.join(res, f"{rule}-flower-c2-p42-t*.classes.tsv")))
    per = [[float(l.split("\t")[2]) for l in open(f).read().splitlines()[1:] if l.strip()] for f in files]
    per = [p for p in per if len(p) == 10]
    if per:
        rows.append(f"| {names[rule]} | " + " | ".join(f"{100 * sum(c) / len(c):.1f}" for c in zip(*per)) + " |")
if rows:
    print("\nPer-class accuracy of the final model, #C=2 (Flower's assignment), mean over seeds:\n")
    print("| | " + " | ".join(str(c) for c in range(10)) + " |")
    print("|---|" + "---|" * 10)
    print("\n".join(rows))
PY
cat "$RESULTS/TABLE.md"
if [ "$DOCS" -eq 1 ]; then
    for doc in "$here/../README.md" "$here/RESULTS.md"; do
        grep -q '<!-- niid-table -->' "$doc" || { echo "$NAME: no <!-- niid-table --> marker in $doc" >&2; continue; }
        python3 - "$doc" "$RESULTS/TABLE.md" <<'PY'
import sys
doc, table = sys.argv[1], open(sys.argv[2]).read()
s = open(doc).read()
a, b = s.index("<!-- niid-table -->") + len("<!-- niid-table -->"), s.index("<!-- /niid-table -->")
open(doc + ".tmp", "w").write(s[:a] + "\n" + table + "\n" + s[b:])
PY
        mv "$doc.tmp" "$doc"
    done
fi
