#!/bin/bash
# CLI tests for n3-encode: packing, shards, -d, and every kind of bad input.
source "$(dirname "$0")/lib.sh"
R() { "$N3_PYTHON" "$N3_SRC/tests/cli/encode/recs.py" "$@"; }

R update 1 "$T/u.safetensors"
n3-inspect --from-safetensors "$T/u.safetensors" --kind update -o "$T/u.n3"
R update 2 "$T/v.safetensors"
n3-inspect --from-safetensors "$T/v.safetensors" --kind update -o "$T/v.n3"

# Lossless: bit-exact through a file and through a pipe.
expect 0 '' -- n3-encode --zstd -o "$T/z.n3" "$T/u.n3"
expect 0 '' -- n3-encode -d -o "$T/z.dec.n3" "$T/z.n3"
assert_eq "$(cmp "$T/u.n3" "$T/z.dec.n3" && echo same)" same "--zstd round-trips bit-exact"
cat "$T/z.n3" | n3-encode -d > "$T/z.pipe.n3"
assert_eq "$(cmp "$T/u.n3" "$T/z.pipe.n3" && echo same)" same "-d from a pipe"
expect 0 '' -- n3-encode --zstd=9 --threads 1 -o "$T/z9.n3" "$T/u.n3"
expect 0 '' -- n3-inspect "$T/z9.n3"
assert_match 'packed' "$T/out"

# Lossy stages compose and -d needs no flags.
for q in fp16 bf16 int8 int4; do
    expect 0 '' -- n3-encode --quantize $q --zstd -o "$T/q.n3" "$T/u.n3"
    expect 0 '' -- n3-encode -d -o "$T/q.dec.n3" "$T/q.n3"
    expect 0 '' -- n3-inspect "$T/q.dec.n3"
    assert_match "codec +$q" "$T/out" "$q names itself in the metadata"
    assert_match 'samples +64' "$T/out" "$q keeps the metadata"
    assert_match 'fc.weight +F32 +200x50' "$T/out" "$q keeps dtype and shape"
done
expect 0 '' -- n3-encode --topk 0.01 --quantize int8 --stochastic --block 64 --zstd -o "$T/tk.n3" "$T/u.n3"
assert_eq "$(( $(stat -c %s "$T/tk.n3") * 20 < $(stat -c %s "$T/u.n3") ))" 1 "top-k 1% + int8 is under 5% of fp32"
n3-encode -d "$T/tk.n3" | n3-inspect - > "$T/tk.txt"
assert_match 'codec +topk=0.01,int8/64/stochastic' "$T/tk.txt"

# Error feedback: the residual file appears, is reused, and must match the model.
expect 0 '' -- n3-encode --topk 0.05 --residual "$T/res.n3" -o "$T/r1.n3" "$T/u.n3"
assert_file "$T/res.n3"
expect 0 '' -- n3-encode --topk 0.05 --residual "$T/res.n3" -o "$T/r2.n3" "$T/v.n3"
R update 3 "$T/w.safetensors"
"$N3_PYTHON" - "$T/w.safetensors" <<'PY'
import sys, json, struct, numpy as np
p = sys.argv[1]; b = open(p, "rb").read(); n, = struct.unpack_from("<Q", b); h = json.loads(b[8:8+n])
h["other.weight"] = h.pop("fc.weight")
hb = json.dumps(h).encode(); open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8+n:])
PY
n3-inspect --from-safetensors "$T/w.safetensors" --kind update -o "$T/w.n3"
expect 1 'residual does not match' -- n3-encode --topk 0.05 --residual "$T/res.n3" -o "$T/r3.n3" "$T/w.n3"
assert_no_file "$T/r3.n3"
expect 1 'more than one record' -- n3-encode --topk 0.05 --residual "$T/res2.n3" -o "$T/r4.n3" "$T/u.n3" "$T/v.n3"
assert_no_file "$T/r4.n3"
assert_no_file "$T/res2.n3"
# A bad residual file: one error line, exit 1, no output, and the file left as it was.
head -c 200 "$T/res.n3" >"$T/res.cut"
cp "$T/res.n3" "$T/res.flip"
printf '\x01' | dd of="$T/res.flip" bs=1 seek=$(($(stat -c %s "$T/res.flip") - 20)) conv=notrunc 2>/dev/null
cp "$T/res.flip" "$T/res.flip.orig"
expect 1 'res.cut: record 1 at byte 0: truncated record' -- n3-encode --topk 0.05 --residual "$T/res.cut" -o "$T/r5.n3" "$T/u.n3"
expect 1 'res.flip: record 1 at byte 0: corrupted record \(checksum mismatch\)' -- n3-encode --topk 0.05 --residual "$T/res.flip" -o "$T/r5.n3" "$T/u.n3"
assert_no_file "$T/r5.n3"
assert_eq "$(cmp "$T/res.flip" "$T/res.flip.orig" && echo same)" same "a corrupt residual is left as it was"
expect 1 'not a residual file written by n3-encode --residual' -- n3-encode --topk 0.05 --residual "$T/u.n3" -o "$T/r5.n3" "$T/v.n3"
assert_no_file "$T/r5.n3"

# Shards: a stream, any 4 of 6 files, and fewer than K.
expect 0 '' -- n3-encode --shards 4+2 -o "$T/s.n3" "$T/u.n3"
cat "$T/s.n3" | n3-encode -d > "$T/s.dec.n3"
assert_eq "$(cmp "$T/u.n3" "$T/s.dec.n3" && echo same)" same "4+2 stream rebuilds"
# Sharding from a pipe streams (one shard held at a time); several records, several groups.
cat "$T/u.n3" "$T/v.n3" | n3-encode --shards 3+2 | n3-encode -d > "$T/uv.rt.n3"
cat "$T/u.n3" "$T/v.n3" > "$T/uv.n3"
assert_eq "$(cmp "$T/uv.n3" "$T/uv.rt.n3" && echo same)" same "pipe -> shards -> -d"
cat "$T/u.n3" | n3-encode --shards 1+1 | n3-encode -d > "$T/u11.n3"
assert_eq "$(cmp "$T/u.n3" "$T/u11.n3" && echo same)" same "1+1 from a pipe"
head -c 20000 "$T/u.n3" > "$T/u.cut.n3"
cat "$T/u.cut.n3" | n3-encode --shards 4+2 -o "$T/pipe-cut.out" - 2>"$T/pipe-cut.err"
assert_eq "$?" 1 "a cut record through a pipe fails"
assert_match 'error: stdin: record 1 at byte 0: truncated' "$T/pipe-cut.err"
assert_no_file "$T/pipe-cut.out"
cp "$T/u.n3" "$T/u.flip.n3"
printf '\x01' | dd of="$T/u.flip.n3" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect 1 'checksum mismatch' -- n3-encode --shards 4+2 -o "$T/flip.out" "$T/u.flip.n3"
assert_no_file "$T/flip.out"
cat "$T/u.flip.n3" | n3-encode --shards 4+2 -o "$T/flip2.out" - 2>"$T/flip.err"
assert_eq "$?" 1 "a corrupted record through a pipe fails"
assert_match 'checksum mismatch' "$T/flip.err"
assert_no_file "$T/flip2.out"

mkdir "$T/sd"
expect 0 '' -- n3-encode --quantize int8 --zstd --shards 4+2 --shard-dir "$T/sd" "$T/u.n3"
assert_eq "$(ls "$T/sd" | wc -l)" 6 "--shard-dir writes 6 files"
ls "$T/sd"/* | sort -r | head -4 | xargs cat > "$T/four.n3"
expect 0 '' -- n3-encode -d -o "$T/four.dec.n3" "$T/four.n3"
expect 0 '' -- n3-inspect "$T/four.dec.n3"
assert_match 'codec +int8/128' "$T/out" "shards of a packed record decode all the way"
ls "$T/sd"/* | head -3 | xargs cat > "$T/three.n3"
expect 1 'group [0-9a-f]{32}: only 3 of the 4 shards' -- n3-encode -d -o "$T/three.dec.n3" "$T/three.n3"
assert_no_file "$T/three.dec.n3"

# n3-inspect describes packed and shard records.
expect 0 '' -- n3-inspect "$T/q.n3" "$T/s.n3"
assert_match 'codec +int4/128,shuffle,zstd=1' "$T/out" "inspect names a packed record's chain"
assert_match 'shard +5 of 4\+2 \(parity\)' "$T/out" "inspect names a shard's index"
# A stream cut inside its last shard: the group still rebuilds from the first five, and the
# damage is reported.
head -c -100 "$T/s.n3" > "$T/s.cut.n3"
expect 1 'truncated' -- n3-encode -d -o "$T/s.cut.dec.n3" "$T/s.cut.n3"
assert_no_file "$T/s.cut.dec.n3"
n3-encode -d < "$T/s.cut.n3" 2>/dev/null > "$T/s.cut.pipe.n3"
assert_eq "$(cmp "$T/u.n3" "$T/s.cut.pipe.n3" && echo same)" same "a cut stream still yields its complete group"
cat "$T/s.cut.n3" | n3-encode -d 2>"$T/cut.err" > "$T/s.cut.pipe2.n3"
assert_eq "$(cmp "$T/u.n3" "$T/s.cut.pipe2.n3" && echo same)" same "...also from a pipe"
assert_match 'truncated' "$T/cut.err" "a cut pipe is reported"

# Interleaved groups, duplicates, plain records and packed records in one stream.
n3-encode --shards 3+1 "$T/v.n3" > "$T/g2.n3"
"$N3_PYTHON" - "$T/s.n3" "$T/g2.n3" "$T/z.n3" "$T/u.n3" "$T/mix.n3" <<'PY'
import sys, struct
def recs(p):
    b = open(p, "rb").read(); out = []; o = 0
    while o < len(b):
        n, = struct.unpack_from("<Q", b, o + 16); out.append(b[o:o + 40 + n]); o += 40 + n
    return out
a, g, z, u = (recs(p) for p in sys.argv[1:5])
mix = [a[5], g[3], u[0], a[0], g[0], a[0], z[0], a[2], g[1], a[1]]
open(sys.argv[5], "wb").write(b"".join(mix))
PY
expect 0 '' -- n3-encode -d -o "$T/mix.dec.n3" "$T/mix.n3"
expect 0 '' -- n3-inspect --json "$T/mix.dec.n3"
assert_eq "$(wc -l < "$T/out")" 4 "mixed stream: 4 records out"
cat "$T/u.n3" "$T/u.n3" "$T/v.n3" "$T/u.n3" > "$T/mix.want.n3"
assert_eq "$(cmp "$T/mix.want.n3" "$T/mix.dec.n3" && echo same)" same "mixed stream: plain, packed, groups as they complete"

# A corrupted shard counts as missing; with enough others the group still rebuilds.
f=$(ls "$T/sd"/* | head -1)
cp "$f" "$T/bad-shard.n3"
printf '\x55' | dd of="$T/bad-shard.n3" bs=1 seek=200 conv=notrunc 2>/dev/null
cat "$T/bad-shard.n3" $(ls "$T/sd"/* | tail -4) > "$T/withbad.n3"
expect 0 'warning: .*corrupted.*counted as missing' -- n3-encode -d -o "$T/withbad.dec.n3" "$T/withbad.n3"
cat "$T/bad-shard.n3" $(ls "$T/sd"/* | tail -3) > "$T/withbad3.n3"
expect 1 'only 3 of the 4' -- n3-encode -d -o "$T/withbad3.dec.n3" "$T/withbad3.n3"
assert_no_file "$T/withbad3.dec.n3"
# ...also when its checksum was recomputed: the shard's own data CRC catches it.
R poke "$f" "$T/forged-shard.n3" 100 0x42
cat "$T/forged-shard.n3" $(ls "$T/sd"/* | tail -4) > "$T/forged.n3"
expect 0 'data checksum mismatch.*counted as missing' -- n3-encode -d -o "$T/forged.dec.n3" "$T/forged.n3"
# A failed group does not stop another group in the same stream.
cat "$T/three.n3" "$T/g2.n3" > "$T/onebad.n3"
expect 1 'only 3 of the 4' -- n3-encode -d "$T/onebad.n3"
n3-encode -d "$T/onebad.n3" 2>/dev/null > "$T/onebad.dec.n3"
assert_eq "$(cmp "$T/v.n3" "$T/onebad.dec.n3" && echo same)" same "the good group is still decoded"
# Same group id, other parameters: reported.
R poke "$(ls "$T/sd"/* | head -1)" "$T/foreign.n3" 28 3
cat "$T/four.n3" "$T/foreign.n3" > "$T/conflict.n3"
expect 1 'disagree' -- n3-encode -d -o "$T/conflict.dec.n3" "$T/conflict.n3"
assert_no_file "$T/conflict.dec.n3"

# Plain and sealed records pass through -d unchanged; sealed records can be sharded, not packed.
R raw 5 "$T/sealed.n3"
expect 0 '' -- n3-encode -d -o "$T/sealed.dec.n3" "$T/sealed.n3"
assert_eq "$(cmp "$T/sealed.n3" "$T/sealed.dec.n3" && echo same)" same "sealed passes through"
expect 1 'sealed record cannot be packed' -- n3-encode --zstd -o "$T/sz.n3" "$T/sealed.n3"
assert_no_file "$T/sz.n3"
n3-encode --shards 2+1 "$T/sealed.n3" | n3-encode -d > "$T/sealed.rt.n3"
assert_eq "$(cmp "$T/sealed.n3" "$T/sealed.rt.n3" && echo same)" same "sealed through shards"
expect 1 'encoded already' -- n3-encode --zstd -o "$T/zz.n3" "$T/z.n3"

# Bad packed data: corrupted (checksum fixed up), wrong version, unknown stage, truncated.
R poke "$T/q.n3" "$T/pk-ver.n3" 4 2
expect 1 'unsupported packed format version 2' -- n3-encode -d -o "$T/pk.dec.n3" "$T/pk-ver.n3"
assert_no_file "$T/pk.dec.n3"
R poke "$T/q.n3" "$T/pk-stage.n3" "$(R entry "$T/q.n3")" 9
expect 1 'unknown codec stage' -- n3-encode -d -o "$T/pk.dec.n3" "$T/pk-stage.n3"
R poke "$T/q.n3" "$T/pk-data.n3" "$(( $(R entry "$T/q.n3") + 60 ))" 0xff
expect 1 'corrupted packed data|zstd' -- n3-encode -d -o "$T/pk.dec.n3" "$T/pk-data.n3"
assert_no_file "$T/pk.dec.n3"
cp "$T/q.n3" "$T/pk-flip.n3"
printf '\x00' | dd of="$T/pk-flip.n3" bs=1 seek=300 conv=notrunc 2>/dev/null
expect 1 'checksum mismatch' -- n3-encode -d -o "$T/pk.dec.n3" "$T/pk-flip.n3"
head -c 500 "$T/q.n3" > "$T/pk-cut.n3"
expect 1 'truncated' -- n3-encode -d -o "$T/pk.dec.n3" "$T/pk-cut.n3"
expect_stdin "$T/pk-cut.n3" 1 'truncated' -- n3-encode -d
assert_no_file "$T/pk.dec.n3"

# Bad input to the encoder.
: > "$T/empty.n3"
expect 1 'no records' -- n3-encode --zstd -o "$T/nothing.out" "$T/empty.n3"
assert_no_file "$T/nothing.out"
expect 1 'no records' -- n3-encode -d -o "$T/nothing.out" "$T/empty.n3"
head -c 100 "$T/u.n3" > "$T/cut.n3"
expect 1 'truncated' -- n3-encode --quantize int8 -o "$T/nothing.out" "$T/cut.n3"
assert_no_file "$T/nothing.out"
expect 1 'not an n3 record' -- n3-encode --zstd -o "$T/nothing.out" "$T/u.safetensors"
R update 4 "$T/nan.safetensors" nan
n3-inspect --from-safetensors "$T/nan.safetensors" --kind update -o "$T/nan.n3"
expect 1 "'fc.weight' has NaN" -- n3-encode --quantize int8 -o "$T/nothing.out" "$T/nan.n3"
assert_no_file "$T/nothing.out"
expect 0 '' -- n3-encode --zstd -o "$T/nan.z.n3" "$T/nan.n3"

# Usage errors (exit 2).
expect 2 'nothing to do' -- n3-encode -o "$T/nothing.out" "$T/u.n3"
expect 2 'excludes' -- n3-encode -d --zstd "$T/u.n3"
expect 2 'K\+M' -- n3-encode --shards 4 "$T/u.n3"
expect 2 'K >= 1' -- n3-encode --shards 0+2 "$T/u.n3"
expect 2 'K\+M <= 255' -- n3-encode --shards 200+100 "$T/u.n3"
expect 2 'fraction' -- n3-encode --topk 1.5 "$T/u.n3"
expect 2 'quantize' -- n3-encode --quantize int3 "$T/u.n3"
expect 2 'needs --topk or --quantize' -- n3-encode --zstd --residual "$T/x.n3" "$T/u.n3"
expect 2 'block' -- n3-encode --quantize fp16 --block 64 "$T/u.n3"
expect 2 'not a directory' -- n3-encode --shards 4+2 --shard-dir "$T/nope" "$T/u.n3"
expect 2 'also an input' -- n3-encode --zstd -o "$T/u.n3" "$T/u.n3"
expect 2 'did you mean --zstd' -- n3-encode --zstdd "$T/u.n3"
expect 2 'cannot open' -- n3-encode --zstd "$T/missing.n3"
finish
