#!/usr/bin/env bash
# examples/chaos.sh — the cron/spool federation of examples/cron under a seeded schedule of SIGKILLs.
#
#   examples/chaos.sh [options] [OUTDIR]                 (OUTDIR defaults to chaos-out)
#
# Runs the deployment of examples/cron on one machine (members woken by node.sh, the hub's
# spool receiver `n3-send --recv --count 0 --spool`, hub-serve.sh, hub-merge.sh) twice from
# the same seeds: once undisturbed, once under a schedule drawn from --chaos-seed that kills
# (SIGKILL) members at random moments (the whole node.sh process group: fetching, training,
# sealing or sending), the hub's spool receiver while members send, and the hub's merge while
# it opens, merges or commits (at a random moment within the time that round's merge took
# undisturbed); each is started again, as cron, the timer or systemd's
# Restart= would. A round ends when the hub merged every member's update (quorum = members);
# members are woken again while it has not (node.sh then sends its sealed update again).
# Then, for both runs:
#   - the run completed: every round merged;
#   - every merged round equals the merge of the records the spool holds for it: the sealed
#     records in done/N, opened, unpacked and merged again over round N-1, give round N's
#     model bit for bit;
#   - no record merged twice: each sealed record (by its hash) is in one round's done/ only,
#     and each member has one record in each round (records lost = 0);
#   - the final test accuracy is within 2 points of the undisturbed run's.
# OUTDIR gets faults.tsv (every fault injected: round, target, delay) and summary.tsv; the
# last line printed is the summary. Exit status 1 when a check fails.
#
# --soak runs the undisturbed federation alone, its members sending through a relay (n3-send
# --recv --count 0 | n3-send, as a relay host would) to the hub's spool, and samples every
# round the resident memory (VmRSS) and open file descriptors of every process that lives
# across rounds (the spool receiver, the relay's receiver and sender, hub-serve.sh), and the
# peak resident memory of every per-round tool (each run by a wrapper that reads wait4's
# ru_maxrss). It checks
# that none grows by more than 10% after round 10 (memory against its most in rounds 2..10,
# descriptors against round 10's count), along with the spool checks above. OUTDIR gets
# soak-long.tsv (round, process, rss_kb, fds), soak-tools.tsv (round, tool, peak_kb) and
# soak.tsv (each process's and tool's figures at round 10 and at the end, and the growth).
#
# Options (defaults in brackets):
#   --rounds R        rounds [20]                    --members N      members [4]
#   --limit N         samples per member [300]       --eval-limit N   test samples [2000]
#   --model SPEC      model spec [examples/models/mlp.yaml]
#   --chaos-seed S    seed of the fault schedule [1]
#   --kill-rate P     percent chance, per member wake-up, per round for the receiver and per
#                     round for the merge, of a kill [35]
#   --soak            the soak described above, instead of the two runs
#   --port P          first of four loopback TCP ports [random]
# Environment: N3_BIN (the n3 tools; default build/tools, then PATH), DATA (Fashion-MNIST IDX
# folder), PYTHON (python3 for --soak's wrappers; default /usr/bin/python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ROUNDS=20 MEMBERS=4 LIMIT=300 EVAL_LIMIT=2000 MODEL=$here/models/mlp.yaml CHAOS_SEED=1 RATE=35
PORT=$((20000 + RANDOM % 20000)) OUT=chaos-out NAME=chaos.sh SOAK=0
. "$here/common.sh"
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) need "$@"; ROUNDS=$2; shift 2 ;;
        --members) need "$@"; MEMBERS=$2; shift 2 ;;
        --limit) need "$@"; LIMIT=$2; shift 2 ;;
        --eval-limit) need "$@"; EVAL_LIMIT=$2; shift 2 ;;
        --model) need "$@"; MODEL=$2; shift 2 ;;
        --chaos-seed) need "$@"; CHAOS_SEED=$2; shift 2 ;;
        --kill-rate) need "$@"; RATE=$2; shift 2 ;;
        --port) need "$@"; PORT=$2; shift 2 ;;
        --soak) SOAK=1; shift ;;
        -h|--help) usage ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) OUT=$1; shift ;;
    esac
done
isnum --rounds "$ROUNDS"; isnum --members "$MEMBERS"; isnum --limit "$LIMIT"; isnum --eval-limit "$EVAL_LIMIT"
isnum --chaos-seed "$CHAOS_SEED"; isnum --kill-rate "$RATE"; isnum --port "$PORT"
[ "$ROUNDS" -ge 1 ] || die "--rounds must be at least 1"
[ "$MEMBERS" -ge 1 ] || die "--members must be at least 1"
[ "$RATE" -le 100 ] || die "--kill-rate is a percentage (0 to 100), not $RATE"
[ -f "$MODEL" ] || die "model spec $MODEL not found"
require n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge n3-inspect flock setsid sha256sum
require_fmnist "$DATA"
PYTHON=${PYTHON:-/usr/bin/python3}
[ "$SOAK" = 0 ] || [ -x "$PYTHON" ] || die "--soak needs python3 ($PYTHON not found; set PYTHON)"
C=$here/cron
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
workdir
elimit=(); [ "$EVAL_LIMIT" -gt 0 ] && elimit=(--limit "$EVAL_LIMIT")

# start VAR CMD...: CMD in its own process group (its pid is the group's id) -> $VAR
start() {
    local var=$1
    shift
    setsid "$@" < /dev/null &
    printf -v "$var" %s $!
}
# The process groups a run leaves behind if it stops early: the receiver, the model server and
# the member or merge it was waiting for.
rx= serve= node= m= relay=
stop_groups() { local g; for g in $rx $serve $node $m $relay; do kill -9 -- "-$g" 2>/dev/null || true; done; }
kill_group() { kill -9 -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
round_of() { n3-inspect --json "$1" | sed -n 's/.*"round":"\([0-9]*\)".*/\1/p'; }
# chance P: true with probability P percent (the schedule's own generator, seeded)
chance() { [ $((RANDOM % 100)) -lt "$1" ]; }
# delay VAR MAX_TENTHS: a random delay in seconds, in tenths, into VAR (no subshell, so that
# the schedule's generator advances)
delay() { local t=$((RANDOM % $2)); printf -v "$1" '%d.%d' $((t / 10)) $((t % 10)); }

# deploy DIR PORT UPDATES: the authority, a hub and the members, as examples/cron/demo.sh sets
# them up; the members send their updates to port UPDATES
deploy() {
    local d=$1 port=$2 updates=$3 i
    mkdir -p "$d/hub/state" "$d/hub/spool/incoming"
    keys authority -o "$d/fed.ask"
    keys public "$d/fed.ask" > "$d/hub/state/fed.pub"
    enroll_in() { # NAME DIR
        keys request --id "$1" -o "$2/$1.secret" > "$2/$1.req"
        keys issue --authority "$d/fed.ask" --log "$d/issued.log" < "$2/$1.req" > "$2/$1.partial"
        keys complete --secret "$2/$1.secret" --partial "$2/$1.partial" -o "$2/$1.key"
    }
    enroll_in hub "$d/hub/state"
    keys public "$d/hub/state/hub.key" > "$d/hub.pub"
    for i in $(seq 1 "$MEMBERS"); do
        mkdir -p "$d/node$i"
        enroll_in "node$i" "$d/node$i"
        keys public "$d/node$i/node$i.key"
        cat > "$d/node$i/node.conf" <<CONF
N3_HUB_MODEL=tcp://127.0.0.1:$((port + 1))
N3_HUB_UPDATES=tcp://127.0.0.1:$updates
N3_HUB_PUB=$d/hub.pub
N3_KEY=$d/node$i/node$i.key
N3_DATA=$DATA
N3_TRAIN_ARGS="--partition dirichlet:0.5 --clients $MEMBERS --client $((i - 1)) --partition-seed 1 --limit $LIMIT --lr 0.05 --momentum 0.9 --threads 1"
N3_STATE=$d/node$i/state
N3_TIMEOUT=20
CONF
    done > "$d/hub/state/fed.roster"
    printf 'N3_STATE=%s\nN3_SPOOL=%s\nN3_QUORUM=%s\n' "$d/hub/state" "$d/hub/spool" "$MEMBERS" > "$d/hub/hub.conf"
    n3-train --model "$MODEL" --init-only --seed 1 -o "$d/hub/state/global.n3"
    cp "$d/hub/state/global.n3" "$d/global-0.n3"
}

# The hub's spool receiver; restarted after each kill.
start_receiver() { # DIR PORT
    start rx n3-send --recv "tcp://127.0.0.1:$2" --count 0 --spool "$1/hub/spool/incoming" -q
}

# wake DIR I [KILL_AT] [RX_AT]: one wake-up of member I; KILL_AT: SIGKILL its process group after
# that many seconds; RX_AT: kill the hub's receiver that many seconds into the wake-up and start
# it again. Then the member is woken again until its run ends well (as the next timer would).
wake() {
    local d=$1 i=$2 kill_at=${3:-} rx_at=${4:-} tries
    start node env N3_NODE_CONF="$d/node$i/node.conf" bash "$C/node.sh"
    if [ -n "$rx_at" ]; then
        sleep "$rx_at"
        kill_group "$rx"
        fault "$r" receiver "$rx_at"
        sleep 0.3
        start_receiver "$d" "$port"
    fi
    if [ -n "$kill_at" ]; then
        sleep "$kill_at"
        if kill -0 "$node" 2>/dev/null; then
            kill_group "$node"
            fault "$r" "member$i" "$kill_at"
        fi
    fi
    for tries in 1 2 3 4 5; do
        wait "$node" 2>/dev/null && return 0
        start node env N3_NODE_CONF="$d/node$i/node.conf" bash "$C/node.sh"
    done
    wait "$node" || die "round $r: member $i failed five times (see $d/log)"
}
fault() { [ "$mode" = chaos ] && printf '%s\t%s\t%s\n' "$@" >> "$OUT/faults.tsv"; return 0; }

# federation DIR PORT MODE: ROUNDS rounds; MODE chaos draws faults from the schedule
federation() {
    local d=$1 port=$2 mode=$3 i attempt merge_at k x rx_member span t t0
    trap stop_groups EXIT
    RANDOM=$CHAOS_SEED
    if [ "$mode" = soak ]; then
        deploy "$d" "$port" "$((port + 2))"
        start relay bash -c "n3-send --recv tcp://127.0.0.1:$((port + 2)) --count 0 -q | n3-send tcp://127.0.0.1:$port -q"
    else
        deploy "$d" "$port" "$port"
    fi
    start_receiver "$d" "$port"
    start serve bash "$C/hub-serve.sh" "tcp://127.0.0.1:$((port + 1))" "$d/hub/state/global.n3"
    : > "$W/peak.log"
    for r in $(seq 1 "$ROUNDS"); do
        # The receiver's kill, if any, falls in one member's wake-up.
        rx_member=0
        [ "$mode" = chaos ] && chance "$RATE" && rx_member=$((RANDOM % MEMBERS + 1))
        for i in $(seq 1 "$MEMBERS"); do
            k= x=
            [ "$mode" = chaos ] && chance "$RATE" && delay k 40
            [ "$i" = "$rx_member" ] && delay x 30
            wake "$d" "$i" "$k" "$x"
        done
        # The spool writes as updates land (through the relay, a moment later).
        for attempt in $(seq 1 50); do
            [ "$(find "$d/hub/spool/incoming" -name '*.n3' | wc -l)" -ge "$MEMBERS" ] && break
            sleep 0.2
        done
        for attempt in $(seq 1 8); do
            merge_at=
            # The merge's kill falls within its run: at a random moment of the time the same
            # round's merge took in the undisturbed run (hundredths of a second).
            if [ "$mode" = chaos ] && [ "$attempt" = 1 ] && chance "$RATE"; then
                span=$(awk -v r="$r" '$1 == r { printf "%d", $2 * 100 }' "$W/merge-times" 2>/dev/null)
                [ -n "$span" ] && [ "$span" -ge 5 ] || span=5
                t=$((RANDOM % span))
                printf -v merge_at '%d.%02d' $((t / 100)) $((t % 100))
            fi
            t0=$EPOCHREALTIME
            start m env PATH="$PATH" N3_HUB_CONF="$d/hub/hub.conf" bash "$C/hub-merge.sh"
            if [ -n "$merge_at" ]; then
                sleep "$merge_at"
                kill -0 "$m" 2>/dev/null && { kill_group "$m"; fault "$r" merge "$merge_at"; }
            fi
            wait "$m" 2>/dev/null || true
            [ "$mode" = calm ] && [ "$attempt" = 1 ] &&
                awk -v r="$r" -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { print r, a - b }' >> "$W/merge-times"
            [ "$(round_of "$d/hub/state/global.n3")" = "$r" ] && break
            # Not merged: an update is missing (a kill lost it in flight, or a member fetched the
            # model of the round before); wake every member again.
            sleep 0.5
            for i in $(seq 1 "$MEMBERS"); do wake "$d" "$i"; done
        done
        [ "$(round_of "$d/hub/state/global.n3")" = "$r" ] || die "round $r was never merged (see $d/log)"
        cp "$d/hub/state/global.n3" "$d/global-$r.n3"
        [ "$mode" = soak ] && sample "$r"
        echo "$NAME: $mode: round $r merged" >&2
    done
    kill "$serve" 2>/dev/null || true
    sleep 0.2
    kill_group "$serve"
    kill_group "$rx"
    [ -z "$relay" ] || kill_group "$relay"
    serve= rx= relay=
}

# sample ROUND: the long-running processes' memory and descriptors, the per-round tools' peaks
sample() {
    local p name
    # (the tools run under /usr/bin/time here: a group's n3-send is the child of its pid)
    for p in $serve $(pgrep -g "$rx" -x n3-send) $(pgrep -g "$relay" -x n3-send); do
        [ -r "/proc/$p/status" ] || continue
        name=$(tr '\0' ' ' < "/proc/$p/cmdline")
        case $name in
            *hub-serve.sh*) name=hub-serve.sh ;;
            *n3-send\ --recv\ *--spool*) name=spool-receiver ;;
            *n3-send\ --recv*) name=relay-receiver ;;
            *n3-send\ tcp*) name=relay-sender ;;
        esac
        printf '%d\t%s\t%s\t%s\n' "$1" "$name" "$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' "/proc/$p/status")" \
            "$(ls "/proc/$p/fd" | wc -l)" >> "$OUT/soak-long.tsv"
    done
    # The per-round tools: each line of peak.log is "TOOL PEAK_KB"; one figure per tool and round.
    grep -E '^n3-[a-z]+ [0-9]+$' "$W/peak.log" | sort -k2,2n | awk -v r="$1" '{ m[$1] = $2 } END { for (t in m) printf "%d\t%s\t%d\n", r, t, m[t] }' \
        | sort >> "$OUT/soak-tools.tsv"
    : > "$W/peak.log"
}

# shims DIR: a folder of n3-* wrappers that run each tool as their child and append its peak
# resident memory (wait4's ru_maxrss) to $W/peak.log; signals are passed on to the tool, and
# the wrapper ends as the tool did (hub-serve.sh stops a pass with SIGTERM)
shims() {
    local t
    mkdir -p "$1"
    cat > "$1/shim.py" <<'PY'
import os, signal, sys
real, log = sys.argv[1], sys.argv[2]
pid = os.fork()
if pid == 0:
    os.execv(real, [real] + sys.argv[3:])
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, lambda n, _: os.kill(pid, n))
_, status, usage = os.wait4(pid, 0)
with open(log, "a") as f:
    f.write("%s %d\n" % (os.path.basename(real), usage.ru_maxrss))
if os.WIFSIGNALED(status):
    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
    os.kill(os.getpid(), os.WTERMSIG(status))
sys.exit(os.WEXITSTATUS(status))
PY
    for t in n3-keys n3-train n3-eval n3-encode n3-seal n3-send n3-merge n3-inspect; do
        printf '#!/bin/sh\nexec %s %s %s %s "$@"\n' "$PYTHON" "$1/shim.py" "$(command -v "$t")" "$W/peak.log" > "$1/$t"
        chmod +x "$1/$t"
    done
}

# verify DIR: checks the spool against the models; prints "lost twice" counts
verify() {
    local d=$1 r f lost=0 twice=0 bad=0 n
    for r in $(seq 1 "$ROUNDS"); do
        rm -rf "$W/v" && mkdir "$W/v"
        n=0
        for f in "$d/hub/spool/done/$r"/*.n3; do
            [ -e "$f" ] || continue
            n=$((n + 1))
            n3-seal --open --key "$d/hub/state/hub.key" --authority "$d/hub/state/fed.pub" \
                --roster "$d/hub/state/fed.roster" --round "$r" --sender "$W/v/$n.sender" -q "$f" \
                | n3-encode -d -o "$W/v/$n.update"
            cut -d' ' -f1 "$W/v/$n.sender" >> "$W/v/senders"
        done
        lost=$((lost + MEMBERS - $(sort -u "$W/v/senders" 2>/dev/null | wc -l)))
        twice=$((twice + n - $(sort -u "$W/v/senders" 2>/dev/null | wc -l)))
        n3-merge --rule fedavg --base "$d/global-$((r - 1)).n3" "$W"/v/*.update -o "$W/v/again.n3" -q
        cmp -s "$W/v/again.n3" "$d/global-$r.n3" || { bad=$((bad + 1)); echo "$NAME: round $r: the spool's records do not merge into round $r's model" >&2; }
    done
    # A sealed record in two rounds' done/ folders was merged twice.
    twice=$((twice + $(for f in "$d"/hub/spool/done/*/*.n3; do sha256sum < "$f"; done | sort | uniq -d | wc -l)))
    echo "$lost $twice $bad"
}

accuracy() { n3-eval "$1" --data "$DATA" --split test "${elimit[@]}" --json | json_num accuracy; }

: > "$OUT/faults.tsv"
# Each run in a subshell of its own (in the background, so that set -e holds inside it).
run() { # NAME PORT
    mkdir "$W/$1"
    ( federation "$W/$1" "$2" "$1" ) > "$W/$1/log" 2>&1 &
    wait $! || { tail -20 "$W/$1/log" >&2; die "the $1 run failed"; }
}
if [ "$SOAK" = 1 ]; then
    [ "$ROUNDS" -gt 10 ] || die "--soak needs more than 10 rounds (growth is measured after round 10)"
    printf 'round\tprocess\trss_kb\tfds\n' > "$OUT/soak-long.tsv"
    printf 'round\ttool\tpeak_kb\n' > "$OUT/soak-tools.tsv"
    shims "$W/shims"
    PATH="$W/shims:$PATH"
    run soak "$PORT"
    PATH=${PATH#"$W/shims:"}
    read -r lost twice bad <<< "$(verify "$W/soak")"
    # growth: per process and tool, the figure at the end against its most in rounds 2..10
    awk -F'\t' -v R="$ROUNDS" '
        FNR == 1 { file++; next }
        file == 1 { k = "process " $2; v = $3; f = $4
                    if ($1 >= 2 && $1 <= 10 && v > base[k]) base[k] = v
                    if ($1 == 10) fd10[k] = f
                    if ($1 > 10 && v > top[k]) top[k] = v
                    if ($1 == R) { fdend[k] = f; last[k] = v } }
        file == 2 { k = "tool " $2; v = $3
                    if ($1 >= 2 && $1 <= 10 && v > base[k]) base[k] = v
                    if ($1 > 10 && v > top[k]) top[k] = v }
        END { printf "what\tkb_rounds_2_10\tkb_after_10\tgrowth\tfds_round_10\tfds_end\tok\n"
              bad = 0
              for (k in base) { g = base[k] ? top[k] / base[k] - 1 : 0
                  ok = g <= 0.10 && (!(k in fd10) || fdend[k] <= fd10[k])
                  if (!ok) bad++
                  printf "%s\t%d\t%d\t%+.1f%%\t%s\t%s\t%s\n", k, base[k], top[k], 100 * g,
                         (k in fd10) ? fd10[k] : "-", (k in fdend) ? fdend[k] : "-", ok ? "yes" : "NO" }
              exit (bad > 0 ? 1 : 0) }' "$OUT/soak-long.tsv" "$OUT/soak-tools.tsv" > "$OUT/soak.tsv" && flat=1 || flat=0
    column -t -s $'\t' "$OUT/soak.tsv" 2>/dev/null || cat "$OUT/soak.tsv"
    fail=0
    [ "$flat" = 1 ] || { echo "$NAME: error: a process or tool grew by more than 10% after round 10, or leaked descriptors ($OUT/soak.tsv)" >&2; fail=1; }
    [ "$lost$twice$bad" = 000 ] || { echo "$NAME: error: $lost records lost, $twice merged twice, $bad rounds differ from their spool" >&2; fail=1; }
    [ "$fail" = 0 ] && echo "$NAME: soak: $ROUNDS rounds, $(($(wc -l < "$OUT/soak.tsv") - 1)) figures flat within 10% after round 10, no descriptor leaked, 0 records lost"
    exit "$fail"
fi
run calm "$PORT"
run chaos "$((PORT + 2))"
read -r calm_lost calm_twice calm_bad <<< "$(verify "$W/calm")"
read -r lost twice bad <<< "$(verify "$W/chaos")"
acc_calm=$(accuracy "$W/calm/global-$ROUNDS.n3")
acc=$(accuracy "$W/chaos/global-$ROUNDS.n3")
same=no; cmp -s "$W/calm/global-$ROUNDS.n3" "$W/chaos/global-$ROUNDS.n3" && same=yes
faults=$(wc -l < "$OUT/faults.tsv")
rejected=$(find "$W/chaos/hub/spool/rejected" -name '*.n3' 2>/dev/null | wc -l)
{
    printf 'rounds\tmembers\tfaults\tmember_kills\treceiver_kills\tmerge_kills\trecords_lost\tmerged_twice\tremerge_mismatch\trejected_copies\taccuracy_calm\taccuracy_chaos\tsame_model\n'
    printf '%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.4f\t%.4f\t%s\n' "$ROUNDS" "$MEMBERS" "$faults" \
        "$(grep -c $'\tmember' "$OUT/faults.tsv" || true)" "$(grep -c $'\treceiver' "$OUT/faults.tsv" || true)" \
        "$(grep -c $'\tmerge' "$OUT/faults.tsv" || true)" "$lost" "$twice" "$bad" "$rejected" "$acc_calm" "$acc" "$same"
} > "$OUT/summary.tsv"
column -t -s $'\t' "$OUT/summary.tsv" 2>/dev/null || cat "$OUT/summary.tsv"
fail=0
[ "$calm_lost$calm_twice$calm_bad" = 000 ] || { echo "$NAME: error: the undisturbed run lost $calm_lost, merged $calm_twice twice, $calm_bad rounds differ" >&2; fail=1; }
[ "$lost" = 0 ] || { echo "$NAME: error: $lost records lost under faults" >&2; fail=1; }
[ "$twice" = 0 ] || { echo "$NAME: error: $twice records merged twice under faults" >&2; fail=1; }
[ "$bad" = 0 ] || { echo "$NAME: error: $bad rounds do not equal the merge of their spooled records" >&2; fail=1; }
if [ "$(echo "d = $acc - $acc_calm; if (d < 0) d = -d; d <= 0.02" | bc -l)" != 1 ]; then
    echo "$NAME: error: final accuracy $acc is more than 2 points from the undisturbed run's $acc_calm" >&2
    fail=1
fi
[ "$fail" = 0 ] && echo "$NAME: $ROUNDS rounds, $faults faults injected, 0 records lost, 0 merged twice, every round re-merges bit for bit; accuracy $acc (undisturbed $acc_calm)"
exit "$fail"
