#include "crypto/keys.hpp"
#include "record/hex.hpp"
#include "record/lines.hpp"
#include "record/number.hpp"

#include "crypto/passphrase.hpp"
#include "record/error.hpp"
#include "record/io.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

namespace n3::crypto {

namespace {

struct KindInfo {
    KeyKind kind;
    const char* prefix;
    const char* description;
    bool secret;
};
// Longest prefixes first: "N3-AUTHORITY-" is a prefix of "N3-AUTHORITY-SECRET-".
const KindInfo kKinds[] = {
    {KeyKind::encrypted_key, "N3-ENCRYPTED-KEY-", "a passphrase-encrypted key", true},
    {KeyKind::authority_secret, "N3-AUTHORITY-SECRET-", "an authority secret key", true},
    {KeyKind::receipt_secret, "N3-RECEIPT-SECRET-", "a receipt secret key", true},
    {KeyKind::receipt_public, "N3-RECEIPT-", "a receipt public key", false},
    {KeyKind::member_secret, "N3-MEMBER-SECRET-", "a member's request secret", true},
    {KeyKind::member_key, "N3-MEMBER-KEY-", "a member key", true},
    {KeyKind::curve_secret, "N3CURVE-SECRET-", "a CURVE transport secret key", true},
    {KeyKind::curve_public, "N3CURVE-PUBLIC-", "a CURVE transport public key", false},
    {KeyKind::authority_public, "N3-AUTHORITY-", "an authority public key", false},
    {KeyKind::request, "N3-REQUEST-", "a key request", false},
    {KeyKind::partial, "N3-PARTIAL-", "a partial key", true},
    {KeyKind::member_public, "N3-MEMBER-", "a member public record", false},
};
// "member key" for "a member key": for messages that put their own article.
std::string noun(KeyKind k);
const KindInfo& info(KeyKind k) {
    for (auto& i : kKinds)
        if (i.kind == k) return i;
    throw std::logic_error("unknown key kind");
}

std::string noun(KeyKind k) {
    std::string d = info(k).description;
    return d.substr(d.find(' ') + 1);
}

constexpr size_t kCheck = 4;
constexpr size_t kMaxId = 128;

std::array<uint8_t, 16> text_check(KeyKind kind, ByteView body) {
    std::array<uint8_t, 16> c;
    Hasher(std::string_view("n3/v1/keytext"), {}, 16).part(key_prefix(kind)).part(body).final(c);
    return c;
}

void header(Bytes& b) {
    b.push_back(kKeyVersion);
    b.push_back(kSuite);
}
void check_header(Cursor& c) {
    uint8_t v = c.u8();
    if (v != kKeyVersion) c.fail("unsupported key version " + std::to_string(v));
    uint8_t s = c.u8();
    if (s != kSuite) c.fail("unsupported suite " + std::to_string(s));
}
Point read_point(Cursor& c, const char* what) {
    Point p = c.array<32>();
    if (!point_valid(p))
        c.fail(std::string("invalid ") + what +
               " (not a canonical non-identity ristretto255 point)");
    return p;
}
void read_scalar(Cursor& c, Secret& s, const char* what) {
    Scalar v = c.array<32>();
    if (!scalar_valid(v)) {
        sodium_memzero(v.data(), 32);
        c.fail(std::string("invalid ") + what + " (not a canonical non-zero scalar)");
    }
    std::memcpy(s.data(), v.data(), 32);
    sodium_memzero(v.data(), 32);
}
std::string read_id(Cursor& c) {
    uint16_t n = c.u16();
    if (n == 0 || n > kMaxId) c.fail("identity length " + std::to_string(n) + " out of range");
    auto v = c.take(n);
    std::string id(v.begin(), v.end());
    for (char ch : id)
        if (ch <= ' ' || ch > '~' || ch == '#')
            c.fail("identity has a character that is not allowed");
    return id;
}
void check_id(const std::string& id) {
    if (id.empty() || id.size() > kMaxId)
        throw UsageError("--id must be 1 to " + std::to_string(kMaxId) + " characters");
    for (char ch : id)
        if (ch <= ' ' || ch > '~' || ch == '#')
            throw UsageError("--id '" + id + "' may hold printable ASCII only (no space or '#')");
}
void put_id(Bytes& b, const std::string& id) {
    put_u16(b, static_cast<uint16_t>(id.size()));
    b.insert(b.end(), id.begin(), id.end());
}
// Wipes the encoded body of a secret key once its text is built.
std::string secret_text(KeyKind kind, Bytes& body) {
    std::string t = encode_key_text(kind, body);
    sodium_memzero(body.data(), body.size());
    return t;
}
KeyText load_kind(const std::string& path, KeyKind want) {
    KeyText kt = read_key_file(path);
    expect_kind(kt, want, path == "-" ? "stdin" : path);
    return kt;
}
std::string name_of(const std::string& path) {
    return path == "-" ? "stdin" : path;
}

} // namespace

KeyText::~KeyText() {
    if (!body.empty()) sodium_memzero(body.data(), body.size());
}

std::string_view key_prefix(KeyKind k) {
    return info(k).prefix;
}
std::string_view key_description(KeyKind k) {
    return info(k).description;
}
bool is_secret(KeyKind k) {
    return info(k).secret;
}

std::string encode_key_text(KeyKind kind, ByteView body) {
    init();
    if (kind == KeyKind::curve_secret || kind == KeyKind::curve_public)
        return std::string(key_prefix(kind)) + z85_encode(body);
    Bytes all(body.begin(), body.end());
    auto c = text_check(kind, body);
    all.insert(all.end(), c.begin(), c.begin() + kCheck);
    std::string b64(
        sodium_base64_encoded_len(all.size(), sodium_base64_VARIANT_ORIGINAL_NO_PADDING), '\0');
    sodium_bin2base64(b64.data(), b64.size(), all.data(), all.size(),
                      sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
    b64.resize(std::strlen(b64.c_str()));
    sodium_memzero(all.data(), all.size());
    std::string out = std::string(key_prefix(kind)) + b64;
    sodium_memzero(b64.data(), b64.size());
    return out;
}

KeyText decode_key_text(std::string_view text, const std::string& where) {
    init();
    std::string_view line;
    size_t lines = 0;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view l =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
        while (!l.empty() && std::isspace(static_cast<unsigned char>(l.back()))) l.remove_suffix(1);
        while (!l.empty() && std::isspace(static_cast<unsigned char>(l.front())))
            l.remove_prefix(1);
        if (l.empty() || l[0] == '#') continue;
        ++lines;
        line = l;
    }
    if (lines == 0) throw DataError(where + ": no key in the file (empty)");
    if (lines > 1)
        throw DataError(where + ": holds " + std::to_string(lines) + " key lines, expected one",
                        "a roster is read with --roster");
    for (auto& k : kKinds) {
        std::string_view p = k.prefix;
        if (line.substr(0, p.size()) != p) continue;
        std::string_view rest = line.substr(p.size());
        if (k.kind == KeyKind::curve_secret || k.kind == KeyKind::curve_public) {
            auto raw = z85_decode(rest);
            if (!raw || raw->size() != 32)
                throw DataError(where + ": corrupted " + noun(k.kind) +
                                " (expected 40 Z85 characters)");
            return {k.kind, std::move(*raw)};
        }
        if (rest.find('-') != std::string_view::npos) break; // an unknown N3-...- prefix
        Bytes all(rest.size());
        size_t len = 0;
        if (rest.empty() ||
            sodium_base642bin(all.data(), all.size(), rest.data(), rest.size(), nullptr, &len,
                              nullptr, sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0 ||
            len < kCheck + 2)
            throw DataError(where + ": corrupted " + noun(k.kind) + " (bad base64)");
        all.resize(len);
        Bytes body(all.begin(), all.end() - kCheck);
        auto c = text_check(k.kind, body);
        bool ok = sodium_memcmp(c.data(), all.data() + len - kCheck, kCheck) == 0;
        sodium_memzero(all.data(), all.size());
        if (!ok)
            throw DataError(where + ": corrupted " + noun(k.kind) + " (checksum mismatch)",
                            "the line was changed or truncated; copy it again");
        return {k.kind, std::move(body)};
    }
    throw DataError(where + ": not an n3 key file (unknown prefix '" +
                    std::string(line.substr(0, std::min<size_t>(line.size(), 20))) + "')");
}

namespace {
std::mutex g_warn_mutex;
std::function<void(const std::string&)> g_warn;
std::set<std::string> g_warned;

void warn_if_exposed(const std::string& path) {
    std::string w = exposed_secret_file(path);
    if (w.empty()) return;
    std::lock_guard<std::mutex> lock(g_warn_mutex);
    if (!g_warn || !g_warned.insert(path).second) return;
    g_warn(w);
}
} // namespace

void set_key_file_warning(std::function<void(const std::string&)> warn) {
    std::lock_guard<std::mutex> lock(g_warn_mutex);
    g_warn = std::move(warn);
    g_warned.clear();
}

std::string exposed_secret_file(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
    const mode_t perm = st.st_mode & 07777;
    if ((perm & 066) == 0) return {};
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(perm));
    const char* how = (perm & 044) ? "readable" : "writable";
    return path + " is " + how + " by others (mode " + mode + "); chmod 600 " + path;
}

void remove_secret_file(const std::string& path) {
    if (::unlink(path.c_str()) != 0) throw_errno("cannot remove " + path);
    size_t slash = path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) throw_errno("cannot open " + dir);
    int rc = ::fsync(dfd);
    int e = errno;
    ::close(dfd);
    if (rc != 0) throw_errno("cannot sync " + dir, e);
}

KeyText read_key_file(const std::string& path, bool decrypt) {
    std::string text;
    if (path == "-") {
        Input in("-", true);
        Bytes b;
        uint8_t buf[4096];
        size_t n;
        while ((n = in.read(buf)) > 0) {
            b.insert(b.end(), buf, buf + n);
            if (b.size() > (1 << 20)) throw DataError("stdin: too large for a key file");
        }
        text.assign(b.begin(), b.end());
    } else {
        text = read_text_file(path);
    }
    if (text.size() > (1 << 20)) throw DataError(path + ": too large for a key file");
    for (char ch : text)
        if ((static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\r' && ch != '\t') ||
            static_cast<unsigned char>(ch) >= 0x7f)
            throw DataError(name_of(path) + ": not a key file (binary data)");
    KeyText kt = decode_key_text(text, name_of(path));
    sodium_memzero(text.data(), text.size());
    if (path != "-" && is_secret(kt.kind)) warn_if_exposed(path);
    if (decrypt && kt.kind == KeyKind::encrypted_key)
        return decrypt_key_text(kt, passphrase(name_of(path), false), name_of(path));
    return kt;
}

void expect_kind(const KeyText& kt, KeyKind want, const std::string& where) {
    if (kt.kind == want) return;
    std::string hint;
    if (!is_secret(kt.kind) && is_secret(want))
        hint = "a public key was given where a secret key is needed";
    else if (kt.kind == KeyKind::member_secret && want == KeyKind::member_key)
        hint = "finish it first: n3-keys complete --secret FILE --partial FILE -o NAME.key";
    else if (kt.kind == KeyKind::member_key && want == KeyKind::member_public)
        hint = "give the public record: n3-keys public " + where;
    else if (kt.kind == KeyKind::authority_secret && want == KeyKind::authority_public)
        hint = "give the public part: n3-keys public " + where;
    throw DataError(where + ": is " + std::string(key_description(kt.kind)) + ", not " +
                        std::string(key_description(want)),
                    hint);
}

// --- authority --------------------------------------------------------------------------------

Bytes AuthorityPublic::encode() const {
    Bytes b;
    header(b);
    put(b, id);
    put(b, P);
    return b;
}
std::string AuthorityPublic::text() const {
    return encode_key_text(KeyKind::authority_public, encode());
}
Fingerprint AuthorityPublic::fingerprint() const {
    return Hasher("n3/v1/fp-auth").part(encode()).hash32();
}
AuthorityPublic AuthorityPublic::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    check_header(c);
    AuthorityPublic a;
    a.id = c.array<16>();
    a.P = read_point(c, "authority public key");
    c.expect_end();
    return a;
}
AuthorityPublic AuthorityPublic::load(const std::string& path) {
    KeyText kt = read_key_file(path);
    if (kt.kind == KeyKind::authority_secret)
        return AuthoritySecret::decode(kt.body, name_of(path)).public_key();
    expect_kind(kt, KeyKind::authority_public, name_of(path));
    return decode(kt.body, name_of(path));
}

AuthoritySecret AuthoritySecret::generate() {
    AuthoritySecret a;
    random_bytes(a.id);
    scalar_random({a.s.data(), 32});
    a.P = base_mul(a.s.view());
    return a;
}
std::string AuthoritySecret::text() const {
    Bytes b;
    header(b);
    put(b, id);
    put(b, s.view());
    return secret_text(KeyKind::authority_secret, b);
}
AuthoritySecret AuthoritySecret::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    check_header(c);
    AuthoritySecret a;
    a.id = c.array<16>();
    read_scalar(c, a.s, "authority secret");
    c.expect_end();
    a.P = base_mul(a.s.view());
    return a;
}
AuthoritySecret AuthoritySecret::load(const std::string& path) {
    return decode(load_kind(path, KeyKind::authority_secret).body, name_of(path));
}

// --- member public record ---------------------------------------------------------------------

Bytes PublicRecord::encode() const {
    Bytes b;
    header(b);
    put(b, authority);
    put_u32(b, epoch);
    put_u64(b, expiry);
    put_id(b, id);
    put(b, X_sig);
    put(b, X_kem);
    put(b, R);
    return b;
}
std::string PublicRecord::text() const {
    return encode_key_text(KeyKind::member_public, encode());
}
Fingerprint PublicRecord::fingerprint() const {
    return Hasher("n3/v1/fp").part(encode()).hash32();
}
Scalar PublicRecord::h(const Point& P) const {
    return Hasher("n3/v1/pp")
        .part(P)
        .part(authority)
        .part(id)
        .part(X_sig)
        .part(X_kem)
        .part(R)
        .part_u64(epoch)
        .part_u64(expiry)
        .scalar();
}
namespace {
Point implicit_key(const Point& X, const PublicRecord& r, const Point& P) {
    Point hP;
    if (!mul(hP, r.h(P), P)) throw DataError("degenerate member key");
    Point Y = add(add(X, r.R), hP);
    if (!point_valid(Y)) throw DataError("member '" + r.id + "' has a degenerate public key");
    return Y;
}
} // namespace
Point PublicRecord::Y_sig(const Point& P) const {
    return implicit_key(X_sig, *this, P);
}
Point PublicRecord::Y_kem(const Point& P) const {
    return implicit_key(X_kem, *this, P);
}
PublicRecord PublicRecord::decode(Cursor& c) {
    check_header(c);
    PublicRecord r;
    r.authority = c.array<16>();
    r.epoch = c.u32();
    r.expiry = c.u64();
    r.id = read_id(c);
    r.X_sig = read_point(c, "signing key X_sig");
    r.X_kem = read_point(c, "encryption key X_kem");
    r.R = read_point(c, "partial key commitment R");
    return r;
}
PublicRecord PublicRecord::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    PublicRecord r = decode(c);
    c.expect_end();
    return r;
}
PublicRecord PublicRecord::load(const std::string& path) {
    KeyText kt = read_key_file(path);
    if (kt.kind == KeyKind::member_key) return MemberKey::decode(kt.body, name_of(path)).record;
    if (kt.kind == KeyKind::partial) return Partial::decode(kt.body, name_of(path)).record;
    expect_kind(kt, KeyKind::member_public, name_of(path));
    return decode(kt.body, name_of(path));
}

// --- request ----------------------------------------------------------------------------------

Digest Request::transcript() const {
    return Hasher("n3/v1/pop")
        .part(id)
        .part_u64(epoch)
        .part_u64(expiry)
        .part(X_sig)
        .part(X_kem)
        .digest();
}
Bytes Request::encode() const {
    Bytes b;
    header(b);
    put_u32(b, epoch);
    put_u64(b, expiry);
    put_id(b, id);
    put(b, X_sig);
    put(b, X_kem);
    put(b, pop_sig);
    put(b, pop_kem);
    return b;
}
std::string Request::text() const {
    return encode_key_text(KeyKind::request, encode());
}
void Request::verify(const std::string& where) const {
    Digest t = transcript();
    if (!schnorr_verify(X_sig, t, pop_sig))
        throw DataError(where + ": bad proof of possession for the signing key",
                        "the request was changed after it was made; ask for a new one");
    if (!schnorr_verify(X_kem, t, pop_kem))
        throw DataError(where + ": bad proof of possession for the encryption key",
                        "the request was changed after it was made; ask for a new one");
}
Request Request::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    check_header(c);
    Request r;
    r.epoch = c.u32();
    r.expiry = c.u64();
    r.id = read_id(c);
    r.X_sig = read_point(c, "signing key X_sig");
    r.X_kem = read_point(c, "encryption key X_kem");
    r.pop_sig = c.array<64>();
    r.pop_kem = c.array<64>();
    c.expect_end();
    return r;
}
Request Request::load(const std::string& path) {
    return decode(load_kind(path, KeyKind::request).body, name_of(path));
}

MemberSecret MemberSecret::create(const std::string& id, uint32_t epoch, uint64_t expiry) {
    check_id(id);
    MemberSecret m;
    scalar_random({m.x_sig.data(), 32});
    scalar_random({m.x_kem.data(), 32});
    m.request.id = id;
    m.request.epoch = epoch;
    m.request.expiry = expiry;
    m.request.X_sig = base_mul(m.x_sig.view());
    m.request.X_kem = base_mul(m.x_kem.view());
    Digest t = m.request.transcript();
    m.request.pop_sig = schnorr_sign(m.x_sig, m.request.X_sig, t);
    m.request.pop_kem = schnorr_sign(m.x_kem, m.request.X_kem, t);
    return m;
}
std::string MemberSecret::text() const {
    Bytes b;
    header(b);
    put(b, x_sig.view());
    put(b, x_kem.view());
    put(b, request.encode());
    return secret_text(KeyKind::member_secret, b);
}
MemberSecret MemberSecret::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    check_header(c);
    MemberSecret m;
    read_scalar(c, m.x_sig, "signing secret");
    read_scalar(c, m.x_kem, "encryption secret");
    m.request = Request::decode(c.take(c.left()), where);
    if (!equal(base_mul(m.x_sig.view()), m.request.X_sig) ||
        !equal(base_mul(m.x_kem.view()), m.request.X_kem))
        throw DataError(where + ": secrets do not match their public values (corrupted)");
    return m;
}
MemberSecret MemberSecret::load(const std::string& path) {
    return decode(load_kind(path, KeyKind::member_secret).body, name_of(path));
}

// --- partial key ------------------------------------------------------------------------------

// A partial key issued with a log ends in this tag and its LogEntry; one without ends after
// the record, as every partial key did before logs were signed.
constexpr uint8_t kPartialLogTag = 1;

std::string Partial::text() const {
    Bytes b;
    header(b);
    put(b, P);
    put(b, d.view());
    put(b, record.encode());
    if (log) {
        b.push_back(kPartialLogTag);
        put_u64(b, log->index);
        put_u64(b, log->time);
        put(b, log->prev);
        put(b, log->sig);
    }
    return secret_text(KeyKind::partial, b);
}
Partial Partial::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    check_header(c);
    Partial p;
    p.P = read_point(c, "authority public key");
    read_scalar(c, p.d, "partial key d");
    p.record = PublicRecord::decode(c);
    if (c.left() > 0) {
        uint8_t tag = c.u8();
        if (tag != kPartialLogTag) c.fail("unknown partial key field " + std::to_string(tag));
        LogEntry e;
        e.index = c.u64();
        e.time = c.u64();
        e.prev = c.array<32>();
        e.sig = c.array<64>();
        if (e.index == 0) c.fail("issuance log entry 0 (entries count from 1)");
        p.log = e;
    }
    c.expect_end();
    return p;
}
Partial Partial::load(const std::string& path) {
    return decode(load_kind(path, KeyKind::partial).body, name_of(path));
}

Partial issue(const AuthoritySecret& authority, const Request& request, const std::string& where,
              const IssueOptions& opts) {
    request.verify(where);
    Partial p;
    p.P = authority.P;
    p.record.authority = authority.id;
    p.record.epoch = opts.epoch.value_or(request.epoch);
    p.record.expiry = opts.expiry.value_or(request.expiry);
    p.record.id = request.id;
    p.record.X_sig = request.X_sig;
    p.record.X_kem = request.X_kem;
    Secret r(32);
    for (;;) {
        scalar_random({r.data(), 32});
        p.record.R = base_mul(r.view());
        Scalar h = p.record.h(authority.P);
        Secret hs(32);
        scalar_mul({hs.data(), 32}, h, authority.s.view());
        scalar_add({p.d.data(), 32}, r.view(), hs.view());
        Scalar dv;
        std::memcpy(dv.data(), p.d.data(), 32);
        bool ok = scalar_valid(dv);
        sodium_memzero(dv.data(), 32);
        if (ok) break; // d == 0 has probability 2^-252; draw again rather than emit it
    }
    return p;
}

// --- member key -------------------------------------------------------------------------------

namespace {
void derive_public(MemberKey& k, const std::string& where) {
    k.Y_sig = k.record.Y_sig(k.P);
    k.Y_kem = k.record.Y_kem(k.P);
    if (!equal(base_mul(k.y_sig.view()), k.Y_sig) || !equal(base_mul(k.y_kem.view()), k.Y_kem))
        throw DataError(where +
                        ": member key does not match its public record (corrupted or forged)");
}
} // namespace

std::string MemberKey::text() const {
    Bytes b;
    header(b);
    put(b, P);
    put(b, y_sig.view());
    put(b, y_kem.view());
    put(b, record.encode());
    return secret_text(KeyKind::member_key, b);
}
MemberKey MemberKey::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    check_header(c);
    MemberKey k;
    k.P = read_point(c, "authority public key");
    read_scalar(c, k.y_sig, "signing key");
    read_scalar(c, k.y_kem, "encryption key");
    k.record = PublicRecord::decode(c);
    c.expect_end();
    derive_public(k, where);
    return k;
}
MemberKey MemberKey::load(const std::string& path) {
    return decode(load_kind(path, KeyKind::member_key).body, name_of(path));
}

MemberKey complete(const MemberSecret& secret, const Partial& partial, const std::string& where) {
    const Request& q = secret.request;
    const PublicRecord& r = partial.record;
    if (r.id != q.id || !equal(r.X_sig, q.X_sig) || !equal(r.X_kem, q.X_kem))
        throw DataError(where + ": partial key was issued for another request (id '" + r.id + "')",
                        "use the partial key the authority issued for this secret");
    // dG == R + hP: the authority bound exactly our X_sig, X_kem, id, epoch and expiry.
    Point dG = base_mul(partial.d.view());
    Point hP;
    if (!mul(hP, r.h(partial.P), partial.P)) throw DataError(where + ": degenerate partial key");
    if (!equal(dG, add(r.R, hP)))
        throw DataError(where +
                            ": partial key does not verify against its authority (dG != R + hP)",
                        "the partial key was corrupted or not issued for this request");
    partial_log_head(partial, where);
    MemberKey k;
    k.P = partial.P;
    k.record = r;
    scalar_add({k.y_sig.data(), 32}, secret.x_sig.view(), partial.d.view());
    scalar_add({k.y_kem.data(), 32}, secret.x_kem.view(), partial.d.view());
    derive_public(k, where);
    return k;
}

std::optional<LogHead> partial_log_head(const Partial& partial, const std::string& where) {
    if (!partial.log) return std::nullopt;
    const LogEntry& e = *partial.log;
    AuthorityPublic a{partial.record.authority, partial.P};
    Hash32 head = log_chain(e.prev, e.index, e.time, partial.record);
    if (!schnorr_verify(a.P, log_entry_message(a, head), e.sig))
        throw DataError(
            where + ": the issuance log entry in the partial key is not signed by its authority",
            "the partial key was changed after it was issued; ask the authority for it again");
    return LogHead{e.index, head};
}

void check_member(const PublicRecord& rec, const AuthorityPublic& authority, uint64_t now,
                  const std::string& where) {
    if (!equal(rec.authority, authority.id))
        throw DataError(where + ": member '" + rec.id +
                        "' belongs to another federation (authority " + to_hex(rec.authority) +
                        ", expected " + to_hex(authority.id) + ")");
    if (rec.expired(now))
        throw DataError(where + ": key of member '" + rec.id + "' expired on " +
                            format_time(rec.expiry),
                        "the member needs a new key: n3-keys request / issue / complete");
}

Hash32 kem_agree(const MemberKey& me, const PublicRecord& peer, ByteView context) {
    if (!equal(peer.authority, me.record.authority))
        throw DataError("member '" + peer.id + "' belongs to another federation");
    Point shared;
    if (!mul(shared, me.y_kem.view(), peer.Y_kem(me.P)))
        throw DataError("key agreement with member '" + peer.id + "' gave the identity point");
    Fingerprint a = me.record.fingerprint(), b = peer.fingerprint();
    if (std::lexicographical_compare(b.begin(), b.end(), a.begin(), a.end())) std::swap(a, b);
    Hash32 k = Hasher("n3/v1/pair", shared, 32).part(a).part(b).part(context).hash32();
    sodium_memzero(shared.data(), shared.size());
    return k;
}

// --- roster -----------------------------------------------------------------------------------

Roster Roster::parse(std::string_view text, const std::string& where) {
    Roster r;
    size_t pos = 0, lineno = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string_view l =
            text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() : nl + 1;
        ++lineno;
        size_t hash = l.find(" #");
        if (hash != std::string_view::npos) l = l.substr(0, hash);
        while (!l.empty() && std::isspace(static_cast<unsigned char>(l.back()))) l.remove_suffix(1);
        while (!l.empty() && std::isspace(static_cast<unsigned char>(l.front())))
            l.remove_prefix(1);
        if (l.empty() || l[0] == '#') continue;
        std::string at = where + ": line " + std::to_string(lineno);
        KeyText kt = decode_key_text(l, at);
        expect_kind(kt, KeyKind::member_public, at);
        r.members.push_back(PublicRecord::decode(kt.body, at));
        r.index.emplace(r.members.back().fingerprint(), r.members.size() - 1);
    }
    if (r.members.empty()) throw DataError(where + ": roster lists no members");
    return r;
}
Roster Roster::load(const std::string& path) {
    return parse(read_text_file(path), path);
}
size_t FingerprintHash::operator()(const Fingerprint& fp) const noexcept {
    size_t h = 0;
    std::memcpy(&h, fp.data(), sizeof h);
    return h;
}
const PublicRecord* Roster::find(const Fingerprint& fp) const {
    if (index.size() == members.size()) {
        auto it = index.find(fp);
        return it == index.end() ? nullptr : &members[it->second];
    }
    for (auto& m : members)
        if (equal(m.fingerprint(), fp)) return &m;
    return nullptr;
}

// --- issuance log -----------------------------------------------------------------------------

Hash32 log_genesis(const AuthorityPublic& authority) {
    return Hasher("n3/v1/log-gen", {}, 32).part(authority.encode()).hash32();
}
Hash32 log_chain(const Hash32& prev, uint64_t index, uint64_t time, const PublicRecord& rec) {
    return Hasher("n3/v1/log-chain", {}, 32)
        .part(prev)
        .part_u64(index)
        .part_u64(time)
        .part(rec.encode())
        .hash32();
}
Digest log_entry_message(const AuthorityPublic& authority, const Hash32& head) {
    return Hasher("n3/v1/log-entry").part(authority.encode()).part(head).digest();
}

namespace {

constexpr std::string_view kLogMagic = "n3-issuance-log";
constexpr std::string_view kLogVersion = "2";

struct ParsedLog {
    bool has_header = false;
    LogReport report;
    std::map<std::pair<std::string, uint32_t>, std::vector<std::string>>
        names; // (id, epoch) -> fps
};

void check_entry_signature(const AuthorityPublic& authority, const Hash32& head,
                           const std::string& hex, const std::string& at, uint64_t index) {
    Signature sig{};
    if (!from_hex(hex, sig) ||
        !schnorr_verify(authority.P, log_entry_message(authority, head), sig))
        throw DataError(at + ": signature of entry " + std::to_string(index) +
                            " does not verify against the authority",
                        "the log was rewritten by someone without the authority's key");
}

// Verifies everything a log says against `authority`; `where` names the file in messages.
// With every_signature false only the last entry's signature is checked: the chain binds every
// entry into the last head, so that one signature vouches for all before it, and appending to
// a log of N entries costs one verification instead of N (enrolling N members, N^2 / 2).
ParsedLog parse_log(const std::string& text, const AuthorityPublic& authority,
                    const std::string& where, bool every_signature = true) {
    ParsedLog out;
    std::string last_at, last_sig;
    out.report.heads.push_back(log_genesis(authority));
    for (const auto& [at, f] : text_lines(text, where)) {
        if (!out.has_header) {
            if (f.empty() || f[0] != kLogMagic) {
                // An entry of the unsigned format: time fp epoch id record chain.
                if (f.size() == 6 && parse_uint(f[0]) && f[4].rfind("N3-MEMBER-", 0) == 0)
                    throw DataError(
                        where + ": an unsigned issuance log (written by an older n3-keys): "
                                "its entries cannot be checked against the authority",
                        "keep it for the record and start a new log: n3-keys issue --log NEW.log");
                throw DataError(at + ": not an issuance log (no n3-issuance-log header)");
            }
            if (f.size() != 3 || f[1] != kLogVersion)
                throw DataError(at + ": unsupported issuance log header (expected version " +
                                std::string(kLogVersion) + ")");
            KeyText kt = decode_key_text(f[2], at);
            expect_kind(kt, KeyKind::authority_public, at);
            AuthorityPublic kept = AuthorityPublic::decode(kt.body, at);
            if (!equal(kept.id, authority.id) || !equal(kept.P, authority.P))
                throw DataError(where + ": kept by authority " + to_hex(kept.id) + ", not by " +
                                    to_hex(authority.id),
                                "give the public key of the authority that keeps this log");
            out.has_header = true;
            continue;
        }
        if (f.size() != 8) throw DataError(at + ": not an issuance log entry (expected 8 fields)");
        const uint64_t index = out.report.heads.size();
        if (parse_uint(f[0]) != index)
            throw DataError(at + ": entry numbered " + f[0] + " where entry " +
                            std::to_string(index) +
                            " belongs (an entry was dropped, added or moved)");
        const auto parsed_time = parse_uint(f[1]);
        if (!parsed_time) throw DataError(at + ": bad time '" + f[1] + "'");
        const uint64_t time = *parsed_time;
        KeyText kt = decode_key_text(f[5], at);
        expect_kind(kt, KeyKind::member_public, at);
        PublicRecord rec = PublicRecord::decode(kt.body, at);
        if (!equal(rec.authority, authority.id))
            throw DataError(at + ": member '" + rec.id + "' belongs to another federation");
        if (f[2] != to_hex(rec.fingerprint()) || f[3] != std::to_string(rec.epoch) ||
            f[4] != rec.id)
            throw DataError(at +
                            ": fingerprint, epoch or name differ from the entry's public record");
        Hash32 head = log_chain(out.report.heads.back(), index, time, rec);
        if (f[6] != to_hex(head))
            throw DataError(at + ": chain does not match (the log was edited, reordered or cut)");
        if (every_signature) {
            check_entry_signature(authority, head, f[7], at, index);
        } else {
            last_at = at;
            last_sig = f[7];
        }
        out.report.heads.push_back(head);
        out.names[{rec.id, rec.epoch}].push_back(f[2]);
    }
    if (!every_signature && !last_sig.empty())
        check_entry_signature(authority, out.report.heads.back(), last_sig, last_at,
                              out.report.heads.size() - 1);
    out.report.entries = out.report.heads.size() - 1;
    for (auto& [k, fps] : out.names)
        if (fps.size() > 1) {
            std::string d = k.first + " epoch " + std::to_string(k.second) + ":";
            for (auto& fp : fps) d += " " + fp.substr(0, 16);
            out.report.duplicates.push_back(d);
        }
    return out;
}

std::string read_fd(int fd, const std::string& path) {
    std::string text;
    char buf[65536];
    off_t off = 0;
    for (;;) {
        ssize_t r = ::pread(fd, buf, sizeof buf, off);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno(path);
        }
        if (r == 0) return text;
        text.append(buf, static_cast<size_t>(r));
        off += r;
    }
}

void write_all(int fd, const std::string& data, const std::string& path) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t w = ::write(fd, data.data() + off, data.size() - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            throw_errno(path);
        }
        off += static_cast<size_t>(w);
    }
}

// Closes on every path out; flock's lock goes with the descriptor.
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

} // namespace

LogEntry log_append(const std::string& path, const AuthoritySecret& authority,
                    const PublicRecord& rec, uint64_t now) {
    const AuthorityPublic pub = authority.public_key();
    Fd f{::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644)};
    if (f.fd < 0) throw_errno(path);
    // Two issuers appending at once would both chain to the same head.
    while (::flock(f.fd, LOCK_EX) != 0)
        if (errno != EINTR) throw_errno("cannot lock " + path);
    const std::string text = read_fd(f.fd, path);
    ParsedLog log = parse_log(text, pub, path, /*every_signature=*/false);
    if (!text.empty() && text.back() != '\n')
        throw DataError(
            path + ": last line is incomplete (an interrupted write?)",
            "check it with n3-keys audit; remove the partial line only if the audit says so");
    std::string out;
    if (!log.has_header)
        out += "# n3 issuance log; check with: n3-keys audit --authority FED.pub " + path + "\n" +
               std::string(kLogMagic) + " " + std::string(kLogVersion) + " " + pub.text() + "\n";
    LogEntry e;
    e.index = log.report.heads.size();
    e.time = now;
    e.prev = log.report.head();
    Hash32 head = log_chain(e.prev, e.index, now, rec);
    e.sig = schnorr_sign(authority.s, authority.P, log_entry_message(pub, head));
    out += std::to_string(e.index) + " " + std::to_string(now) + " " + to_hex(rec.fingerprint()) +
           " " + std::to_string(rec.epoch) + " " + rec.id + " " + rec.text() + " " + to_hex(head) +
           " " + to_hex(e.sig) + "\n";
    // A write the disk cannot hold leaves no partial line: the log is cut back to the entries
    // it had, which still audit.
    try {
        write_all(f.fd, out, path);
        if (::fsync(f.fd) != 0) throw_errno("cannot sync " + path);
    } catch (const Error&) {
        if (::ftruncate(f.fd, static_cast<off_t>(text.size())) == 0) (void)::fsync(f.fd);
        throw;
    }
    int fd = f.fd;
    f.fd = -1;
    if (::close(fd) != 0) throw_errno(path);
    return e;
}

LogReport audit_log(const std::string& path, const AuthorityPublic& authority) {
    if (access(path.c_str(), F_OK) != 0) throw EnvError(path + ": no such file");
    ParsedLog log = parse_log(read_text_file(path), authority, path);
    if (!log.has_header) throw DataError(path + ": not an issuance log (empty)");
    return log.report;
}

void check_log(const LogReport& r, const LogExpectation& want, const std::string& where) {
    const std::string held =
        std::to_string(r.entries) + (r.entries == 1 ? " issuance" : " issuances");
    if (want.count && r.entries != *want.count)
        throw DataError(where + ": holds " + held + ", expected " + std::to_string(*want.count) +
                            (r.entries < *want.count ? " (entries were cut)" : ""),
                        "the log changed since its count was taken");
    if (!want.head) return;
    if (want.at) {
        if (*want.at > r.entries)
            throw DataError(where + ": holds " + held + ", fewer than the " +
                            std::to_string(*want.at) +
                            " at which the expected head was taken (entries were cut)");
        const Hash32& h = r.heads[*want.at];
        if (!equal(h, *want.head))
            throw DataError(where + ": head after entry " + std::to_string(*want.at) + " is " +
                                to_hex(h) + ", not the expected " + to_hex(*want.head) +
                                ": the log was rewritten at or before entry " +
                                std::to_string(*want.at),
                            "it does not extend the log that head was taken from");
        return;
    }
    if (equal(r.head(), *want.head)) return;
    for (size_t i = 0; i + 1 < r.heads.size(); ++i)
        if (equal(r.heads[i], *want.head))
            throw DataError(where + ": head is " + to_hex(r.head()) + " (" + held +
                                "); the expected head is that of entry " + std::to_string(i) +
                                ", so " + std::to_string(r.entries - i) +
                                " entries were added since",
                            "to accept a log that grew, give --at " + std::to_string(i));
    throw DataError(where + ": head is " + to_hex(r.head()) + " (" + held + "), not the expected " +
                        to_hex(*want.head),
                    "the log was cut or rewritten since that head was taken");
}

Hash32 parse_head(const std::string& text, const std::string& flag) {
    Hash32 h{};
    if (!from_hex(text, h))
        throw UsageError(
            flag + " takes a log head of 64 hex digits, not '" + text + "'",
            "n3-keys audit prints the head; a member key's comment holds the one it was issued at");
    return h;
}

// --- CURVE keys -------------------------------------------------------------------------------

namespace {
const char kZ85[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
}
std::string z85_encode(ByteView data) {
    std::string out;
    for (size_t i = 0; i + 4 <= data.size(); i += 4) {
        uint32_t v = (uint32_t(data[i]) << 24) | (uint32_t(data[i + 1]) << 16) |
                     (uint32_t(data[i + 2]) << 8) | data[i + 3];
        char chunk[5];
        for (int j = 4; j >= 0; --j) {
            chunk[j] = kZ85[v % 85];
            v /= 85;
        }
        out.append(chunk, 5);
    }
    return out;
}
std::optional<Bytes> z85_decode(std::string_view text) {
    if (text.size() % 5 != 0) return std::nullopt;
    Bytes out;
    for (size_t i = 0; i < text.size(); i += 5) {
        uint64_t v = 0;
        for (size_t j = 0; j < 5; ++j) {
            const char* p = std::strchr(kZ85, text[i + j]);
            if (!p || !*p) return std::nullopt;
            v = v * 85 + static_cast<uint64_t>(p - kZ85);
        }
        if (v > 0xffffffffu) return std::nullopt;
        for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<uint8_t>(v >> s));
    }
    return out;
}
CurveKey CurveKey::generate() {
    CurveKey k;
    random_bytes({k.secret.data(), 32});
    if (crypto_scalarmult_base(k.public_key.data(), k.secret.data()) != 0)
        throw DataError("CURVE key generation failed");
    return k;
}
CurveKey CurveKey::from_secret(ByteView secret, const std::string& where) {
    if (secret.size() != 32) throw DataError(where + ": a CURVE secret key is 32 bytes");
    CurveKey k;
    std::memcpy(k.secret.data(), secret.data(), 32);
    if (crypto_scalarmult_base(k.public_key.data(), k.secret.data()) != 0)
        throw DataError(where + ": invalid CURVE secret key");
    return k;
}
std::string CurveKey::secret_text() const {
    return encode_key_text(KeyKind::curve_secret, secret.view());
}
std::string CurveKey::public_text() const {
    return curve_public_text(public_key);
}
std::string curve_public_text(const CurvePublic& pub) {
    return encode_key_text(KeyKind::curve_public, pub);
}
CurveKey CurveKey::parse(std::string_view text, const std::string& where) {
    KeyText kt = decode_key_text(text, where);
    expect_kind(kt, KeyKind::curve_secret, where);
    return from_secret(kt.body, where);
}

// --- time -------------------------------------------------------------------------------------

uint64_t now_seconds() {
    return static_cast<uint64_t>(std::time(nullptr));
}

std::string format_time(uint64_t t) {
    if (t == 0) return "never";
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

uint64_t parse_expiry(const std::string& s, uint64_t now) {
    auto bad = [&] {
        return UsageError("--expires '" + s + "' is not a date",
                          "use YYYY-MM-DD, +DAYSd, @UNIXSECONDS or never");
    };
    if (s == "never") return 0;
    // Days and seconds below 10^18, so that now + days * 86400 cannot wrap.
    constexpr uint64_t kMax = 999999999999999999ull;
    if (s.size() > 2 && s[0] == '+' && s.back() == 'd') {
        const auto days = parse_uint(std::string_view(s).substr(1, s.size() - 2), kMax / 86400);
        if (days) return now + *days * 86400;
    }
    if (s.size() > 1 && s[0] == '@') {
        const auto v = parse_uint(std::string_view(s).substr(1), kMax);
        if (v) {
            if (*v == 0) throw bad();
            return *v;
        }
    }
    std::tm tm{};
    const char* end = strptime(s.c_str(), "%Y-%m-%d", &tm);
    if (!end || *end) throw bad();
    time_t t = timegm(&tm);
    if (t <= 0) throw bad();
    return static_cast<uint64_t>(t);
}

// --- receipt keys -----------------------------------------------------------------------------

ReceiptKey ReceiptKey::generate() {
    init();
    ReceiptKey k;
    scalar_random({k.y.data(), 32});
    k.Y = base_mul(k.y.view());
    return k;
}

std::string ReceiptKey::text() const {
    Bytes b;
    header(b);
    put(b, y.view());
    put(b, Y);
    return secret_text(KeyKind::receipt_secret, b);
}

std::string receipt_public_text(const Point& Y) {
    Bytes b;
    header(b);
    put(b, Y);
    return encode_key_text(KeyKind::receipt_public, b);
}

std::string ReceiptKey::public_text() const {
    return receipt_public_text(Y);
}

ReceiptKey ReceiptKey::decode(ByteView body, const std::string& where) {
    Cursor c(body, where);
    check_header(c);
    ReceiptKey k;
    read_scalar(c, k.y, "receipt secret");
    k.Y = read_point(c, "receipt public key");
    c.expect_end();
    if (!equal(base_mul(k.y.view()), k.Y)) c.fail("receipt public key does not match its secret");
    return k;
}

ReceiptKey ReceiptKey::load(const std::string& path) {
    KeyText kt = load_kind(path, KeyKind::receipt_secret);
    return decode(kt.body, name_of(path));
}

Point decode_receipt_public(std::string_view text, const std::string& where) {
    KeyText kt = decode_key_text(text, where);
    expect_kind(kt, KeyKind::receipt_public, where);
    Cursor c(kt.body, where);
    check_header(c);
    Point Y = read_point(c, "receipt public key");
    c.expect_end();
    return Y;
}

} // namespace n3::crypto
