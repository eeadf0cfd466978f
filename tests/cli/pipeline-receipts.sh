#!/usr/bin/env bash
# Contribution scores and receipts with the real binaries: n3-merge --scores (TSV and JSON,
# against a numpy reference, order-independent), --min-score, --receipts with n3-keys receipt
# keys, n3-keys ledger on a ledger that was tampered with, reordered, cut or forged, and
# n3-keys claim / verify-claim with the right and the wrong key. Each failure exits 1.
source "$(dirname "$0")/lib.sh"
PY=$N3_PYTHON
MK="$N3_SRC/tests/merge/make_tensors.py"
cd "$T"

# A federation with a merger (hub) and a base model; five honest updates, a free rider (zeros)
# and a scaled update, each carrying a fresh receipt key.
n3-keys authority -o fed.ask 2> /dev/null
n3-keys public fed.ask > fed.pub
for who in hub mallory; do
    n3-keys request --id $who -o $who.secret > $who.req
    n3-keys issue --authority fed.ask -o $who.partial < $who.req 2> /dev/null
    n3-keys complete --secret $who.secret --partial $who.partial -o $who.key 2> /dev/null
    n3-keys public $who.key > $who.pub
done
$PY "$MK" base.st --seed 100
n3-inspect --from-safetensors base.st --kind model --meta round=4 -o base.n3
H=$(n3-inspect --json base.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
$PY - <<'PYEOF'
import json, struct, numpy as np
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
    return h, b[8 + n:]
h, d = load("base.st")
rng = np.random.default_rng(5)
common = {k: rng.normal(0, 0.1, v["shape"]).astype(np.float32) for k, v in h.items() if k != "__metadata__"}
def save(path, t):
    hdr, blobs, off = {}, [], 0
    for k, a in t.items():
        raw = a.astype("<f4").tobytes(); hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw); off += len(raw)
    text = json.dumps(hdr, separators=(",", ":")).encode(); text += b" " * ((8 - len(text) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
ups = []
for i in range(5):
    ups.append({k: (c + rng.normal(0, 0.03, c.shape)).astype(np.float32) for k, c in common.items()})
ups.append({k: np.zeros_like(c) for k, c in common.items()})
ups.append({k: (8 * v).astype(np.float32) for k, v in ups[0].items()})
for i, u in enumerate(ups):
    save(f"u{i}.st", u)
PYEOF
for i in 0 1 2 3 4 5 6; do
    n3-keys receipt -o r$i.key > r$i.pub
    n3-inspect --from-safetensors u$i.st --kind update --meta samples=$((i * 10 + 10)) \
        --meta base="$H" --meta round=4 --meta receipt_key="$(cat r$i.pub)" -o u$i.n3
done
U="u0.n3 u1.n3 u2.n3 u3.n3 u4.n3 u5.n3 u6.n3"

_case="n3-keys receipt: a secret 0600 file, its public line on stdout"
[ "$(stat -c %a r0.key)" = 600 ] && grep -q '^N3-RECEIPT-[A-Za-z0-9+/]*$' r0.pub && _pass || _fail "$(ls -l r0.key; cat r0.pub)"
expect 0 '' -- n3-keys public r0.key
cmp -s "$T/out" r0.pub; assert_eq $? 0 "n3-keys public gives the receipt key's public line"

# Scores -----------------------------------------------------------------------------------------
expect 0 '' -- n3-merge --base base.n3 $U --scores s.tsv -o next.n3
assert_match '^record	weight	accepted	cosine	krum	norm_ratio	holdout	score$' s.tsv "TSV header"
assert_eq "$(($(wc -l < s.tsv) - 1))" 7 "one line per input"
expect 0 '' -- n3-merge --base base.n3 u6.n3 u3.n3 u0.n3 u5.n3 u2.n3 u4.n3 u1.n3 --scores s2.tsv -o next2.n3
cmp -s s.tsv s2.tsv; assert_eq $? 0 "the same inputs in another order give the same scores file"
cat u4.n3 u2.n3 u6.n3 u1.n3 u5.n3 u3.n3 u0.n3 | n3-merge --base base.n3 --scores s3.tsv -o next3.n3 2> /dev/null
cmp -s s.tsv s3.tsv; assert_eq $? 0 "a stream on stdin gives the same scores file"
for i in 0 1 2 3 4 5 6; do
    n3-inspect --json u$i.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])'
done > hashes.txt
$PY - <<'PYEOF' > check.txt
import json, struct, numpy as np
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); d = b[8 + n:]
    return np.concatenate([np.frombuffer(d[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).astype(np.float64)
                           for k, v in sorted(h.items()) if k != "__metadata__"])
x = [load(f"u{i}.st") for i in range(7)]; n = len(x); f = (n - 3) // 2
hashes = open("hashes.txt").read().split()
norms = np.array([np.linalg.norm(v) for v in x]); med = np.median(norms)
rows = {l.split("\t")[0]: l.rstrip("\n").split("\t") for l in open("s.tsv").readlines()[1:]}
err = 0.0
for i in range(n):
    loo = sum(x[j] / norms[j] for j in range(n) if j != i and norms[j] > 0)
    cos = x[i] @ loo / (np.linalg.norm(x[i]) * np.linalg.norm(loo)) if norms[i] > 0 else 0.0
    krum = sum(sorted(np.sum((x[i] - x[j]) ** 2) for j in range(n) if j != i)[: n - f - 2])
    r = norms[i] / med; score = max(0.0, cos) * min(r, 1 / r) if r > 0 else 0.0
    got = rows[hashes[i]]
    for want, g in ((cos, got[3]), (krum, got[4]), (r, got[5]), (score, got[7])):
        err = max(err, abs(float(g) - want) / max(1.0, abs(want)))
print("ok" if err < 1e-6 else f"error {err}")
PYEOF
assert_match '^ok$' check.txt "cosine, krum, norm_ratio and score match a numpy reference"
expect 0 '' -- n3-merge --base base.n3 $U --scores s.json --json -o next4.n3
$PY -c 'import json
rows = [json.loads(l) for l in open("s.json")]
assert len(rows) == 7 and all(r["receipt_key"].startswith("N3-RECEIPT-") for r in rows)
assert min(r["score"] for r in rows) == 0' && _pass || _fail "--scores --json is not JSON lines with the receipt keys"

_case="--min-score skips the free rider and the scaled update, with a warning each"
expect 0 'below --min-score 0.3 \(skipped\)' -- n3-merge --base base.n3 $U --min-score 0.3 --scores m.tsv -o m.n3
assert_eq "$(grep -c 'skipped' "$T/err")" 2 "two inputs skipped"
assert_eq "$(awk -F'\t' 'NR > 1 && $3 == "no"' m.tsv | wc -l)" 2 "two inputs not accepted"
expect 0 '' -- n3-merge --base base.n3 u0.n3 u1.n3 u2.n3 u3.n3 u4.n3 -o honest.n3
cmp -s m.n3 honest.n3; assert_eq $? 0 "--min-score merges what the honest inputs alone give"
expect 3 'usable input' -- n3-merge --base base.n3 $U --min-score 5 -o none.n3
assert_no_file none.n3
expect 2 "unknown score 'speed'" -- n3-merge --base base.n3 $U --min-score speed:1 -o x.n3
expect 2 'takes \[NAME:\]T' -- n3-merge --base base.n3 $U --min-score high -o x.n3
expect 2 'holdout' -- n3-merge --base base.n3 $U --min-score holdout:0 -o x.n3
expect 2 'rate update records' -- n3-merge base.n3 --scores x.tsv -o x.n3
assert_no_file x.tsv
assert_no_file x.n3
expect 2 'give it' -- n3-merge $U --holdout /nonexistent -o x.n3

# Receipts ---------------------------------------------------------------------------------------
expect 2 'go together' -- n3-merge --base base.n3 $U --receipts l.ledger -o x.n3
expect 2 'needs --base' -- n3-merge $U --receipts l.ledger --key hub.key -o x.n3
expect 2 'must name a file' -- n3-merge --base base.n3 $U --receipts - --key hub.key -o x.n3
expect 1 'is an authority secret key, not a member key' -- n3-merge --base base.n3 $U --receipts l.ledger --key fed.ask -o x.n3
assert_no_file l.ledger
expect 0 '' -- n3-merge --base base.n3 $U --min-score 0.3 --receipts l.ledger --key hub.key -o r5.n3
assert_eq "$(grep -c '^[0-9]' l.ledger)" 5 "one receipt per accepted input"
grep -q "$(cat r5.pub)" l.ledger; assert_eq $? 1 "the free rider got no receipt"
expect 0 'chain intact, no gap, no fork' -- n3-keys ledger l.ledger --merger hub.pub --authority fed.pub
HEAD5=$(awk '/^head/ { print $2 }' "$T/out")
# The next round, from r5.n3.
R6=$(n3-inspect --json r5.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
for i in 0 1; do
    n3-keys receipt -o q$i.key > q$i.pub
    n3-inspect --from-safetensors u$i.st --kind update --meta samples=10 --meta base="$R6" \
        --meta round=5 --meta receipt_key="$(cat q$i.pub)" -o q$i.n3
done
expect 0 '' -- n3-merge --base r5.n3 q0.n3 q1.n3 --receipts l.ledger --key hub.key -o r6.n3
expect 0 '' -- n3-keys ledger l.ledger --merger hub.pub --authority fed.pub --expect-head "$HEAD5"
assert_eq "$(grep -c '^[0-9]' l.ledger)" 7 "the ledger grew by the second round's two receipts"
expect 1 'already has a receipt' -- n3-merge --base r5.n3 q0.n3 q1.n3 --receipts l.ledger --key hub.key -o again.n3
expect 1 'kept by another merger' -- n3-merge --base r5.n3 q0.n3 --receipts l.ledger --key mallory.key -o again.n3
expect 1 'kept by another merger' -- n3-keys ledger l.ledger --merger mallory.pub --authority fed.pub
expect 2 'no such file' -- n3-keys ledger none.ledger --merger hub.pub --authority fed.pub

# A malformed receipt_key costs its update the receipt, not the round.
n3-inspect --from-safetensors u1.st --kind update --meta samples=77 --meta base="$H" --meta round=4 \
    --meta receipt_key="N3-RECEIPT-AAAA" -o bad1.n3
n3-inspect --from-safetensors u2.st --kind update --meta samples=78 --meta base="$H" --meta round=4 \
    --meta receipt_key="$(printf '# a comment\n%s' "$(cat r2.pub)")" -o bad2.n3
expect 0 'bad1.n3: receipt_key: corrupted receipt public key.*no receipt for it' -- \
    n3-merge --base base.n3 u0.n3 bad1.n3 bad2.n3 --receipts l2.ledger --key hub.key -o b.n3
assert_match 'bad2.n3: .*no receipt for it' "$T/err" "a receipt_key of two lines gets no receipt"
assert_eq "$(grep -c '^[0-9]' l2.ledger)" 1 "only the well-formed key got a receipt"
expect 0 '' -- n3-keys ledger l2.ledger --merger hub.pub --authority fed.pub

# Every change to the ledger fails the check (exit 1).
entry() { awk -v n="$1" '/^[0-9]/ && ++k == n' l.ledger; }
sed "s/ $(entry 2 | awk '{ print $7 }') / 0.9 /" l.ledger > tampered.ledger
expect 1 'line 4: chain does not match' -- n3-keys ledger tampered.ledger --merger hub.pub --authority fed.pub
awk '/^[0-9]/ && ++k == 2 { held = $0; next } { print } /^[0-9]/ && k == 3 { print held }' l.ledger > reordered.ledger
expect 1 'entry numbered 3 where entry 2 belongs' -- n3-keys ledger reordered.ledger --merger hub.pub --authority fed.pub
awk '!(/^[0-9]/ && ++k == 3)' l.ledger > dropped.ledger
expect 1 'entry numbered 4 where entry 3 belongs' -- n3-keys ledger dropped.ledger --merger hub.pub --authority fed.pub
head -n -1 l.ledger > cut.ledger
expect 1 'is not in this ledger' -- n3-keys ledger cut.ledger --merger hub.pub --authority fed.pub --expect-head "$(awk '/^head/ { print $2 }' <(n3-keys ledger l.ledger --merger hub.pub --authority fed.pub 2> /dev/null))"
sig=$(entry 6 | awk '{ print $14 }')
forged=$(printf '%s' "$sig" | tr '0123456789abcdef' '123456789abcdef0')
sed "s/$sig/$forged/" l.ledger > forged.ledger
expect 1 'signature of entry 6 does not verify' -- n3-keys ledger forged.ledger --merger hub.pub --authority fed.pub

# Claims -----------------------------------------------------------------------------------------
expect 0 '' -- n3-keys claim --key r0.key --challenge "nonce 1234"
P=$(cat "$T/out")
assert_eq "${#P}" 128 "a proof is 128 hex digits"
expect 0 'holds the receipt key of 1 receipt' -- n3-keys verify-claim l.ledger --merger hub.pub --authority fed.pub \
    --receipt r0.pub --challenge "nonce 1234" --proof "$P"
assert_eq "$(awk -F'\t' 'NR > 1 { print $2 }' "$T/out")" 5 "r0 was receipted in round 5"
expect 0 '' -- n3-keys claim --key r1.key --challenge "nonce 1234"
WRONG=$(cat "$T/out")
expect 1 'does not verify with receipt key' -- n3-keys verify-claim l.ledger --merger hub.pub --authority fed.pub \
    --receipt r0.pub --challenge "nonce 1234" --proof "$WRONG"
expect 1 'does not verify' -- n3-keys verify-claim l.ledger --merger hub.pub --authority fed.pub \
    --receipt r0.pub --challenge "nonce 1235" --proof "$P"
expect 0 '' -- n3-keys claim --key r5.key --challenge c
expect 1 'holds no receipt' -- n3-keys verify-claim l.ledger --merger hub.pub --authority fed.pub \
    --receipt r5.pub --challenge c --proof "$(cat "$T/out")"
expect 1 'is a receipt secret key, not a receipt public key' -- n3-keys verify-claim l.ledger --merger hub.pub \
    --authority fed.pub --receipt r0.key --challenge c --proof "$P"
expect 2 'takes the 128 hex digits' -- n3-keys verify-claim l.ledger --merger hub.pub --authority fed.pub \
    --receipt r0.pub --challenge c --proof xyz
expect 1 'is a receipt public key, not a receipt secret key' -- n3-keys claim --key r0.pub --challenge c

# The receipt key travels through n3-encode and n3-seal to the merger.
n3-encode --quantize int8 --zstd u0.n3 -o p0.n3
n3-encode -d p0.n3 -o d0.n3
n3-inspect --json d0.n3 | grep -q "$(cat r0.pub)"; assert_eq $? 0 "receipt_key survives n3-encode and -d"
n3-seal --to hub.pub --key mallory.key --round 4 u0.n3 2> /dev/null | n3-seal --open --key hub.key --authority fed.pub -q 2> /dev/null > o0.n3
n3-inspect --json o0.n3 | grep -q "$(cat r0.pub)"; assert_eq $? 0 "receipt_key survives n3-seal and --open"

# --holdout: each update alone applied to the base and evaluated (libtorch builds only).
D=/usr/share/datasets/fashion-mnist
if [ ! -x "$N3_TOOLS/n3-train" ]; then
    expect 2 'evaluates models with n3-eval, which is neither next to n3-merge nor on PATH' -- n3-merge --base base.n3 $U --holdout "$D" -o x.n3
    assert_no_file x.n3
fi
[ -x "$N3_TOOLS/n3-train" ] || skip "n3-train not built (no libtorch): --holdout not tested"
[ -f "$D/t10k-images-idx3-ubyte.gz" ] || skip "no Fashion-MNIST (dataset-fashion-mnist): --holdout not tested"
n3-train --model "$N3_SRC/examples/models/mlp.yaml" --init-only -o g.n3
for i in 1 2 3; do
    n3-train --init g.n3 --data "$D" --clients 3 --client $((i - 1)) --limit 100 --threads 1 --lr 0.1 -q -o t$i.n3
done
n3-inspect --to-safetensors t1.n3 -o t1.st
$PY -c 'import json, struct
b = open("t1.st", "rb").read(); n = struct.unpack("<Q", b[:8])[0]
open("z.st", "wb").write(b[:8 + n] + bytes(len(b) - 8 - n))'
n3-inspect --from-safetensors z.st --kind update -o z.n3
expect 0 '' -- n3-merge --base g.n3 t1.n3 t2.n3 t3.n3 z.n3 --holdout "$D" --holdout-limit 500 --scores h.tsv -o h.n3
ZH=$(n3-inspect --json z.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
assert_eq "$(awk -F'\t' -v h="$ZH" '$1 == h { print $7 }' h.tsv)" 0 "an update that changes nothing removes no holdout loss"
assert_eq "$(awk -F'\t' -v h="$ZH" 'NR > 1 && $1 != h && $7 > 0' h.tsv | wc -l)" 3 "each trained update lowers the holdout loss"
# The holdout score of t1 is the base's loss minus the loss of base + t1, as n3-eval measures them.
n3-merge --base g.n3 t1.n3 -o g1.n3 2> /dev/null
l0=$(n3-eval g.n3 --data "$D" --limit 500 --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
l1=$(n3-eval g1.n3 --data "$D" --limit 500 --json | $PY -c 'import json,sys; print(json.load(sys.stdin)["loss"])')
T1=$(n3-inspect --json t1.n3 | $PY -c 'import json,sys; print(json.load(sys.stdin)["hash"])')
_case="--holdout matches n3-eval's losses of the base and of base + update"
$PY -c "import sys; got = float(sys.argv[1]); want = $l0 - $l1; sys.exit(abs(got - want) > 1e-4)" \
    "$(awk -F'\t' -v h="$T1" '$1 == h { print $7 }' h.tsv)" && _pass || _fail "$(cat h.tsv) l0=$l0 l1=$l1"
expect 0 '' -- n3-merge --base g.n3 t1.n3 t2.n3 t3.n3 z.n3 --holdout "$D" --holdout-limit 500 --min-score holdout:0.001 -o hm.n3
assert_match 'z.n3: holdout 0 below --min-score 0.001 \(skipped\)' "$T/err" "--min-score holdout:T skips the update that does nothing"
expect 2 'needs --holdout' -- n3-merge --base g.n3 t1.n3 --holdout-limit 5 -o x.n3
expect 2 '' -- n3-merge --base g.n3 t1.n3 --holdout /nonexistent -o x.n3
assert_no_file x.n3
finish
