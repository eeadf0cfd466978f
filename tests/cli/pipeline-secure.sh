#!/usr/bin/env bash
# examples/secure-round.sh end to end, and its result checked against plain fedavg with numpy;
# then the refusals a secure round needs: replays, double reveals, too few survivors.
source "$(dirname "$0")/lib.sh"
[ -x "$N3_TOOLS/n3-train" ] || { echo "n3-train not built (no libtorch): skipped"; echo "0 passed, 0 failed"; exit 0; }
EX="$N3_SRC/examples/secure-round.sh"

check_round() { # OUT CLIENTS DROPPED
    _case="secure-round.sh $2 clients, $3 dropped"
    if ! N3_BIN="$N3_TOOLS" LIMIT=300 bash "$EX" "$1" "$2" "$3" > "$T/round.log" 2>&1; then
        _fail "exit $?: $(tail -3 "$T/round.log")"; return
    fi
    _pass
    _case="secure.n3 equals plain fedavg of the $(( $2 - $3 )) survivors within the fixed-point bound"
    "$N3_PYTHON" - "$1" "$N3_SRC/tests/python/read_record.py" "$(( $2 - $3 ))" <<'PY' && _pass || _fail "mismatch"
import sys, json
from importlib.machinery import SourceFileLoader
import numpy as np
rr = SourceFileLoader("rr", sys.argv[2]).load_module()
out = sys.argv[1]
def arrays(path):
    import struct
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b, 16)[0]
    st = b[32:32 + n]
    h = struct.unpack_from("<Q", st, 0)[0]
    hdr = json.loads(st[8:8 + h]); data = st[8 + h:]
    res = {}
    for k, t in hdr.items():
        if k == "__metadata__": continue
        a, z = t["data_offsets"]
        res[k] = np.frombuffer(data[a:z], rr.NP[t["dtype"]]).astype(np.float64)
    return hdr.get("__metadata__", {}), res
ms, sec = arrays(out + "/secure.n3")
mp, pl = arrays(out + "/plain.n3")
assert sec.keys() == pl.keys()
worst = max(float(np.abs(sec[k] - pl[k]).max()) for k in sec)
# n survivors, f = 28 for 5 members (clip 1), weights samples / 2^20
n = int(sys.argv[3]); samples = int(ms["samples"])
bound = n * 2.0 ** -28 / (samples / 2 ** 20) + 1e-6
print("max |secure - plain| =", worst, "bound", bound)
assert worst <= bound, (worst, bound)
assert ms["samples"] == mp["samples"]
PY
}
check_round "$T/a" 5 2
check_round "$T/b" 4 0
_case="masked inputs export as U32 safetensors"
n3-inspect --to-safetensors "$T/a/masked-1.n3" -o "$T/m1.safetensors" 2>"$T/err" &&
    "$N3_PYTHON" "$N3_SRC/tests/python/read_record.py" safetensors "$T/m1.safetensors" | grep -q '"dtype": "U32"' \
    && _pass || _fail "no U32 tensors"
_case="too many dropped: the round ends with exit 3"
N3_BIN="$N3_TOOLS" LIMIT=100 bash "$EX" "$T/c" 4 2 > "$T/round.log" 2>&1
rc=$?
[ $rc -ne 0 ] && grep -q "only 2 survivors, the threshold is 3; nothing revealed" "$T/round.log" && _pass \
    || _fail "exit $rc: $(tail -2 "$T/round.log")"
expect 2 'secure-sum writes the mean update; it takes no --base' -- \
    n3-merge --rule secure-sum --roster r --authority a --round 1 --adverts x --base g.n3 -o "$T/next.n3"
assert_no_file "$T/next.n3"
finish
