#!/usr/bin/env bash
# examples/niid-bench.sh — the NIID-Bench Fashion-MNIST experiment, as a star federation.
#
#   examples/niid-bench.sh PARTITION [ROUNDS] [star.sh options...]
#
# The setup of Li, Diao, Chen, He, "Federated Learning on Non-IID Data Silos: An Experimental
# Study" (ICDE 2022), as reproduced in Flower's NIID-Bench baseline for FedAvg: 10 parties, the
# simple CNN (examples/models/cnn.yaml), batch 64, SGD with lr 0.01, momentum 0.9 and weight
# decay 1e-5, 10 local epochs, 50 rounds, every party in every round, updates sent in fp32.
# PARTITION is one of
#   iid           homogeneous
#   dir0.5        label distribution drawn from Dirichlet(0.5)     (also dirichlet:A for any A)
#   c2, c3        #C=k: each party holds k labels                   (also classes:K)
# ROUNDS defaults to 50. Further options go to examples/star.sh, for example
# `--pack int8+topk:0.1` to send int8-quantised top-10% updates, or `--limit 200` for a quick run.
# Test accuracy (all 10000 test images) is printed per round and written, with bytes on the wire,
# to niid-out/PARTITION/rounds.tsv (change with an OUTDIR argument, as for star.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "niid-bench.sh: error: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: examples/niid-bench.sh PARTITION [ROUNDS] [star.sh options...] (PARTITION: iid, dir0.5, c2, c3)"
case $1 in
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    iid) partition=iid ;;
    dir0.5) partition=dirichlet:0.5 ;;
    c[0-9]|c[0-9][0-9]) partition=classes:${1#c} ;;
    dirichlet:*|classes:*|quantity:*) partition=$1 ;;
    *) die "unknown partition '$1' (iid, dir0.5, c2, c3, dirichlet:A, classes:K, quantity:A)" ;;
esac
tag=${1//:/}; shift
rounds=50
if [ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
exec "$here/star.sh" --name niid-bench --members 10 --rounds "$rounds" --partition "$partition" \
    --epochs 10 --batch 64 --lr 0.01 --momentum 0.9 --weight-decay 1e-5 --pack none \
    --quorum 10 --timeout 3600 "niid-out/$tag" "$@"
