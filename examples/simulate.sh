#!/usr/bin/env bash
# examples/simulate.sh — a large federation simulated on one machine: a hub and N members, of
# which a seeded random fraction takes part in each round (as Flower's fraction_fit).
#
#   examples/simulate.sh [options] [OUTDIR]              (OUTDIR defaults to simulate-out)
#
# An authority enrols every member once (n3-keys, one key each, one roster). Each round a
# seeded random subset of max(1, round(F x N)) members is drawn; each sampled member is its own
# chain of processes, n3-train then n3-encode | n3-seal | n3-send to the hub, and at most --jobs
# chains run at once (the first to fail ends the run, hub and all), so members that are not
# sampled, or not yet started, cost nothing. The hub receives (n3-send --recv --count K),
# opens (n3-seal --open against the roster), unpacks (n3-encode -d) and merges (n3-merge,
# FedAvg) into the next global model, which every member reads as a file (one machine: a
# shared folder; the model is not broadcast, since a publisher would need every sampled
# member connected at once).
# One line per round; OUTDIR/rounds.tsv holds, per round: round, accuracy, loss, sampled,
# merged, bytes_on_wire, seconds (the whole round), train_seconds (all members' n3-train, wall
# clock), member_seconds (all members' encode | seal | send, wall clock), hub_cpu_seconds
# (user + system time of the hub's four processes), and the peak RSS in KiB of the hub's
# receive, open, unpack and merge processes (recv_kb, open_kb, decode_kb, merge_kb; '-' without
# GNU time in /usr/bin/time); OUTDIR/samples.tsv the members sampled in each round.
#
# Options (defaults in brackets):
#   --members N       members enrolled [100]      --rounds R       rounds [5]
#   --fraction F      the share of members sampled each round, 0 < F <= 1 [0.1]
#   --jobs J          member chains run at once [the number of cores]
#   --limit N         samples per member (0: the whole share) [0]
#   --partition P     iid, dirichlet:A, classes:K, quantity:A [iid]
#   --model SPEC      model spec [examples/models/mlp.yaml]
#   --epochs E [1]  --batch B [32]  --lr LR [0.05]  --momentum M [0.9]  --weight-decay W [0]
#   --pack P          none, fp16, bf16, int8, int4 (zstd follows) [int8]
#   --eval-limit N    test samples evaluated per round (0: all 10000) [0]
#   --quorum Q        updates that suffice at the timeout [every sampled member]
#   --timeout S       the hub's wait for updates, per round [600]
#   --seed S          seed of the partition, of the initial model and of the sampling [1]
#   --transport T     ipc (a socket in the work folder) or tcp (loopback) [ipc]
#   --port P          the hub's loopback TCP port with --transport tcp [random]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), DATA (Fashion-MNIST IDX
# folder), TMPDIR (the work folder's parent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MEMBERS=100 ROUNDS=5 FRACTION=0.1 JOBS=$(nproc 2>/dev/null || echo 2) LIMIT=0 PARTITION=iid
MODEL=$here/models/mlp.yaml EPOCHS=1 BATCH=32 LR=0.05 MOMENTUM=0.9 WD=0 PACK=int8 EVAL_LIMIT=0
QUORUM= TIMEOUT=600 SEED=1 TRANSPORT=ipc PORT=$((20000 + RANDOM % 20000)) OUT=simulate-out
NAME=simulate.sh
. "$here/common.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --fraction) need "$@"; FRACTION=$2; shift 2 ;;
        --jobs) need "$@"; JOBS=$2; shift 2 ;;
        --weight-decay) need "$@"; WD=$2; shift 2 ;;
        --seed) need "$@"; SEED=$2; shift 2 ;;
        --transport) need "$@"; TRANSPORT=$2; shift 2 ;;
        --port) need "$@"; PORT=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) fed_option "$@" || die "unknown option $1 (see --help)"; shift 2 ;;
        *) OUT=$1; shift ;;
    esac
done
isnum --members "$MEMBERS"; isnum --rounds "$ROUNDS"; isnum --jobs "$JOBS"; isnum --limit "$LIMIT"
isnum --epochs "$EPOCHS"; isnum --eval-limit "$EVAL_LIMIT"; isnum --timeout "$TIMEOUT"
isnum --seed "$SEED"; isnum --port "$PORT"
[ "$MEMBERS" -ge 1 ] || die "--members must be at least 1"
[ "$JOBS" -ge 1 ] || die "--jobs must be at least 1"
[[ $FRACTION =~ ^(0?\.[0-9]+|1(\.0*)?|0\.?)$ ]] || die "--fraction must be a number in (0, 1], not '$FRACTION'"
# max(1, round(F x N)): every round has at least one member.
SAMPLED=$(awk -v f="$FRACTION" -v n="$MEMBERS" 'BEGIN { k = int(f * n + 0.5); print (k < 1 ? 1 : k) }')
[ "$(awk -v f="$FRACTION" 'BEGIN { print (f > 0) }')" = 1 ] || die "--fraction must be more than 0"
QUORUM=${QUORUM:-$SAMPLED}; isnum --quorum "$QUORUM"
[ "$QUORUM" -ge 1 ] && [ "$QUORUM" -le "$SAMPLED" ] ||
    die "--quorum must be between 1 and the $SAMPLED members sampled per round"
case $TRANSPORT in ipc|tcp) ;; *) die "--transport must be ipc or tcp, not '$TRANSPORT'" ;; esac
pack_flags=()
case $PACK in
    none) ;;
    fp16|bf16|int8|int4) pack_flags=(--quantize "$PACK") ;;
    *) die "--pack: unknown packing '$PACK' (none, fp16, bf16, int8, int4)" ;;
esac

require n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge xargs awk
[ -f "$MODEL" ] || die "model spec $MODEL not found"
require_fmnist "$DATA"
TIME=; [ -x /usr/bin/time ] && /usr/bin/time -f %M true 2>/dev/null && TIME=/usr/bin/time

mkdir -p "$OUT"
workdir
limit=(); [ "$LIMIT" -gt 0 ] && limit=(--limit "$LIMIT")
elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")
if [ "$TRANSPORT" = ipc ]; then hub_ep="ipc://$W/hub.ipc" member_ep=$hub_ep
else hub_ep="tcp://127.0.0.1:$PORT" member_ep=$hub_ep; fi

# --- identities: an authority, the hub and every member, enrolled once -----------------------
t0=$EPOCHREALTIME
authority
enroll hub
export W
enroll_one() { # I: member I's request, issue (the authority's log is locked per entry), completion
    local i=$1
    n3-keys request --id "member$i" -o "$W/member$i.secret" > "$W/member$i.req" 2>> "$W/keys.err"
    n3-keys issue --authority "$W/fed.ask" --log "$W/issued.log" -o "$W/member$i.partial" \
        < "$W/member$i.req" 2>> "$W/keys.err"
    n3-keys complete --secret "$W/member$i.secret" --partial "$W/member$i.partial" \
        -o "$W/member$i.key" 2>> "$W/keys.err"
    n3-keys public "$W/member$i.key" > "$W/member$i.pub" 2>> "$W/keys.err"
    rm -f "$W/member$i.req" "$W/member$i.partial"
}
export -f enroll_one
seq 1 "$MEMBERS" | xargs -P "$JOBS" -I{} bash -c 'enroll_one {}' ||
    { cat "$W/keys.err" >&2; die "enrolling the members failed"; }
for i in $(seq 1 "$MEMBERS"); do cat "$W/member$i.pub"; done > "$W/fed.roster"
printf '%s: %d members enrolled in %.1f s\n' "$NAME" "$MEMBERS" "$(elapsed "${t0/,/.}")"

# --- round 0: a fresh model -------------------------------------------------------------------
n3-train --model "$MODEL" --init-only --seed "$SEED" -o "$W/global-0.n3"
printf 'round\taccuracy\tloss\tsampled\tmerged\tbytes_on_wire\tseconds\ttrain_seconds\tmember_seconds\thub_cpu_seconds\trecv_kb\topen_kb\tdecode_kb\tmerge_kb\n' \
    > "$OUT/rounds.tsv"
printf 'round\tmembers\n' > "$OUT/samples.tsv"
printf '%-6s %-9s %-8s %-8s %-7s %-14s %s\n' round accuracy loss sampled merged "bytes on wire" seconds

# One sampled member's round: train from the global model, then pack, seal and send. Its
# wall-clock times (training, the rest) and bytes sent go to one line of $W/r/times.
member() { # I
    local i=$1 t0 t1 t2 bytes
    t0=${EPOCHREALTIME/,/.}
    n3-train --init "$W/global-$((r - 1)).n3" --data "$DATA" --partition "$PARTITION" \
        --clients "$MEMBERS" --client "$((i - 1))" --partition-seed "$SEED" \
        --seed "$((r * 100000 + i))" --epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" \
        --momentum "$MOMENTUM" --weight-decay "$WD" --threads 1 $LIMIT_FLAGS -q \
        -o "$W/r/m$i.update" 2> "$W/r/m$i.err" || { cat "$W/r/m$i.err" >&2; return 1; }
    t1=${EPOCHREALTIME/,/.}
    n3-encode --zstd $PACK_FLAGS "$W/r/m$i.update" \
        | n3-seal --to "$W/hub.pub" --key "$W/member$i.key" --round "$r" \
        | tee "$W/r/m$i.sent" \
        | n3-send "$member_ep" --timeout "$TIMEOUT" -q 2> "$W/r/m$i.err" ||
        { cat "$W/r/m$i.err" >&2; return 1; }
    t2=${EPOCHREALTIME/,/.}
    bytes=$(stat -c %s "$W/r/m$i.sent")
    rm -f "$W/r/m$i.update" "$W/r/m$i.sent" "$W/r/m$i.err"
    echo "$i $t0 $t1 $t2 $bytes" >> "$W/r/times"
}
LIMIT_FLAGS="${limit[*]}" PACK_FLAGS="${pack_flags[*]}"

# The round's sample, at most --jobs members at once. The first member that fails ends the
# round: no further member starts, and the caller's die stops the hub and the members still
# running (cleanup) at once instead of leaving them to wait out their --timeout.
members() {
    local i p hub_rc=
    local -A live=()
    reap() {
        if wait -n -p p; then unset "live[$p]"; return 0; fi
        [ "$p" = "$hub" ] && die "round $r: the hub failed before its members had sent"
        die "round $r: a member failed"
    }
    while read -r i; do
        while [ "${#live[@]}" -ge "$JOBS" ]; do reap; done
        member "$i" &
        live[$!]=1 pids+=("$!")
    done < "$W/r/sample"
    while [ "${#live[@]}" -gt 0 ]; do reap; done
}

# The hub's four processes, each under GNU time when there is one (peak RSS, CPU seconds).
timed() { # NAME CMD...: runs CMD, its resources in $W/r/NAME.time
    local n=$1; shift
    if [ -n "$TIME" ]; then "$TIME" -f '%M %U %S' -o "$W/r/$n.time" "$@"; else "$@"; fi
}

for r in $(seq 1 "$ROUNDS"); do
    start=${EPOCHREALTIME/,/.}
    export r
    rm -rf "$W/r"; mkdir "$W/r"
    prev="$W/global-$((r - 1)).n3"
    # This round's sample: a Fisher-Yates shuffle seeded by --seed and the round.
    awk -v n="$MEMBERS" -v k="$SAMPLED" -v s="$((SEED * 1000003 + r))" 'BEGIN {
        srand(s); for (i = 1; i <= n; i++) p[i] = i
        for (i = 1; i <= k; i++) { j = i + int(rand() * (n - i + 1)); t = p[i]; p[i] = p[j]; p[j] = t; print p[i] }
    }' > "$W/r/sample"
    printf '%d\t%s\n' "$r" "$(sort -n "$W/r/sample" | tr '\n' ' ' | sed 's/ $//')" >> "$OUT/samples.tsv"
    ( timed recv n3-send --recv "$hub_ep" --count "$SAMPLED" --quorum "$QUORUM" --timeout "$TIMEOUT" -q \
        | timed open n3-seal --open --key "$W/hub.key" --authority "$W/fed.pub" --roster "$W/fed.roster" \
              --round "$r" -q \
        | timed decode n3-encode -d \
        | timed merge n3-merge --rule fedavg --base "$prev" --json -o "$W/global-$r.n3" 2> "$W/r/merge.json" ) &
    hub=$!
    pids=("$hub")
    members
    wait "$hub" || { cat "$W/r/merge.json" >&2; die "round $r: the hub failed (fewer than $QUORUM updates arrived by the timeout?)"; }
    pids=()
    merged=$(grep -o '"name"' "$W/r/merge.json" | wc -l)
    read -r bytes train other < <(awk '{ b += $5; t += $3 - $2; o += $4 - $3 } END { printf "%d %.2f %.2f\n", b, t, o }' "$W/r/times")
    n3-eval "$W/global-$r.n3" --data "$DATA" --split test "${elimit[@]}" --json > "$W/eval-$r.json"
    acc=$(json_num accuracy < "$W/eval-$r.json")
    loss=$(json_num loss < "$W/eval-$r.json")
    secs=$(elapsed "$start")
    hubcpu=- rss=(- - - -)
    if [ -n "$TIME" ]; then
        hubcpu=$(cat "$W"/r/{recv,open,decode,merge}.time | awk '{ c += $2 + $3 } END { printf "%.2f", c }')
        rss=($(for n in recv open decode merge; do awk '{ print $1 }' "$W/r/$n.time"; done))
    fi
    printf '%d\t%.4f\t%.4f\t%d\t%d\t%d\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$acc" "$loss" "$SAMPLED" \
        "$merged" "$bytes" "$secs" "$train" "$other" "$hubcpu" "${rss[@]}" >> "$OUT/rounds.tsv"
    printf '%-6d %-9.4f %-8.4f %-8d %-7d %-14d %.1f\n' "$r" "$acc" "$loss" "$SAMPLED" "$merged" "$bytes" "$secs"
    rm -f "$prev"
done
cp "$W/global-$ROUNDS.n3" "$OUT/global.n3"
echo "${NAME%.sh}: final model $OUT/global.n3, table $OUT/rounds.tsv"
