#!/usr/bin/env bash
# examples/slurm/ on a single-node Slurm cluster that this test starts itself in $T: munged with
# its own key and socket, slurmctld and slurmd with a generated slurm.conf (free ports, state,
# spool and logs in $T, proctrack/linuxproc and task/none: no cgroups, no systemd). A 3-round,
# 8-member federation runs through sbatch (an array job per round, the hub after it); every job
# must finish COMPLETED and the final model must reach the accuracy an MLP reaches with margin.
# Needs: slurm-wlm and munge (make deps), root (SlurmUser=root), python3 for free ports. Every
# daemon started here is stopped on exit. Skipped (exit 77) when Slurm cannot start, with why.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch)"
for d in munged slurmctld slurmd sbatch scontrol; do
    command -v "$d" >/dev/null || [ -x "/usr/sbin/$d" ] || skip "$d not found: apt-get install slurm-wlm munge (make deps)"
done
export PATH="$PATH:/usr/sbin"
[ "$(id -u)" = 0 ] || skip "the test cluster runs its daemons as SlurmUser=root, and this is uid $(id -u)"
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || skip "no Fashion-MNIST (apt-get install dataset-fashion-mnist)"

S=$T/slurm
mkdir -p "$S/munge" "$S/state" "$S/spool" "$S/log"
chmod 700 "$S/munge"
stop_daemons() {
    local f p
    for f in "$S/slurmd.pid" "$S/slurmctld.pid" "$S/munge/munged.pid"; do
        [ -s "$f" ] || continue
        p=$(cat "$f")
        kill "$p" 2>/dev/null || continue
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap stop_daemons EXIT
daemon_log() { tail -n 5 "$S"/log/*.log "$S/munge/munged.log" 2>/dev/null | head -c 1500; }

head -c 1024 /dev/urandom > "$S/munge/munge.key"
chmod 400 "$S/munge/munge.key"
munged -f --key-file="$S/munge/munge.key" --socket="$S/munge/munge.socket.2" \
    --pid-file="$S/munge/munged.pid" --log-file="$S/munge/munged.log" --seed-file="$S/munge/munged.seed" \
    > "$S/log/munged.out" 2>&1 || skip "munged does not start: $(cat "$S/log/munged.out")"
free_port() { "$N3_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
host=$(hostname -s)
cat > "$S/slurm.conf" <<CONF
ClusterName=n3test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$S/munge/munge.socket.2
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=n3 Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$S/slurm.conf
slurmctld -f "$SLURM_CONF" > "$S/log/slurmctld.out" 2>&1 || skip "slurmctld does not start: $(cat "$S/log/slurmctld.out") $(daemon_log)"
slurmd -f "$SLURM_CONF" > "$S/log/slurmd.out" 2>&1 || skip "slurmd does not start: $(cat "$S/log/slurmd.out") $(daemon_log)"
up=
for _ in $(seq 1 100); do
    sinfo -h -o %t 2>/dev/null | grep -Eq '^(idle|mix|alloc)' && { up=1; break; }
    sleep 0.2
done
[ -n "$up" ] || skip "the node never became idle: $(sinfo 2>&1) $(daemon_log)"

fed() { N3_BIN="$N3_TOOLS" timeout 300 bash "$N3_SRC/examples/slurm/federation.sh" "$@"; }
_case="federation.sh: 3 rounds of 8 members through sbatch (array job + hub job per round)"
if fed --members 8 --rounds 3 --limit 300 --eval-limit 2000 --wait "$T/fed" > "$T/log" 2>&1; then _pass
else _fail "exit $?: $(tail -n 8 "$T/log")"; fi
assert_eq "$(wc -l < "$T/fed/jobs")" 6 "two jobs per round"
_case="every job and array task finished COMPLETED (scontrol show job)"
states=$(awk '{ print $3 }' "$T/fed/jobs" | while read -r id; do
    scontrol -o show job "$id" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; done | sort | uniq -c | tr -s ' ')
assert_eq "$states" " 27 COMPLETED" "3 x (8 member tasks + 1 hub) completed"
assert_eq "$(awk -F'\t' 'NR > 1 { print $4 }' "$T/fed/rounds.tsv" | tr '\n' ' ')" "8 8 8 " "8 updates merged every round"
_case="the final model's accuracy (MLP, 8 x 300 samples, 3 rounds) is above 0.5 (0.60 measured)"
awk -F'\t' 'NR == 4 { exit !($2 > 0.5) }' "$T/fed/rounds.tsv" && _pass || _fail "$(cat "$T/fed/rounds.tsv")"
expect 0 '' -- n3-inspect --check "$T/fed/global-3.n3"

_case="--transport tcp: the hub starts first, the members send to its node"
if fed --members 4 --rounds 1 --limit 200 --eval-limit 500 --transport tcp --port "$(free_port)" \
        --timeout 60 --wait "$T/tcp" > "$T/log" 2>&1; then _pass
else _fail "exit $?: $(tail -n 8 "$T/log")"; fi
assert_eq "$(awk -F'\t' 'NR == 2 { print $4 }' "$T/tcp/rounds.tsv")" 4 "tcp: 4 updates merged"

_case="bad flags are refused before anything is submitted"
fed --members 2 --rounds 2 --limit 100 --eval-limit 200 --model "$T/nonexistent.yaml" "$T/bad" > "$T/log" 2>&1
assert_eq "$?" 2 "a missing model spec is refused before anything is submitted"
assert_match 'federation.sh: error: model spec .* not found' "$T/log"
assert_no_file "$T/bad/jobs"
expect 2 'federation.sh: error: no DIR' -- fed --members 2
expect 2 'federation.sh: error: --transport must be spool or tcp' -- fed --transport udp "$T/x"
finish
