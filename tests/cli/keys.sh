#!/usr/bin/env bash
# CLI tests for n3-keys: the issuance flow, key files, and every bad key input.
source "$(dirname "$0")/lib.sh"
cd "$T"

# --- authority -----------------------------------------------------------------------------------
expect 0 '' -- n3-keys authority -o fed.ask
assert_eq "$(stat -c %a fed.ask)" 600 "authority secret is 0600"
expect 2 'refusing to overwrite fed.ask' -- n3-keys authority -o fed.ask
expect 0 '' -- n3-keys authority -o fed.ask --force
n3-keys public fed.ask >fed.pub
assert_match '^N3-AUTHORITY-[A-Za-z0-9+/]+$' fed.pub "authority public key is one line"

# --- request / issue / complete ------------------------------------------------------------------
expect 0 '' -- n3-keys request --id alice -o alice.secret
cp "$T/out" alice.req
assert_match '^N3-REQUEST-' alice.req
assert_eq "$(stat -c %a alice.secret)" 600 "member secret is 0600"
expect_stdin alice.req 0 '' -- n3-keys issue --authority fed.ask --log issued.log
cp "$T/out" alice.partial
expect 0 'member key for .alice.' -- n3-keys complete --secret alice.secret --partial alice.partial -o alice.key
assert_eq "$(stat -c %a alice.key)" 600 "member key is 0600"
n3-keys public alice.key >alice.pub
assert_match '^N3-MEMBER-[A-Za-z0-9+/]+$' alice.pub "public record is one line"
fp_key=$(n3-keys fingerprint alice.key)
fp_pub=$(n3-keys fingerprint alice.pub)
assert_eq "$fp_key" "$fp_pub" "fingerprint of key and public record agree"
assert_eq "${#fp_pub}" 64 "fingerprint is 64 hex digits"
expect 2 'refusing to overwrite' -- n3-keys complete --secret alice.secret --partial alice.partial -o alice.key
expect 0 '' -- n3-keys complete --secret alice.secret --partial alice.partial -o alice2.key --authority fed.pub

for who in bob carol; do
    n3-keys request --id $who -o $who.secret >$who.req
    n3-keys issue --authority fed.ask --log issued.log $who.req >$who.partial
    n3-keys complete --secret $who.secret --partial $who.partial -o $who.key 2>/dev/null
    n3-keys public $who.key >$who.pub
done

# --- bad inputs: wrong kinds ---------------------------------------------------------------------
expect 1 'fed.pub: is an authority public key, not an authority secret key' -- \
    n3-keys issue --authority fed.pub alice.req
expect 1 'alice.pub: is a member public record, not a member.s request secret' -- \
    n3-keys complete --secret alice.pub --partial alice.partial -o x.key
assert_no_file x.key
expect 1 'public key was given where a secret key is needed' -- \
    n3-keys complete --secret alice.pub --partial alice.partial -o x.key
expect 1 'alice.key: is a member key, not a key request' -- n3-keys issue --authority fed.ask alice.key
expect 1 'not a key request' -- n3-keys issue --authority fed.ask alice.partial

# --- a partial key for another request -----------------------------------------------------------
expect 1 'bob.partial: partial key was issued for another request' -- \
    n3-keys complete --secret alice.secret --partial bob.partial -o x.key
assert_no_file x.key

# --- corrupted and empty key files ---------------------------------------------------------------
sed 's/\(N3-MEMBER-KEY-.\{20\}\)./\1Q/' alice.key >bad.key
grep -q N3-MEMBER-KEY bad.key
cmp -s bad.key alice.key && sed -i 's/\(N3-MEMBER-KEY-.\{20\}\)./\1R/' bad.key
expect 1 'bad.key: corrupted member key' -- n3-keys public bad.key
head -c 100 alice.req >cut.req
expect 1 'cut.req: corrupted key request' -- n3-keys issue --authority fed.ask cut.req
: >empty.key
expect 1 'empty.key: no key in the file' -- n3-keys public empty.key
printf 'hello world\n' >junk.key
expect 1 'junk.key: not an n3 key file' -- n3-keys public junk.key
head -c 64 /dev/urandom >bin.key
expect 1 'bin.key: not a key file' -- n3-keys public bin.key
expect 2 'missing.key' -- n3-keys public missing.key
sed 's/\(N3-PARTIAL-.\{30\}\)./\1Z/' alice.partial >bad.partial
cmp -s bad.partial alice.partial && sed -i 's/\(N3-PARTIAL-.\{30\}\)./\1Y/' bad.partial
expect 1 'bad.partial: corrupted partial key' -- \
    n3-keys complete --secret alice.secret --partial bad.partial -o x.key
assert_no_file x.key

# --- a request with a bad proof (valid text checksum, altered body) ------------------------------
# Re-encodes the request with its name changed and the text checksum recomputed, as an attacker
# would: BLAKE2b-128(person "n3/v1/keytext", len||prefix||len||body)[:4].
"$N3_PYTHON" - alice.req evil.req <<'PY'
import base64, hashlib, struct, sys
line = [l for l in open(sys.argv[1]).read().split('\n') if l.startswith('N3-')][0]
prefix = 'N3-REQUEST-'
raw = base64.b64decode(line[len(prefix):] + '=' * (-len(line[len(prefix):]) % 4))
body = bytearray(raw[:-4])
h = hashlib.blake2b(digest_size=16, person=b'n3/v1/keytext')
h.update(struct.pack('<Q', len(prefix)) + prefix.encode() + struct.pack('<Q', len(body)) + bytes(body))
assert h.digest()[:4] == raw[-4:], 'text checksum differs from the documented one'
i = body.index(b'alice')
body[i:i + 5] = b'malic'
h = hashlib.blake2b(digest_size=16, person=b'n3/v1/keytext')
h.update(struct.pack('<Q', len(prefix)) + prefix.encode() + struct.pack('<Q', len(body)) + bytes(body))
out = prefix + base64.b64encode(bytes(body) + h.digest()[:4]).decode().rstrip('=')
open(sys.argv[2], 'w').write(out + '\n')
PY
assert_file evil.req
expect 1 'evil.req: bad proof of possession' -- n3-keys issue --authority fed.ask evil.req -o evil.partial
assert_no_file evil.partial

# --- another authority's partial -----------------------------------------------------------------
n3-keys authority -o other.ask 2>/dev/null
n3-keys public other.ask >other.pub
expect 1 'issued by another authority' -- \
    n3-keys complete --secret alice.secret --partial alice.partial --authority other.pub -o x.key
assert_no_file x.key

# --- fingerprint, roster, audit ------------------------------------------------------------------
expect 1 'has no fingerprint' -- n3-keys fingerprint alice.req
expect 0 '' -- n3-keys roster alice.pub bob.key carol.pub --authority fed.pub -o fed.roster
assert_eq "$(grep -c '^N3-MEMBER-' fed.roster)" 3 "roster lists three members"
assert_match '^# alice  epoch 0' fed.roster "roster comments name members"
n3-keys request --id xavier -o x.secret >x.req
n3-keys issue --authority other.ask x.req >x.partial
n3-keys complete --secret x.secret --partial x.partial -o xavier.key 2>/dev/null
expect 1 'belongs to another federation' -- n3-keys roster alice.pub xavier.key --authority fed.pub -o r2
assert_no_file r2
expect 1 'listed twice' -- n3-keys roster alice.pub alice.key
expect 0 '3 issuances, chain intact' -- n3-keys audit issued.log
# The authority issues a second key for alice: the log exposes it.
n3-keys request --id alice -o alice-b.secret >alice-b.req
n3-keys issue --authority fed.ask --log issued.log alice-b.req >/dev/null
expect 1 'issued twice: alice epoch 0' -- n3-keys audit issued.log
sed -i '1d' issued.log
expect 1 'chain does not match' -- n3-keys audit issued.log

# --- epochs and expiry ---------------------------------------------------------------------------
n3-keys request --id dave --epoch 2 --expires 2001-01-01 -o dave.secret >dave.req
expect 0 'warning: the issued key has already expired' -- n3-keys issue --authority fed.ask dave.req -o dave.partial
expect 0 '' -- n3-keys complete --secret dave.secret --partial dave.partial -o dave.key
n3-keys public dave.key >dave.pub
assert_match 'epoch 2  expires 2001-01-01' dave.key "epoch and expiry in the key comment"
expect 2 'is not a date' -- n3-keys request --id e --expires soon -o zz.secret
assert_no_file zz.secret
expect 2 'may hold printable ASCII only' -- n3-keys request --id 'a b' -o zz.secret
assert_no_file zz.secret

# --- CURVE transport keys ------------------------------------------------------------------------
expect 0 'public key: N3CURVE-PUBLIC-' -- n3-keys curve -o node.curve
assert_eq "$(stat -c %a node.curve)" 600 "curve secret is 0600"
assert_eq "$(grep -c '^N3CURVE-SECRET-.\{40\}$' node.curve)" 1 "one N3CURVE-SECRET- line of 40 Z85 chars"
pub=$(n3-keys public node.curve)
sec=$(grep '^N3CURVE-SECRET-' node.curve | cut -c16-)
want=$("$N3_PYTHON" -c 'import sys, zmq; print("N3CURVE-PUBLIC-" + zmq.curve_public(sys.argv[1].encode()).decode())' "$sec")
assert_eq "$pub" "$want" "CURVE public key equals zmq_curve_public"
expect 1 'not a member key' -- n3-seal --to alice.pub --key node.curve

# --- passphrase-encrypted secret keys -------------------------------------------------------------
printf 'correct horse battery\n' >pass.txt
printf 'wrong\n' >wrong.txt
expect 0 '' -- n3-keys authority --passphrase --passphrase-file pass.txt -o enc.ask
assert_eq "$(grep -c '^N3-ENCRYPTED-KEY-[A-Za-z0-9+/]*$' enc.ask)" 1 "encrypted key is one N3-ENCRYPTED-KEY- line"
assert_eq "$(grep -c 'N3-AUTHORITY-SECRET-' enc.ask)" 0 "no clear secret in the encrypted file"
assert_eq "$(stat -c %a enc.ask)" 600 "encrypted authority secret is 0600"
expect 0 '' -- env N3_PASSPHRASE_FILE=pass.txt n3-keys public enc.ask
grep -q '^N3-AUTHORITY-' "$T/out" && cp "$T/out" enc.pub
assert_file enc.pub
assert_eq "$(n3-keys public --passphrase-file pass.txt enc.ask)" "$(grep '^# public key: ' enc.ask | cut -c15-)" \
    "public part of the encrypted authority matches its comment"
expect 1 'enc.ask: wrong passphrase' -- n3-keys public --passphrase-file wrong.txt enc.ask
expect 1 'enc.ask: wrong passphrase' -- env N3_PASSPHRASE_FILE=wrong.txt n3-keys fingerprint enc.ask
expect 2 'enc.ask: needs a passphrase and there is no terminal.*' -- env -u N3_PASSPHRASE_FILE setsid -w n3-keys public enc.ask
grep -q 'hint: give --passphrase-file FILE or set N3_PASSPHRASE_FILE' "$T/err" || _fail "no passphrase hint"
expect 2 'cannot read passphrase file missing.txt' -- n3-keys public --passphrase-file missing.txt enc.ask
printf '\n' >empty.txt
expect 2 'passphrase file empty.txt is empty' -- n3-keys public --passphrase-file empty.txt enc.ask
expect 2 'no terminal' -- env -u N3_PASSPHRASE_FILE setsid -w n3-keys authority --passphrase -o nopass.ask
assert_no_file nopass.ask
# a corrupted encrypted key file
sed 's/^\(N3-ENCRYPTED-KEY-.\{40\}\)./\1A/;t;s/^\(N3-ENCRYPTED-KEY-.\{40\}\)./\1B/' enc.ask >bad-enc.ask
cmp -s bad-enc.ask enc.ask && sed -i 's/^\(N3-ENCRYPTED-KEY-.\{40\}\)./\1B/' bad-enc.ask
expect 1 'bad-enc.ask: corrupted passphrase-encrypted key' -- n3-keys public --passphrase-file pass.txt bad-enc.ask
grep -v '^N3-ENCRYPTED-KEY-' enc.ask >cut-enc.ask
grep '^N3-ENCRYPTED-KEY-' enc.ask | cut -c1-60 >>cut-enc.ask
expect 1 'cut-enc.ask: corrupted' -- n3-keys public --passphrase-file pass.txt cut-enc.ask
# the whole flow with encrypted secrets
expect 0 '' -- n3-keys request --id erin --passphrase --passphrase-file pass.txt -o erin.secret
cp "$T/out" erin.req
assert_eq "$(grep -c '^N3-ENCRYPTED-KEY-' erin.secret)" 1 "encrypted member secret"
expect 0 '' -- n3-keys issue --passphrase-file pass.txt --authority enc.ask erin.req -o erin.partial
expect 1 'enc.ask: wrong passphrase' -- n3-keys issue --passphrase-file wrong.txt --authority enc.ask erin.req -o erin2.partial
assert_no_file erin2.partial
expect 0 "member key for .erin." -- env N3_PASSPHRASE_FILE=pass.txt n3-keys complete --passphrase \
    --secret erin.secret --partial erin.partial -o erin.key
assert_eq "$(grep -c '^N3-ENCRYPTED-KEY-' erin.key)" 1 "encrypted member key"
assert_eq "$(N3_PASSPHRASE_FILE=pass.txt n3-keys fingerprint erin.key)" "$(n3-keys fingerprint erin.partial)" \
    "fingerprint of the encrypted member key"
# passwd: change, remove, add
printf 'another one\n' >pass2.txt
expect 0 'passphrase changed' -- n3-keys passwd --passphrase-file pass.txt --new-passphrase-file pass2.txt erin.key
expect 1 'wrong passphrase' -- n3-keys public --passphrase-file pass.txt erin.key
expect 0 '' -- n3-keys public --passphrase-file pass2.txt erin.key
expect 0 'passphrase removed' -- n3-keys passwd --remove --passphrase-file pass2.txt erin.key
assert_eq "$(grep -c '^N3-MEMBER-KEY-' erin.key)" 1 "passphrase removed: a clear member key again"
assert_eq "$(grep -c '^# public record: ' erin.key)" 1 "passwd keeps the comments"
assert_eq "$(stat -c %a erin.key)" 600 "passwd keeps the file 0600"
expect 1 'has no passphrase to remove' -- n3-keys passwd --remove erin.key
expect 0 'passphrase added' -- n3-keys passwd --passphrase-file pass.txt erin.key
expect 0 '' -- n3-keys public --passphrase-file pass.txt erin.key
expect 1 'wrong passphrase' -- n3-keys passwd --remove --passphrase-file wrong.txt erin.key
assert_eq "$(grep -c '^N3-ENCRYPTED-KEY-' erin.key)" 1 "a failed passwd leaves the file as it was"
expect 1 'is an authority public key, not a secret key' -- n3-keys passwd fed.pub
expect 2 'n3-send reads CURVE transport keys unencrypted' -- n3-keys passwd --passphrase-file pass.txt node.curve

finish
