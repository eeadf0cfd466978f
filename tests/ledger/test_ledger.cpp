// The receipt ledger: round trips, and every way a changed ledger or a false claim must fail.
#include "ledger/ledger.hpp"
#include "record/error.hpp"
#include "record/hex.hpp"
#include "record/io.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace n3;
using namespace n3::crypto;
using namespace n3::ledger;

namespace {

struct Federation {
    AuthoritySecret authority = AuthoritySecret::generate();
    MemberKey member(const std::string& id) const {
        MemberSecret s = MemberSecret::create(id, 0, 0);
        Partial p = issue(authority, s.request, "request");
        return complete(s, p, "partial");
    }
};

std::string hash_of(char c) {
    return std::string(64, c);
}

Receipt receipt(uint64_t round, char base, char model, char record, const ReceiptKey& k,
                double weight) {
    Receipt r;
    r.round = round;
    r.base = hash_of(base);
    r.model = hash_of(model);
    r.record = hash_of(record);
    r.receipt_key = k.public_text();
    r.weight = weight;
    r.cosine = 0.9;
    r.krum = 1.5;
    r.norm_ratio = 1.1;
    r.score = 0.8181818;
    return r;
}

struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/n3-ledger-test.XXXXXX";
        REQUIRE(mkdtemp(t));
        path = t;
    }
    ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

std::vector<std::string> lines_of(const std::string& path) {
    std::vector<std::string> v;
    std::istringstream in(read_text_file(path));
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
}
void write_lines(const std::string& path, const std::vector<std::string>& v) {
    std::ofstream out(path, std::ios::trunc);
    for (auto& l : v) out << l << "\n";
}

// Three receipts over two rounds: round 1 (base a -> model b) and round 2 (b -> c).
struct Fixture {
    TempDir dir;
    Federation fed;
    MemberKey hub = fed.member("hub");
    ReceiptKey k1 = ReceiptKey::generate(), k2 = ReceiptKey::generate(),
               k3 = ReceiptKey::generate();
    std::string path = dir.path + "/rewards.ledger";
    Fixture() {
        append_receipts(path, hub,
                        {receipt(1, 'a', 'b', '1', k1, 0.5), receipt(1, 'a', 'b', '2', k2, 0.5)});
        append_receipts(path, hub, {receipt(2, 'b', 'c', '3', k1, 1.0)});
    }
    Ledger read() const { return read_ledger(path, hub.record, fed.authority.public_key()); }
    // Index into lines_of(path) of entry i (1-based): after the comment and the header.
    static size_t line_of(size_t entry) { return entry + 1; }
};

} // namespace

TEST_CASE("ledger: appended receipts read back, chained and signed") {
    Fixture f;
    Ledger l = f.read();
    REQUIRE(l.entries.size() == 3);
    CHECK(l.heads.size() == 4);
    CHECK(l.entries[0].receipt.weight == 0.5);
    CHECK(l.entries[0].receipt.score == 0.8181818);
    CHECK(l.entries[2].receipt.round == 2);
    CHECK(l.entries[1].key == f.k2.Y);
    CHECK_FALSE(l.entries[0].receipt.holdout);
    check_extends(l, to_hex(l.heads[1]), "t");
    CHECK_THROWS_AS(check_extends(l, std::string(64, '0'), "t"), DataError);
}

TEST_CASE("ledger: a tampered entry is refused") {
    Fixture f;
    auto v = lines_of(f.path);
    std::string& e = v[Fixture::line_of(2)];
    e.replace(e.find(" 0.5 "), 5, " 0.9 ");
    write_lines(f.path, v);
    CHECK_THROWS_WITH(f.read(), Catch::Contains("chain does not match"));
}

TEST_CASE("ledger: entries another merger signed are refused") {
    Fixture f;
    // Rewrite the whole ledger under another merger's key and present it as the hub's.
    MemberKey other = f.fed.member("mallory");
    std::string forged = f.dir.path + "/forged.ledger";
    append_receipts(forged, other, {receipt(1, 'a', 'b', '1', f.k1, 0.9)});
    auto v = lines_of(forged);
    auto h = lines_of(f.path);
    v[1] = h[1]; // the hub's header over mallory's entries
    write_lines(forged, v);
    CHECK_THROWS_AS(read_ledger(forged, f.hub.record, f.fed.authority.public_key()), DataError);
    // And read as mallory's, the ledger is of another merger than the hub.
    CHECK_THROWS_WITH(read_ledger(f.path, other.record, f.fed.authority.public_key()),
                      Catch::Contains("kept by another merger"));
}

TEST_CASE("ledger: a forged signature is refused") {
    Fixture f;
    auto v = lines_of(f.path);
    std::string& e = v[Fixture::line_of(3)];
    char& last = e[e.size() - 3];
    last = last == '0' ? '1' : '0';
    write_lines(f.path, v);
    CHECK_THROWS_WITH(f.read(), Catch::Contains("signature of entry 3 does not verify"));
}

TEST_CASE("ledger: reordered entries are refused") {
    Fixture f;
    auto v = lines_of(f.path);
    std::swap(v[Fixture::line_of(1)], v[Fixture::line_of(2)]);
    write_lines(f.path, v);
    CHECK_THROWS_WITH(f.read(), Catch::Contains("entry numbered 2 where entry 1 belongs"));
}

TEST_CASE("ledger: a dropped entry is refused, the last one only against a kept head") {
    Fixture f;
    const std::string head = to_hex(f.read().head());
    auto v = lines_of(f.path);
    auto middle = v;
    middle.erase(middle.begin() + Fixture::line_of(2));
    write_lines(f.path, middle);
    CHECK_THROWS_WITH(f.read(), Catch::Contains("entry numbered 3 where entry 2 belongs"));
    auto cut = v;
    cut.pop_back();
    write_lines(f.path, cut);
    Ledger l = f.read();
    CHECK(l.entries.size() == 2);
    CHECK_THROWS_WITH(check_extends(l, head, "t"), Catch::Contains("is not in this ledger"));
}

TEST_CASE("ledger: a fork of the model history is refused, and so is an input receipted twice") {
    Fixture f;
    // Round 3 that starts from another model than round 2's.
    CHECK_THROWS_WITH(append_receipts(f.path, f.hub, {receipt(3, 'e', 'd', '4', f.k2, 1)}),
                      Catch::Contains("not from round 2's model"));
    CHECK_THROWS_WITH(append_receipts(f.path, f.hub, {receipt(2, 'b', 'd', '4', f.k2, 1)}),
                      Catch::Contains("a second base or model"));
    CHECK_THROWS_WITH(append_receipts(f.path, f.hub, {receipt(1, 'a', 'b', '4', f.k2, 1)}),
                      Catch::Contains("rounds never go back"));
    CHECK_THROWS_WITH(append_receipts(f.path, f.hub, {receipt(2, 'b', 'c', '3', f.k2, 1)}),
                      Catch::Contains("already has a receipt"));
    // None of the refused appends changed the file.
    CHECK(f.read().entries.size() == 3);
    // A skipped round is no fork.
    append_receipts(f.path, f.hub, {receipt(5, '9', '8', '5', f.k2, 1)});
    CHECK(f.read().entries.size() == 4);
}

TEST_CASE("ledger: an incomplete last line and a missing or foreign file") {
    Fixture f;
    std::string text = read_text_file(f.path);
    std::ofstream(f.path, std::ios::trunc) << text.substr(0, text.size() - 10);
    CHECK_THROWS_AS(f.read(), DataError);
    CHECK_THROWS_AS(append_receipts(f.path, f.hub, {}), DataError);
    CHECK_THROWS_AS(read_ledger(f.dir.path + "/none", f.hub.record, f.fed.authority.public_key()),
                    EnvError);
    std::ofstream(f.path, std::ios::trunc) << "n3-issuance-log 2 x\n";
    CHECK_THROWS_WITH(f.read(), Catch::Contains("not a receipt ledger"));
}

TEST_CASE("claims: the receipt key's holder proves its receipts; another key cannot") {
    Fixture f;
    Ledger l = f.read();
    Signature p = sign_claim(f.k1, "nonce-42");
    auto mine = verify_claim(l, f.k1.Y, "nonce-42", p, "t");
    REQUIRE(mine.size() == 2);
    CHECK(mine[0]->index == 1);
    CHECK(mine[1]->index == 3);
    // Another key signs the challenge and claims k1's receipts.
    ReceiptKey thief = ReceiptKey::generate();
    CHECK_THROWS_WITH(verify_claim(l, f.k1.Y, "nonce-42", sign_claim(thief, "nonce-42"), "t"),
                      Catch::Contains("does not verify"));
    // A replayed proof for another challenge.
    CHECK_THROWS_AS(verify_claim(l, f.k1.Y, "nonce-43", p, "t"), DataError);
    // A valid proof for a key with no receipt.
    CHECK_THROWS_WITH(verify_claim(l, thief.Y, "c", sign_claim(thief, "c"), "t"),
                      Catch::Contains("holds no receipt"));
}

TEST_CASE("receipt keys: text round trip, public line, corruption") {
    ReceiptKey k = ReceiptKey::generate();
    KeyText kt = decode_key_text(k.text(), "t");
    REQUIRE(kt.kind == KeyKind::receipt_secret);
    ReceiptKey back = ReceiptKey::decode(kt.body, "t");
    CHECK(back.Y == k.Y);
    CHECK(decode_receipt_public(k.public_text(), "t") == k.Y);
    CHECK(k.public_text().rfind("N3-RECEIPT-", 0) == 0);
    std::string bad = k.public_text();
    bad[bad.size() - 2] = bad[bad.size() - 2] == 'A' ? 'B' : 'A';
    CHECK_THROWS_AS(decode_receipt_public(bad, "t"), DataError);
    CHECK_THROWS_WITH(decode_receipt_public(k.text(), "t"), Catch::Contains("not a receipt"));
}
