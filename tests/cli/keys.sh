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

n3-keys authority -o other.ask 2>/dev/null
n3-keys public other.ask >other.pub

# --- request / issue / complete ------------------------------------------------------------------
expect 0 '' -- n3-keys request --id alice -o alice.secret
cp "$T/out" alice.req
assert_match '^N3-REQUEST-' alice.req
assert_eq "$(stat -c %a alice.secret)" 600 "member secret is 0600"
expect_stdin alice.req 0 '' -- n3-keys issue --authority fed.ask --log issued.log
cp "$T/out" alice.partial
expect 0 'member key for .alice.' -- n3-keys complete --keep-secret --secret alice.secret --partial alice.partial -o alice.key
assert_eq "$(stat -c %a alice.key)" 600 "member key is 0600"
assert_file alice.secret
n3-keys public alice.key >alice.pub
assert_match '^N3-MEMBER-[A-Za-z0-9+/]+$' alice.pub "public record is one line"
fp_key=$(n3-keys fingerprint alice.key)
fp_pub=$(n3-keys fingerprint alice.pub)
assert_eq "$fp_key" "$fp_pub" "fingerprint of key and public record agree"
assert_eq "${#fp_pub}" 64 "fingerprint is 64 hex digits"
expect 2 'refusing to overwrite' -- n3-keys complete --secret alice.secret --partial alice.partial -o alice.key
expect 0 '' -- n3-keys complete --keep-secret --secret alice.secret --partial alice.partial -o alice2.key --authority fed.pub

for who in bob carol; do
    n3-keys request --id $who -o $who.secret >$who.req
    expect 0 '' -- n3-keys issue --authority fed.ask --log issued.log $who.req -o $who.partial
    assert_eq "$(stat -c %a $who.partial)" 600 "a partial key file is 0600"
    expect 0 "removed $who.secret" -- n3-keys complete --secret $who.secret --partial $who.partial -o $who.key
    assert_no_file $who.secret
    n3-keys public $who.key >$who.pub
done
# A member key written over its own secret file (--force) is not then removed as the secret.
n3-keys request --id frank -o frank.secret >frank.req
n3-keys issue --authority fed.ask frank.req -o frank.partial 2>/dev/null
expect 0 '' -- n3-keys complete --force --secret frank.secret --partial frank.partial -o frank.secret
assert_match '^N3-MEMBER-KEY-' frank.secret "a key written over its secret file stays"
expect 2 'refusing to overwrite bob.partial' -- n3-keys issue --authority fed.ask --log issued.log bob.req -o bob.partial

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

# --- the issuance log ----------------------------------------------------------------------------
assert_eq "$(grep -c 'refusing to overwrite bob.partial' issued.log)" 0 "a refused issue is not logged"
expect 2 'authority is required' -- n3-keys audit issued.log
# (c) an honest log audits and prints its head.
expect 0 '^n3-keys: issued.log: 3 issuances, head [0-9a-f]{64}$' -- n3-keys audit --authority fed.pub issued.log
grep -q 'every entry signed by authority' "$T/err" || _fail "audit does not say the entries are signed"
head3=$(sed -n 's/^n3-keys: issued.log: 3 issuances, head \([0-9a-f]*\)$/\1/p' "$T/err")
assert_eq "${#head3}" 64 "audit prints the head"
expect 0 '' -- n3-keys audit --authority fed.pub --expect-count 3 --expect-head "$head3" issued.log
expect 1 'issued.log: kept by authority [0-9a-f]+, not by' -- n3-keys audit --authority other.pub issued.log
# bob's key file holds the head he was issued at (entry 2), signed inside his partial key.
bob_head=$(sed -n 's/^# issuance log: entry 2, head \([0-9a-f]*\)$/\1/p' bob.key)
assert_eq "${#bob_head}" 64 "the member key records the log head it was issued at"
expect 0 '' -- n3-keys audit --authority fed.pub --expect-head "$bob_head" --at 2 issued.log
expect 1 'the expected head is that of entry 2' -- n3-keys audit --authority fed.pub --expect-head "$bob_head" issued.log
expect 2 '--at N needs --expect-head' -- n3-keys audit --authority fed.pub --at 2 issued.log
expect 2 'takes a log head of 64 hex digits' -- n3-keys audit --authority fed.pub --expect-head 5f3a issued.log
cp issued.log honest.log

# (a) the last line cut: what is left is well signed, but shorter than what was seen.
sed '$d' honest.log >issued.log
expect 0 '2 issuances' -- n3-keys audit --authority fed.pub issued.log
expect 1 'holds 2 issuances, expected 3 \(entries were cut\)' -- \
    n3-keys audit --authority fed.pub --expect-count 3 issued.log
expect 1 'not the expected' -- n3-keys audit --authority fed.pub --expect-head "$head3" issued.log

# (b) bob's line dropped and the chain redone, which needs no secret: the signatures catch it.
"$N3_PYTHON" - honest.log issued.log <<'PY'
import base64, hashlib, struct, sys
def body(text, prefix):
    raw = base64.b64decode(text[len(prefix):] + '=' * (-len(text[len(prefix):]) % 4))
    return raw[:-4]
def part(b):
    return struct.pack('<Q', len(b)) + b
lines = open(sys.argv[1]).read().split('\n')[:-1]
head = [l for l in lines if l.startswith('n3-issuance-log ')][0]
genesis = hashlib.blake2b(part(body(head.split()[2], 'N3-AUTHORITY-')), digest_size=32,
                          person=b'n3/v1/log-gen').digest()
entries = [l.split() for l in lines if l[:1].isdigit()]
def chain(prev, index, f):
    m = part(prev) + struct.pack('<Q', index) + struct.pack('<Q', int(f[1])) + part(body(f[5], 'N3-MEMBER-'))
    return hashlib.blake2b(m, digest_size=32, person=b'n3/v1/log-chain').digest()
h = genesis
for i, f in enumerate(entries, 1):
    h = chain(h, i, f)
    assert h.hex() == f[6], 'the chain differs from the documented one'
out = [l for l in lines if not l[:1].isdigit()]
h = genesis
for i, f in enumerate([e for e in entries if e[4] != 'bob'], 1):
    f[0] = str(i)
    h = chain(h, i, f)
    f[6] = h.hex()
    out.append(' '.join(f))
open(sys.argv[2], 'w').write('\n'.join(out) + '\n')
PY
assert_eq "$(grep -c ' bob ' issued.log)" 0 "the forged log drops bob"
expect 1 'issued.log: line [0-9]+: signature of entry 2 does not verify against the authority' -- \
    n3-keys audit --authority fed.pub issued.log

# (d) the authority rewrites its log with its own key, alice left out and mallory put in at 2:
# every signature verifies, but not against the head bob kept.
n3-keys request --id mallory -o mallory.secret >mallory.req
rm -f issued.log
for r in bob mallory carol; do n3-keys issue --authority fed.ask --log issued.log $r.req >/dev/null; done
expect 0 '3 issuances' -- n3-keys audit --authority fed.pub issued.log
expect 1 'rewritten at or before entry 2' -- \
    n3-keys audit --authority fed.pub --expect-head "$bob_head" --at 2 issued.log
# An honest extension of what bob saw passes.
cp honest.log issued.log
n3-keys request --id dave -o dave0.secret >dave0.req
n3-keys issue --authority fed.ask --log issued.log dave0.req >/dev/null
expect 0 '4 issuances' -- n3-keys audit --authority fed.pub --expect-head "$bob_head" --at 2 issued.log

# The authority issues a second key for alice: the log exposes it.
n3-keys request --id alice -o alice-b.secret >alice-b.req
n3-keys issue --authority fed.ask --log issued.log alice-b.req >/dev/null
expect 1 'issued twice: alice epoch 0' -- n3-keys audit --authority fed.pub issued.log
grep -v '^1 ' issued.log >cut.log
expect 1 'entry numbered 2 where entry 1 belongs' -- n3-keys audit --authority fed.pub cut.log
# A log of the older, unsigned format is refused, for audit and for appending.
printf '1700000000 %s 0 alice %s %s\n' "$fp_pub" "$(cat alice.pub)" "$(printf '%064d' 0)" >old.log
expect 1 'old.log: an unsigned issuance log' -- n3-keys audit --authority fed.pub old.log
expect 1 'unsigned issuance log' -- n3-keys issue --authority fed.ask --log old.log dave0.req -o dave0.partial
assert_no_file dave0.partial

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

# --- secret key files others can read ------------------------------------------------------------
cp fed.ask open.ask
chmod 644 open.ask
expect 0 '^n3-keys: warning: open.ask is readable by others \(mode 0644\); chmod 600 open.ask$' -- n3-keys public open.ask
assert_eq "$(grep -c warning "$T/err")" 1 "the warning is given once"
expect 0 'warning: open.ask is readable by others' -- n3-keys issue --authority open.ask dave0.req -o open.partial
chmod 640 alice.key
expect 0 'warning: alice.key is readable by others \(mode 0640\)' -- n3-keys fingerprint alice.key
chmod 600 alice.key
expect 0 '' -- n3-keys fingerprint alice.key
assert_eq "$(grep -c warning "$T/err")" 0 "no warning for a 0600 key"
expect 0 '' -- n3-keys fingerprint alice.pub
assert_eq "$(grep -c warning "$T/err")" 0 "no warning for a public record"
chmod 644 node.curve
expect 0 'warning: node.curve is readable by others' -- n3-keys public node.curve
n3-keys public node.curve >node.allow 2>/dev/null
expect 3 'n3-send: warning: node.curve is readable by others \(mode 0644\); chmod 600 node.curve' -- \
    n3-send --recv "ipc://$T/open.sock" --count 1 --timeout 0.5 --curve-key node.curve --curve-allow node.allow
chmod 600 node.curve
# a partial key written to a file through stdout is as readable as the shell made it
n3-keys issue --authority fed.ask dave0.req >stdout.partial 2>"$T/err"
grep -q 'warning: stdout is a file others can read' "$T/err" || _fail "no warning for a partial key on a readable stdout"

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
