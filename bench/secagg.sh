#!/usr/bin/env bash
# bench/secagg.sh — what secure aggregation costs as the roster grows (5, 20, 50 members), on
# 1M-parameter F32 updates: per client (advertise, mask, reveal) and for the aggregator
# (secure-sum), against plain fedavg of the same updates (n3-merge) as the reference; with
# every member masking with every other (K = 0) and with SecAgg+ (K neighbours each).
# One member in ten drops out after masking. Prints seconds and the ratio secure / plain, and
# secure-sum on one thread against all cores (the mask expansion is what runs in parallel).
set -euo pipefail
: "${N3_BIN:=$(cd "$(dirname "$0")/.." && pwd)/build/tools}"
export PATH="$N3_BIN:$PATH"
PY=${N3_PYTHON:-/usr/bin/python3}
PARAMS=${PARAMS:-1048576}
# Rounds as MEMBERS:K (K = 0: the complete graph).
ROUNDS=${ROUNDS:-5:0 20:0 50:0 50:8}
SIZES=$(for r in $ROUNDS; do echo "${r%%:*}"; done)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
export N3_STATE_DIR="$T/state" # the members' one-advert-per-round records
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }

n3-keys authority -o "$T/fed.ask" 2>/dev/null
n3-keys public "$T/fed.ask" > "$T/fed.pub"
max=$(echo $SIZES | tr ' ' '\n' | sort -n | tail -1)
for i in $(seq 1 "$max"); do
    n3-keys request --id "m$i" -o "$T/m$i.secret" > "$T/m$i.req" 2>/dev/null
    n3-keys issue --authority "$T/fed.ask" -o "$T/m$i.partial" < "$T/m$i.req" 2>/dev/null
    n3-keys complete --secret "$T/m$i.secret" --partial "$T/m$i.partial" -o "$T/m$i.key" 2>/dev/null
    n3-keys public "$T/m$i.key" > "$T/m$i.pub"
done
"$PY" - "$T" "$max" "$PARAMS" <<'PY'
import sys, json, struct, numpy as np
out, n, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
for i in range(1, n + 1):
    a = rng.normal(0, 0.01, p).astype("<f4")
    h = json.dumps({"__metadata__": {"samples": str(1000 + i)},
                    "w": {"dtype": "F32", "shape": [p], "data_offsets": [0, 4 * p]}}).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(f"{out}/u{i}.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h); a.tofile(f)
PY
for i in $(seq 1 "$max"); do
    n3-inspect --from-safetensors "$T/u$i.safetensors" --kind update -o "$T/u$i.n3"
    rm "$T/u$i.safetensors"
done

printf 'secure aggregation, %d parameters per update, 10%% of members drop after masking, %d cores\n' \
    "$PARAMS" "$(nproc)"
printf '%-8s %-4s %-10s %-10s %-10s %-12s %-12s %-12s %-10s %s\n' members K advertise mask reveal "sum -j1" secure-sum \
    plain-fedavg "-j1/-jN" "secure/plain (aggregator)"
for round in $ROUNDS; do
    nn=${round%%:*} k=${round##*:}
    n="$nn-$k" # names this round's files
    for i in $(seq 1 "$nn"); do cat "$T/m$i.pub"; done > "$T/r$n.roster"
    R=(--roster "$T/r$n.roster" --authority "$T/fed.pub" --round "$nn" --max-samples 65536 --neighbours "$k")
    s=$(now)
    for i in $(seq 1 "$nn"); do
        n3-secagg advertise --key "$T/m$i.key" "${R[@]}" --state "$T/s$n-$i" --force > "$T/a$n-$i.n3"
    done
    t_adv=$(echo "$(since "$s") / $nn" | bc -l)
    cat "$T"/a$n-*.n3 > "$T/adverts$n.n3"
    drop=$((nn / 10))
    surv=$((nn - drop))
    s=$(now)
    for i in $(seq 1 "$nn"); do
        n3-secagg mask --key "$T/m$i.key" "${R[@]}" --state "$T/s$n-$i" --adverts "$T/adverts$n.n3" \
            "$T/u$i.n3" -o "$T/x$n-$i.n3"
    done
    t_mask=$(echo "$(since "$s") / $nn" | bc -l)
    inputs=(); for i in $(seq 1 "$surv"); do inputs+=("$T/x$n-$i.n3"); done
    n3-secagg survivors "${R[@]}" "${inputs[@]}" > "$T/surv$n"
    s=$(now)
    for i in $(seq 1 "$surv"); do
        n3-secagg reveal --key "$T/m$i.key" "${R[@]}" --state "$T/s$n-$i" --survivors "$T/surv$n" > "$T/v$n-$i.n3"
    done
    t_rev=$(echo "$(since "$s") / $surv" | bc -l)
    s=$(now)
    n3-secagg sum "${R[@]}" --adverts "$T/adverts$n.n3" -j 1 "${inputs[@]}" "$T"/v$n-*.n3 -o "$T/secure1-$n.n3"
    t_sum1=$(since "$s")
    s=$(now)
    n3-secagg sum "${R[@]}" --adverts "$T/adverts$n.n3" "${inputs[@]}" "$T"/v$n-*.n3 -o "$T/secure$n.n3"
    t_sum=$(since "$s")
    cmp -s "$T/secure1-$n.n3" "$T/secure$n.n3" || { echo "secagg bench: -j 1 and -j N differ" >&2; exit 1; }
    plain=(); for i in $(seq 1 "$surv"); do plain+=("$T/u$i.n3"); done
    s=$(now)
    n3-merge --rule fedavg "${plain[@]}" -o "$T/plain$n.n3"
    t_plain=$(since "$s")
    printf '%-8d %-4d %-10.3f %-10.3f %-10.3f %-12.3f %-12.3f %-12.3f %-10s %.1fx\n' "$nn" "$k" "$t_adv" "$t_mask" \
        "$t_rev" "$t_sum1" "$t_sum" "$t_plain" "$(printf '%.2fx' "$(echo "$t_sum1 / $t_sum" | bc -l)")" \
        "$(echo "$t_sum / $t_plain" | bc -l)"
    rm -f "$T"/x$n-*.n3 "$T"/secure*.n3 "$T"/plain*.n3
done
echo "(advertise, mask, reveal: seconds per member; secure-sum and plain fedavg: seconds for the round;"
echo " K = 0: every member masks with every other; K > 0: SecAgg+ with K neighbours each)"
