#!/usr/bin/env bash
# bench/train.sh — n3-train against a PyTorch script on the same libtorch (Debian python3-torch):
# the same model, data, batch size, optimizer and thread count; samples/s of each and the ratio
# (target: n3-train >= 1.1x Python). Also: what one OpenBLAS thread under libtorch's threads
# buys (n3-train pins OpenBLAS to one thread unless OPENBLAS_NUM_THREADS is set).
#   N3_BIN=build/tools bash bench/train.sh        (a few minutes; BENCH_LIMIT, BENCH_REPEAT)
set -euo pipefail
: "${N3_BIN:?set N3_BIN to the built tools folder}"
HERE=$(cd "$(dirname "$0")" && pwd)
MODELS="$HERE/../examples/models"
DATA=/usr/share/datasets/fashion-mnist
PY=/usr/bin/python3
THREADS=${BENCH_THREADS:-$(nproc)}
LIMIT=${BENCH_LIMIT:-20000}
REPEAT=${BENCH_REPEAT:-3}
BATCH=64
OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT

rate() { "$PY" -c 'import json,sys; print("%.0f" % json.loads(sys.stdin.read().strip().splitlines()[-1])["samples_per_s"])'; }
# Best of REPEAT interleaved runs: on a shared machine the fastest run is the one least
# disturbed by other work, for both sides alike.
best() { tr ' ' '\n' | sort -n | tail -1; }

n3_run() { # model, extra env...
    local model=$1; shift
    env "$@" "$N3_BIN/n3-train" --model "$MODELS/$model.yaml" --data "$DATA" --limit "$LIMIT" \
        --batch $BATCH --lr 0.05 --momentum 0.9 --threads "$THREADS" --json -o "$OUT/u.n3" 2>&1 >/dev/null | rate
}
# n3-train sets OMP_WAIT_POLICY=PASSIVE for itself (lib/train/engine.cpp); python gets the same
# environment so that both sides run libtorch identically configured.
py_run() {
    OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE "$PY" "$HERE/train/torch_baseline.py" --model "$1" --limit "$LIMIT" \
        --batch $BATCH --lr 0.05 --momentum 0.9 --threads "$THREADS" | rate
}

echo "bench/train: Fashion-MNIST, $LIMIT samples, batch $BATCH, SGD momentum, $THREADS threads," \
     "best of $REPEAT; blas: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
for model in cnn mlp; do
    n3=""; py=""; ob=""
    for _ in $(seq "$REPEAT"); do
        n3="$n3 $(n3_run $model)"
        py="$py $(py_run $model)"
    done
    n3=$(echo $n3 | best); py=$(echo $py | best)
    printf '%-4s n3-train %8s samples/s   python3-torch %8s samples/s   ratio %.2fx (target >= 1.1x)\n' \
        $model "$n3" "$py" "$("$PY" -c "print($n3 / $py)")"
    [ "$THREADS" -gt 1 ] || continue
    for _ in $(seq "$REPEAT"); do ob="$ob $(n3_run $model OPENBLAS_NUM_THREADS=$THREADS)"; done
    ob=$(echo $ob | best)
    printf '%-4s n3-train with OpenBLAS at %s threads %8s samples/s   one BLAS thread is %.2fx faster\n' \
        $model "$THREADS" "$ob" "$("$PY" -c "print($n3 / $ob)")"
done
