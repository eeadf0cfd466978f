#!/usr/bin/env bash
# n3-seal in bounded memory: a 64 MiB record sealed and opened, from a file and through a pipe,
# in both suites. Each run's peak RSS must stay under that of the same run on a 1 MiB record
# plus half the record: holding the record, or keeping a mapped input's pages resident, would
# exceed it. Every round trip is compared byte for byte.
source "$(dirname "$0")/lib.sh"
cd "$T"

if [ ! -x /usr/bin/time ]; then
    echo "note: /usr/bin/time (GNU time) is not installed; nothing to measure"
    exit 77
fi
# Under a sanitizer or an emulator peak RSS says nothing about n3.
if [ -n "${ASAN_OPTIONS:-}" ] || [ "${N3_EMULATED:-0}" = 1 ]; then
    echo "note: sanitizer or emulator: peak RSS is not n3's own"
    exit 77
fi

n3-keys authority -o fed.ask 2>/dev/null
n3-keys public fed.ask >fed.pub
for m in alice bob; do
    n3-keys request --id $m -o $m.secret >$m.req
    n3-keys issue --authority fed.ask $m.req -o $m.partial 2>/dev/null
    n3-keys complete --secret $m.secret --partial $m.partial -o $m.key 2>/dev/null
    n3-keys public $m.key >$m.pub
done

MIB=64
"$N3_PYTHON" - "$MIB" <<'PY'
import json, os, struct, sys
def st(path, n):
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, n * 4]}}).encode()
    hdr += b' ' * (-len(hdr) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hdr)) + hdr)
        for _ in range(n * 4 >> 20):
            f.write(os.urandom(1 << 20))
st('big.st', int(sys.argv[1]) << 18)
st('small.st', 1 << 18)
PY
n3-inspect --from-safetensors big.st --kind update -o big.n3
n3-inspect --from-safetensors small.st --kind update -o small.n3
rm -f big.st small.st

# peak CMD...: runs the shell command, its stdout discarded; the largest peak RSS (KiB) of
# its processes goes to stdout
peak() {
    /usr/bin/time -f %M -o rss.txt sh -c "$1" 2>err.txt || { cat err.txt >&2; echo 0; return; }
    tail -1 rss.txt
}
check() { # WHAT COMMAND-WITH-@: @ is the record's name (small, then big)
    local what=$1 base got limit
    base=$(peak "${2//@/small}")
    got=$(peak "${2//@/big}")
    limit=$((base + MIB * 1024 / 2))
    echo "$what: peak RSS $got KiB (1 MiB record: $base KiB; limit $limit KiB)"
    assert_eq "$((got > 0 && got < limit))" 1 "$what: peak RSS $got KiB under $limit KiB"
}

OPEN="n3-seal --open --key bob.key --authority fed.pub"
for suite in aes-256-gcm xchacha20-poly1305; do
    SEAL="n3-seal --suite $suite --to bob.pub --key alice.key"
    check "$suite: seal a file" "$SEAL @.n3 >@.sealed"
    check "$suite: seal from a pipe" "cat @.n3 | $SEAL | cat >@.sealed"
    check "$suite: open a file" "$OPEN @.sealed >@.out"
    same_big() { assert_eq "$(cmp big.n3 big.out && echo same)" same "$suite: $1: the record comes back"; }
    same_big "open a file"
    check "$suite: open a file, held back (-o)" "rm -f @.out; $OPEN @.sealed -o @.out"
    same_big "-o"
    check "$suite: open from a pipe" "cat @.sealed | $OPEN | cat >@.out"
    same_big "a pipe"
    rm -f big.out small.out big.sealed small.sealed
done

finish
