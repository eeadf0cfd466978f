#!/usr/bin/env bash
# examples/quickstart.sh — a whole federation on one machine, in under ten minutes.
#
#   examples/quickstart.sh [OUTDIR]          (what `make demo` runs; OUTDIR defaults to demo-out)
#
# An authority and 5 members get keys; Fashion-MNIST (Debian's dataset-fashion-mnist) is split
# Dirichlet(0.5) over the members; the NIID-Bench simple CNN is trained for 5 rounds of a star
# topology over ZeroMQ on loopback. Every round the hub publishes the global model, each member
# (its own process) trains on its share, packs the update (int8 + zstd), seals it to the hub and
# sends it; the hub receives, opens, unpacks and merges (FedAvg) into the next global model.
# It prints one line per round and writes OUTDIR/rounds.tsv and OUTDIR/accuracy.png.
# This is examples/star.sh with its defaults; see `examples/star.sh --help` for the knobs.
#
# Environment: MEMBERS (5), ROUNDS (5), EPOCHS (1), LR (0.05), LIMIT (0 = all samples), PORT (random),
# N3_BIN (the folder with the n3 tools; default build/tools, then PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/star.sh" --name quickstart --members "${MEMBERS:-5}" --rounds "${ROUNDS:-5}" \
    --partition dirichlet:0.5 --pack int8 --timeout 300 "${1:-demo-out}"
