#!/usr/bin/env bash
# examples/slurm/federation.sh — a federation on a Slurm cluster: each round's members are one
# array job (a task per member), the hub is a job of its own, and Slurm's dependencies order
# the rounds. n3 adds no scheduler: every round is submitted up front and Slurm runs it.
#
#   examples/slurm/federation.sh [options] DIR
#
# DIR must be a folder every node sees (a shared file system): it holds the keys, the global
# model of every round, the members' sealed updates (with --transport spool) and the logs.
# The authority, the hub and every member are enrolled here, on the submitting host; then, for
# each round r,
#   members r:  sbatch --array=1-N --dependency=afterok:<hub r-1>   member.sbatch DIR r
#   hub r:      sbatch --dependency=afterany:<members r>            hub.sbatch DIR r
# (with --transport tcp the hub starts first and the members follow it, --dependency=after:<hub
# r>, sending to the node it runs on). afterany lets the hub merge when some members failed, as
# long as --quorum updates arrived; a failed hub stops the rounds after it.
# DIR/rounds.tsv gets one line per round (round, accuracy, loss, merged, seconds of the hub),
# DIR/jobs the job ids (members R ID, hub R ID), DIR/logs every job's output.
#
# Options (defaults in brackets):
#   --members N     members [8]                 --rounds R     rounds [3]
#   --limit N       samples per member (0: the whole share) [0]
#   --partition P   iid, dirichlet:A, classes:K, quantity:A [iid]
#   --model SPEC    model spec [examples/models/mlp.yaml]
#   --epochs E [1]  --batch B [32]  --lr LR [0.05]  --momentum M [0.9]
#   --pack P        none, fp16, bf16, int8, int4 (zstd follows) [int8]
#   --eval-limit N  test samples evaluated by the hub (0: all 10000) [0]
#   --quorum Q      updates a hub needs [every member]
#   --transport T   spool (sealed updates as files in DIR/round-R/updates) or tcp (n3-send to
#                   the hub's node) [spool]
#   --port P        the hub's TCP port with --transport tcp [7000]
#   --timeout S     the tcp hub's wait for updates [600]
#   --sbatch ARGS   more sbatch flags for every job, e.g. '-p short -A myproject' [none]
#   --wait          wait for the last round, then check that every job COMPLETED (exit 0) or
#                   say which did not (exit 3)
# Environment: N3_BIN (the n3 tools, visible on every node; default build/tools, then PATH),
# DATA (Fashion-MNIST IDX folder, visible on every node), SLURM_CONF as for any Slurm command.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
MEMBERS=8 ROUNDS=3 LIMIT=0 PARTITION=iid MODEL=$here/models/mlp.yaml EPOCHS=1 BATCH=32 LR=0.05
MOMENTUM=0.9 PACK=int8 EVAL_LIMIT=0 QUORUM= TRANSPORT=spool PORT=7000 TIMEOUT=600 SBATCH= WAIT=0
OUT= NAME=federation.sh
. "$here/common.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --transport) need "$@"; TRANSPORT=$2; shift 2 ;;
        --port) need "$@"; PORT=$2; shift 2 ;;
        --sbatch) need "$@"; SBATCH=$2; shift 2 ;;
        --wait) WAIT=1; shift ;;
        -h|--help) usage ;;
        -*) fed_option "$@" || die "unknown option $1 (see --help)"; shift 2 ;;
        *) [ -z "$OUT" ] || die "one DIR only ('$OUT', then '$1')"; OUT=$1; shift ;;
    esac
done
[ -n "$OUT" ] || die "no DIR (a folder every node sees): see --help"
isnum --members "$MEMBERS"; isnum --rounds "$ROUNDS"; isnum --limit "$LIMIT"; isnum --epochs "$EPOCHS"
isnum --batch "$BATCH"; isnum --eval-limit "$EVAL_LIMIT"; isnum --port "$PORT"; isnum --timeout "$TIMEOUT"
[ "$MEMBERS" -ge 1 ] || die "--members must be at least 1"
[ "$ROUNDS" -ge 1 ] || die "--rounds must be at least 1"
QUORUM=${QUORUM:-$MEMBERS}; isnum --quorum "$QUORUM"
[ "$QUORUM" -ge 1 ] && [ "$QUORUM" -le "$MEMBERS" ] || die "--quorum must be between 1 and --members"
case $TRANSPORT in spool|tcp) ;; *) die "--transport must be spool or tcp, not '$TRANSPORT'" ;; esac
case $PACK in none|fp16|bf16|int8|int4) ;; *) die "--pack: unknown packing '$PACK' (none, fp16, bf16, int8, int4)" ;; esac
require sbatch scontrol n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge bc
[ -f "$MODEL" ] || die "model spec $MODEL not found"
require_fmnist "$DATA"
[ ! -e "$OUT/fed.roster" ] || die "$OUT holds a federation already (remove it, or pick another DIR)"

mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
# Keys: common.sh's enroll writes into $W; here $W is the shared folder and stays.
W=$OUT pids=()
authority
enroll hub
for i in $(seq 1 "$MEMBERS"); do enroll "member$i"; cat "$W/member$i.pub"; done > "$W/fed.roster"
rm -f "$W"/*.req "$W"/*.partial
n3-train --model "$MODEL" --init-only --seed 1 -o "$OUT/global-0.n3"
printf 'round\taccuracy\tloss\tmerged\tseconds\n' > "$OUT/rounds.tsv"
# What the jobs read: one file, so that no setting depends on how a site exports variables.
{
    printf 'N3_BIN=%q\nDATA=%q\nMEMBERS=%q\nLIMIT=%q\nPARTITION=%q\nEPOCHS=%q\n' \
        "$(dirname "$(command -v n3-train)")" "$DATA" "$MEMBERS" "$LIMIT" "$PARTITION" "$EPOCHS"
    printf 'BATCH=%q\nLR=%q\nMOMENTUM=%q\nPACK=%q\nEVAL_LIMIT=%q\nQUORUM=%q\n' \
        "$BATCH" "$LR" "$MOMENTUM" "$PACK" "$EVAL_LIMIT" "$QUORUM"
    printf 'TRANSPORT=%q\nPORT=%q\nTIMEOUT=%q\n' "$TRANSPORT" "$PORT" "$TIMEOUT"
} > "$OUT/federation.env"

# --- every round, submitted now; Slurm's dependencies order them ------------------------------
slurm=$(cd "$(dirname "$0")" && pwd)
read -r -a extra <<< "$SBATCH"
submit() { sbatch --parsable "${extra[@]}" "$@" | cut -d';' -f1; }
: > "$OUT/jobs"
prev=
for r in $(seq 1 "$ROUNDS"); do
    mkdir -p "$OUT/round-$r/updates"
    after=(); [ -n "$prev" ] && after=(--dependency="afterok:$prev")
    if [ "$TRANSPORT" = spool ]; then
        m=$(submit "${after[@]}" --job-name "n3-members-$r" --array "1-$MEMBERS" \
            -o "$OUT/logs/members-$r-%a.out" "$slurm/member.sbatch" "$OUT" "$r")
        h=$(submit --dependency="afterany:$m" --job-name "n3-hub-$r" -o "$OUT/logs/hub-$r.out" \
            "$slurm/hub.sbatch" "$OUT" "$r")
    else
        h=$(submit "${after[@]}" --job-name "n3-hub-$r" -o "$OUT/logs/hub-$r.out" \
            "$slurm/hub.sbatch" "$OUT" "$r")
        m=$(submit --dependency="after:$h" --job-name "n3-members-$r" --array "1-$MEMBERS" \
            -o "$OUT/logs/members-$r-%a.out" "$slurm/member.sbatch" "$OUT" "$r")
    fi
    printf 'members %d %s\nhub %d %s\n' "$r" "$m" "$r" "$h" >> "$OUT/jobs"
    prev=$h
done
echo "$NAME: $ROUNDS rounds of $MEMBERS members submitted (job ids in $OUT/jobs)"
[ "$WAIT" = 1 ] || exit 0

# --- --wait: until the last hub left the queue; then every job's (and array task's) state ----
states() { # JOBID: one state per job, or per array task
    scontrol -o show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'
}
while :; do
    pending=0
    while read -r _ _ id; do
        s=$(states "$id")
        if grep -Eq 'PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED' <<< "$s"; then
            pending=1
            # A job whose dependency can never be met would wait for ever.
            if scontrol -o show job "$id" 2>/dev/null | grep -q 'Reason=DependencyNeverSatisfied'; then
                awk '{ print $3 }' "$OUT/jobs" | xargs scancel 2>/dev/null || true
                echo "$NAME: error: job $id can never start (a round before it failed); the rest was cancelled" >&2
                tail -n 5 "$OUT"/logs/*.out >&2 || true
                exit 3
            fi
        fi
    done < "$OUT/jobs"
    [ "$pending" = 0 ] && break
    sleep 2
done
bad=0
while read -r what r id; do
    s=$(states "$id" | sort | uniq -c | tr -s ' ' | tr '\n' ',')
    [ "$(states "$id" | grep -vc '^COMPLETED$')" = 0 ] && [ -n "$(states "$id")" ] && continue
    echo "$NAME: error: $what of round $r (job $id) did not complete:${s%,}" >&2
    bad=1
done < "$OUT/jobs"
[ "$bad" = 0 ] || { tail -n 5 "$OUT"/logs/*.out >&2 || true; exit 3; }
cat "$OUT/rounds.tsv"
echo "$NAME: every job completed; final model $OUT/global-$ROUNDS.n3"
