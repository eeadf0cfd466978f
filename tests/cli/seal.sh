#!/usr/bin/env bash
# CLI tests for n3-seal: round trips, streams, and every way a sealed record can be bad.
source "$(dirname "$0")/lib.sh"
cd "$T"

# A federation with alice, bob and carol; an outsider federation with xavier.
n3-keys authority -o fed.ask 2>/dev/null
n3-keys public fed.ask >fed.pub
member() { # member AUTHORITY NAME [request flags...]
    local auth=$1 name=$2
    shift 2
    n3-keys request --id "$name" "$@" -o "$name.secret" >"$name.req"
    n3-keys issue --authority "$auth" "$name.req" -o "$name.partial" 2>/dev/null
    # kept: a test below hands the request secret to --key
    n3-keys complete --keep-secret --secret "$name.secret" --partial "$name.partial" -o "$name.key" 2>/dev/null
    n3-keys public "$name.key" >"$name.pub"
}
for m in alice bob carol; do member fed.ask $m; done
n3-keys authority -o other.ask 2>/dev/null
n3-keys public other.ask >other.pub
member other.ask xavier
member fed.ask old --expires 2001-01-01
n3-keys roster alice.pub bob.pub >fed.roster
n3-keys roster carol.pub >carol.roster

# Two update records (rounds 3) and one for round 4.
"$N3_PYTHON" - <<'PY'
import json, struct, os
def st(path, n):
    data = os.urandom(n * 4)
    hdr = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, n * 4]}}).encode()
    hdr += b' ' * (-len(hdr) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(hdr)) + hdr + data)
st('a.st', 1000)
st('b.st', 200000)
PY
n3-inspect --from-safetensors a.st --kind update --meta round=3 -o a.n3
n3-inspect --from-safetensors b.st --kind update --meta round=3 -o b.n3
n3-inspect --from-safetensors a.st --kind update --meta round=4 -o r4.n3
cat a.n3 b.n3 >two.n3

# --- round trips ---------------------------------------------------------------------------------
expect 0 '' -- n3-seal --to bob.pub --key alice.key a.n3 -o a.sealed
expect 0 'record 1 from alice [0-9a-f]{64} epoch 0 round 3' -- \
    n3-seal --open --key bob.key --authority fed.pub a.sealed -o a.out
cmp -s a.n3 a.out && assert_eq ok ok "round trip" || assert_eq differ same "round trip"
expect_stdin two.n3 0 '' -- n3-seal --to bob.pub --to carol.pub --key alice.key -o two.sealed
assert_eq "$(n3-inspect two.sealed | grep -c 'sealed')" 2 "two records in, two sealed records out"
expect_stdin two.sealed 0 'record 2 from alice' -- n3-seal -d --key carol.key --authority fed.pub --round 3
cp "$T/out" two.out
cmp -s two.n3 two.out && assert_eq ok ok "stream round trip for the second recipient" || assert_eq differ same "stream"

# --- one record per sender -----------------------------------------------------------------------
# two.sealed is two different updates from alice: with a roster (a round's members) the second
# would give her a double weight in the merge, so it is refused like a bad record
expect 1 "record 2 at byte [0-9]+: a second record from sender 'alice' \([0-9a-f]{16}\)" -- \
    n3-seal -d --key carol.key --authority fed.pub --roster fed.roster --round 3 two.sealed -o x.out
assert_no_file x.out
expect_stdin two.sealed 1 "a second record from sender 'alice'" -- \
    n3-seal -d --key carol.key --authority fed.pub --roster fed.roster -o x.out
assert_no_file x.out
expect 1 "a second record from sender 'alice'" -- \
    n3-seal -d --key carol.key --authority fed.pub --one-per-sender two.sealed -o x.out
assert_no_file x.out
expect 0 'record 2 from alice' -- \
    n3-seal -d --key carol.key --authority fed.pub --roster fed.roster --allow-repeat-senders two.sealed -o both.out
cmp -s two.n3 both.out && assert_eq ok ok "--allow-repeat-senders: both updates come out" ||
    assert_eq differ same "--allow-repeat-senders"
expect 2 '' -- n3-seal -d --key carol.key --authority fed.pub --one-per-sender --allow-repeat-senders two.sealed -o x.out
expect 2 '' -- n3-seal --to bob.pub --key alice.key --allow-repeat-senders a.n3 -o x.out
assert_no_file x.out
expect 0 '' -- n3-seal --open --key bob.key --authority fed.pub two.sealed --sender senders.txt -o two.out2
assert_eq "$(grep -c '^alice [0-9a-f]\{64\} epoch 0 round 3$' senders.txt)" 2 "--sender lists each record's sender"
n3-seal --to bob.pub --key alice.key a.n3 | n3-seal --open --key bob.key --authority fed.pub 2>/dev/null >piped.out
cmp -s a.n3 piped.out && assert_eq ok ok "pipeline" || assert_eq differ same "pipeline"
# The packed record type carries --round when it has no metadata of its own.
expect 0 '' -- n3-seal --to bob.pub --key alice.key --round 3 a.n3 -o a3.sealed

expect 0 '' -- n3-seal --to bob.pub --key alice.key --pad-recipients 16 a.n3 -o pad.sealed
expect 0 'record 1 from alice' -- n3-seal --open --key bob.key --authority fed.pub pad.sealed -o pad.out
assert_eq "$(od -An -tu2 -j34 -N2 pad.sealed | tr -d ' ')" 16 "the header lists 16 stanzas"
expect 2 '' -- n3-seal --to bob.pub --key alice.key --pad-recipients 5000 a.n3 -o x.out

# --- sizes name neither the sender nor the number of real recipients ----------------------------
member fed.ask a
member fed.ask "$(printf 'l%.0s' $(seq 60))"
long=$(printf 'l%.0s' $(seq 60))
n3-seal --to bob.pub --key a.key a.n3 -o from-a.sealed
n3-seal --to bob.pub --key "$long.key" a.n3 -o from-long.sealed
assert_eq "$(stat -c %s from-long.sealed)" "$(stat -c %s from-a.sealed)" "ids of 1 and 60 characters: same sealed size"
n3-seal --to bob.pub --key a.key --pad-recipients 4 a.n3 -o one-of-4.sealed
n3-seal --to bob.pub --to carol.pub --to alice.pub --to a.pub --key "$long.key" a.n3 -o four.sealed
assert_eq "$(stat -c %s one-of-4.sealed)" "$(stat -c %s four.sealed)" "1 recipient padded to 4: the size of 4 recipients"

# --- nothing names the sender --------------------------------------------------------------------
assert_eq "$(grep -c alice a.sealed)" 0 "sealed bytes do not contain the sender's name"
assert_eq "$(grep -c bob a.sealed)" 0 "sealed bytes do not contain the recipient's name"

# --- wrong keys and members ----------------------------------------------------------------------
expect 1 "not sealed to 'carol'" -- n3-seal --open --key carol.key --authority fed.pub a.sealed -o x.out
assert_no_file x.out
expect 1 'another federation' -- n3-seal --open --key bob.key --authority other.pub a.sealed -o x.out
assert_no_file x.out
expect 1 "recipient 'xavier'.*another federation" -- n3-seal --to xavier.pub --key alice.key a.n3 -o x.out
assert_no_file x.out
expect 1 "not sealed to 'xavier'" -- n3-seal --open --key xavier.key --authority other.pub a.sealed -o x.out
expect 1 "sender 'alice' .* is not in the roster" -- \
    n3-seal --open --key bob.key --authority fed.pub --roster carol.roster a.sealed -o x.out
assert_no_file x.out
expect 1 'sealed for round 3, not round 4' -- n3-seal --open --key bob.key --authority fed.pub --round 4 a.sealed -o x.out
assert_no_file x.out
expect 1 "sender's key expired" -- n3-seal --to bob.pub --key old.key a.n3 -o x.out
assert_no_file x.out
expect 1 "recipient 'old'.*expired" -- n3-seal --to old.pub --key alice.key a.n3 -o x.out
expect 1 'round 3, not 4' -- n3-seal --to bob.pub --key alice.key --round 4 a.n3 -o x.out
assert_no_file x.out

# --- wrong key kinds -----------------------------------------------------------------------------
expect 1 'alice.pub: is a member public record, not a member key' -- n3-seal --to bob.pub --key alice.pub a.n3 -o x.out
expect 1 'public key was given where a secret key is needed' -- n3-seal --to bob.pub --key alice.pub a.n3 -o x.out
expect 1 'alice.secret: is a member.s request secret, not a member key' -- n3-seal --to bob.pub --key alice.secret a.n3 -o x.out
expect 1 'fed.ask: is an authority secret key' -- n3-seal --to fed.ask --key alice.key a.n3 -o x.out
assert_no_file x.out

# --- damaged sealed records ----------------------------------------------------------------------
size=$(stat -c %s a.sealed)
for at in 33 40 45 100 120 $((size / 2)) $((size - 20)) $((size - 9)); do
    cp a.sealed bad.sealed
    printf '\x55' | dd of=bad.sealed bs=1 seek=$at conv=notrunc 2>/dev/null
    cmp -s bad.sealed a.sealed && printf '\xaa' | dd of=bad.sealed bs=1 seek=$at conv=notrunc 2>/dev/null
    expect 1 'error: ' -- n3-seal --open --key bob.key --authority fed.pub bad.sealed -o x.out
    assert_no_file x.out
done
head -c $((size - 100)) a.sealed >cut.sealed
expect 1 'truncated|ends early' -- n3-seal --open --key bob.key --authority fed.pub cut.sealed -o x.out
assert_no_file x.out
head -c 20 a.sealed >tiny.sealed
expect 1 '' -- n3-seal --open --key bob.key --authority fed.pub tiny.sealed -o x.out
: >empty.n3
expect 1 'no records' -- n3-seal --open --key bob.key --authority fed.pub empty.n3 -o x.out
assert_no_file x.out
expect 1 'no records' -- n3-seal --to bob.pub --key alice.key empty.n3 -o x.out
expect 1 'is a update record, not a sealed one' -- n3-seal --open --key bob.key --authority fed.pub a.n3 -o x.out
assert_match 'hint: did you mean n3-seal without --open' "$T/err"
# the second record of a stream is damaged: nothing is left behind
cat a.sealed bad.sealed >mixed.sealed
expect 1 'record 2' -- n3-seal --open --key bob.key --authority fed.pub mixed.sealed -o x.out
assert_no_file x.out

# a piped sealed record declaring 2 GiB that ends after its first bytes: truncated, at the cost
# of the bytes that came (the 2 GiB declared are never committed)
"$N3_PYTHON" - <<'PY'
import struct, zlib
h = b'\x89N3R\r\n\x1a\n' + bytes([1, 5]) + bytes(6) + struct.pack('<Q', 2 << 30)
clear = bytes([2, 1, 1, 0, 0, 0, 0, 0])
open('huge.sealed', 'wb').write(h + struct.pack('<I', zlib.crc32(h)) + bytes(4) + clear + b'x' * 40)
PY
read -r rc peak_mb < <(T="$T" "$N3_PYTHON" - n3-seal --open --key bob.key --authority fed.pub -o x.out <<'PY'
import os, resource, subprocess, sys
data = open('huge.sealed', 'rb').read()
with open(os.path.join(os.environ['T'], 'err'), 'wb') as err:
    p = subprocess.run(sys.argv[1:], input=data, stdout=subprocess.DEVNULL, stderr=err)
print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
PY
)
assert_eq "$rc" 1 "2 GiB declared, 48 bytes sent: exit 1"
assert_eq "$(grep -c 'error: ' "$T/err")" 1 "2 GiB declared: one error line"
assert_match '^n3-seal: error: stdin: record 1 at byte 0: truncated record' "$T/err" "2 GiB declared: truncated"
assert_eq "$((peak_mb < 200))" 1 "2 GiB declared: peak resident ${peak_mb} MB, under 200 MB"
assert_no_file x.out

# the sealed record's own checksum (its trailer) is checked, read in place or from a pipe
cp a.sealed crc.sealed
printf '\x5a' | dd of=crc.sealed bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
cmp -s crc.sealed a.sealed && printf '\xa5' | dd of=crc.sealed bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
expect 1 'checksum mismatch' -- n3-seal --open --key bob.key --authority fed.pub crc.sealed -o x.out
assert_no_file x.out
expect_stdin crc.sealed 1 'checksum mismatch' -- n3-seal --open --key bob.key --authority fed.pub -o x.out
assert_no_file x.out

# a damaged record to seal: refused whether it is read in place or from a pipe, at the start
# (the chunk that holds the envelope's header), in the middle, in the content's last chunk
# and in its own trailer
n3-seal --to bob.pub --key alice.key b.n3 -o b.sealed
bsize=$(stat -c %s b.n3)
for at in 200 $((bsize / 2)) $((bsize - 20)) $((bsize - 3)); do
    cp b.n3 bad.n3
    printf '\x33' | dd of=bad.n3 bs=1 seek=$at conv=notrunc 2>/dev/null
    cmp -s bad.n3 b.n3 && printf '\xcc' | dd of=bad.n3 bs=1 seek=$at conv=notrunc 2>/dev/null
    expect 1 'checksum mismatch' -- n3-seal --to bob.pub --key alice.key bad.n3 -o x.out
    assert_no_file x.out
    expect_stdin bad.n3 1 'checksum mismatch' -- n3-seal --to bob.pub --key alice.key -o x.out
    assert_no_file x.out
done
# the same record, whole, seals to the same plaintext both ways
n3-seal --open --key bob.key --authority fed.pub b.sealed 2>/dev/null | cmp -s - b.n3 &&
    assert_eq ok ok "a mapped record round-trips" || assert_eq differ same "a mapped record round-trips"
n3-seal --to bob.pub --key alice.key <b.n3 | n3-seal --open --key bob.key --authority fed.pub 2>/dev/null | cmp -s - b.n3 &&
    assert_eq ok ok "a piped record round-trips" || assert_eq differ same "a piped record round-trips"

# a streamed open that fails at the end leaves a record without its trailer: consumers refuse it
bsize=$(stat -c %s b.sealed)
cp b.sealed blast.sealed
printf '\x01' | dd of=blast.sealed bs=1 seek=$((bsize - 30)) conv=notrunc 2>/dev/null
cmp -s blast.sealed b.sealed && printf '\x02' | dd of=blast.sealed bs=1 seek=$((bsize - 30)) conv=notrunc 2>/dev/null
expect 1 'does not authenticate' -- n3-seal --open --key bob.key --authority fed.pub -o - blast.sealed
cp "$T/out" streamed.n3
expect 1 'error: ' -- n3-inspect --check streamed.n3

# records from several senders in one stream
n3-seal --to bob.pub --key carol.key a.n3 -o c.sealed
cat a.sealed c.sealed >senders.sealed
expect 0 '' -- n3-seal --open --key bob.key --authority fed.pub senders.sealed --sender who.txt -o who.out
assert_eq "$(cut -d' ' -f1 who.txt | tr '\n' ' ')" "alice carol " "each record's sender, in order"

# --- cipher suites -------------------------------------------------------------------------------
# The whole script runs once per suite (ctest sets N3_SEAL_SUITE); here, each suite by --suite,
# each opened whatever the opener's own preference, and the header naming the suite.
for suite in aes-256-gcm xchacha20-poly1305; do
    expect 0 '' -- n3-seal --suite "$suite" --to bob.pub --key alice.key a.n3 -o "s-$suite.sealed"
    assert_match "suite $suite" <(n3-inspect "s-$suite.sealed") "n3-inspect names suite $suite"
    for pref in aes-256-gcm xchacha20-poly1305; do
        expect 0 'record 1 from alice' -- env N3_SEAL_SUITE=$pref n3-seal --open --key bob.key --authority fed.pub "s-$suite.sealed" -o s.out
        cmp -s a.n3 s.out && assert_eq ok ok "$suite opened by a $pref sealer" || assert_eq differ same "$suite opened by a $pref sealer"
        rm -f s.out
    done
done
expect 0 'suite aes-256-gcm' -- env N3_SEAL_SUITE=aes n3-seal -v --to bob.pub --key alice.key a.n3 -o s.sealed
expect 0 'suite xchacha20-poly1305' -- n3-seal -v --suite xchacha --to bob.pub --key alice.key a.n3 -o s.sealed
expect 0 'suite aes-256-gcm' -- env N3_SEAL_SUITE=xchacha n3-seal -v --suite aes --to bob.pub --key alice.key a.n3 -o s.sealed
expect 2 "--suite: unknown suite 'des'" -- n3-seal --suite des --to bob.pub --key alice.key a.n3 -o x.out
assert_no_file x.out
expect 2 "environment N3_SEAL_SUITE: unknown suite 'rot13'" -- env N3_SEAL_SUITE=rot13 n3-seal --to bob.pub --key alice.key a.n3 -o x.out
assert_no_file x.out
expect 2 '' -- n3-seal --open --suite aes --key bob.key --authority fed.pub a.sealed -o x.out
# the suite byte is bound (payload key, signature 1): another suite's id, or an unknown one, fails
for id in 1 2 9; do
    cp s-aes-256-gcm.sealed bad.sealed
    printf "\\x0$id" | dd of=bad.sealed bs=1 seek=33 conv=notrunc 2>/dev/null
    cmp -s bad.sealed s-aes-256-gcm.sealed && continue
    expect 1 'error: ' -- n3-seal --open --key bob.key --authority fed.pub bad.sealed -o x.out
    assert_no_file x.out
done
assert_match 'unsupported suite 9' "$T/err" "an unknown suite is named"

# --- usage ---------------------------------------------------------------------------------------
expect 2 'at least one --to' -- n3-seal --key alice.key a.n3
assert_match 'did you mean --open' "$T/err"
expect 2 'needs --authority' -- n3-seal --open --key bob.key a.sealed
expect 2 '' -- n3-seal --open --to bob.pub --key bob.key --authority fed.pub a.sealed
expect 2 'is also an input' -- n3-seal --to bob.pub --key alice.key a.n3 -o a.n3
expect 2 '--round must be' -- n3-seal --to bob.pub --key alice.key --round x a.n3 -o x.out
expect 2 'missing.pub' -- n3-seal --to missing.pub --key alice.key a.n3 -o x.out

# --- passphrase-encrypted member keys ------------------------------------------------------------
printf 'pw for bob\n' >bob.pass
printf 'not it\n' >wrong.pass
cp bob.key bobenc.key
n3-keys passwd --passphrase-file bob.pass bobenc.key 2>/dev/null
cp alice.key aliceenc.key
n3-keys passwd --passphrase-file bob.pass aliceenc.key 2>/dev/null
expect 0 '' -- n3-seal --to bob.pub --key aliceenc.key --passphrase-file bob.pass a.n3 -o enc.sealed
expect 0 'record 1 from alice' -- env N3_PASSPHRASE_FILE=bob.pass n3-seal --open --key bobenc.key --authority fed.pub enc.sealed -o enc.out
cmp -s a.n3 enc.out && assert_eq ok ok "round trip with encrypted keys" || assert_eq differ same "encrypted keys"
expect 1 'bobenc.key: wrong passphrase' -- n3-seal --open --key bobenc.key --passphrase-file wrong.pass --authority fed.pub enc.sealed -o x.out
assert_no_file x.out
expect 2 'bobenc.key: needs a passphrase' -- env -u N3_PASSPHRASE_FILE setsid -w n3-seal --open --key bobenc.key --authority fed.pub enc.sealed -o x.out
assert_no_file x.out

finish
