#!/usr/bin/env bash
# Secure aggregation end to end (n3-secagg). First a SecAgg+ round (8 members, 4 neighbours
# each, 2 dropped) on synthetic updates with the real tools, its result checked against plain fedavg with numpy,
# and the refusals it needs; then examples/secure-round.sh (needs n3-train) with the complete
# graph and with SecAgg+, and the refusals a secure round needs: replays, double reveals, too few
# survivors.
source "$(dirname "$0")/lib.sh"
EX="$N3_SRC/examples/secure-round.sh"

# compare SECURE PLAIN MASKED SURVIVORS: secure equals plain within SURVIVORS * 2^-f / sum(weights),
# f and the weights read from the records (weights: samples / 2^20, the default --max-samples).
compare() {
    "$N3_PYTHON" - "$@" "$N3_SRC/tests/python/read_record.py" <<'PY'
import sys, json, struct
from importlib.machinery import SourceFileLoader
import numpy as np
secure, plain, masked, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rr = SourceFileLoader("rr", sys.argv[5]).load_module()
def arrays(path):
    b = open(path, "rb").read()
    size = struct.unpack_from("<Q", b, 16)[0]
    st = b[32:32 + size]
    h = struct.unpack_from("<Q", st, 0)[0]
    hdr = json.loads(st[8:8 + h]); data = st[8 + h:]
    res = {}
    for k, t in hdr.items():
        if k == "__metadata__" or k == "signature": continue
        a, z = t["data_offsets"]
        res[k] = np.frombuffer(data[a:z], rr.NP[t["dtype"]]).astype(np.float64)
    return hdr.get("__metadata__", {}), res
ms, sec = arrays(secure)
mp, pl = arrays(plain)
mm, _ = arrays(masked)
assert sec.keys() == pl.keys(), (sec.keys(), pl.keys())
worst = max(float(np.abs(sec[k] - pl[k]).max()) for k in sec)
bound = n * 2.0 ** -int(mm["frac_bits"]) / (int(ms["samples"]) / 2 ** 20) + 1e-6
print("max |secure - plain| =", worst, "bound", bound)
assert worst <= bound, (worst, bound)
assert ms["samples"] == mp["samples"]
assert int(ms["secagg_members"]) == n
PY
}

# members FILE: the member indices of a survivor list record, space-separated.
members() {
    "$N3_PYTHON" - "$1" <<'PY'
import sys, json, struct
b = open(sys.argv[1], "rb").read()
st = b[32:32 + struct.unpack_from("<Q", b, 16)[0]]
h = struct.unpack_from("<Q", st, 0)[0]
hdr = json.loads(st[8:8 + h]); a, z = hdr["member"]["data_offsets"]
print(" ".join(str(v) for v in struct.unpack_from("<%dI" % ((z - a) // 4), st, 8 + h + a)))
PY
}
export N3_STATE_DIR="$T/state" # where members record their adverts (one per round)

# --- SecAgg+ with the real tools, no training needed ---------------------------------------
n3-keys authority -o "$T/fed.ask" 2>/dev/null
n3-keys public "$T/fed.ask" > "$T/fed.pub"
for i in $(seq 1 8); do
    n3-keys request --id "m$i" -o "$T/m$i.secret" > "$T/m$i.req" 2>/dev/null
    n3-keys issue --authority "$T/fed.ask" -o "$T/m$i.partial" < "$T/m$i.req" 2>/dev/null
    n3-keys complete --secret "$T/m$i.secret" --partial "$T/m$i.partial" -o "$T/m$i.key" 2>/dev/null
    n3-keys public "$T/m$i.key"
done > "$T/fed.roster"
"$N3_PYTHON" - "$T" <<'PY'
import sys, json, struct, numpy as np
rng = np.random.default_rng(4)
for i in range(1, 9):
    a = rng.normal(0, 0.3, 3000).astype("<f4"); b = rng.normal(0, 0.3, 7).astype("<f4")
    h = json.dumps({"__metadata__": {"samples": str(100 + 17 * i)},
                    "b": {"dtype": "F32", "shape": [7], "data_offsets": [0, 28]},
                    "w": {"dtype": "F32", "shape": [3000], "data_offsets": [28, 28 + 12000]}}).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(f"{sys.argv[1]}/u{i}.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h); b.tofile(f); a.tofile(f)
PY
for i in $(seq 1 8); do
    n3-inspect --from-safetensors "$T/u$i.safetensors" --kind update -o "$T/u$i.n3"
done
R=(--roster "$T/fed.roster" --authority "$T/fed.pub" --round 3)
K=(--neighbours 4)
for i in $(seq 1 8); do
    expect 0 '' -- n3-secagg advertise --key "$T/m$i.key" "${R[@]}" "${K[@]}" --state "$T/m$i.state" -o "$T/adv-$i.n3"
done
cat "$T"/adv-*.n3 > "$T/adverts.n3"
# A second advert in the same round would unmask the member: refused whatever the state path.
expect 1 "member 'm1' already advertised in round 3" -- \
    n3-secagg advertise --key "$T/m1.key" "${R[@]}" "${K[@]}" --state "$T/m1-again.state" -o "$T/adv-again.n3"
expect 1 'already advertised' -- \
    n3-secagg advertise --key "$T/m1.key" "${R[@]}" "${K[@]}" --state "$T/m1.state" --force -o "$T/adv-again.n3"
assert_no_file "$T/adv-again.n3"
assert_no_file "$T/m1-again.state"
# A state file in the way is refused before the advert is recorded: the member can still
# advertise in that round with another state file.
R4=(--roster "$T/fed.roster" --authority "$T/fed.pub" --round 4)
expect 2 'refusing to overwrite' -- \
    n3-secagg advertise --key "$T/m1.key" "${R4[@]}" "${K[@]}" --state "$T/m1.state" -o "$T/adv-r4.n3"
assert_no_file "$T/adv-r4.n3"
expect 0 '' -- \
    n3-secagg advertise --key "$T/m1.key" "${R4[@]}" "${K[@]}" --state "$T/m1-r4.state" -o "$T/adv-r4.n3"
# t = 1 would make every share the secret; t <= half the holders draws a warning.
expect 2 'out of range 2..5' -- \
    n3-secagg advertise --key "$T/m1.key" "${R[@]}" "${K[@]}" --threshold 1 --state "$T/m1-t1.state" -o "$T/adv-t1.n3"
assert_no_file "$T/adv-t1.n3"
expect 0 'warning: --threshold 2 is at most half of the 5 share holders' -- \
    n3-secagg advertise --key "$T/m1.key" "${R[@]}" "${K[@]}" --threshold 2 --state "$T/m1-t2.state" -o "$T/adv-t2.n3"
expect 1 'made for --neighbours 4, this round uses --neighbours 6' -- \
    n3-secagg mask --key "$T/m1.key" "${R[@]}" --neighbours 6 --state "$T/m1.state" --adverts "$T/adverts.n3" \
    "$T/u1.n3" -o "$T/x-bad.n3"
assert_no_file "$T/x-bad.n3"
expect 1 'made for --neighbours 4, this round uses the complete graph' -- \
    n3-secagg mask --key "$T/m1.key" "${R[@]}" --state "$T/m1.state" --adverts "$T/adverts.n3" "$T/u1.n3" -o "$T/x-bad.n3"
assert_no_file "$T/x-bad.n3"
for i in $(seq 1 8); do
    expect 0 '' -- n3-secagg mask --key "$T/m$i.key" "${R[@]}" "${K[@]}" --state "$T/m$i.state" \
        --adverts "$T/adverts.n3" "$T/u$i.n3" -o "$T/x-$i.n3"
done
_case="a SecAgg+ advert holds 4 share boxes, not 8"
"$N3_PYTHON" "$N3_SRC/tests/python/read_record.py" record "$T/adv-1.n3" > "$T/adv.json" &&
    "$N3_PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1]))[0]; t=d["tensors"]["boxes"]; assert t["shape"][0]==4, t' \
        "$T/adv.json" 2>"$T/err" && _pass || _fail "$(cat "$T/err")"
# Members 7 and 8 drop after masking.
expect 0 '' -- n3-secagg survivors "${R[@]}" "${K[@]}" \
    "$T"/x-[1-6].n3 -o "$T/survivors.n3"
assert_eq "$(members "$T/survivors.n3")" "1 2 3 4 5 6" "survivor list"
# Three survivors cannot complete a K = 4 round: some member keeps fewer than 3 holders.
expect 0 '' -- n3-secagg survivors "${R[@]}" "${K[@]}" \
    "$T"/x-[1-3].n3 -o "$T/three.n3"
expect 3 'surviving share holders, the threshold is 3; nothing revealed' -- \
    n3-secagg reveal --key "$T/m1.key" "${R[@]}" "${K[@]}" --state "$T/m1.state" --survivors "$T/three.n3" -o "$T/v-bad.n3"
assert_no_file "$T/v-bad.n3"
# A member listed as dropped although its input arrived refuses: revealing could unmask it.
expect 0 '' -- n3-secagg survivors "${R[@]}" "${K[@]}" \
    "$T"/x-[2-6].n3 -o "$T/without-1.n3"
expect 1 'this member is not on the survivor list, although it masked an input; nothing revealed' -- \
    n3-secagg reveal --key "$T/m1.key" "${R[@]}" "${K[@]}" --state "$T/m1.state" --survivors "$T/without-1.n3" -o "$T/v-bad.n3"
assert_no_file "$T/v-bad.n3"
# A hand-written list is no survivor list: the members need the survivors' signed statements.
echo "1 2 3 4 5 6" > "$T/survivors.txt"
expect 1 'survivors.txt' -- \
    n3-secagg reveal --key "$T/m1.key" "${R[@]}" "${K[@]}" --state "$T/m1.state" --survivors "$T/survivors.txt" -o "$T/v-bad.n3"
expect 1 'not a survivor list' -- \
    n3-secagg reveal --key "$T/m1.key" "${R[@]}" "${K[@]}" --state "$T/m1.state" --survivors "$T/adv-2.n3" -o "$T/v-bad.n3"
assert_no_file "$T/v-bad.n3"
expect 2 'needs more than 8 members' -- \
    n3-secagg reveal --key "$T/m1.key" "${R[@]}" --neighbours 8 --state "$T/m1.state" --survivors "$T/survivors.n3" -o "$T/v-bad.n3"
expect 2 'at least 2' -- \
    n3-secagg reveal --key "$T/m1.key" "${R[@]}" --neighbours 1 --state "$T/m1.state" --survivors "$T/survivors.n3" -o "$T/v-bad.n3"
expect 1 'survivor list made for --neighbours 4, this round uses --neighbours 6' -- \
    n3-secagg reveal --key "$T/m1.key" "${R[@]}" --neighbours 6 --state "$T/m1.state" --survivors "$T/survivors.n3" -o "$T/v-bad.n3"
assert_no_file "$T/v-bad.n3"
for i in $(seq 1 6); do
    expect 0 '' -- n3-secagg reveal --key "$T/m$i.key" "${R[@]}" "${K[@]}" --state "$T/m$i.state" \
        --survivors "$T/survivors.n3" -o "$T/v-$i.n3"
done
expect 1 'made for --neighbours 4, this round uses the complete graph' -- \
    n3-secagg sum "${R[@]}" --adverts "$T/adverts.n3" "$T"/x-[1-6].n3 "$T"/v-*.n3 -o "$T/secure.n3"
assert_no_file "$T/secure.n3"
# Two reveals are too few: the aggregator needs 3 shares from each member's 5 holders.
expect 3 'the threshold is 3' -- \
    n3-secagg sum "${R[@]}" "${K[@]}" --adverts "$T/adverts.n3" "$T"/x-[1-6].n3 "$T"/v-[12].n3 -o "$T/secure.n3"
assert_no_file "$T/secure.n3"
expect 0 '' -- n3-secagg sum "${R[@]}" "${K[@]}" --adverts "$T/adverts.n3" -j 2 \
    "$T"/x-[1-6].n3 "$T"/v-*.n3 -o "$T/secure.n3"
expect 0 '' -- n3-merge --rule fedavg "$T"/u[1-6].n3 -o "$T/plain.n3"
_case="SecAgg+ secure sum equals plain fedavg of the 6 survivors within the fixed-point bound"
compare "$T/secure.n3" "$T/plain.n3" "$T/x-1.n3" 6 > "$T/cmp.log" 2>&1 && _pass || _fail "$(tail -3 "$T/cmp.log")"
expect 2 'n3-seal: hint: n3-secagg advertise' -- \
    n3-seal --advertise --key "$T/m1.key" -o "$T/s.n3"
expect 2 'n3-merge: hint: n3-secagg sum' -- n3-merge --rule secure-sum "$T/u1.n3" -o "$T/s.n3"
assert_no_file "$T/s.n3"

# --- examples/secure-round.sh: needs n3-train ------------------------------------------------
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch): the example rounds cannot run"

check_round() { # OUT CLIENTS DROPPED [NEIGHBOURS]
    _case="secure-round.sh $2 clients, $3 dropped${4:+, $4 neighbours}"
    if ! N3_BIN="$N3_TOOLS" LIMIT=300 bash "$EX" "$@" > "$T/round.log" 2>&1; then
        _fail "exit $?: $(tail -3 "$T/round.log")"; return
    fi
    _pass
    _case="secure.n3 equals plain fedavg of the $(( $2 - $3 )) survivors within the fixed-point bound"
    compare "$1/secure.n3" "$1/plain.n3" "$1/masked-1.n3" "$(( $2 - $3 ))" > "$T/cmp.log" 2>&1 \
        && _pass || _fail "$(tail -3 "$T/cmp.log")"
}
check_round "$T/a" 5 2
check_round "$T/b" 4 0
check_round "$T/d" 8 2 4
_case="secure-round.sh with SecAgg+ says so"
grep -q 'SecAgg+, 4 neighbours per member' "$T/round.log" && _pass || _fail "$(tail -2 "$T/round.log")"
_case="masked inputs export as U32 safetensors"
n3-inspect --to-safetensors "$T/a/masked-1.n3" -o "$T/m1.safetensors" 2>"$T/err" &&
    "$N3_PYTHON" "$N3_SRC/tests/python/read_record.py" safetensors "$T/m1.safetensors" | grep -q '"dtype": "U32"' \
    && _pass || _fail "no U32 tensors"
_case="too many dropped: the round ends with exit 3"
N3_BIN="$N3_TOOLS" LIMIT=100 bash "$EX" "$T/c" 4 2 > "$T/round.log" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "only 2 survivors, the threshold is 3; nothing revealed" "$T/round.log" && _pass \
    || _fail "exit $rc: $(tail -2 "$T/round.log")"
expect 2 'adverts is required' -- n3-secagg sum --roster r --authority a --round 1 -o "$T/next.n3"
assert_no_file "$T/next.n3"
expect 2 'base' -- n3-secagg sum --roster r --authority a --round 1 --adverts x --base g.n3 -o "$T/next.n3"
assert_no_file "$T/next.n3"
finish
