// The envelope's cipher suites: the published vectors of AES-256-GCM (the GCM specification's
// test cases 13, 14 and 16) and SHA-256 (FIPS 180-2) through n3's own wrappers, the chunk
// nonce's binding of index and last flag in both suites, and the choice of suite.
#include "crypto/sha256x16.hpp"
#include "crypto/suite.hpp"
#include "fixtures.hpp"
#include "record/error.hpp"
#include "record/hex.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

using namespace n3;
using namespace n3::crypto;

namespace {

Bytes hex(const std::string& s) {
    Bytes b(s.size() / 2);
    REQUIRE(from_hex(s, b));
    return b;
}

// Restores N3_SEAL_SUITE as it was when the test started.
struct SuiteEnv {
    std::string saved;
    bool had;
    SuiteEnv() {
        const char* v = std::getenv("N3_SEAL_SUITE");
        had = v != nullptr;
        if (v) saved = v;
    }
    ~SuiteEnv() {
        if (had)
            setenv("N3_SEAL_SUITE", saved.c_str(), 1);
        else
            unsetenv("N3_SEAL_SUITE");
    }
};

} // namespace

TEST_CASE("AES-256-GCM: the GCM specification's test vectors") {
    struct Vector {
        const char *key, *iv, *plain, *aad, *cipher, *tag;
    };
    const Vector vectors[] = {
        // test case 13: empty message
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
        // test case 14: one zero block
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "00000000000000000000000000000000", "",
         "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
        // test case 16: associated data and a partial last block
        {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
         "cafebabefacedbaddecaf888",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e24"
         "49a6b525b16aedf5aa0de657ba637b39",
         "feedfacedeadbeeffeedfacedeadbeefabaddad2",
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b10"
         "56828838c5f61e6393ba7a0abcc9f662",
         "76fc6ece0f4e1768cddf8853bb2d551b"},
    };
    for (const Vector& v : vectors) {
        INFO(v.cipher);
        Bytes key = hex(v.key), iv = hex(v.iv), plain = hex(v.plain), aad = hex(v.aad);
        Bytes want = hex(std::string(v.cipher) + v.tag);
        Bytes got(plain.size() + kTag);
        suite::aes256gcm_encrypt(key.data(), iv.data(), aad, plain, got.data());
        CHECK(to_hex(got) == to_hex(want));
        Bytes back(plain.size() + 1);
        REQUIRE(suite::aes256gcm_decrypt(key.data(), iv.data(), aad, want, back.data()));
        CHECK(Bytes(back.begin(), back.begin() + static_cast<long>(plain.size())) == plain);
        // any flipped bit of ciphertext, tag or associated data fails
        for (size_t i = 0; i < want.size(); ++i) {
            Bytes bad = want;
            bad[i] ^= 0x01;
            CHECK_FALSE(suite::aes256gcm_decrypt(key.data(), iv.data(), aad, bad, back.data()));
        }
        if (!aad.empty()) {
            Bytes bad_aad = aad;
            bad_aad[0] ^= 0x80;
            CHECK_FALSE(
                suite::aes256gcm_decrypt(key.data(), iv.data(), bad_aad, want, back.data()));
        }
        Bytes short_input(kTag - 1);
        CHECK_FALSE(suite::aes256gcm_decrypt(key.data(), iv.data(), aad, short_input, back.data()));
    }
}

TEST_CASE("SHA-256: the FIPS 180-2 test vectors") {
    auto digest = [](const std::string& s) {
        return to_hex(suite::sha256({reinterpret_cast<const uint8_t*>(s.data()), s.size()}));
    };
    CHECK(digest("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(digest(std::string(1000000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("chunks of both suites bind key, index and last flag") {
    Secret key(32), other(32);
    random_bytes({key.data(), 32});
    random_bytes({other.data(), 32});
    Bytes plain(kChunkSize);
    for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<uint8_t>(i * 7);
    for (Suite s : {Suite::xchacha20_poly1305, Suite::aes256_gcm}) {
        INFO(suite_name(s));
        for (size_t n : {size_t(0), size_t(1), size_t(1000), kChunkSize}) {
            INFO(n);
            Bytes sealed(n + kTag), back(n + 1);
            suite::seal_chunk(s, key, 5, false, plain.data(), n, sealed.data());
            REQUIRE(suite::open_chunk(s, key, 5, false, sealed.data(), sealed.size(), back.data()));
            CHECK(std::equal(plain.begin(), plain.begin() + static_cast<long>(n), back.begin()));
            CHECK_FALSE(
                suite::open_chunk(s, key, 6, false, sealed.data(), sealed.size(), back.data()));
            CHECK_FALSE(
                suite::open_chunk(s, key, 5, true, sealed.data(), sealed.size(), back.data()));
            CHECK_FALSE(
                suite::open_chunk(s, other, 5, false, sealed.data(), sealed.size(), back.data()));
            const Suite t = s == Suite::aes256_gcm ? Suite::xchacha20_poly1305 : Suite::aes256_gcm;
            CHECK_FALSE(
                suite::open_chunk(t, key, 5, false, sealed.data(), sealed.size(), back.data()));
            CHECK_FALSE(suite::open_chunk(s, key, 5, false, sealed.data(), kTag - 1, back.data()));
        }
        // the index is all 64 bits of the nonce's first word
        Bytes a(16 + kTag), b(16 + kTag);
        suite::seal_chunk(s, key, uint64_t(1) << 40, false, plain.data(), 16, a.data());
        suite::seal_chunk(s, key, 0, false, plain.data(), 16, b.data());
        CHECK(a != b);
    }
}

TEST_CASE("the payload digest: leaves and root differ by suite, chunk and content") {
    Bytes bytes(100, 9);
    for (Suite s : {Suite::xchacha20_poly1305, Suite::aes256_gcm}) {
        CHECK(suite::leaf(s, 0, bytes) != suite::leaf(s, 1, bytes));
        CHECK(suite::leaf(s, 0, bytes) != suite::leaf(s, 0, ByteView(bytes).first(99)));
        suite::ContentHash h(s, 100);
        h.add(suite::leaf(s, 0, bytes));
        CHECK(h.digest().size() == (s == Suite::aes256_gcm ? 32u : 64u));
    }
    CHECK(suite::leaf(Suite::aes256_gcm, 0, bytes) !=
          suite::leaf(Suite::xchacha20_poly1305, 0, bytes));
    // suite 2's leaf is SHA-256 of its domain, the index, the length and the bytes
    Bytes framed;
    const std::string domain = "n3/v1/sha256leaf";
    framed.insert(framed.end(), domain.begin(), domain.end());
    put_u64(framed, 3);
    put_u64(framed, bytes.size());
    put(framed, bytes);
    CHECK(suite::leaf(Suite::aes256_gcm, 3, bytes) == suite::sha256(framed));
}

TEST_CASE("SHA-256 in sixteen lanes gives OpenSSL's digests") {
    if (!sha256x16::available()) {
        WARN("this CPU has no AVX-512: nothing to compare");
        return;
    }
    // Sixteen different heads and bodies, at a stride that is not a multiple of 64, for every
    // body length around the block boundaries (one or two padding blocks) and a whole chunk.
    const size_t stride = 65536 + 16 + 8;
    Bytes body(16 * stride);
    uint32_t x = 1;
    for (auto& v : body) v = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
    uint8_t heads[16][32];
    for (size_t j = 0; j < 16; ++j)
        for (size_t k = 0; k < 32; ++k) heads[j][k] = static_cast<uint8_t>(31 * j + k);
    for (size_t n : {32ul, 33ul, 86ul, 87ul, 88ul, 95ul, 96ul, 97ul, 150ul, 151ul, 152ul, 1000ul,
                     65535ul, 65536ul}) {
        INFO(n);
        std::array<Hash32, 16> out;
        sha256x16::hash(heads, body.data(), stride, n, out.data());
        for (size_t j = 0; j < 16; ++j) {
            Bytes msg(heads[j], heads[j] + 32);
            msg.insert(msg.end(), body.begin() + static_cast<long>(j * stride),
                       body.begin() + static_cast<long>(j * stride + n));
            CHECK(out[j] == suite::sha256(msg));
        }
    }
}

TEST_CASE("sixteen leaves at once are the leaves one at a time") {
    const size_t stride = 65536 + 16;
    Bytes chunks(16 * stride);
    for (size_t i = 0; i < chunks.size(); ++i) chunks[i] = static_cast<uint8_t>(i * 7 + i / 251);
    std::array<Hash32, 16> out;
    CHECK_FALSE(
        suite::leaves16(Suite::xchacha20_poly1305, 5, chunks.data(), stride, 65536, out.data()));
    if (!suite::leaves16(Suite::aes256_gcm, 5, chunks.data(), stride, 65536, out.data())) {
        CHECK_FALSE(sha256x16::available());
        return; // leaf() one at a time is all there is here
    }
    for (size_t j = 0; j < 16; ++j)
        CHECK(out[j] == suite::leaf(Suite::aes256_gcm, 5 + j, {chunks.data() + j * stride, 65536}));
}

TEST_CASE("suite names, N3_SEAL_SUITE and the CPU's choice") {
    SuiteEnv keep;
    CHECK(parse_suite("aes-256-gcm", "--suite") == Suite::aes256_gcm);
    CHECK(parse_suite("aes", "--suite") == Suite::aes256_gcm);
    CHECK(parse_suite("xchacha20-poly1305", "--suite") == Suite::xchacha20_poly1305);
    CHECK(parse_suite("xchacha", "--suite") == Suite::xchacha20_poly1305);
    CHECK_THROWS_AS(parse_suite("rot13", "--suite"), UsageError);
    CHECK_THROWS_WITH(parse_suite("rot13", "--suite"), Catch::Contains("--suite: unknown suite"));
    CHECK(suite_from_id(1) == Suite::xchacha20_poly1305);
    CHECK(suite_from_id(2) == Suite::aes256_gcm);
    CHECK_FALSE(suite_from_id(0));
    CHECK_FALSE(suite_from_id(3));
    CHECK(suite_accelerated(Suite::xchacha20_poly1305));

    unsetenv("N3_SEAL_SUITE");
    const Suite cpu = preferred_suite();
    CHECK(cpu ==
          (suite_accelerated(Suite::aes256_gcm) ? Suite::aes256_gcm : Suite::xchacha20_poly1305));
    CHECK(parse_suite("auto", "--suite") == cpu);
    setenv("N3_SEAL_SUITE", "xchacha20-poly1305", 1);
    CHECK(preferred_suite() == Suite::xchacha20_poly1305);
    setenv("N3_SEAL_SUITE", "aes-256-gcm", 1);
    CHECK(preferred_suite() == Suite::aes256_gcm);
    setenv("N3_SEAL_SUITE", "auto", 1);
    CHECK(preferred_suite() == cpu);
    setenv("N3_SEAL_SUITE", "des", 1);
    CHECK_THROWS_WITH(preferred_suite(),
                      Catch::Contains("environment N3_SEAL_SUITE: unknown suite 'des'"));
}

TEST_CASE("either suite's records open whatever the opener's preferred suite") {
    SuiteEnv keep;
    test::Federation fed;
    MemberKey alice = fed.member("alice"), bob = fed.member("bob");
    Bytes payload = test::update_payload(70000, 3);
    for (Suite s : {Suite::xchacha20_poly1305, Suite::aes256_gcm}) {
        SealOptions so;
        so.suite = s;
        Bytes sealed =
            seal_record(alice, std::span(&bob.record, 1), RecordType::update, payload, so);
        CHECK(decode_record(sealed).payload()[1] == static_cast<uint8_t>(s));
        for (const char* env : {"xchacha20-poly1305", "aes-256-gcm"}) {
            setenv("N3_SEAL_SUITE", env, 1);
            OpenedRecord o = open_record(bob, fed.pub(), sealed);
            CHECK(o.info.suite == s);
            CHECK(Bytes(o.record.payload().begin(), o.record.payload().end()) == payload);
        }
        // the suite byte is bound: the other suite's id, or an unknown one, opens nothing
        for (uint8_t id : {uint8_t(1), uint8_t(2), uint8_t(3), uint8_t(0)}) {
            if (id == static_cast<uint8_t>(s)) continue;
            Bytes p(sealed.begin() + 32, sealed.end() - 8);
            p[1] = id;
            CHECK_THROWS_AS(open_record(bob, fed.pub(), encode_record(RecordType::sealed, p)),
                            DataError);
        }
    }
}
