// Frozen vectors: with a deterministic random generator (test builds only) the whole flow,
// authority to sealed record, must give exactly the bytes under tests/crypto/golden/. A change
// to any hash, encoding or layout shows up here as a diff. N3_UPDATE_GOLDEN=1 rewrites them.
#include "fixtures.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sodium.h>
#include <sstream>

using namespace n3;
using namespace n3::crypto;

namespace {

// ChaCha20 keyed by a seed and a call counter (randombytes_buf_deterministic): reproducible.
std::mutex rng_mutex;
uint64_t rng_counter = 0;
uint8_t rng_seed[randombytes_SEEDBYTES] = {'n', '3', '-', 'f', 'r', 'o', 'z', 'e', 'n'};

void det_buf(void* buf, size_t size) {
    std::lock_guard<std::mutex> lock(rng_mutex);
    uint8_t seed[randombytes_SEEDBYTES];
    crypto_generichash(seed, sizeof seed, reinterpret_cast<uint8_t*>(&rng_counter),
                       sizeof rng_counter, rng_seed, sizeof rng_seed);
    ++rng_counter;
    randombytes_buf_deterministic(buf, size, seed);
}
uint32_t det_random() {
    uint32_t v;
    det_buf(&v, sizeof v);
    return v;
}
uint32_t det_uniform(uint32_t upper) {
    if (upper < 2) return 0;
    uint32_t min = (1U + ~upper) % upper;
    uint32_t r;
    do r = det_random();
    while (r < min);
    return r % upper;
}
const char* det_name() {
    return "n3-test-deterministic";
}
randombytes_implementation det_impl = {det_name,    det_random, nullptr,
                                       det_uniform, det_buf,    nullptr};

// Installed before main(), before anything calls sodium_init().
const bool installed = [] {
    randombytes_set_implementation(&det_impl);
    return true;
}();

void reseed() {
    std::lock_guard<std::mutex> lock(rng_mutex);
    rng_counter = 0;
}

std::string golden(const std::string& name) {
    return std::string(N3_TEST_DATA) + "/golden/" + name;
}

void check_golden(const std::string& name, const Bytes& got) {
    std::string path = golden(name);
    if (std::getenv("N3_UPDATE_GOLDEN")) {
        std::ofstream(path, std::ios::binary)
            .write(reinterpret_cast<const char*>(got.data()),
                   static_cast<std::streamsize>(got.size()));
    }
    Bytes want = read_file(path);
    INFO(path);
    CHECK(want == got);
}
void check_golden(const std::string& name, const std::string& text) {
    check_golden(name, Bytes(text.begin(), text.end()));
}

} // namespace

TEST_CASE("frozen vectors: keys and a sealed record are byte-for-byte stable") {
    REQUIRE(installed);
    init();
    REQUIRE(std::string(randombytes_implementation_name()) == "n3-test-deterministic");
    reseed();
    AuthoritySecret auth = AuthoritySecret::generate();
    MemberSecret as = MemberSecret::create("alice", 1, 1900000000);
    MemberKey alice = complete(as, issue(auth, as.request, "a"), "a");
    MemberSecret bs = MemberSecret::create("bob", 1, 1900000000);
    MemberKey bob = complete(bs, issue(auth, bs.request, "b"), "b");
    MemberSecret cs = MemberSecret::create("carol", 1, 1900000000);
    MemberKey carol = complete(cs, issue(auth, cs.request, "c"), "c");
    Bytes payload = test::update_payload(20000, 12);
    SealOptions so;
    so.now = 1800000000;
    so.suite = Suite::xchacha20_poly1305;
    // The version 1 vectors (alice-to-bob.n3, alice-to-bob-carol.v1.n3) were made by this
    // flow before version 2; the sealer no longer writes version 1, so they are only opened.
    Bytes sealed = seal_record(alice, std::span(&bob.record, 1), RecordType::update, payload, so);
    PublicRecord both[] = {bob.record, carol.record};
    so.stanzas = 4;
    Bytes padded = seal_record(alice, both, RecordType::update, payload, so);
    // Suite 2 (AES-256-GCM, SHA-256), made after the suite 1 vectors so theirs stay as they were.
    so.suite = Suite::aes256_gcm;
    so.stanzas = 0;
    Bytes sealed2 = seal_record(alice, std::span(&bob.record, 1), RecordType::update, payload, so);
    so.stanzas = 4;
    Bytes padded2 = seal_record(alice, both, RecordType::update, payload, so);

    check_golden("authority.ask", auth.text() + "\n");
    check_golden("authority.pub", auth.public_key().text() + "\n");
    check_golden("alice.req", as.request.text() + "\n");
    check_golden("alice.key", alice.text() + "\n");
    check_golden("bob.key", bob.text() + "\n");
    check_golden("bob.pub", bob.record.text() + "\n");
    check_golden("carol.key", carol.text() + "\n");
    check_golden("alice-to-bob.v2.n3", sealed);
    check_golden("alice-to-bob-carol-pad4.v2.n3", padded);
    check_golden("alice-to-bob.v2.suite2.n3", sealed2);
    check_golden("alice-to-bob-carol-pad4.v2.suite2.n3", padded2);
    check_golden("plain.n3", encode_record(RecordType::update, payload));
}

TEST_CASE("frozen vectors: the golden sealed record opens with the golden keys") {
    // Independent of the generator: pins the format for readers.
    MemberKey bob = MemberKey::decode(
        decode_key_text(read_text_file(golden("bob.key")), "bob.key").body, "bob.key");
    AuthorityPublic auth = AuthorityPublic::decode(
        decode_key_text(read_text_file(golden("authority.pub")), "a").body, "a");
    OpenOptions oo;
    oo.now = 1800000000;
    oo.round = 12;
    OpenedRecord o = open_record(bob, auth, read_file(golden("alice-to-bob.n3")), oo);
    CHECK(o.info.sender.id == "alice");
    CHECK(encode_record(o.record.type(), o.record.payload()) == read_file(golden("plain.n3")));
}

namespace {
MemberKey golden_member(const std::string& name) {
    std::string f = name + ".key";
    return MemberKey::decode(decode_key_text(read_text_file(golden(f)), f).body, f);
}
AuthorityPublic golden_authority() {
    return AuthorityPublic::decode(
        decode_key_text(read_text_file(golden("authority.pub")), "a").body, "a");
}
} // namespace

TEST_CASE("frozen vectors: the version 2 records of both suites open with the golden keys") {
    OpenOptions oo;
    oo.now = 1800000000;
    oo.round = 12;
    Bytes plain = read_file(golden("plain.n3"));
    for (auto [suffix, suite] :
         {std::pair{"", Suite::xchacha20_poly1305}, std::pair{".suite2", Suite::aes256_gcm}}) {
        INFO(suite_name(suite));
        Bytes single = read_file(golden("alice-to-bob.v2" + std::string(suffix) + ".n3"));
        CHECK(decode_record(single).payload()[1] == static_cast<uint8_t>(suite));
        OpenedRecord o = open_record(golden_member("bob"), golden_authority(), single, oo);
        CHECK(o.info.sender.id == "alice");
        CHECK(o.info.recipients == 1);
        CHECK(o.info.suite == suite);
        CHECK(encode_record(o.record.type(), o.record.payload()) == plain);
        Bytes padded =
            read_file(golden("alice-to-bob-carol-pad4.v2" + std::string(suffix) + ".n3"));
        for (const char* who : {"bob", "carol"}) {
            INFO(who);
            OpenedRecord p = open_record(golden_member(who), golden_authority(), padded, oo);
            CHECK(p.info.recipients == 2);
            CHECK(encode_record(p.record.type(), p.record.payload()) == plain);
        }
        CHECK((decode_record(padded).payload()[2]) == 4);
    }
}

TEST_CASE(
    "frozen vectors: a version 1 record with two stanzas opens, held back until it verified") {
    OpenOptions oo;
    oo.now = 1800000000;
    Bytes sealed = read_file(golden("alice-to-bob-carol.v1.n3"));
    CHECK(decode_record(sealed).payload()[0] == 1);
    for (const char* who : {"bob", "carol"}) {
        OpenedRecord o = open_record(golden_member(who), golden_authority(), sealed, oo);
        CHECK(o.info.recipients == 2);
        CHECK(encode_record(o.record.type(), o.record.payload()) == read_file(golden("plain.n3")));
    }
    // carol swaps in her own bytes after chunk 0: bob's open releases none of them
    auto env = detail::raw_decrypt(golden_member("carol"), golden_authority(), sealed);
    for (size_t i = kChunkSize; i < env.stream.size() - 200; ++i) env.stream[i] = 0x42;
    Record r = decode_record(detail::raw_encrypt(env));
    test::MemorySource mem{r.payload()};
    PayloadSource src = mem.source(RecordType::sealed);
    VectorSink sink;
    CHECK_THROWS_AS(open(golden_member("bob"), golden_authority(), src, sink, oo), DataError);
    CHECK(sink.data.empty());
}
