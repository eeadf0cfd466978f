#!/usr/bin/env bash
# bench/merge.sh — n3-merge fedavg of 10 updates of 16M F32 parameters (64 MiB each), from the
# page cache, against `cat` of the same files to /dev/null (the cost of just reading them).
# Prints the best of several runs, the speed ratio (target: merge >= 0.5x cat) and the peak
# resident set of the merge (target: <= 256 MiB, independent of the number of inputs). Like cat,
# the timed merges write to /dev/null (-o -); one line adds the cost of -o FILE, which fsyncs.
#
#   N3_BIN=build/tools bash bench/merge.sh        # N3_MERGE_N, N3_MERGE_NUMEL, N3_MERGE_RUNS
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
N=${N3_MERGE_N:-10}
NUMEL=${N3_MERGE_NUMEL:-16777216}
RUNS=${N3_MERGE_RUNS:-5}
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
MK="$HERE/../tests/merge/make_tensors.py"
T=$(mktemp -d "${TMPDIR:-/tmp}/n3-bench-merge.XXXXXX")
trap 'rm -rf "$T"' EXIT

$PY "$MK" "$T/base.st" --seed 1000 --numel "$NUMEL"
"$N3_BIN/n3-inspect" --from-safetensors "$T/base.st" --kind model --meta round=1 -o "$T/base.n3"
rm "$T/base.st"
H=$("$N3_BIN/n3-inspect" --json "$T/base.n3" | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
files=()
for i in $(seq 1 "$N"); do
    $PY "$MK" "$T/u.st" --seed "$i" --numel "$NUMEL" --scale 0.01
    "$N3_BIN/n3-inspect" --from-safetensors "$T/u.st" --kind update \
        --meta samples=$((100 + i)) --meta base="$H" -o "$T/u$i.n3"
    files+=("$T/u$i.n3")
done
rm -f "$T/u.st"
bytes=$(cat "${files[@]}" | wc -c)

# best-of-RUNS wall time of a command, in seconds
best() {
    local b=999999999999 s e t
    for _ in $(seq 1 "$RUNS"); do
        s=$(date +%s%N)
        "$@"
        e=$(date +%s%N)
        t=$(( (e - s) / 1000 ))
        [ "$t" -lt "$b" ] && b=$t
    done
    echo "$b"
}
cat "${files[@]}" > /dev/null # warm the page cache
t_cat=$(best sh -c 'cat "$@" > /dev/null' sh "${files[@]}")
t_merge=$(best sh -c '"$0" --rule fedavg "$@" -o - > /dev/null' "$N3_BIN/n3-merge" "${files[@]}")
t_base=$(best sh -c '"$0" --rule fedavg --base "'"$T"'/base.n3" "$@" -o - > /dev/null' "$N3_BIN/n3-merge" "${files[@]}")
t_stdin=$(best sh -c 'cat "$@" | "$0" --rule fedavg -o - > /dev/null' "$N3_BIN/n3-merge" "${files[@]}")
t_file=$(best "$N3_BIN/n3-merge" --rule fedavg "${files[@]}" -o "$T/avg.n3")
cat "${files[@]}" | "$N3_BIN/n3-merge" --rule fedavg -o "$T/avg2.n3"
cmp -s "$T/avg.n3" "$T/avg2.n3" || { echo "error: stdin and file merges differ" >&2; exit 1; }
t_median=$(RUNS=1 best "$N3_BIN/n3-merge" --rule median "${files[@]}" -o "$T/med.n3")
t_krum=$(RUNS=1 best "$N3_BIN/n3-merge" --rule multi-krum:2 "${files[@]}" -o "$T/krum.n3")

rss() { # peak RSS in KiB of a command (getrusage of the child)
    $PY -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
}
rss_files=$(rss "$N3_BIN/n3-merge" --rule fedavg "${files[@]}" -o "$T/avg.n3")
rss_base=$(rss "$N3_BIN/n3-merge" --rule fedavg --base "$T/base.n3" "${files[@]}" -o "$T/next.n3")
rss_stdin=$(rss sh -c 'cat "$@" | "$0" --rule fedavg -o "'"$T"'/avg2.n3"' "$N3_BIN/n3-merge" "${files[@]}")
rss_two=$(rss "$N3_BIN/n3-merge" --rule fedavg "${files[0]}" "${files[1]}" -o "$T/avg3.n3")
rss_adam=$(rss "$N3_BIN/n3-merge" --rule fedadam --state "$T/adam.state" --base "$T/base.n3" "${files[@]}" -o "$T/next2.n3")

mbs() { awk -v b="$bytes" -v us="$1" 'BEGIN { printf "%.0f", b / us }'; }
echo "inputs: $N updates x $NUMEL F32 parameters, $((bytes / 1048576)) MiB, from the page cache (best of $RUNS)"
echo "cat > /dev/null:             $((t_cat / 1000)) ms  $(mbs "$t_cat") MB/s"
echo "n3-merge fedavg -o FILE:     $((t_file / 1000)) ms  (the same plus writing and fsyncing 64 MiB)"
echo "n3-merge fedavg (files):     $((t_merge / 1000)) ms  $(mbs "$t_merge") MB/s  ratio vs cat $(awk -v a="$t_cat" -v b="$t_merge" 'BEGIN { printf "%.2f", a / b }')x (target >= 0.5x)"
echo "n3-merge fedavg --base:      $((t_base / 1000)) ms  $(mbs "$t_base") MB/s  ratio vs cat $(awk -v a="$t_cat" -v b="$t_base" 'BEGIN { printf "%.2f", a / b }')x"
echo "cat | n3-merge fedavg:       $((t_stdin / 1000)) ms  $(mbs "$t_stdin") MB/s  ratio vs cat $(awk -v a="$t_cat" -v b="$t_stdin" 'BEGIN { printf "%.2f", a / b }')x (spooled stdin)"
echo "n3-merge median (1 run):     $((t_median / 1000)) ms  $(mbs "$t_median") MB/s  ratio vs cat $(awk -v a="$t_cat" -v b="$t_median" 'BEGIN { printf "%.2f", a / b }')x"
echo "n3-merge multi-krum:2 (1 run): $((t_krum / 1000)) ms  $(mbs "$t_krum") MB/s  ratio vs cat $(awk -v a="$t_cat" -v b="$t_krum" 'BEGIN { printf "%.2f", a / b }')x"
echo "peak RSS fedavg, 2 files:    $((rss_two / 1024)) MiB"
echo "peak RSS fedavg, $N files:   $((rss_files / 1024)) MiB (target <= 256 MiB)"
echo "peak RSS fedavg --base:      $((rss_base / 1024)) MiB"
echo "peak RSS fedavg, stdin:      $((rss_stdin / 1024)) MiB"
echo "peak RSS fedadam --base:     $((rss_adam / 1024)) MiB"
