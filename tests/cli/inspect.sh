#!/usr/bin/env bash
# CLI tests for n3-inspect: golden records, conversions, and every kind of bad input.
source "$(dirname "$0")/lib.sh"
G="$N3_SRC/tests/golden"
PY="$N3_PYTHON"
BASE=$(printf 'ab%.0s' $(seq 32))

# --- the golden records are stable: today's writer produces exactly the committed bytes --------
expect 0 '' -- n3-inspect --from-safetensors "$G/small.safetensors" --kind update \
    --meta samples=600 --meta round=3 --meta base="$BASE" -o "$T/update.n3"
_case="update record bytes equal tests/golden/update-v1.n3"
cmp -s "$T/update.n3" "$G/update-v1.n3" && _pass || _fail "bytes differ from the golden file"
expect 0 '' -- n3-inspect --from-safetensors "$G/small.safetensors" --kind model --meta round=4 -o "$T/model.n3"
_case="model record bytes equal tests/golden/model-v1.n3"
cmp -s "$T/model.n3" "$G/model-v1.n3" && _pass || _fail "bytes differ from the golden file"

# --- printing ------------------------------------------------------------------------------------
expect 0 '' -- n3-inspect "$G/update-v1.n3"
assert_match '^.*update-v1.n3: record 1: update \(format v1\), 863 bytes' "$T/out"
assert_match '^  samples +600$' "$T/out"
assert_match '^    conv.weight +F32 +2x3x2x2 +24 +4.25$' "$T/out"
assert_match '^    empty +F32 +0x5 +0 +0$' "$T/out"
expect 0 '' -- n3-inspect --json "$G/update-v1.n3" "$G/model-v1.n3"
sed "s|\"input\":\"[^\"]*\"|\"input\":\"X\"|" "$T/out" > "$T/got.jsonl"
sed "s|\"input\":\"[^\"]*\"|\"input\":\"X\"|" "$G/inspect-v1.jsonl" > "$T/want.jsonl"
_case="--json output equals tests/golden/inspect-v1.jsonl"
cmp -s "$T/got.jsonl" "$T/want.jsonl" && _pass || _fail "$(diff "$T/got.jsonl" "$T/want.jsonl" | head -5)"
_case="--json is one valid JSON object per record"
[ "$("$PY" -c 'import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)["type"]))' "$T/out")" = 2 ] \
    && _pass || _fail "not two JSON lines"

# A stream: records back to back, from stdin, and '-' among files.
cat "$G/update-v1.n3" "$G/model-v1.n3" "$G/update-v1.n3" > "$T/stream.n3"
expect_stdin "$T/stream.n3" 0 '' -- n3-inspect --json
assert_eq "$(wc -l < "$T/out")" 3 "a three-record stream prints three lines"
expect_stdin "$G/model-v1.n3" 0 '' -- n3-inspect "$G/update-v1.n3" - "$G/update-v1.n3"
assert_eq "$(grep -c ': record 1:' "$T/out")" 3 "'-' mixes with files"
expect 0 '' -- n3-inspect --check "$T/stream.n3"
assert_eq "$(wc -c < "$T/out")" 0 "--check prints nothing"
cat "$T/stream.n3" | n3-inspect --check >/dev/null 2>&1
assert_eq $? 0 "--check reads a pipe"

# --- bad input: each gets a one-line error, a documented exit code, and no output ----------------
head -c 500 "$G/update-v1.n3" > "$T/cut.n3"
expect 1 'error: .*cut.n3: record 1 at byte 0: truncated' -- n3-inspect "$T/cut.n3"
expect_stdin "$T/cut.n3" 1 'error: stdin: .*truncated' -- n3-inspect --check
cat "$G/update-v1.n3" > "$T/cut2.n3"; head -c 40 "$G/model-v1.n3" >> "$T/cut2.n3"
expect 1 'record 2 at byte 863: truncated' -- n3-inspect --check "$T/cut2.n3"
cp "$G/update-v1.n3" "$T/flip.n3"
printf '\x00' | dd of="$T/flip.n3" bs=1 seek=700 conv=notrunc status=none
expect 1 'corrupted record \(checksum mismatch\)' -- n3-inspect "$T/flip.n3"
cp "$G/update-v1.n3" "$T/flip2.n3"
printf '\xff' | dd of="$T/flip2.n3" bs=1 seek=17 conv=notrunc status=none
expect 1 'corrupted record header' -- n3-inspect "$T/flip2.n3"
: > "$T/empty.n3"
expect 1 'empty.n3: no records \(empty input\)' -- n3-inspect "$T/empty.n3"
expect_stdin "$T/empty.n3" 1 'stdin: no records' -- n3-inspect
echo "hello world, this is not a record at all" > "$T/text.n3"
expect 1 'not an n3 record \(bad magic\)' -- n3-inspect "$T/text.n3"
expect 1 'looks like a .safetensors file' -- n3-inspect "$G/small.safetensors"
sed 's/\r$//' "$G/update-v1.n3" > "$T/textmode.n3" # a text-mode transfer eats CR
"$PY" -c 'import sys; b=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(b.replace(b"\r\n",b"\n"))' \
    "$G/update-v1.n3" "$T/textmode.n3"
expect 1 'text-mode transfer' -- n3-inspect "$T/textmode.n3"
# Unknown version and type, with the preamble checksum fixed up so only the field is wrong.
patch_byte() { # FILE OFFSET VALUE -> writes FILE.patched with a valid preamble CRC
    "$PY" - "$1" "$2" "$3" <<'PY'
import sys, zlib, struct
b = bytearray(open(sys.argv[1], "rb").read())
b[int(sys.argv[2])] = int(sys.argv[3])
struct.pack_into("<I", b, 24, zlib.crc32(bytes(b[:24])))
open(sys.argv[1] + ".patched", "wb").write(b)
PY
}
cp "$G/update-v1.n3" "$T/u.n3"
patch_byte "$T/u.n3" 8 9
expect 1 'unsupported record format version 9' -- n3-inspect "$T/u.n3.patched"
patch_byte "$T/u.n3" 9 77
expect 1 'unknown record type 77' -- n3-inspect "$T/u.n3.patched"
expect 2 'is a directory' -- n3-inspect "$T"
expect 2 'cannot open .*/missing.n3: no such file' -- n3-inspect "$T/missing.n3"
expect 2 "stdin \('-'\) may be given only once" -- n3-inspect - -
if command -v script >/dev/null 2>&1; then
    _case="a terminal on stdin is refused"
    script -qec "$N3_TOOLS/n3-inspect" /dev/null > "$T/tty.txt" 2>&1
    grep -q 'refusing to read binary records from a terminal' "$T/tty.txt" && _pass || _fail "$(cat "$T/tty.txt")"
    _case="binary output to a terminal is refused"
    script -qec "$N3_TOOLS/n3-inspect --to-safetensors $G/update-v1.n3" /dev/null > "$T/tty.txt" 2>&1
    grep -q 'refusing to write binary records to a terminal' "$T/tty.txt" && _pass || _fail "$(cat "$T/tty.txt")"
fi

# --- usage errors -------------------------------------------------------------------------------
expect 2 'hint: did you mean --check' -- n3-inspect --chek "$G/update-v1.n3"
expect 2 'excludes' -- n3-inspect --json --check "$G/update-v1.n3"
expect 2 '-o is for --to-safetensors' -- n3-inspect -o "$T/x" "$G/update-v1.n3"
assert_no_file "$T/x"
expect 0 '' -- n3-inspect --help
assert_match 'to-safetensors' "$T/out"

# --- --to-safetensors -------------------------------------------------------------------------------
expect 0 '' -- n3-inspect --to-safetensors "$G/update-v1.n3" -o "$T/out.safetensors"
_case="exported payload is the record's safetensors bytes"
"$PY" - "$G/update-v1.n3" "$T/out.safetensors" <<'PY' && _pass || _fail "payload differs"
import sys, struct
b = open(sys.argv[1], "rb").read(); n = struct.unpack_from("<Q", b, 16)[0]
sys.exit(0 if b[32:32 + n] == open(sys.argv[2], "rb").read() else 1)
PY
_case="the export's BLAKE2b-256 is the record's hash"
h=$(b2sum -l 256 "$T/out.safetensors" | cut -d' ' -f1)
n3-inspect --json "$G/update-v1.n3" | grep -q "\"hash\":\"$h\"" && _pass || _fail "hash $h not in --json"
expect_stdin "$G/update-v1.n3" 0 '' -- n3-inspect --to-safetensors -o "$T/stdin.safetensors"
_case="--to-safetensors from stdin"; cmp -s "$T/stdin.safetensors" "$T/out.safetensors" && _pass || _fail differ
expect 1 'holds more than one record' -- n3-inspect --to-safetensors "$T/stream.n3" -o "$T/two.st"
assert_no_file "$T/two.st"
# a record type that holds no tensors (packed): build it by hand from the spec
"$PY" - "$T/packed.n3" "$N3_SRC/tests/python/read_record.py" <<'PY'
import sys, struct, zlib
from importlib.machinery import SourceFileLoader
rr = SourceFileLoader("rr", sys.argv[2]).load_module()
payload = b"not tensors"
pre = bytearray(b"\x89N3R\r\n\x1a\n" + bytes([1, 3]) + bytes(6) + struct.pack("<Q", len(payload)) + bytes(8))
struct.pack_into("<I", pre, 24, zlib.crc32(bytes(pre[:24])))
body = bytes(pre) + payload
open(sys.argv[1], "wb").write(body + struct.pack("<Q", rr.crc64_xz(body)))
PY
expect 0 '' -- n3-inspect --check "$T/packed.n3"
expect 1 'packed record, which holds no tensors' -- n3-inspect --to-safetensors "$T/packed.n3" -o "$T/p.st"
assert_match 'hint: decode it first: n3-encode -d' "$T/err"
assert_no_file "$T/p.st"
expect 1 'truncated' -- n3-inspect --to-safetensors "$T/cut.n3" -o "$T/c.st"
assert_no_file "$T/c.st"
expect 2 'is also an input' -- n3-inspect --to-safetensors "$T/update.n3" -o "$T/update.n3"
cmp -s "$T/update.n3" "$G/update-v1.n3"; assert_eq $? 0 "the input survives an output == input refusal"

# --- --from-safetensors ---------------------------------------------------------------------------
expect_stdin "$G/small.safetensors" 0 '' -- n3-inspect --from-safetensors - --kind model --meta round=4 -o "$T/m.n3"
_case="--from-safetensors reads stdin"; cmp -s "$T/m.n3" "$G/model-v1.n3" && _pass || _fail differ
expect 2 'kind must be model or update' -- n3-inspect --from-safetensors "$G/small.safetensors" --kind shard -o "$T/k.n3"
assert_no_file "$T/k.n3"
expect 2 'requires --kind|kind is required|--from-safetensors requires --kind' -- \
    n3-inspect --from-safetensors "$G/small.safetensors" -o "$T/k.n3"
assert_no_file "$T/k.n3"
expect 2 'samples must be a non-negative integer' -- \
    n3-inspect --from-safetensors "$G/small.safetensors" --kind update --meta samples=lots -o "$T/k.n3"
assert_no_file "$T/k.n3"
expect 2 'takes KEY=VALUE' -- n3-inspect --from-safetensors "$G/small.safetensors" --kind update --meta oops -o "$T/k.n3"
expect 2 'base must be a model hash' -- \
    n3-inspect --from-safetensors "$G/small.safetensors" --kind update --meta base=xyz -o "$T/k.n3"
expect 1 'is already an n3 record' -- n3-inspect --from-safetensors "$G/model-v1.n3" --kind model -o "$T/k.n3"
assert_no_file "$T/k.n3"
head -c 100 "$G/small.safetensors" > "$T/cut.safetensors"
expect 1 'cut.safetensors: tensor header length' -- \
    n3-inspect --from-safetensors "$T/cut.safetensors" --kind model -o "$T/k.n3"
assert_no_file "$T/k.n3"
: > "$T/empty.safetensors"
expect 1 'too short' -- n3-inspect --from-safetensors "$T/empty.safetensors" --kind model -o "$T/k.n3"
assert_no_file "$T/k.n3"
"$PY" "$N3_SRC/tests/python/write_safetensors.py" "$T/u16.safetensors" u16
expect 1 "dtype U16, not one of" -- n3-inspect --from-safetensors "$T/u16.safetensors" --kind model -o "$T/k.n3"
assert_no_file "$T/k.n3"
expect 2 'cannot open' -- n3-inspect --from-safetensors "$T/nope.safetensors" --kind model -o "$T/k.n3"
expect 2 'no such file' -- n3-inspect --from-safetensors "$G/small.safetensors" --kind model -o "$T/no/dir/k.n3"

# --- cross-checks with an independent reader (numpy, written from the published layouts) ----------
"$PY" "$N3_SRC/tests/python/write_safetensors.py" "$T/np.safetensors"
expect 0 '' -- n3-inspect --from-safetensors "$T/np.safetensors" --kind update --meta samples=9 -o "$T/np.n3"
_case="an independent reader agrees with n3-inspect on every tensor"
"$PY" "$N3_SRC/tests/python/read_record.py" record "$T/np.n3" > "$T/indep.json" &&
n3-inspect --json "$T/np.n3" > "$T/mine.json" &&
"$PY" - "$T/indep.json" "$T/mine.json" "$T/np.safetensors" "$N3_SRC/tests/python/read_record.py" <<'PY' && _pass || _fail "disagreement"
import json, sys
from importlib.machinery import SourceFileLoader
rr = SourceFileLoader("rr", sys.argv[4]).load_module()
indep = json.load(open(sys.argv[1]))[0]
mine = json.loads(open(sys.argv[2]).readline())
_, orig = rr.tensors(open(sys.argv[3], "rb").read())
assert indep["type"] == "update" and indep["metadata"]["samples"] == "9"
assert indep["tensors"] == orig, "record payload differs from the numpy file"
for t in mine["tensors"]:
    o = indep["tensors"][t["name"]]
    assert t["dtype"] == o["dtype"] and t["shape"] == o["shape"], t
    assert abs(t["l2"] - o["l2"]) <= 1e-9 * max(1, o["l2"]), t
PY
expect 0 '' -- n3-inspect --to-safetensors "$T/np.n3" -o "$T/back.safetensors"
_case="numpy reads --to-safetensors output back to the original tensors"
"$PY" - "$T/back.safetensors" "$T/np.safetensors" "$N3_SRC/tests/python/read_record.py" <<'PY' && _pass || _fail "differs"
import sys
from importlib.machinery import SourceFileLoader
rr = SourceFileLoader("rr", sys.argv[3]).load_module()
a = rr.tensors(open(sys.argv[1], "rb").read()); b = rr.tensors(open(sys.argv[2], "rb").read())
assert a[1] == b[1] and a[0]["samples"] == "9"
PY
"$PY" "$N3_SRC/tests/python/write_safetensors.py" "$T/nan.safetensors" nan
expect 0 '' -- n3-inspect --from-safetensors "$T/nan.safetensors" --kind update -o "$T/nan.n3"
expect 0 '' -- n3-inspect --json "$T/nan.n3"
assert_match '"l2":null' "$T/out" "a NaN norm is JSON null"

finish
