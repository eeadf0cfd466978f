// Member identities: issuance flow, key files, and the attacks the binding hash must stop.
#include "fixtures.hpp"
#include "record/error.hpp"
#include "record/hex.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace n3;
using namespace n3::crypto;
using namespace n3::crypto::test;

TEST_CASE("issuance: y = x + d matches Y = X + R + hP, and key texts round trip") {
    Federation fed;
    MemberSecret s = MemberSecret::create("alice", 3, 0);
    s.request.verify("req");
    Partial p = issue(fed.authority, s.request, "req");
    MemberKey k = complete(s, p, "partial");
    CHECK(base_mul(k.y_sig.view()) == k.record.Y_sig(fed.pub().P));
    CHECK(base_mul(k.y_kem.view()) == k.record.Y_kem(fed.pub().P));
    CHECK(k.record.epoch == 3);
    CHECK(k.Y_sig != k.Y_kem);

    // every kind survives its text form
    auto rt = [](const std::string& text, KeyKind kind) {
        KeyText kt = decode_key_text(text, "t");
        CHECK(kt.kind == kind);
        return kt;
    };
    CHECK(
        AuthoritySecret::decode(rt(fed.authority.text(), KeyKind::authority_secret).body, "t").P ==
        fed.pub().P);
    CHECK(AuthorityPublic::decode(rt(fed.pub().text(), KeyKind::authority_public).body, "t").P ==
          fed.pub().P);
    CHECK(MemberKey::decode(rt(k.text(), KeyKind::member_key).body, "t").Y_sig == k.Y_sig);
    CHECK(
        PublicRecord::decode(rt(k.record.text(), KeyKind::member_public).body, "t").fingerprint() ==
        k.record.fingerprint());
    CHECK(Request::decode(rt(s.request.text(), KeyKind::request).body, "t").id == "alice");
    CHECK(MemberSecret::decode(rt(s.text(), KeyKind::member_secret).body, "t").request.X_sig ==
          s.request.X_sig);
    CHECK(Partial::decode(rt(p.text(), KeyKind::partial).body, "t").record.R == p.record.R);
    // comments and blank lines around the key line are fine
    CHECK(decode_key_text("# comment\n\n" + k.record.text() + "\n# more\n", "t").kind ==
          KeyKind::member_public);
}

TEST_CASE("the key-replacement attack fails because X is inside h") {
    Federation fed;
    Point P = fed.pub().P;
    MemberKey victim = fed.member("victim");
    // The attacker picks y' and sets X' = y'G - R - hP, as it would against an unbound scheme.
    Secret y2(32);
    scalar_random({y2.data(), 32});
    PublicRecord forged = victim.record;
    Point hP;
    REQUIRE(mul(hP, victim.record.h(P), P));
    Scalar minus_one{};
    {
        Scalar one{};
        one[0] = 1;
        crypto_core_ristretto255_scalar_negate(minus_one.data(), one.data());
    }
    Point neg_RhP;
    REQUIRE(mul(neg_RhP, minus_one, add(victim.record.R, hP)));
    forged.X_sig = add(base_mul(y2.view()), neg_RhP);
    // Unbound (h without X) the attacker would now own Y' = y'G ...
    CHECK(add(add(forged.X_sig, forged.R), hP) == base_mul(y2.view()));
    // ... bound, h changes with X and the public key is not the attacker's.
    CHECK(forged.Y_sig(P) != base_mul(y2.view()));

    // An envelope signed with y' under the replaced record does not open.
    MemberKey attacker;
    attacker.P = P;
    attacker.y_sig = y2;
    attacker.y_kem = victim.y_kem;
    attacker.record = forged;
    attacker.Y_sig = base_mul(y2.view());
    attacker.Y_kem = victim.Y_kem;
    MemberKey bob = fed.member("bob");
    Bytes payload = test::update_payload(100, 1);
    Bytes sealed = seal_record(attacker, std::span(&bob.record, 1), RecordType::update, payload);
    CHECK_THROWS_WITH(open_record(bob, fed.pub(), sealed),
                      Catch::Contains("signature does not verify"));
}

TEST_CASE("a partial key for another request, or from another authority, is refused") {
    Federation fed, other;
    MemberSecret a = MemberSecret::create("alice", 0, 0);
    MemberSecret b = MemberSecret::create("bob", 0, 0);
    Partial pb = issue(fed.authority, b.request, "b.req");
    CHECK_THROWS_WITH(complete(a, pb, "bob.partial"), Catch::Contains("another request"));
    // same request, but d tampered: the dG == R + hP check fails
    Partial pa = issue(fed.authority, a.request, "a.req");
    Partial bad = pa;
    bad.P = other.pub().P; // claims another authority
    CHECK_THROWS_WITH(complete(a, bad, "x.partial"), Catch::Contains("does not verify"));
    Partial bad2 = pa;
    bad2.record.expiry = 12345; // the authority's binding covers expiry
    CHECK_THROWS_WITH(complete(a, bad2, "x.partial"), Catch::Contains("does not verify"));
}

TEST_CASE("requests with a bad proof of possession are refused") {
    Federation fed;
    MemberSecret a = MemberSecret::create("alice", 0, 0);
    Request r = a.request;
    r.id = "mallory"; // renamed after signing
    CHECK_THROWS_WITH(issue(fed.authority, r, "m.req"), Catch::Contains("bad proof of possession"));
    Request r2 = a.request;
    MemberSecret other = MemberSecret::create("alice", 0, 0);
    r2.X_kem = other.request.X_kem; // someone else's public value
    CHECK_THROWS_WITH(issue(fed.authority, r2, "m.req"),
                      Catch::Contains("bad proof of possession"));
    Request r3 = a.request;
    r3.pop_kem = r3.pop_sig; // a proof for the wrong key
    CHECK_THROWS_WITH(issue(fed.authority, r3, "m.req"), Catch::Contains("for the encryption key"));
}

TEST_CASE("key texts: corruption, wrong kind, identity points and non-canonical scalars") {
    Federation fed;
    MemberKey k = fed.member("alice");
    std::string t = k.text();
    std::string c = t;
    c[30] = c[30] == 'A' ? 'B' : 'A';
    CHECK_THROWS_WITH(decode_key_text(c, "k"), Catch::Contains("corrupted"));
    CHECK_THROWS_WITH(decode_key_text(t.substr(0, t.size() - 5), "k"),
                      Catch::Contains("corrupted"));
    CHECK_THROWS_WITH(decode_key_text("", "k"), Catch::Contains("empty"));
    CHECK_THROWS_WITH(decode_key_text("hello", "k"), Catch::Contains("not an n3 key"));
    KeyText pub = decode_key_text(k.record.text(), "bob.pub");
    CHECK_THROWS_WITH(expect_kind(pub, KeyKind::member_key, "bob.pub"),
                      Catch::Contains("is a member public record, not a member key"));

    // A record re-encoded with the identity as X_sig, or R, is refused when read.
    Bytes body = k.record.encode();
    size_t x_at = body.size() - 96;
    Bytes idx = body;
    std::memset(idx.data() + x_at, 0, 32);
    CHECK_THROWS_WITH(PublicRecord::decode(idx, "r"), Catch::Contains("invalid signing key"));
    Bytes idr = body;
    std::memset(idr.data() + body.size() - 32, 0, 32);
    CHECK_THROWS_WITH(PublicRecord::decode(idr, "r"), Catch::Contains("commitment R"));
    // A non-canonical point encoding (RFC 9496 A.2, negative field element)
    Bytes neg = body;
    std::memset(neg.data() + x_at, 0, 32);
    neg[x_at] = 1;
    CHECK_THROWS(PublicRecord::decode(neg, "r"));

    // The authority secret with s >= l (non-canonical) or s = 0 is refused.
    Bytes as;
    as.push_back(kKeyVersion);
    as.push_back(kSuite);
    as.resize(2 + 16 + 32, 0xff);
    CHECK_THROWS_WITH(AuthoritySecret::decode(as, "a"), Catch::Contains("canonical"));
    std::memset(as.data() + 18, 0, 32);
    CHECK_THROWS_WITH(AuthoritySecret::decode(as, "a"), Catch::Contains("canonical"));
    // Trailing bytes and unknown versions.
    Bytes tr = body;
    tr.push_back(0);
    CHECK_THROWS_WITH(PublicRecord::decode(tr, "r"), Catch::Contains("trailing"));
    Bytes ver = body;
    ver[0] = 9;
    CHECK_THROWS_WITH(PublicRecord::decode(ver, "r"), Catch::Contains("version"));
}

TEST_CASE("a member key whose record does not match its secrets is refused") {
    Federation fed;
    MemberKey a = fed.member("alice"), b = fed.member("bob");
    MemberKey mixed = a;
    mixed.record = b.record;
    KeyText kt = decode_key_text(mixed.text(), "m");
    CHECK_THROWS_WITH(MemberKey::decode(kt.body, "m.key"), Catch::Contains("does not match"));
}

TEST_CASE("membership: other federation and expiry") {
    Federation fed, other;
    MemberKey a = fed.member("alice", 0, 1000);
    CHECK_NOTHROW(check_member(a.record, fed.pub(), 999, "a"));
    CHECK_THROWS_WITH(check_member(a.record, fed.pub(), 1000, "a"), Catch::Contains("expired"));
    CHECK_THROWS_WITH(check_member(a.record, other.pub(), 10, "a"),
                      Catch::Contains("another federation"));
}

TEST_CASE("KEM key agreement is symmetric, context-bound and federation-bound") {
    Federation fed, other;
    MemberKey a = fed.member("alice"), b = fed.member("bob"), c = fed.member("carol");
    uint8_t ctx1[] = {'r', '1'}, ctx2[] = {'r', '2'};
    CHECK(kem_agree(a, b.record, ctx1) == kem_agree(b, a.record, ctx1));
    CHECK(kem_agree(a, b.record, ctx1) != kem_agree(a, b.record, ctx2));
    CHECK(kem_agree(a, b.record, ctx1) != kem_agree(a, c.record, ctx1));
    MemberKey x = other.member("xavier");
    CHECK_THROWS_WITH(kem_agree(a, x.record, ctx1), Catch::Contains("another federation"));
}

TEST_CASE("roster parsing and lookup") {
    Federation fed;
    MemberKey a = fed.member("alice"), b = fed.member("bob"), c = fed.member("carol");
    std::string text =
        "# roster\n" + a.record.text() + "\n\n# bob\n" + b.record.text() + "  # trailing\n";
    Roster r = Roster::parse(text, "fed.roster");
    CHECK(r.members.size() == 2);
    CHECK(r.find(a.record.fingerprint()) != nullptr);
    CHECK(r.find(c.record.fingerprint()) == nullptr);
    CHECK_THROWS_WITH(Roster::parse("# nothing\n", "r"), Catch::Contains("no members"));
    CHECK_THROWS_WITH(Roster::parse(a.text() + "\n", "r"), Catch::Contains("line 1"));
}

TEST_CASE("Z85 matches ZeroMQ RFC 32 and CURVE keys derive like zmq_curve_public") {
    uint8_t hello[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    CHECK(z85_encode(hello) == "HelloWorld");
    auto back = z85_decode("HelloWorld");
    REQUIRE(back);
    CHECK(std::memcmp(back->data(), hello, 8) == 0);
    CHECK_FALSE(z85_decode("Hell"));
    CHECK_FALSE(z85_decode("Hell\"World"));
    // zmq RFC 26 (CurveZMQ) test key pair.
    CurveKey k = CurveKey::parse("N3CURVE-SECRET-JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6", "k");
    CHECK(z85_encode(k.public_key) == "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7");
    CurveKey g = CurveKey::generate();
    CHECK(CurveKey::parse(g.secret_text(), "g").public_key == g.public_key);
}

namespace {

struct TempLog {
    TempLog() {
        char tmpl[] = "/tmp/n3-log-XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
        unlink(tmpl);
        path = tmpl;
    }
    ~TempLog() { unlink(path.c_str()); }
    std::vector<std::string> lines() const {
        std::vector<std::string> out;
        std::istringstream in(read_text_file(path));
        std::string l;
        while (std::getline(in, l)) out.push_back(l);
        return out;
    }
    void write(const std::vector<std::string>& lines) const {
        std::ofstream o(path, std::ios::trunc);
        for (auto& l : lines) o << l << "\n";
    }
    std::string path;
};

std::vector<std::string> split(const std::string& line) {
    std::vector<std::string> f;
    std::istringstream in(line);
    std::string w;
    while (in >> w) f.push_back(w);
    return f;
}

// Appends a freshly issued key for `id` to the log and returns its partial key.
Partial issue_logged(const Federation& fed, const std::string& path, const std::string& id,
                     uint64_t now) {
    MemberSecret s = MemberSecret::create(id, 0, 0);
    Partial p = issue(fed.authority, s.request, "req");
    p.log = log_append(path, fed.authority, p.record, now);
    return p;
}

} // namespace

TEST_CASE("issuance log: an honest log audits, and its head is what members were given") {
    Federation fed;
    TempLog log;
    Partial a = issue_logged(fed, log.path, "alice", 100);
    Partial b = issue_logged(fed, log.path, "bob", 101);
    Partial c = issue_logged(fed, log.path, "carol", 102);
    LogReport r = audit_log(log.path, fed.pub());
    CHECK(r.entries == 3);
    CHECK(r.duplicates.empty());
    REQUIRE(r.heads.size() == 4);
    CHECK(r.heads[0] == log_genesis(fed.pub()));
    auto hb = partial_log_head(b, "b");
    REQUIRE(hb);
    CHECK(hb->count == 2);
    CHECK(hb->head == r.heads[2]);
    CHECK(partial_log_head(c, "c")->head == r.head());
    CHECK_NOTHROW(check_log(r, {3, r.head(), std::nullopt}, "log"));
    CHECK_NOTHROW(check_log(r, {std::nullopt, hb->head, 2}, "log"));
    // A member of another federation cannot pass the log off as its own authority's.
    Federation other;
    CHECK_THROWS_WITH(audit_log(log.path, other.pub()), Catch::Contains("kept by authority"));
    // A second key for a name is still exposed.
    issue_logged(fed, log.path, "alice", 103);
    CHECK(audit_log(log.path, fed.pub()).duplicates.size() == 1);
}

TEST_CASE("issuance log: a cut last line fails an expected count or head") {
    Federation fed;
    TempLog log;
    for (auto id : {"alice", "bob", "carol"}) issue_logged(fed, log.path, id, 100);
    LogReport full = audit_log(log.path, fed.pub());
    auto lines = log.lines();
    lines.pop_back();
    log.write(lines);
    // What is left is still a well-signed log: only what a reader saw before can tell.
    LogReport cut = audit_log(log.path, fed.pub());
    CHECK(cut.entries == 2);
    CHECK_THROWS_WITH(check_log(cut, {3, std::nullopt, std::nullopt}, "log"),
                      Catch::Contains("entries were cut"));
    CHECK_THROWS_WITH(check_log(cut, {std::nullopt, full.head(), std::nullopt}, "log"),
                      Catch::Contains("not the expected"));
    CHECK_THROWS_WITH(check_log(cut, {std::nullopt, full.head(), 3}, "log"),
                      Catch::Contains("fewer than the 3"));
}

TEST_CASE("issuance log: a dropped line with the chain recomputed does not verify") {
    Federation fed;
    TempLog log;
    for (auto id : {"alice", "bob", "carol"}) issue_logged(fed, log.path, id, 100);
    auto lines = log.lines();
    // The entries are the last three lines; drop bob's and redo the chain as anyone can.
    std::vector<std::string> forged(lines.begin(), lines.end() - 3), signed_by_other = forged;
    Federation other;
    Hash32 prev = log_genesis(fed.pub());
    uint64_t index = 1;
    for (size_t i = lines.size() - 3; i < lines.size(); ++i) {
        if (i == lines.size() - 2) continue;
        auto f = split(lines[i]);
        REQUIRE(f.size() == 8);
        PublicRecord rec = PublicRecord::decode(decode_key_text(f[5], "t").body, "t");
        Hash32 head = log_chain(prev, index, std::stoull(f[1]), rec);
        f[0] = std::to_string(index);
        f[6] = to_hex(head);
        auto join = [&] {
            std::string l;
            for (auto& w : f) l += (l.empty() ? "" : " ") + w;
            return l;
        };
        forged.push_back(join());
        // Signing with a key of one's own does not help: only the authority's signature counts.
        f[7] = to_hex(
            schnorr_sign(other.authority.s, other.authority.P, log_entry_message(fed.pub(), head)));
        signed_by_other.push_back(join());
        prev = head;
        ++index;
    }
    log.write(forged);
    CHECK_THROWS_WITH(audit_log(log.path, fed.pub()),
                      Catch::Contains("line") &&
                          Catch::Contains("signature of entry 2 does not verify"));
    log.write(signed_by_other);
    CHECK_THROWS_WITH(audit_log(log.path, fed.pub()),
                      Catch::Contains("signature of entry 1 does not verify"));
    // Appending checks the last signature only, which the chain ties to every entry before it.
    MemberSecret dave = MemberSecret::create("dave", 0, 0);
    Partial pd = issue(fed.authority, dave.request, "req");
    log.write(forged);
    CHECK_THROWS_WITH(log_append(log.path, fed.authority, pd.record, 200),
                      Catch::Contains("signature of entry 2 does not verify"));
    log.write(signed_by_other);
    CHECK_THROWS_WITH(log_append(log.path, fed.authority, pd.record, 200),
                      Catch::Contains("signature of entry 2 does not verify"));
    // Bob's head edited: the chain breaks there, before any signature is looked at.
    auto edited = lines;
    auto f = split(edited[edited.size() - 2]);
    REQUIRE(f.size() == 8);
    f[6][0] = f[6][0] == '0' ? '1' : '0';
    edited[edited.size() - 2].clear();
    for (auto& w : f)
        edited[edited.size() - 2] += (edited[edited.size() - 2].empty() ? "" : " ") + w;
    log.write(edited);
    CHECK_THROWS_WITH(log_append(log.path, fed.authority, pd.record, 200),
                      Catch::Contains("chain does not match"));
}

TEST_CASE("issuance log: the head a member kept detects a prefix the authority rewrote") {
    Federation fed;
    TempLog log;
    issue_logged(fed, log.path, "alice", 100);
    Partial bob = issue_logged(fed, log.path, "bob", 101);
    auto kept = partial_log_head(bob, "bob.partial");
    REQUIRE(kept);
    // The log grows honestly: the member's head is still at entry 2.
    issue_logged(fed, log.path, "carol", 102);
    CHECK_NOTHROW(
        check_log(audit_log(log.path, fed.pub()), {std::nullopt, kept->head, kept->count}, "log"));
    // The authority rewrites its log with its own key (alice dropped, a second bob slipped in):
    // every signature verifies, but the head at entry 2 is not the one bob was given.
    TempLog rewritten;
    issue_logged(fed, rewritten.path, "bob", 101);
    issue_logged(fed, rewritten.path, "mallory", 101);
    issue_logged(fed, rewritten.path, "carol", 102);
    LogReport r = audit_log(rewritten.path, fed.pub());
    CHECK(r.entries == 3);
    CHECK_THROWS_WITH(check_log(r, {std::nullopt, kept->head, kept->count}, "log"),
                      Catch::Contains("rewritten at or before entry 2"));
}

TEST_CASE("issuance log: an unsigned log of the older format is refused") {
    Federation fed;
    TempLog log;
    MemberKey alice = fed.member("alice");
    log.write({"100 " + to_hex(alice.record.fingerprint()) + " 0 alice " + alice.record.text() +
               " " + std::string(64, 'a')});
    CHECK_THROWS_WITH(audit_log(log.path, fed.pub()), Catch::Contains("an unsigned issuance log"));
    CHECK_THROWS_WITH(log_append(log.path, fed.authority, alice.record, 101),
                      Catch::Contains("unsigned"));
}

TEST_CASE("a partial key's log entry cannot be changed") {
    Federation fed;
    TempLog log;
    issue_logged(fed, log.path, "alice", 100);
    MemberSecret s = MemberSecret::create("bob", 0, 0);
    Partial p = issue(fed.authority, s.request, "req");
    p.log = log_append(log.path, fed.authority, p.record, 101);
    Partial back = Partial::decode(decode_key_text(p.text(), "t").body, "t");
    REQUIRE(back.log);
    CHECK(back.log->index == 2);
    CHECK_NOTHROW(complete(s, back, "p"));
    back.log->index = 1; // claim an earlier place in the log
    CHECK_THROWS_WITH(complete(s, back, "p"), Catch::Contains("not signed by its authority"));
    CHECK_THROWS_AS(partial_log_head(back, "p"), DataError);
}

TEST_CASE("secret key files others can read are named, once, through the warning hook") {
    Federation fed;
    char tmpl[] = "/tmp/n3-key-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    std::string path = tmpl;
    std::ofstream(path) << fed.authority.text() << "\n";
    std::vector<std::string> said;
    set_key_file_warning([&](const std::string& m) { said.push_back(m); });
    REQUIRE(chmod(path.c_str(), 0600) == 0);
    AuthoritySecret::load(path);
    CHECK(said.empty());
    REQUIRE(chmod(path.c_str(), 0644) == 0);
    AuthoritySecret::load(path);
    AuthoritySecret::load(path);
    REQUIRE(said.size() == 1);
    CHECK(said[0] == path + " is readable by others (mode 0644); chmod 600 " + path);
    // A public key others read is what it is for.
    std::ofstream(path, std::ios::trunc) << fed.pub().text() << "\n";
    said.clear();
    set_key_file_warning([&](const std::string& m) { said.push_back(m); });
    AuthorityPublic::load(path);
    CHECK(said.empty());
    set_key_file_warning({});
    unlink(path.c_str());
}

TEST_CASE("expiry parsing") {
    CHECK(parse_expiry("never", 5) == 0);
    CHECK(parse_expiry("+2d", 100) == 100 + 2 * 86400);
    CHECK(parse_expiry("@1700000000", 0) == 1700000000);
    CHECK(parse_expiry("2030-01-01", 0) == 1893456000);
    CHECK_THROWS_AS(parse_expiry("soon", 0), UsageError);
}

TEST_CASE("roster: a parsed roster finds every member by fingerprint, a hand-built one too") {
    Federation fed;
    std::string text = "# three members\n";
    std::vector<PublicRecord> recs;
    for (auto id : {"alice", "bob", "carol"}) {
        MemberSecret s = MemberSecret::create(id, 0, 0);
        recs.push_back(issue(fed.authority, s.request, "req").record);
        text += recs.back().text() + "\n";
    }
    MemberSecret stranger = MemberSecret::create("mallory", 0, 0);
    PublicRecord other = issue(fed.authority, stranger.request, "req").record;
    Roster r = Roster::parse(text, "roster");
    REQUIRE(r.members.size() == 3);
    CHECK(r.index.size() == 3);
    for (auto& rec : recs) {
        const PublicRecord* found = r.find(rec.fingerprint());
        REQUIRE(found);
        CHECK(found->id == rec.id);
    }
    CHECK(r.find(other.fingerprint()) == nullptr);
    Roster by_hand{{recs[2]}};
    CHECK(by_hand.find(recs[2].fingerprint()));
    CHECK(by_hand.find(recs[0].fingerprint()) == nullptr);
    r.members.push_back(other); // the index no longer covers members: find() scans
    CHECK(r.find(other.fingerprint()));
}
