// n3/crypto/keys.hpp — federation authorities, member identities, rosters and CURVE keys.
//
// Certificateless identities on ristretto255 (DESIGN.md section 7, "option B"):
//   AuthoritySecret::generate()            s, P = sG, a random 16-byte federation id
//   MemberSecret::create(id, epoch, exp)   x_sig, x_kem and a Request with proofs of possession
//   issue(authority, request)              R = rG, h = Hs(P, fed, ID, X_sig, X_kem, R, epoch,
//                                          expiry), d = r + h s  -> Partial
//   complete(secret, partial)              checks dG == R + hP, y = x + d  -> MemberKey
//   record.Y_sig(P) / Y_kem(P)             anyone: Y = X + R + hP (X inside h: no key replacement)
// The authority never learns x, so it cannot sign or decrypt for a member; it can issue a
// second key for a name, which the append-only issuance log (log_append / audit_log) exposes.
//
// Every key a person handles is one line of text, PREFIX + base64(body || 4-byte check):
//   N3-AUTHORITY-SECRET-  N3-AUTHORITY-  N3-MEMBER-SECRET-  N3-REQUEST-  N3-PARTIAL-
//   N3-MEMBER-KEY-  N3-MEMBER-   and the ZeroMQ CURVE pair N3CURVE-SECRET-/N3CURVE-PUBLIC- (Z85);
//   N3-ENCRYPTED-KEY- is any secret one under a passphrase (passphrase.hpp), read transparently.
// Files may hold '#' comment lines. Loading the wrong kind, a corrupted line, an invalid or
// identity point, a non-canonical scalar or a failed proof throws DataError naming the file.
// A secret key file that its group or others may read is still used, but read_key_file says so
// through the hook set_key_file_warning installs (lib/ does not print).
#pragma once

#include "crypto/primitives.hpp"

#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace n3::crypto {

constexpr uint8_t kKeyVersion = 1;
constexpr uint8_t kSuite = 1; // ristretto255, BLAKE2b, Schnorr, XChaCha20-Poly1305

// The values are part of the encrypted key format (passphrase.hpp): never renumber.
enum class KeyKind : uint8_t {
    authority_secret = 0,
    authority_public = 1,
    member_secret = 2,
    request = 3,
    partial = 4,
    member_key = 5,
    member_public = 6,
    curve_secret = 7,
    curve_public = 8,
    encrypted_key = 9,
    receipt_secret = 10,
    receipt_public = 11
};
std::string_view key_prefix(KeyKind k);
std::string_view key_description(KeyKind k); // "an authority secret key", ...
bool is_secret(KeyKind k);

struct KeyText {
    KeyKind kind;
    Bytes body; // wiped on destruction: it may hold secrets
    KeyText(KeyKind k, Bytes b) : kind(k), body(std::move(b)) {}
    KeyText(const KeyText&) = default;
    KeyText(KeyText&&) = default;
    KeyText& operator=(const KeyText&) = default;
    KeyText& operator=(KeyText&&) = default;
    ~KeyText();
};
std::string encode_key_text(KeyKind kind, ByteView body);
// Parses the one key line of `text` (comment and blank lines skipped).
KeyText decode_key_text(std::string_view text, const std::string& where);
// "-" is stdin. A passphrase-encrypted file is decrypted (passphrase.hpp) unless !decrypt.
KeyText read_key_file(const std::string& path, bool decrypt = true);
// Throws DataError "<where>: is <what it is>, not <what was needed>" (+ a hint).
void expect_kind(const KeyText& kt, KeyKind want, const std::string& where);

// ssh refuses a private key others can read; we warn instead, once per file, because keys
// copied under umask 022 (scp, containers, CI checkouts) are common and refusing them would
// stop a running federation on an upgrade. Tools pass their warn(); without a hook, no warning.
void set_key_file_warning(std::function<void(const std::string&)> warn);
// "FILE is readable by others (mode 0644); chmod 600 FILE", or "" when only the owner has access.
std::string exposed_secret_file(const std::string& path);
// Unlinks a secret file that is no longer needed and fsyncs its folder, so the name is gone
// once this returns (overwriting first is pointless on journalling and copy-on-write file
// systems). Throws EnvError.
void remove_secret_file(const std::string& path);

using AuthorityId = std::array<uint8_t, 16>;
using Fingerprint = Hash32;

struct AuthorityPublic {
    AuthorityId id{};
    Point P{};
    Bytes encode() const;
    std::string text() const;
    Fingerprint fingerprint() const;
    static AuthorityPublic decode(ByteView body, const std::string& where);
    static AuthorityPublic load(const std::string& path); // authority public or secret file
};

struct AuthoritySecret {
    AuthorityId id{};
    Secret s{32};
    Point P{};
    static AuthoritySecret generate();
    AuthorityPublic public_key() const { return {id, P}; }
    std::string text() const;
    static AuthoritySecret decode(ByteView body, const std::string& where);
    static AuthoritySecret load(const std::string& path);
};

// A member's public record: everything anyone needs to compute its public keys.
struct PublicRecord {
    AuthorityId authority{};
    uint32_t epoch = 0;
    uint64_t expiry = 0; // unix seconds; 0 = never
    std::string id;
    Point X_sig{}, X_kem{}, R{};

    Bytes encode() const;
    std::string text() const;
    Fingerprint fingerprint() const;
    Scalar h(const Point& P) const; // the binding hash of DESIGN.md section 7
    Point Y_sig(const Point& P) const;
    Point Y_kem(const Point& P) const;
    bool expired(uint64_t now) const { return expiry != 0 && now >= expiry; }
    static PublicRecord decode(ByteView body, const std::string& where);
    static PublicRecord decode(Cursor& c);
    static PublicRecord load(const std::string& path); // public record, member key or partial
};

struct Request {
    std::string id;
    uint32_t epoch = 0;
    uint64_t expiry = 0;
    Point X_sig{}, X_kem{};
    Signature pop_sig{}, pop_kem{};

    Bytes encode() const;
    std::string text() const;
    Digest transcript() const; // what the proofs of possession sign
    // Throws DataError "<where>: bad proof of possession ..." when a proof fails.
    void verify(const std::string& where) const;
    static Request decode(ByteView body, const std::string& where);
    static Request load(const std::string& path);
};

struct MemberSecret {
    Secret x_sig{32}, x_kem{32};
    Request request;
    static MemberSecret create(const std::string& id, uint32_t epoch, uint64_t expiry);
    std::string text() const;
    static MemberSecret decode(ByteView body, const std::string& where);
    static MemberSecret load(const std::string& path);
};

// Where the issuance log recorded an issued key: entry `index` (1-based) appended at `time`
// after the entry whose head is `prev`, and the authority's signature over the new head. A
// partial key carries it, so the member can keep the head and later check the log against it.
struct LogEntry {
    uint64_t index = 0;
    uint64_t time = 0;
    Hash32 prev{};
    Signature sig{};
};
struct LogHead {
    uint64_t count = 0; // entries up to and including this one
    Hash32 head{};
};

struct Partial {
    PublicRecord record;
    Point P{};
    Secret d{32};
    std::optional<LogEntry> log; // set when issued with a log (n3-keys issue --log)
    std::string text() const;
    static Partial decode(ByteView body, const std::string& where);
    static Partial load(const std::string& path);
};

struct IssueOptions {
    std::optional<uint32_t> epoch;
    std::optional<uint64_t> expiry;
};
// Checks the request's proofs (DataError naming `where`) and issues its partial key.
Partial issue(const AuthoritySecret& authority, const Request& request, const std::string& where,
              const IssueOptions& opts = {});

struct MemberKey {
    Point P{};
    Secret y_sig{32}, y_kem{32};
    PublicRecord record;
    Point Y_sig{}, Y_kem{}; // derived

    AuthorityPublic authority() const { return {record.authority, P}; }
    std::string text() const;
    static MemberKey decode(ByteView body, const std::string& where);
    static MemberKey load(const std::string& path);
};
// Checks that `partial` answers `secret`'s request, that dG == R + hP, and the signature of
// the log entry it carries (if any).
MemberKey complete(const MemberSecret& secret, const Partial& partial, const std::string& where);
// The verified log position of a partial key; nullopt when it was issued without a log.
// Throws DataError when the entry's signature is not the authority's.
std::optional<LogHead> partial_log_head(const Partial& partial, const std::string& where);

// Federation membership: same authority id, and not expired at `now`. Throws DataError.
void check_member(const PublicRecord& rec, const AuthorityPublic& authority, uint64_t now,
                  const std::string& where);

// Key agreement between two members of one federation (for secure aggregation): a 32-byte key
// from BLAKE2b keyed with y_kem(me) * Y_kem(peer), bound to both fingerprints (in a fixed
// order, so both sides get the same key) and to `context`. Throws DataError for a peer of
// another federation or a degenerate key.
Hash32 kem_agree(const MemberKey& me, const PublicRecord& peer, ByteView context);

// A roster: members' public records, one per line, '#' comments. find() is a hash look-up
// (an opener checks every record's sender against a roster of thousands): parse() indexes the
// fingerprints; a roster built by hand, whose index does not cover `members`, is scanned.
struct FingerprintHash {
    size_t operator()(const Fingerprint& fp) const noexcept; // fingerprints are hashes already
};
struct Roster {
    std::vector<PublicRecord> members;
    std::unordered_map<Fingerprint, size_t, FingerprintHash> index{}; // fingerprint -> position
    static Roster parse(std::string_view text, const std::string& where);
    static Roster load(const std::string& path);
    const PublicRecord* find(const Fingerprint& fp) const;
};

// The issuance log, one line per issued key after a header that names the authority:
//   n3-issuance-log 2 <N3-AUTHORITY-...>
//   <index> <unix time> <fingerprint> <epoch> <id> <N3-MEMBER-...> <head> <signature>
// head_i = log_chain(head_{i-1}, i, time, record) and head_0 = log_genesis(authority), both
// BLAKE2b-256; the signature is the authority's Schnorr signature over
// log_entry_message(authority, head_i), so it covers the previous head, the index and the record.
// A hash chain alone can be recomputed by anyone who drops or edits a line; the signatures
// mean only the authority can write a log that audits, and a head a member kept (LogHead)
// shows whether a later log extends the one it saw. The authority can still rewrite its own
// log; what it cannot do is make the rewrite agree with a head someone kept.
Hash32 log_genesis(const AuthorityPublic& authority);
Hash32 log_chain(const Hash32& prev, uint64_t index, uint64_t time, const PublicRecord& rec);
Digest log_entry_message(const AuthorityPublic& authority, const Hash32& head);

// Verifies the log so far (as audit_log does, except that of the signatures only the last
// entry's is checked: the chain binds every entry into it, and enrolling N members then costs
// N verifications, not N^2 / 2; a log of another authority or an unsigned one is refused with
// DataError), then appends `rec` under an exclusive lock (flock), fsynced.
LogEntry log_append(const std::string& path, const AuthoritySecret& authority,
                    const PublicRecord& rec, uint64_t now);

struct LogReport {
    size_t entries = 0;
    std::vector<Hash32> heads; // heads[0] is the genesis, heads[i] the head after entry i
    std::vector<std::string>
        duplicates; // "<id> epoch <n>: <fp> <fp> ..." (a second key for a name)
    const Hash32& head() const { return heads.back(); }
};
// Checks the header, every entry's chain and signature against `authority`. Throws DataError
// naming the line for a broken chain, a bad signature, an unsigned (older) log or one kept by
// another authority; EnvError when the file is missing.
LogReport audit_log(const std::string& path, const AuthorityPublic& authority);

// What a reader of the log saw before: the number of entries, and a head (at entry `at`, or
// the last one). check_log throws DataError when the log is shorter, differs or was rewritten.
struct LogExpectation {
    std::optional<uint64_t> count;
    std::optional<Hash32> head;
    std::optional<uint64_t> at;
};
void check_log(const LogReport& report, const LogExpectation& want, const std::string& where);
// 64 hex digits -> Hash32; UsageError naming `flag`.
Hash32 parse_head(const std::string& text, const std::string& flag);

// ZeroMQ CURVE transport keys, the one key type of lib/net's CURVE sockets too: a Curve25519
// secret and its public key crypto_scalarmult_base(secret), as zmq_curve_public derives it.
// Z85 is ZeroMQ RFC 32, the codec of zmq_z85_encode/decode, written here so that n3_crypto
// needs no libzmq (tests/crypto checks it against the RFCs' vectors, tests/net against libzmq).
using CurvePublic = std::array<uint8_t, 32>;
std::string z85_encode(ByteView data);                  // size multiple of 4
std::optional<Bytes> z85_decode(std::string_view text); // nullopt when invalid
struct CurveKey {
    Secret secret{32};
    CurvePublic public_key{};
    static CurveKey generate();
    // The pair of a 32-byte secret; DataError naming `where` for another size.
    static CurveKey from_secret(ByteView secret, const std::string& where);
    std::string secret_text() const; // N3CURVE-SECRET-<40 Z85>
    std::string public_text() const; // N3CURVE-PUBLIC-<40 Z85>
    static CurveKey parse(std::string_view text, const std::string& where);
};
std::string curve_public_text(const CurvePublic& pub); // N3CURVE-PUBLIC-<40 Z85>

// "2027-01-31", "+30d", "@1700000000", "never" -> unix seconds (0 = never). UsageError.
uint64_t parse_expiry(const std::string& text, uint64_t now);
std::string format_time(uint64_t unix_seconds);
uint64_t now_seconds();

// A one-time receipt key (lib/ledger): a bare Schnorr pair y, Y = yG bound to no name, which a
// member puts into an update's receipt_key metadata so that it alone can later claim the
// merger's receipt for it. N3-RECEIPT-SECRET-<base64> / N3-RECEIPT-<base64>; DataError for a
// corrupted line or an invalid point or scalar.
struct ReceiptKey {
    Secret y{32};
    Point Y{};
    static ReceiptKey generate();
    std::string text() const;        // the secret line
    std::string public_text() const; // the N3-RECEIPT- line
    static ReceiptKey decode(ByteView body, const std::string& where);
    static ReceiptKey load(const std::string& path);
};
// The point of an N3-RECEIPT- line (`text` as found in metadata or a file); DataError naming
// `where`.
Point decode_receipt_public(std::string_view text, const std::string& where);
std::string receipt_public_text(const Point& Y);

} // namespace n3::crypto
