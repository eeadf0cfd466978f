#!/bin/bash
# tests/fuzz/run.sh — runs n3's libFuzzer targets and prints one line per target.
#
#   tests/fuzz/run.sh BUILD_DIR                 # every target for FUZZ_SECONDS (make fuzz, fuzz-long)
#   FUZZ_RUNS=1000000 tests/fuzz/run.sh B fuzz_codec_packed   # stop at that many executions
#   tests/fuzz/run.sh --merge BUILD_DIR         # re-minimise tests/fuzz/corpus/ (-merge=1)
#
# Each target starts from its checked-in corpus (tests/fuzz/corpus/NAME, replayed in full: a
# regression input there runs on every smoke run) and writes what it finds to BUILD_DIR/corpus/
# NAME; a crash, leak, timeout or out-of-memory input goes to BUILD_DIR/artifacts/NAME/. The
# table reads libFuzzer's -print_final_stats=1 output: executions (stat::number_of_executed_units),
# executions per second, coverage (the final cov: and ft: counts: edges and features), peak RSS
# and the crashes found. Exit status 1 when any target crashed (its log's tail is shown).
#
# FUZZ_SECONDS (default 15), FUZZ_RUNS (optional), FUZZ_RSS_MB (default 2048), FUZZ_TIMEOUT
# (seconds per input, default 25), FUZZ_NICE (default 0).
set -u
merge=0
if [ "${1:-}" = "--merge" ]; then
    merge=1
    shift
fi
B=${1:?usage: run.sh [--merge] BUILD_DIR [TARGET...]}
shift
SRC=$(cd "$(dirname "$0")/../.." && pwd)
SECONDS_EACH=${FUZZ_SECONDS:-15}
RUNS=${FUZZ_RUNS:-}
RSS=${FUZZ_RSS_MB:-2048}
TIMEOUT=${FUZZ_TIMEOUT:-25}
NICE=${FUZZ_NICE:-0}

targets=()
if [ $# -gt 0 ]; then
    for t in "$@"; do targets+=("$B/tests/fuzz/$t"); done
else
    for f in "$B"/tests/fuzz/fuzz_*; do [ -x "$f" ] && targets+=("$f"); done
fi
[ ${#targets[@]} -gt 0 ] || {
    echo "run.sh: error: no fuzz targets in $B/tests/fuzz (build n3_fuzz_all first)" >&2
    exit 2
}

# The golden files (and example specs) each target starts from besides its own seeds.
golden_for() {
    case $1 in
    fuzz_record_parse | fuzz_codec_shard | fuzz_net_wire | fuzz_merge_inputs)
        echo "$SRC/tests/golden $SRC/tests/codec/golden" ;;
    fuzz_crypto_keyfile) echo "$SRC/tests/crypto/golden" ;;
    fuzz_train_spec) echo "$SRC/examples/models" ;;
    esac
}

if [ $merge = 1 ]; then
    # The new corpus: the smallest set of inputs from the old one, the hand-made seeds, the
    # golden files (those under 64 KiB), the directories in FUZZ_EXTRA (inputs collected from
    # the CLI tests) and what the fuzzer found, that keeps every feature.
    for f in "${targets[@]}"; do
        name=$(basename "$f")
        new=$(mktemp -d "$B/merge.XXXXXX")
        small=$(mktemp -d "$B/golden.XXXXXX")
        # shellcheck disable=SC2046
        for d in $(golden_for "$name") ${FUZZ_EXTRA:-}; do
            [ -d "$d" ] && find "$d" -maxdepth 1 -type f -size -64k -exec cp {} "$small/" \;
        done
        dirs=("$small")
        for d in "$SRC/tests/fuzz/corpus/$name" "$SRC/tests/fuzz/seeds/$name" "$B/corpus/$name"; do
            [ -d "$d" ] && dirs+=("$d")
        done
        nice -n "$NICE" "$f" -merge=1 -rss_limit_mb="$RSS" -timeout="$TIMEOUT" "$new" "${dirs[@]}" \
            >"$B/$name.merge.log" 2>&1 || {
            tail -20 "$B/$name.merge.log"
            exit 1
        }
        # A fixed finding's input (regress-*) stays under its name whatever the merge kept.
        cp "$SRC/tests/fuzz/corpus/$name"/regress-* "$new/" 2>/dev/null
        rm -rf "$SRC/tests/fuzz/corpus/$name"
        mkdir -p "$SRC/tests/fuzz/corpus/$name"
        cp "$new"/* "$SRC/tests/fuzz/corpus/$name/" 2>/dev/null
        rm -rf "$new" "$small"
        echo "merge: $name: $(ls "$SRC/tests/fuzz/corpus/$name" | wc -l) inputs," \
            "$(du -sk "$SRC/tests/fuzz/corpus/$name" | cut -f1) KiB"
    done
    exit 0
fi

limit="-max_total_time=$SECONDS_EACH"
[ -n "$RUNS" ] && limit="-runs=$RUNS -max_total_time=$SECONDS_EACH"
crashed=()
printf '%-22s %12s %9s %7s %7s %8s %7s\n' target executions exec/s cov ft rss_mb crashes
for f in "${targets[@]}"; do
    name=$(basename "$f")
    mkdir -p "$B/corpus/$name" "$B/artifacts/$name"
    seeds=()
    [ -d "$SRC/tests/fuzz/corpus/$name" ] && seeds+=("$SRC/tests/fuzz/corpus/$name")
    before=$(ls "$B/artifacts/$name" | wc -l)
    # shellcheck disable=SC2086
    nice -n "$NICE" "$f" $limit -print_final_stats=1 -rss_limit_mb="$RSS" -timeout="$TIMEOUT" \
        -artifact_prefix="$B/artifacts/$name/" "$B/corpus/$name" "${seeds[@]}" \
        >"$B/$name.log" 2>&1
    rc=$?
    log="$B/$name.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    crashes=$(($(ls "$B/artifacts/$name" | wc -l) - before))
    [ $rc != 0 ] && [ $crashes = 0 ] && crashes=1
    printf '%-22s %12s %9s %7s %7s %8s %7s\n' "$name" "${execs:--}" "${rate:--}" "${cov:--}" \
        "${ft:--}" "${rss:--}" "$crashes"
    [ "$crashes" != 0 ] && crashed+=("$name")
done
if [ ${#crashed[@]} -gt 0 ]; then
    for name in "${crashed[@]}"; do
        echo "== $name: $(ls "$B/artifacts/$name" | tr '\n' ' ')" >&2
        grep -E -A30 '^==[0-9]+==ERROR|runtime error|deadly signal|Test unit written' "$B/$name.log" |
            head -60 >&2
    done
    echo "run.sh: error: ${crashed[*]} crashed (inputs under $B/artifacts/)" >&2
    exit 1
fi
