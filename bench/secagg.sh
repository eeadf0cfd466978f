#!/usr/bin/env bash
# bench/secagg.sh — what secure aggregation costs as the roster grows (5, 20, 50 members), on
# 1M-parameter F32 updates: per client (advertise, mask, reveal) and for the aggregator
# (secure-sum), against plain fedavg of the same updates (n3-merge) as the reference.
# One member in ten drops out after masking. Prints seconds and the ratio secure / plain.
set -euo pipefail
: "${N3_BIN:=$(cd "$(dirname "$0")/.." && pwd)/build/tools}"
export PATH="$N3_BIN:$PATH"
PY=${N3_PYTHON:-/usr/bin/python3}
PARAMS=${PARAMS:-1048576}
SIZES=${SIZES:-5 20 50}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }

n3-keys authority -o "$T/fed.ask" 2>/dev/null
n3-keys public "$T/fed.ask" > "$T/fed.pub"
max=$(echo $SIZES | tr ' ' '\n' | sort -n | tail -1)
for i in $(seq 1 "$max"); do
    n3-keys request --id "m$i" -o "$T/m$i.secret" > "$T/m$i.req" 2>/dev/null
    n3-keys issue --authority "$T/fed.ask" < "$T/m$i.req" > "$T/m$i.partial" 2>/dev/null
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

printf 'secure aggregation, %d parameters per update, 10%% of members drop after masking\n' "$PARAMS"
printf '%-8s %-10s %-10s %-10s %-12s %-12s %s\n' members advertise mask reveal secure-sum plain-fedavg "secure/plain (aggregator)"
for n in $SIZES; do
    for i in $(seq 1 "$n"); do cat "$T/m$i.pub"; done > "$T/r$n.roster"
    R=(--roster "$T/r$n.roster" --authority "$T/fed.pub" --round "$n" --max-samples 65536)
    s=$(now)
    for i in $(seq 1 "$n"); do
        n3-seal --advertise --key "$T/m$i.key" "${R[@]}" --state "$T/s$n-$i" --force > "$T/a$n-$i.n3"
    done
    t_adv=$(echo "$(since "$s") / $n" | bc -l)
    cat "$T"/a$n-*.n3 > "$T/adverts$n.n3"
    drop=$((n / 10))
    surv=$((n - drop))
    s=$(now)
    for i in $(seq 1 "$n"); do
        n3-seal --mask --key "$T/m$i.key" "${R[@]}" --state "$T/s$n-$i" --adverts "$T/adverts$n.n3" \
            "$T/u$i.n3" -o "$T/x$n-$i.n3"
    done
    t_mask=$(echo "$(since "$s") / $n" | bc -l)
    inputs=(); for i in $(seq 1 "$surv"); do inputs+=("$T/x$n-$i.n3"); done
    n3-merge --rule secure-sum "${R[@]}" --adverts "$T/adverts$n.n3" --list-survivors "${inputs[@]}" > "$T/surv$n"
    s=$(now)
    for i in $(seq 1 "$surv"); do
        n3-seal --reveal --key "$T/m$i.key" "${R[@]}" --state "$T/s$n-$i" --survivors "$T/surv$n" > "$T/v$n-$i.n3"
    done
    t_rev=$(echo "$(since "$s") / $surv" | bc -l)
    s=$(now)
    n3-merge --rule secure-sum "${R[@]}" --adverts "$T/adverts$n.n3" "${inputs[@]}" "$T"/v$n-*.n3 -o "$T/secure$n.n3"
    t_sum=$(since "$s")
    plain=(); for i in $(seq 1 "$surv"); do plain+=("$T/u$i.n3"); done
    s=$(now)
    n3-merge --rule fedavg "${plain[@]}" -o "$T/plain$n.n3"
    t_plain=$(since "$s")
    printf '%-8d %-10.3f %-10.3f %-10.3f %-12.3f %-12.3f %.1fx\n' "$n" "$t_adv" "$t_mask" "$t_rev" "$t_sum" "$t_plain" \
        "$(echo "$t_sum / $t_plain" | bc -l)"
done
echo "(advertise, mask, reveal: seconds per member; secure-sum and plain fedavg: seconds for the round)"
