#!/usr/bin/env bash
# examples/niid-bench.sh — the NIID-Bench Fashion-MNIST experiment, as a star federation.
#
#   examples/niid-bench.sh PARTITION [ROUNDS] [--rule R] [--dp Z,C] [star.sh options...]
#
# The setup of Li, Diao, Chen, He, "Federated Learning on Non-IID Data Silos: An Experimental
# Study" (ICDE 2022), as reproduced in Flower's NIID-Bench baseline: 10 parties, the simple CNN
# (examples/models/cnn.yaml), batch 64, SGD with lr 0.01, momentum 0.9 and weight decay 1e-5,
# 10 local epochs, 50 rounds, every party in every round, updates sent in fp32 through the
# whole pipeline (sealed, sent over ZeroMQ, opened, merged).
# PARTITION is one of
#   iid           homogeneous
#   dir0.5        label distribution drawn from Dirichlet(0.5)     (also dirichlet:A for any A)
#   c1, c2, c3    #C=k: each party holds k labels, drawn by n3 from --seed (also classes:K)
#   flower-c1, flower-c2, flower-c3
#                 #C=k with the exact label assignment of Flower's baseline (seed 42), below
#   labels:...    any exact assignment (n3-train --partition labels:)
# ROUNDS defaults to 50.
#   --rule R      fedavg (default), fedprox (mu 0.01, NIID-Bench's), scaffold or fednova
#   --dp Z,C      DP-FedAvg at the hub: updates clipped to L2 norm C, noise of std Z*C on their
#                 sum; each round's cumulative epsilon (delta 1e-5) goes to rounds.tsv. Z = 4.5
#                 spends epsilon 8.0 in 50 rounds with every member in every round.
# Further options go to examples/star.sh: --seed S (the partition and, without --train-seed,
# the initial model), --train-seed T (the training noise alone), `--limit 200` for a quick run,
# `--pack int8+topk:0.1` to send int8-quantised top-10% updates. Test accuracy (all 10000 test
# images) is printed per round and written, with bytes on the wire, to OUTDIR/rounds.tsv, and
# the final model's per-class accuracy to OUTDIR/classes.tsv; OUTDIR defaults to
# niid-out/PARTITION-RULE (give one as for star.sh).
#
# Flower's label assignment. Flower's baselines/niid_bench (dataset_preparation.py,
# partition_data_label_quantity) draws, for party i, label i mod 10 and then labels from
# prng.choice(10, 1)[0] until it holds k distinct ones, prng = np.random.default_rng(42)
# (NIID-Bench's own partition.py does the same with Python's random.randint). n3 does not run
# that code; the draw was reproduced with Debian's python3-numpy 1.24.2:
#   /usr/bin/python3 -c 'import numpy as np
#   for k in (1, 2, 3):
#       g = np.random.default_rng(42); c = []
#       for i in range(10):
#           cur = [i % 10]
#           while len(cur) < k:
#               x = int(g.choice(10, 1)[0])
#               if x not in cur: cur.append(x)
#           c.append("+".join(map(str, cur)))
#       print(k, ",".join(c))'
# giving the assignments below (#C=1 is label i for party i whatever the seed). In Flower's #C=2
# draw labels 1, 3 and 9 have a single holder and 0, 4 and 7 three; each label's images are then
# split equally among its holders, as n3-train's labels: does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
FLOWER_C1=labels:0,1,2,3,4,5,6,7,8,9
FLOWER_C2=labels:0+7,1+6,2+4,3+4,4+8,5+0,6+2,7+0,8+5,9+7
FLOWER_C3=labels:0+7+6,1+4+8,2+0+6,3+2+0,4+5+9,5+7+1,6+8+4,7+5+3,8+1+9,9+7+6
die() { echo "niid-bench.sh: error: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: examples/niid-bench.sh PARTITION [ROUNDS] [--rule R] [--dp Z,C] [star.sh options...] (PARTITION: iid, dir0.5, c2, c3, flower-c2, ...)"
case $1 in
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    iid) partition=iid ;;
    dir0.5) partition=dirichlet:0.5 ;;
    c[0-9]|c[0-9][0-9]) partition=classes:${1#c} ;;
    flower-c1) partition=$FLOWER_C1 ;;
    flower-c2) partition=$FLOWER_C2 ;;
    flower-c3) partition=$FLOWER_C3 ;;
    dirichlet:*|classes:*|quantity:*|labels:*) partition=$1 ;;
    *) die "unknown partition '$1' (iid, dir0.5, c1, c2, c3, flower-c1, flower-c2, flower-c3, dirichlet:A, classes:K, quantity:A, labels:...)" ;;
esac
tag=${1//[:+,]/}; tag=${tag:0:24}; shift
rounds=50
if [ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
rule=fedavg dp=() rest=() out=
while [ $# -gt 0 ]; do
    case $1 in
        --rule) [ $# -ge 2 ] || die "--rule needs a value"; rule=$2; shift 2 ;;
        --dp) [ $# -ge 2 ] || die "--dp needs Z,C"
              [[ $2 =~ ^[0-9.]+,[0-9.]+$ ]] || die "--dp takes Z,C (noise multiplier, clip norm), not '$2'"
              dp=(--dp-noise "${2%,*}" --clip-norm "${2#*,}"); shift 2 ;;
        --*) rest+=("$1"); [ $# -ge 2 ] && [[ $2 != --* ]] && { rest+=("$2"); shift; }; shift ;;
        *) out=$1; shift ;;
    esac
done
case $rule in
    fedavg|fedprox|scaffold|fednova) ;;
    *) die "--rule must be fedavg, fedprox, scaffold or fednova, not '$rule'" ;;
esac
[ ${#dp[@]} -eq 0 ] || [ "$rule" = fedavg ] || die "--dp is DP-FedAvg: it goes with --rule fedavg"
exec "$here/star.sh" --name niid-bench --members 10 --rounds "$rounds" --partition "$partition" \
    --epochs 10 --batch 64 --lr 0.01 --momentum 0.9 --weight-decay 1e-5 --pack none \
    --quorum 10 --timeout 3600 --rule "$rule" "${dp[@]}" "${rest[@]}" \
    "${out:-niid-out/$tag-$rule${dp:+-dp}}"
