#!/usr/bin/env bash
# CLI tests for records read from a pipe: a preamble's length is a claim, and a stream that
# ends early must fail as truncated after using memory for the bytes that came, not the claim.
source "$(dirname "$0")/lib.sh"
cd "$T"

# huge TYPE FILE: a valid 32-byte preamble declaring a 2 GiB payload, then 100 bytes
huge() {
    "$N3_PYTHON" - "$1" "$2" <<'PY'
import struct, sys, zlib
h = b'\x89N3R\r\n\x1a\n' + bytes([1, int(sys.argv[1])]) + bytes(6) + struct.pack('<Q', 2 << 30)
open(sys.argv[2], 'wb').write(h + struct.pack('<I', zlib.crc32(h)) + bytes(4) + b'x' * 100)
PY
}

# piped_peak FILE CMD...: runs CMD with FILE on a pipe as stdin, stderr to $T/err; sets $rc and
# $peak_mb (the child's peak resident set, from getrusage)
piped_peak() {
    local out
    out=$(T="$T" "$N3_PYTHON" - "$@" <<'PY'
import os, resource, subprocess, sys
data = open(sys.argv[1], 'rb').read()
with open(os.path.join(os.environ['T'], 'err'), 'wb') as err:
    p = subprocess.run(sys.argv[2:], input=data, stdout=subprocess.DEVNULL, stderr=err)
print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
PY
)
    read -r rc peak_mb <<<"$out"
}

# exit 1, one error line that says truncated, and far less than the 2 GiB declared
expect_truncated_cheaply() {
    local what=$1
    shift
    piped_peak "$@"
    assert_eq "$rc" 1 "$what: exit status"
    assert_eq "$(grep -c 'error: ' "$T/err")" 1 "$what: one error line"
    assert_match '^n3-[a-z]+: error: stdin: record 1 at byte 0: truncated record' "$T/err" "$what: truncated"
    assert_eq "$((peak_mb < 200))" 1 "$what: peak resident ${peak_mb} MB, under 200 MB"
}

huge 2 huge-update.n3
huge 3 huge-packed.n3
expect_truncated_cheaply "n3-inspect" huge-update.n3 n3-inspect -
expect_truncated_cheaply "n3-inspect --check" huge-update.n3 n3-inspect --check -
expect_truncated_cheaply "n3-inspect, packed" huge-packed.n3 n3-inspect -
expect_truncated_cheaply "n3-encode -d" huge-packed.n3 n3-encode -d -o "$T/decoded.n3" -
assert_no_file "$T/decoded.n3"

# the same preamble in a regular file: refused from the file's size, nothing read at all
expect 1 'truncated record \(132 of 2147483688 bytes\)' -- n3-inspect huge-update.n3

finish
