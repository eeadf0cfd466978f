#!/usr/bin/env bash
# n3-send across three hosts: network namespaces created here (hub, a, b), each joined to the
# hub by a veth pair; the hub-b link is made lossy and slow (tc netem; a tbf rate limit where
# netem is missing). Rounds: both nodes deliver over the bad link; a model is published to
# both; node b is killed in the middle of a large record and the hub closes the round on its
# quorum without emitting any part of b's record. Skips, saying why, when not root or when
# namespaces are unavailable. Everything is removed at exit.
source "$(dirname "$0")/../cli/lib.sh"
PEER="$N3_SRC/tests/net/peer.py"
PY="$N3_PYTHON"
NS_HUB="n3hub$$" NS_A="n3a$$" NS_B="n3b$$"

[ "$(id -u)" = 0 ] || skip "multi-host test needs root for ip netns (running as $(id -un))"
command -v ip >/dev/null || skip "ip (iproute2) not installed"
ip netns add "$NS_HUB" 2>/dev/null || skip "network namespaces unavailable here (ip netns add failed)"

cleanup() {
    for ns in "$NS_HUB" "$NS_A" "$NS_B"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$T"
}
trap cleanup EXIT
ip netns add "$NS_A" && ip netns add "$NS_B" || skip "cannot create three namespaces"
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# hub 10.77.1.1 <-> a 10.77.1.2, hub 10.77.2.1 <-> b 10.77.2.2
ip -n "$NS_HUB" link add ha type veth peer name va netns "$NS_A"
ip -n "$NS_HUB" link add hb type veth peer name vb netns "$NS_B"
ip -n "$NS_HUB" addr add 10.77.1.1/24 dev ha
ip -n "$NS_HUB" addr add 10.77.2.1/24 dev hb
ip -n "$NS_A" addr add 10.77.1.2/24 dev va
ip -n "$NS_B" addr add 10.77.2.2/24 dev vb
for l in "$NS_HUB ha" "$NS_HUB hb" "$NS_HUB lo" "$NS_A va" "$NS_A lo" "$NS_B vb" "$NS_B lo"; do
    set -- $l
    ip -n "$1" link set "$2" up
done
_case="hosts reach each other"
if ! command -v ping >/dev/null; then
    echo "note: no ping here; the first round shows the links work"
elif in_ns "$NS_A" ping -c1 -W2 10.77.1.1 >/dev/null 2>&1 && in_ns "$NS_B" ping -c1 -W2 10.77.2.1 >/dev/null 2>&1; then
    _pass
else
    _fail "ping across the veth pairs failed"
fi

# The bad link, both directions: lossy and slow with netem, else slow with tbf.
bad_link() {
    local ns=$1 dev=$2
    if in_ns "$ns" tc qdisc add dev "$dev" root netem delay 20ms 5ms loss 3% rate 40mbit 2>/dev/null; then
        echo netem
    elif in_ns "$ns" tc qdisc add dev "$dev" root tbf rate 40mbit burst 64kb latency 200ms 2>/dev/null; then
        echo tbf
    else
        echo none
    fi
}
kind=$(bad_link "$NS_HUB" hb)
bad_link "$NS_B" vb >/dev/null
case $kind in
netem) echo "note: hub-b link: netem delay 20ms, 3% loss, 40 Mbit/s" ;;
tbf) echo "note: tc netem unavailable here (no sch_netem); hub-b link is slow (tbf 40 Mbit/s), not lossy" ;;
*) echo "note: tc unavailable; hub-b link left as it is" ;;
esac

mk() { "$PY" "$PEER" st "$T/st" "$2" "$3" && n3-inspect --from-safetensors "$T/st" --kind update -o "$1"; }
mk "$T/ra.n3" 100000 1
mk "$T/rb.n3" 250000 2                 # 1 MiB over the bad link
mk "$T/model.n3" 1000000 3             # 4 MiB broadcast
mk "$T/bigb.n3" $((8 * 1024 * 1024)) 4 # 32 MiB: several seconds over the bad link

# Round 1: both nodes deliver, one over the bad link.
in_ns "$NS_HUB" timeout 60 n3-send --recv 'tcp://*:7000' --count 2 --timeout 40 --spool "$T/inbox" \
    >/dev/null 2>"$T/hub.err" &
hub=$!
mkdir -p "$T/inbox"
sleep 0.3
in_ns "$NS_A" timeout 60 n3-send --timeout 40 tcp://10.77.1.1:7000 "$T/ra.n3" 2>"$T/a.err" &
a=$!
in_ns "$NS_B" timeout 60 n3-send --timeout 40 tcp://10.77.2.1:7000 "$T/rb.n3" 2>"$T/b.err" &
b=$!
wait $a; ra=$?; wait $b; rb=$?; wait $hub; rh=$?
assert_eq "$rh$ra$rb" 000 "round 1: hub and both nodes exit 0"
want=$(sha256sum "$T/ra.n3" "$T/rb.n3" | cut -c1-64 | sort)
got=$(for f in "$T"/inbox/*.n3; do sha256sum <"$f" | cut -c1-64; done | sort)
assert_eq "$got" "$want" "round 1: both records whole in the hub's spool"

# The model goes out to both nodes.
in_ns "$NS_HUB" timeout 60 n3-send --pub 'tcp://*:7001' --subscribers 2 --timeout 40 "$T/model.n3" 2>"$T/pub.err" &
pub=$!
in_ns "$NS_A" timeout 60 n3-send --sub tcp://10.77.1.1:7001 --count 1 --timeout 40 >"$T/ga.n3" 2>>"$T/a.err" &
a=$!
in_ns "$NS_B" timeout 60 n3-send --sub tcp://10.77.2.1:7001 --count 1 --timeout 40 >"$T/gb.n3" 2>>"$T/b.err" &
b=$!
wait $a; ra=$?; wait $b; rb=$?; wait $pub; rp=$?
assert_eq "$rp$ra$rb" 000 "publish: hub and both subscribers exit 0"
_case="node a got the model"; cmp -s "$T/ga.n3" "$T/model.n3" && _pass || _fail "differs"
_case="node b got the model over the bad link"; cmp -s "$T/gb.n3" "$T/model.n3" && _pass || _fail "differs"

# Round 2: node b dies in the middle of its large record; the quorum closes the round.
in_ns "$NS_HUB" timeout 60 n3-send --recv 'tcp://*:7002' --count 2 --quorum 1 --timeout 8 \
    >"$T/round2.n3" 2>"$T/hub2.err" &
hub=$!
sleep 0.3
in_ns "$NS_A" timeout 60 n3-send --timeout 20 tcp://10.77.1.1:7002 "$T/ra.n3" 2>>"$T/a.err" &
a=$!
in_ns "$NS_B" timeout 60 n3-send --timeout 20 tcp://10.77.2.1:7002 "$T/bigb.n3" 2>>"$T/b.err" &
sleep 2
for p in $(ip netns pids "$NS_B"); do kill -9 "$p" 2>/dev/null; done # the host dies
ip -n "$NS_HUB" link set hb down
wait $a; ra=$?; wait $hub; rh=$?
assert_eq "$rh$ra" 00 "round 2: hub closes on its quorum, node a exits 0"
_case="round 2: only node a's record, whole"; cmp -s "$T/round2.n3" "$T/ra.n3" && _pass || _fail "$(stat -c %s "$T/round2.n3") bytes"
assert_match 'timed out after 8 s with 1 of 2 records; quorum 1 met' "$T/hub2.err" "the hub says the quorum closed it"

# Round 3: the hub's receiver dies and is restarted; node a's records wait and then go to it.
# (ip netns exec execs the tool, so $! is the receiver itself; --timeout bounds it)
ip netns exec "$NS_HUB" n3-send --recv "tcp://*:7003" --count 0 --timeout 30 >/dev/null 2>&1 &
hub=$!
sleep 0.3
kill -9 $hub
wait $hub 2>/dev/null
cat "$T/ra.n3" "$T/rb.n3" >"$T/ab.n3"
in_ns "$NS_A" timeout 60 n3-send --timeout 20 tcp://10.77.1.1:7003 "$T/ab.n3" 2>>"$T/a.err" &
a=$!
sleep 1
in_ns "$NS_HUB" timeout 60 n3-send --recv 'tcp://*:7003' --count 2 --timeout 20 >"$T/round3.n3" 2>"$T/hub3.err" &
hub=$!
wait $a; ra=$?; wait $hub; rh=$?
assert_eq "$rh$ra" 00 "round 3: the restarted receiver gets node a's records"
_case="round 3: both records whole, in order"; cmp -s "$T/round3.n3" "$T/ab.n3" && _pass || _fail "differs"

finish
