// Passphrase-encrypted key files: round trip through the text form, wrong passphrase,
// damage, hostile key-derivation limits, and transparent decryption by read_key_file.
#include "crypto/passphrase.hpp"
#include "fixtures.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <unistd.h>

using namespace n3;
using namespace n3::crypto;
using namespace n3::crypto::test;

namespace {

Secret pass_of(const std::string& s) {
    Secret p(s.size());
    std::memcpy(p.data(), s.data(), s.size());
    return p;
}
// The cheapest limits libsodium allows: these tests check the format, not the cost.
const KdfLimits kFast{1, 64 * 1024};

std::string temp_file(const std::string& name, const std::string& text) {
    std::string path = "/tmp/n3-test-passphrase-" + std::to_string(::getpid()) + "-" + name;
    std::ofstream(path) << text;
    return path;
}

} // namespace

TEST_CASE("an encrypted key decrypts to the same key, under the right passphrase only") {
    Federation fed;
    MemberKey alice = fed.member("alice");
    KeyText plain = decode_key_text(alice.text(), "alice.key");
    std::string line = encrypt_key_text(plain, pass_of("correct horse"), kFast);
    CHECK(line.rfind("N3-ENCRYPTED-KEY-", 0) == 0);
    CHECK(line.find('\n') == std::string::npos);
    KeyText enc = decode_key_text(line, "alice.key");
    REQUIRE(enc.kind == KeyKind::encrypted_key);
    KeyText back = decrypt_key_text(enc, pass_of("correct horse"), "alice.key");
    CHECK(back.kind == KeyKind::member_key);
    CHECK(back.body == plain.body);
    CHECK_THROWS_WITH(decrypt_key_text(enc, pass_of("correct horsf"), "alice.key"),
                      Catch::Contains("alice.key: wrong passphrase"));
    // two encryptions of one key share nothing (fresh salt and nonce)
    std::string again = encrypt_key_text(plain, pass_of("correct horse"), kFast);
    CHECK(again != line);
    // the key's kind is inside the ciphertext, not in the clear
    for (auto* k : {&plain})
        CHECK(line.find(std::string(key_prefix(k->kind))) == std::string::npos);
}

TEST_CASE("damaged encrypted keys and hostile limits are refused") {
    Federation fed;
    KeyText plain = decode_key_text(fed.authority.text(), "fed.ask");
    KeyText enc = decode_key_text(encrypt_key_text(plain, pass_of("pw"), kFast), "fed.ask");
    Secret pw = pass_of("pw");
    // every byte of the body matters (re-encoded so the text checksum is not what objects)
    for (size_t at : {size_t(0), size_t(1), size_t(2), size_t(6), size_t(14), size_t(30),
                      size_t(40), enc.body.size() / 2, enc.body.size() - 1}) {
        INFO(at);
        KeyText bad = enc;
        bad.body[at] ^= 1;
        CHECK_THROWS_AS(decrypt_key_text(bad, pw, "fed.ask"), DataError);
    }
    KeyText cut = enc;
    cut.body.resize(40);
    CHECK_THROWS_AS(decrypt_key_text(cut, pw, "fed.ask"), DataError);
    // a file that asks for 2^40 bytes of memory is refused before any work
    KeyText greedy = enc;
    for (int i = 0; i < 8; ++i) greedy.body[6 + static_cast<size_t>(i)] = i == 5 ? 1 : 0;
    CHECK_THROWS_WITH(decrypt_key_text(greedy, pw, "fed.ask"),
                      Catch::Contains("limits out of range"));
    // a corrupted line fails its text checksum
    std::string line = encrypt_key_text(plain, pw, kFast);
    line[30] = line[30] == 'A' ? 'B' : 'A';
    CHECK_THROWS_WITH(decode_key_text(line, "fed.ask"), Catch::Contains("checksum mismatch"));
    // only secret keys that are not already encrypted
    KeyText pub = decode_key_text(fed.pub().text(), "fed.pub");
    CHECK_THROWS_AS(encrypt_key_text(pub, pw, kFast), UsageError);
    CHECK_THROWS_AS(encrypt_key_text(enc, pw, kFast), UsageError);
    CHECK_THROWS_AS(encrypt_key_text(plain, pass_of(""), kFast), UsageError);
}

TEST_CASE("read_key_file decrypts with the passphrase file, and every loader takes the result") {
    Federation fed;
    MemberKey alice = fed.member("alice");
    std::string key = temp_file(
        "alice.key",
        "# comment\n" +
            encrypt_key_text(decode_key_text(alice.text(), "k"), pass_of("s3cret"), kFast) + "\n");
    std::string good = temp_file("good", "s3cret\nsecond line ignored\n");
    std::string bad = temp_file("bad", "s3cret \n");
    std::string empty = temp_file("empty", "\n");
    set_passphrase_file(good);
    CHECK(MemberKey::load(key).record.fingerprint() == alice.record.fingerprint());
    CHECK(PublicRecord::load(key).fingerprint() == alice.record.fingerprint());
    CHECK(read_key_file(key, false).kind == KeyKind::encrypted_key);
    set_passphrase_file(bad);
    CHECK_THROWS_WITH(MemberKey::load(key), Catch::Contains("wrong passphrase"));
    set_passphrase_file(empty);
    CHECK_THROWS_AS(MemberKey::load(key), UsageError);
    set_passphrase_file("/nonexistent/n3-pass");
    CHECK_THROWS_AS(MemberKey::load(key), EnvError);
    set_passphrase_file("");
    for (auto& f : {key, good, bad, empty}) std::remove(f.c_str());
}
