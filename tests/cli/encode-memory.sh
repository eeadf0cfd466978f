#!/bin/bash
# n3-encode in bounded memory: a 64 MiB update through a pipe in every mode (error feedback
# too), and back with -d.
# The round trips are checked (cmp, or numpy for the lossy stages); each run's peak RSS must
# stay under that of a 1 MiB record plus half the record (reading, packing or holding
# the whole record would exceed it); truncated and corrupted inputs still fail with one error
# line, exit status 1 and no output file.
source "$(dirname "$0")/lib.sh"

MIB=64
"$N3_PYTHON" - "$T/u.safetensors" "$MIB" "$T/small.safetensors" <<'PY'
import json, struct, sys
import numpy as np
def make(path, mib, seed):
    rng = np.random.default_rng(seed)
    n = mib * 1024 * 1024 // 4
    sizes = [n // 2, n // 4, n // 8, n - n // 2 - n // 4 - n // 8]
    hdr, off = {"__metadata__": {"round": "1", "samples": "10"}}, 0
    for i, s in enumerate(sizes):
        hdr[f"layer{i}.weight"] = {"dtype": "F32", "shape": [s], "data_offsets": [off, off + 4 * s]}
        off += 4 * s
    h = json.dumps(hdr).encode()
    h += b" " * (-(len(h) + 8) % 64)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for s in sizes:
            f.write(rng.normal(0, 0.01, s).astype(np.float32).tobytes())
make(sys.argv[1], int(sys.argv[2]), 7)
make(sys.argv[3], 1, 8)
PY
n3-inspect --from-safetensors "$T/u.safetensors" --kind update -o "$T/u.n3"
n3-inspect --from-safetensors "$T/small.safetensors" --kind update -o "$T/small.n3"
rm -f "$T/u.safetensors" "$T/small.safetensors"

# Peak RSS needs GNU time; under a sanitizer or an emulator it says nothing about n3.
CHECK_RSS=1
if [ ! -x /usr/bin/time ]; then
    echo "note: /usr/bin/time (GNU time) is not installed; peak RSS is not checked"
    CHECK_RSS=0
elif [ -n "${ASAN_OPTIONS:-}" ] || [ "${N3_EMULATED:-0}" = 1 ]; then
    CHECK_RSS=0
fi

# piped IN OUT ARGS...: n3-encode ARGS reading IN through a pipe into OUT; its peak RSS in
# KiB goes to $T/rss, its stderr to $T/err; returns its exit status.
piped() {
    local in=$1 out=$2
    shift 2
    cat "$in" | /usr/bin/time -f %M -o "$T/rss" n3-encode "$@" -o "$out" - 2>"$T/err"
}
if [ ! -x /usr/bin/time ]; then
    piped() {
        local in=$1 out=$2
        shift 2
        echo 0 >"$T/rss"
        cat "$in" | n3-encode "$@" -o "$out" - 2>"$T/err"
    }
fi
rss() { tail -1 "$T/rss"; }

# The same run on the 1 MiB record: what the binary and its buffers cost anyway.
baseline() {
    piped "$T/small.n3" "$T/small.out" "$@" || true
    local b
    b=$(rss)
    rm -f "$T/small.out"
    echo "$b"
}
check_rss() {
    local what=$1 base=$2 got=$3
    [ "$CHECK_RSS" = 1 ] || return 0
    local limit=$((base + MIB * 1024 / 2))
    echo "$what: peak RSS $got KiB (1 MiB record: $base KiB; limit $limit KiB)"
    assert_eq "$((got < limit))" 1 "$what: peak RSS $got KiB under $limit KiB"
}

for mode in "--quantize int8" "--zstd" "--quantize int8 --zstd" "--topk 0.01" "--shards 10+4" \
    "--topk 0.01 --quantize int4 --zstd --shards 4+2"; do
    tag=$(echo "$mode" | tr -c 'a-z0-9\n' _)
    # shellcheck disable=SC2086
    base=$(baseline $mode)
    # shellcheck disable=SC2086
    piped "$T/u.n3" "$T/$tag.n3" $mode
    assert_eq "$?" 0 "$mode from a pipe"
    check_rss "$mode" "$base" "$(rss)"
    # shellcheck disable=SC2086
    n3-encode $mode -o "$T/$tag.file.n3" "$T/u.n3"
    if [[ $mode == *--shards* ]]; then
        # The group id is random; everything else is the same.
        assert_eq "$(stat -c %s "$T/$tag.n3")" "$(stat -c %s "$T/$tag.file.n3")" "$mode: pipe and file"
    else
        assert_eq "$(cmp "$T/$tag.n3" "$T/$tag.file.n3" && echo same)" same "$mode: pipe and file agree"
    fi
    rm -f "$T/$tag.file.n3"

    # shellcheck disable=SC2086
    piped "$T/small.n3" "$T/small.enc" $mode
    piped "$T/small.enc" "$T/small.dec" -d
    base=$(rss)
    rm -f "$T/small.enc" "$T/small.dec"
    piped "$T/$tag.n3" "$T/$tag.dec.n3" -d
    assert_eq "$?" 0 "-d of $mode from a pipe"
    check_rss "-d of $mode" "$base" "$(rss)"
    case "$mode" in
    --zstd | --shards*)
        assert_eq "$(cmp "$T/u.n3" "$T/$tag.dec.n3" && echo same)" same "$mode: bit-exact round trip"
        ;;
    *)
        "$N3_PYTHON" - "$T/u.n3" "$T/$tag.dec.n3" "$mode" >"$T/check" 2>&1 <<'PY'
import json, struct, sys
import numpy as np
def tensors(path):
    b = open(path, "rb").read()
    p = b[32:-8]
    n, = struct.unpack_from("<Q", p)
    h = json.loads(p[8:8 + n])
    meta = h.pop("__metadata__", {})
    return meta, {k: np.frombuffer(p[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                   np.float32) for k, v in h.items()}
_, a = tensors(sys.argv[1])
meta, b = tensors(sys.argv[2])
mode = sys.argv[3]
assert set(a) == set(b), "tensor names differ"
for k in a:
    x, y = a[k], b[k]
    assert x.shape == y.shape, k
    if "--topk" in mode:
        kept = np.count_nonzero(y)
        want = int(np.ceil(0.01 * x.size))
        assert abs(kept - want) <= want // 50 + 1, f"{k}: {kept} kept, want {want}"
        thr = np.sort(np.abs(x))[-want]
        idx = np.nonzero(y)[0]
        assert np.all(np.abs(x[idx]) >= thr), f"{k}: a kept value is not among the largest"
        err = np.abs(x[idx] - y[idx]).max()
        assert err <= np.abs(x).max() / 7 / 2 * 1.001, f"{k}: error {err}"
    else:
        blocks = np.abs(x[: x.size // 128 * 128].reshape(-1, 128)).max(axis=1) / 127
        err = np.abs(x[: blocks.size * 128] - y[: blocks.size * 128]).reshape(-1, 128).max(axis=1)
        assert np.all(err <= blocks / 2 * 1.001 + 1e-12), f"{k}: error beyond half a scale"
assert meta.get("codec"), "no codec key"
print("ok")
PY
        assert_match '^ok$' "$T/check" "$mode: decoded values within the stage's bound"
        ;;
    esac
    rm -f "$T/$tag.dec.n3"
done

# Error feedback in bounded memory: the residual is as large as the update, and is read and
# written through files, never held. Two rounds of the same update in each mode (the first
# starts the residual, the second reads it); then everything sent plus the residual must equal
# the sum of the updates.
for mode in "--topk 0.01 --quantize int8" "--quantize int4"; do
    rm -f "$T/small.res" "$T/res"
    # shellcheck disable=SC2086
    piped "$T/small.n3" "$T/small.enc" $mode --residual "$T/small.res"
    # shellcheck disable=SC2086
    piped "$T/small.n3" "$T/small.enc" $mode --residual "$T/small.res"
    base=$(rss)
    rm -f "$T/small.enc" "$T/small.res"
    for round in 1 2; do
        # shellcheck disable=SC2086
        piped "$T/u.n3" "$T/fb$round.n3" $mode --residual "$T/res"
        assert_eq "$?" 0 "$mode --residual, round $round, from a pipe"
        check_rss "$mode --residual, round $round" "$base" "$(rss)"
        n3-encode -d -o "$T/fb$round.dec.n3" "$T/fb$round.n3"
    done
    "$N3_PYTHON" - "$T/u.n3" "$T/fb1.dec.n3" "$T/fb2.dec.n3" "$T/res" >"$T/check" 2>&1 <<'PY'
import json, struct, sys
import numpy as np
def tensors(path):
    b = open(path, "rb").read()
    p = b[32:-8]
    n, = struct.unpack_from("<Q", p)
    h = json.loads(p[8:8 + n])
    h.pop("__metadata__", {})
    return {k: np.frombuffer(p[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                             np.float32).astype(np.float64) for k, v in h.items()}
u, s1, s2, r = (tensors(a) for a in sys.argv[1:5])
assert set(r) == set(u), "the residual's tensors are not the update's"
for k in u:
    worst = np.abs(2 * u[k] - (s1[k] + s2[k] + r[k])).max()
    assert worst <= np.abs(u[k]).max() * 1e-5, f"{k}: sent + residual is off by {worst}"
    assert np.abs(r[k]).sum() > 0, f"{k}: the residual is zero"
print("ok")
PY
    assert_match '^ok$' "$T/check" "$mode --residual: two rounds sent plus the residual equal the updates"
    rm -f "$T"/fb*.n3 "$T/res"
done

# Bad input from a pipe: one error line, exit status 1, no output file; -d the same.
head -c $((40 << 20)) "$T/u.n3" >"$T/cut.n3"
cp "$T/u.n3" "$T/flip.n3"
printf '\x01' | dd of="$T/flip.n3" bs=1 seek=$((50 << 20)) conv=notrunc 2>/dev/null
for mode in "--quantize int8" "--zstd" "--topk 0.01" "--shards 10+4"; do
    # shellcheck disable=SC2086
    piped "$T/cut.n3" "$T/cut.out" $mode
    assert_eq "$?" 1 "$mode: a cut record through a pipe fails"
    assert_match '^n3-encode: error: stdin: record 1 at byte 0: truncated record' "$T/err"
    assert_eq "$(wc -l <"$T/err")" 1 "$mode: one error line"
    assert_no_file "$T/cut.out"
    # shellcheck disable=SC2086
    piped "$T/flip.n3" "$T/flip.out" $mode
    assert_eq "$?" 1 "$mode: a corrupted record through a pipe fails"
    assert_match '^n3-encode: error: stdin: record 1 at byte 0: corrupted record \(checksum mismatch\)' "$T/err"
    assert_eq "$(wc -l <"$T/err")" 1 "$mode: one error line"
    assert_no_file "$T/flip.out"
done
n3-encode --quantize int8 --zstd -o "$T/q.n3" "$T/u.n3"
cp "$T/q.n3" "$T/q.flip.n3"
printf '\x01' | dd of="$T/q.flip.n3" bs=1 seek=$((10 << 20)) conv=notrunc 2>/dev/null
piped "$T/q.flip.n3" "$T/q.flip.out" -d
assert_eq "$?" 1 "-d: a corrupted packed record through a pipe fails"
assert_match '^n3-encode: error: stdin: record 1 at byte 0: corrupted record \(checksum mismatch\); record skipped' "$T/err"
assert_eq "$(grep -c ': error: ' "$T/err")" 1 "-d: one error line"
assert_no_file "$T/q.flip.out"
head -c $((5 << 20)) "$T/q.n3" >"$T/q.cut.n3"
piped "$T/q.cut.n3" "$T/q.cut.out" -d
assert_eq "$?" 1 "-d: a cut packed record through a pipe fails"
assert_match 'error: stdin: record 1 at byte 0: truncated record' "$T/err"
assert_no_file "$T/q.cut.out"

finish
