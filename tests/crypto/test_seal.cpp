// The sealed envelope: round trips, and every tampering, truncation, reordering, forwarding,
// replay and wrong-key case must fail with DataError and release no complete record.
#include "fixtures.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <set>
#include <unistd.h>

using namespace n3;
using namespace n3::crypto;
using namespace n3::crypto::test;

namespace {

constexpr size_t kHeader = 32; // record preamble
constexpr size_t kCt = kChunkSize + 16;

struct World {
    Federation fed;
    MemberKey alice = fed.member("alice");
    MemberKey bob = fed.member("bob");
    MemberKey carol = fed.member("carol");
};

// Re-frames a changed sealed payload so that only the envelope (not the record CRC) can object.
Bytes reframe(const Bytes& sealed_record, const std::function<void(Bytes&)>& change) {
    Bytes payload(sealed_record.begin() + kHeader, sealed_record.end() - 8);
    change(payload);
    return encode_record(RecordType::sealed, payload);
}

size_t clear_size(size_t recipients) {
    return 8 + recipients * 80;
}

// A source over a sealed record's payload that notes how much the sink held when the opener
// asked for the envelope's last byte: anything there was released before the end was read.
struct Watched {
    Record r;
    size_t pos = 0;
    const VectorSink* sink = nullptr;
    size_t released_before_end = 0;
    PayloadSource source() {
        PayloadSource src;
        src.type = RecordType::sealed;
        src.length = r.payload().size();
        src.read = [this](std::span<uint8_t> out) {
            size_t n = std::min(out.size(), r.payload().size() - pos);
            if (n && pos + n == r.payload().size()) released_before_end = sink->data.size();
            if (n) std::memcpy(out.data(), r.payload().data() + pos, n);
            pos += n;
            return n;
        };
        return src;
    }
};

bool contains(const Bytes& hay, ByteView needle) {
    return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

} // namespace

TEST_CASE("seal and open round trip, several sizes", "[envelope]") {
    World w;
    for (size_t floats : {0ul, 1ul, 1000ul, 16384ul, 16383ul, 40000ul, 300000ul}) {
        INFO(floats);
        Bytes payload = update_payload(floats, 7);
        Bytes sealed =
            seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
        OpenedRecord o = open_record(w.bob, w.fed.pub(), sealed);
        CHECK(o.record.type() == RecordType::update);
        CHECK(std::equal(o.record.payload().begin(), o.record.payload().end(), payload.begin(),
                         payload.end()));
        CHECK(o.info.sender.id == "alice");
        CHECK(o.info.sender_fingerprint == w.alice.record.fingerprint());
        REQUIRE(o.info.context.round);
        CHECK(*o.info.context.round == 7);
        CHECK(o.info.context.base);
        // Padmé: sealed size is within 12% (+ fixed overhead) of the payload
        CHECK(sealed.size() < payload.size() * 112 / 100 + 2000);
    }
    // an empty non-tensor payload
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::packed, {});
    CHECK(open_record(w.bob, w.fed.pub(), sealed).record.payload().empty());
}

TEST_CASE("sizes land on Padmé buckets", "[envelope]") {
    CHECK(padme(0) == 0);
    CHECK(padme(1) == 1);
    CHECK(padme(100) == 104);
    CHECK(padme(1000) == 1024);
    CHECK(padme(1 << 20) == 1 << 20);
    CHECK(padme((1 << 20) + 1) == (1 << 20) + (1 << 15));
    for (uint64_t l = 2; l < 200000; l += 997) {
        CHECK(padme(l) >= l);
        CHECK(padme(l) <= l + l / 8);
    }
}

TEST_CASE("multi-recipient: each recipient opens, an outsider does not", "[envelope]") {
    World w;
    MemberKey dave = w.fed.member("dave");
    PublicRecord to[] = {w.bob.record, w.carol.record, w.alice.record};
    Bytes payload = update_payload(5000, 2);
    Bytes sealed = seal_record(w.alice, to, RecordType::update, payload);
    for (auto* k : {&w.bob, &w.carol, &w.alice}) {
        auto o = open_record(*k, w.fed.pub(), sealed);
        CHECK(o.info.recipients == 3);
        CHECK(o.record.payload().size() == payload.size());
    }
    CHECK_THROWS_WITH(open_record(dave, w.fed.pub(), sealed),
                      Catch::Contains("not sealed to 'dave'"));
}

TEST_CASE("tampering with any region fails", "[envelope]") {
    World w;
    Bytes payload = update_payload(70000, 1); // 280 KB: five chunks
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    size_t len = sealed.size() - kHeader - 8;
    size_t clear = clear_size(1);
    size_t chunks = (len - clear + kCt - 1) / kCt;
    REQUIRE(chunks >= 5);
    std::vector<std::pair<std::string, size_t>> where = {{"version", 0},
                                                         {"suite", 1},
                                                         {"count", 2},
                                                         {"reserved", 5},
                                                         {"stanza E", 8 + 5},
                                                         {"stanza wrap", 8 + 40},
                                                         {"stanza tag", 8 + 79},
                                                         {"last byte (final tag)", len - 1},
                                                         {"final chunk body", len - 40}};
    for (size_t c = 0; c < chunks; ++c) {
        where.push_back({"chunk " + std::to_string(c) + " start", clear + c * kCt});
        where.push_back({"chunk " + std::to_string(c) + " middle", clear + c * kCt + 30000});
        where.push_back({"chunk " + std::to_string(c) + " tag", clear + c * kCt + kCt - 1});
    }
    for (auto& [name, at] : where) {
        if (at >= len) continue;
        INFO(name << " at " << at);
        Bytes bad = reframe(sealed, [&](Bytes& p) { p[at] ^= 0x20; });
        CHECK_THROWS_AS(open_record(w.bob, w.fed.pub(), bad), DataError);
    }
}

TEST_CASE("truncation, dropped, duplicated and reordered chunks fail", "[envelope]") {
    World w;
    Bytes payload = update_payload(70000, 1);
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    size_t clear = clear_size(1);
    auto at = [&](Bytes& p, size_t c) { return p.begin() + static_cast<long>(clear + c * kCt); };
    // cut at a chunk boundary: the new last chunk was not sealed as final
    CHECK_THROWS_AS(open_record(w.bob, w.fed.pub(),
                                reframe(sealed, [&](Bytes& p) { p.erase(at(p, 3), p.end()); })),
                    DataError);
    // a stream whose last chunk was not sealed as final: re-encrypt all but the flag
    {
        auto env = detail::raw_decrypt(w.bob, w.fed.pub(), sealed);
        Bytes full = detail::raw_encrypt(env);
        Bytes whole = reframe(full, [&](Bytes&) {});
        CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), whole));
    }
    // cut inside a chunk
    CHECK_THROWS_AS(
        open_record(w.bob, w.fed.pub(),
                    reframe(sealed, [&](Bytes& p) { p.erase(p.end() - 100, p.end()); })),
        DataError);
    // drop chunk 1
    CHECK_THROWS_AS(open_record(w.bob, w.fed.pub(),
                                reframe(sealed, [&](Bytes& p) { p.erase(at(p, 1), at(p, 2)); })),
                    DataError);
    // swap chunks 1 and 2
    CHECK_THROWS_AS(
        open_record(
            w.bob, w.fed.pub(),
            reframe(sealed, [&](Bytes& p) { std::swap_ranges(at(p, 1), at(p, 2), at(p, 2)); })),
        DataError);
    // duplicate chunk 1 in place of chunk 2
    CHECK_THROWS_AS(
        open_record(w.bob, w.fed.pub(),
                    reframe(sealed, [&](Bytes& p) { std::copy(at(p, 1), at(p, 2), at(p, 2)); })),
        DataError);
    // only the header
    CHECK_THROWS_WITH(
        open_record(w.bob, w.fed.pub(), reframe(sealed, [&](Bytes& p) { p.resize(clear); })),
        Catch::Contains("truncated"));
    CHECK_THROWS_AS(
        open_record(w.bob, w.fed.pub(), reframe(sealed, [&](Bytes& p) { p.resize(5); })),
        DataError);
}

TEST_CASE("wrong recipient, another federation, expired sender", "[envelope]") {
    World w;
    Bytes payload = update_payload(100, 1);
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    CHECK_THROWS_WITH(open_record(w.carol, w.fed.pub(), sealed),
                      Catch::Contains("not sealed to 'carol'"));

    Federation other;
    MemberKey eve = other.member("eve");
    // a member of another federation cannot be sealed to, and its envelopes do not open here
    CHECK_THROWS_WITH(seal_record(w.alice, std::span(&eve.record, 1), RecordType::update, payload),
                      Catch::Contains("another federation"));
    CHECK_THROWS_WITH(open_record(w.bob, other.pub(), sealed),
                      Catch::Contains("another federation"));
    // eve seals to bob's record under her authority: bob's stanza key binds his federation
    CHECK_THROWS(seal_record(eve, std::span(&w.bob.record, 1), RecordType::update, payload));

    MemberKey old = w.fed.member("old", 0, 5000);
    SealOptions so;
    so.now = 4000;
    Bytes from_old = seal_record(old, std::span(&w.bob.record, 1), RecordType::update, payload, so);
    OpenOptions oo;
    oo.now = 4999;
    CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), from_old, oo));
    oo.now = 6000;
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), from_old, oo), Catch::Contains("expired"));
    so.now = 6000;
    CHECK_THROWS_WITH(
        seal_record(old, std::span(&w.bob.record, 1), RecordType::update, payload, so),
        Catch::Contains("expired"));
}

TEST_CASE("roster: senders not listed are refused", "[envelope]") {
    World w;
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update,
                               update_payload(10, 1));
    Roster with{{w.alice.record, w.carol.record}}, without{{w.carol.record}};
    OpenOptions oo;
    oo.roster = &with;
    CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), sealed, oo));
    oo.roster = &without;
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), sealed, oo),
                      Catch::Contains("not in the roster"));
}

TEST_CASE("replay into another round is refused: the round is signed", "[envelope]") {
    World w;
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update,
                               update_payload(10, 4));
    OpenOptions oo;
    oo.round = 4;
    CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), sealed, oo));
    oo.round = 5;
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), sealed, oo),
                      Catch::Contains("sealed for round 4, not round 5"));
    // a packed record without metadata carries the round given when sealing
    SealOptions so;
    so.context.round = 9;
    Bytes packed =
        seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::packed, Bytes(10, 1), so);
    oo.round = 9;
    CHECK(open_record(w.bob, w.fed.pub(), packed, oo).info.context.round == 9u);
    // ... and a record whose metadata disagrees with the given round is refused
    so.context.round = 3;
    CHECK_THROWS_WITH(seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update,
                                  update_payload(10, 4), so),
                      Catch::Contains("round 4, not 3"));
    // A recipient rewriting the round inside the ciphertext breaks the signature.
    auto env = detail::raw_decrypt(w.bob, w.fed.pub(), sealed);
    // the context's round field: after version(1), reclen(2), the record's 256-byte slot, ctx
    // version(1), id(16), P(32), flags(1)
    size_t round_at = 3 + 256 + 1 + 16 + 32 + 1;
    REQUIRE(env.stream[round_at] == 4);
    env.stream[round_at] = 5;
    oo.round = 5;
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), detail::raw_encrypt(env), oo),
                      Catch::Contains("signature does not verify"));
}

TEST_CASE("forwarding a signed payload to another recipient fails", "[envelope]") {
    World w;
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update,
                               update_payload(3000, 1));
    auto env = detail::raw_decrypt(w.bob, w.fed.pub(), sealed);
    // bob re-encrypts alice's signed plaintext, unchanged, to carol
    auto fwd = detail::raw_wrap(std::span(&w.carol.record, 1), w.fed.pub());
    fwd.stream = env.stream;
    CHECK_THROWS_WITH(open_record(w.carol, w.fed.pub(), detail::raw_encrypt(fwd)),
                      Catch::Contains("signature does not verify"));
    // ... or keeps alice's header and stanza (carol cannot open it anyway)
    CHECK_THROWS_WITH(open_record(w.carol, w.fed.pub(), detail::raw_encrypt(env)),
                      Catch::Contains("not sealed to"));
}

TEST_CASE("someone holding the recipient's key cannot replace the payload", "[envelope]") {
    World w;
    Bytes payload = update_payload(50000, 1);
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    auto env = detail::raw_decrypt(w.bob, w.fed.pub(), sealed);
    // same header, same file key, signature 1 intact: only signature 2 notices
    CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), detail::raw_encrypt(env)));
    env.stream[env.stream.size() / 2] ^= 1;
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), detail::raw_encrypt(env)),
                      Catch::Contains("payload signature does not verify"));
}

TEST_CASE("padding must be zero and of the Padmé length", "[envelope]") {
    World w;
    Bytes payload = update_payload(1000, 1);
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    auto env = detail::raw_decrypt(w.bob, w.fed.pub(), sealed);
    REQUIRE(env.stream.back() == 0);
    auto bad = env;
    bad.stream.back() = 1;
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), detail::raw_encrypt(bad)),
                      Catch::Contains("padding"));
    auto longer = env;
    longer.stream.push_back(0);
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), detail::raw_encrypt(longer)),
                      Catch::Contains("lengths"));
}

TEST_CASE("identity and non-canonical ephemeral keys open nothing", "[envelope]") {
    World w;
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update,
                               update_payload(10, 1));
    Bytes id = reframe(sealed, [](Bytes& p) { std::memset(p.data() + 8, 0, 32); });
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), id), Catch::Contains("not sealed to"));
    Bytes nc = reframe(sealed, [](Bytes& p) {
        std::memset(p.data() + 8, 0xff, 32);
        p[8 + 31] = 0x7f;
    });
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), nc), Catch::Contains("not sealed to"));
}

TEST_CASE("the sealed bytes name neither sender nor recipient", "[envelope]") {
    World w;
    Bytes payload = update_payload(2000, 1);
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    AuthorityPublic auth = w.fed.pub();
    Point P = auth.P;
    std::vector<std::pair<std::string, Bytes>> secrets = {
        {"sender id", Bytes{'a', 'l', 'i', 'c', 'e'}},
        {"sender record", w.alice.record.encode()},
        {"sender X_sig", Bytes(w.alice.record.X_sig.begin(), w.alice.record.X_sig.end())},
        {"sender R", Bytes(w.alice.record.R.begin(), w.alice.record.R.end())},
        {"sender Y_sig", Bytes(w.alice.Y_sig.begin(), w.alice.Y_sig.end())},
        {"sender Y_kem", Bytes(w.alice.Y_kem.begin(), w.alice.Y_kem.end())},
        {"recipient Y_kem", Bytes(w.bob.Y_kem.begin(), w.bob.Y_kem.end())},
        {"authority P", Bytes(P.begin(), P.end())},
        {"authority id", Bytes(auth.id.begin(), auth.id.end())},
    };
    auto fpa = w.alice.record.fingerprint(), fpb = w.bob.record.fingerprint();
    secrets.push_back({"sender fingerprint", Bytes(fpa.begin(), fpa.end())});
    secrets.push_back({"recipient fingerprint", Bytes(fpb.begin(), fpb.end())});
    for (auto& [name, bytes] : secrets) {
        INFO(name);
        CHECK_FALSE(contains(sealed, bytes));
        CHECK_FALSE(contains(
            sealed, Bytes(bytes.begin(), bytes.begin() + std::min<size_t>(bytes.size(), 8))));
    }
    // sealing twice gives unrelated bytes (fresh ephemeral keys and file key)
    Bytes again = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    CHECK(sealed.size() == again.size());
    CHECK(!std::equal(sealed.begin() + kHeader, sealed.begin() + kHeader + 200,
                      again.begin() + kHeader));
}

TEST_CASE("streaming open writes no record trailer when the payload signature fails",
          "[envelope]") {
    World w;
    Bytes payload = update_payload(50000, 1);
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    auto env = detail::raw_decrypt(w.bob, w.fed.pub(), sealed);
    env.stream[env.stream.size() / 2] ^= 1;
    Bytes bad = detail::raw_encrypt(env);
    Record r = decode_record(bad);
    test::MemorySource mem{r.payload()};
    PayloadSource src = mem.source(RecordType::sealed);
    VectorSink sink;
    CHECK_THROWS_AS(open(w.bob, w.fed.pub(), src, sink), DataError);
    // whatever was streamed is not a complete record
    CHECK(sink.data.size() < payload.size() + 40);
    CHECK_THROWS_AS(decode_record(sink.data), DataError);
}

TEST_CASE("large envelopes: damage in a later batch fails cleanly while chunks are in flight",
          "[envelope]") {
    World w;
    Bytes payload = update_payload(9 << 18, 1); // 9 MiB: three batches of chunks
    Bytes sealed = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload);
    auto o = open_record(w.bob, w.fed.pub(), sealed);
    CHECK(std::equal(o.record.payload().begin(), o.record.payload().end(), payload.begin(),
                     payload.end()));
    size_t clear = clear_size(1);
    size_t len = sealed.size() - kHeader - 8;
    for (size_t at : {clear + 70 * kCt + 5, clear + 130 * kCt + 100, len - 3}) {
        INFO(at);
        Bytes bad = reframe(sealed, [&](Bytes& p) { p[at] ^= 4; });
        CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), bad),
                          Catch::Contains("does not authenticate"));
    }
    // a payload whose declared length is one byte short of what the source delivers
    test::MemorySource mem{payload};
    PayloadSource src = mem.source(RecordType::packed, payload.size() - 1);
    VectorSink sink;
    CHECK_THROWS_WITH(seal(w.alice, std::span(&w.bob.record, 1), src, sink),
                      Catch::Contains("longer than declared"));
}

TEST_CASE("a record longer than the sealer's ring of batches seals from a file and from a pipe",
          "[envelope]") {
    World w;
    // 21 MiB: more batches than the ring holds, so every slot is reused while chunks are in
    // flight; sealed from a mapped file (chunks copied through the file by both threads) and
    // from a stream (read into the batches by the writing thread).
    Bytes payload = update_payload(21 << 18, 3);
    Bytes record = encode_record(RecordType::update, payload);
    char path[] = "/tmp/n3-test-seal-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, record.data(), record.size()) == static_cast<ssize_t>(record.size()));
    close(fd);
    struct Cleanup {
        const char* p;
        ~Cleanup() { unlink(p); }
    } cleanup{path};
    VectorSink from_file;
    const std::string input = path;
    REQUIRE(seal_stream(w.alice, std::span(&w.bob.record, 1), std::span(&input, 1), from_file) ==
            1);
    test::MemorySource mem{payload};
    PayloadSource src = mem.source(RecordType::update);
    VectorSink from_stream;
    seal(w.alice, std::span(&w.bob.record, 1), src, from_stream);
    for (const Bytes* sealed : {&from_file.data, &from_stream.data}) {
        auto o = open_record(w.bob, w.fed.pub(), *sealed);
        CHECK(std::equal(o.record.payload().begin(), o.record.payload().end(), payload.begin(),
                         payload.end()));
    }
    CHECK(from_file.data.size() == from_stream.data.size());
}

TEST_CASE("dummy stanzas hide the number of recipients", "[envelope]") {
    World w;
    PublicRecord to[] = {w.bob.record, w.carol.record};
    SealOptions so;
    so.stanzas = 8;
    Bytes payload = update_payload(100, 1);
    Bytes sealed = seal_record(w.alice, to, RecordType::update, payload, so);
    Record r = decode_record(sealed);
    CHECK((r.payload()[2] | (r.payload()[3] << 8)) == 8);
    for (auto* k : {&w.bob, &w.carol})
        CHECK(open_record(*k, w.fed.pub(), sealed).info.recipients == 2);
    CHECK_THROWS_WITH(open_record(w.alice, w.fed.pub(), sealed), Catch::Contains("not sealed to"));
    // every dummy E is a valid point, like a real one
    for (size_t j = 0; j < 8; ++j) {
        Point E;
        std::memcpy(E.data(), r.payload().data() + 8 + j * 80, 32);
        CHECK(point_valid(E));
    }
}

TEST_CASE("sealed sizes reveal neither the sender's id length nor the real recipient count",
          "[envelope]") {
    World w;
    MemberKey a = w.fed.member("a");
    MemberKey longer = w.fed.member(std::string(60, 'l'));
    MemberKey longest = w.fed.member(std::string(128, 'm'));
    // the slot the inner header keeps for the sender's record fits the longest id there is
    CHECK(longest.record.encode().size() == 256);
    CHECK_THROWS_AS(MemberSecret::create(std::string(129, 'm'), 0, 0), UsageError);
    MemberKey dave = w.fed.member("dave");
    PublicRecord four[] = {w.bob.record, w.carol.record, w.alice.record, dave.record};
    for (size_t floats : {0ul, 3ul, 40ul, 1000ul, 20000ul}) {
        INFO(floats);
        Bytes payload = update_payload(floats, 1);
        auto from = [&](const MemberKey& k) {
            return seal_record(k, std::span(&w.bob.record, 1), RecordType::update, payload).size();
        };
        size_t size_a = from(a);
        CHECK(from(longer) == size_a);
        CHECK(from(longest) == size_a);
        CHECK(from(w.alice) == size_a);
        SealOptions pad;
        pad.stanzas = 4;
        Bytes one_padded =
            seal_record(a, std::span(&w.bob.record, 1), RecordType::update, payload, pad);
        Bytes four_real = seal_record(longer, four, RecordType::update, payload);
        CHECK(one_padded.size() == four_real.size());
        CHECK(open_record(w.bob, w.fed.pub(), one_padded).info.recipients == 1);
        auto o = open_record(dave, w.fed.pub(), four_real);
        CHECK(o.info.recipients == 4);
        CHECK(o.info.sender.id == std::string(60, 'l'));
    }
    auto o = open_record(w.bob, w.fed.pub(),
                         seal_record(longest, std::span(&w.bob.record, 1), RecordType::update,
                                     update_payload(5, 1)));
    CHECK(o.info.sender.id == std::string(128, 'm'));
}

TEST_CASE("the fixed-size header is canonical: its padding and dummy slots are signed zeros",
          "[envelope]") {
    World w;
    PublicRecord to[] = {w.bob.record};
    SealOptions so;
    so.stanzas = 3;
    Bytes sealed = seal_record(w.alice, to, RecordType::update, update_payload(10, 1), so);
    auto env = detail::raw_decrypt(w.bob, w.fed.pub(), sealed);
    size_t reclen = env.stream[1] | (env.stream[2] << 8);
    size_t count_at = 3 + 256 + 91;
    REQUIRE((env.stream[count_at] | (env.stream[count_at + 1] << 8)) == 1);
    auto at = [&](size_t i, const char* what) {
        auto bad = env;
        bad.stream[i] ^= 1;
        CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), detail::raw_encrypt(bad)),
                          Catch::Contains(what));
    };
    at(3 + reclen, "padding is not zero");              // the sender slot's padding
    at(count_at + 2 + 32 + 5, "dummy recipient slots"); // the first dummy fingerprint slot
    auto more = env;
    more.stream[count_at] = 2; // a dummy slot passed off as a real recipient
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), detail::raw_encrypt(more)),
                      Catch::Contains("signature does not verify"));
}

TEST_CASE("a co-recipient's payload swapped in after chunk 0 is never released", "[envelope]") {
    World w;
    PublicRecord to[] = {w.bob.record, w.carol.record};
    Bytes payload = update_payload(9 << 18, 1); // 9 MiB: three batches of chunks
    Bytes sealed = seal_record(w.alice, to, RecordType::update, payload);
    // carol holds the file key: she keeps chunk 0 (and with it signature 1) and re-encrypts her
    // own bytes from chunk 1 on
    auto env = detail::raw_decrypt(w.carol, w.fed.pub(), sealed);
    const size_t header = 3 + 256 + 91 + 2 + 2 * 32 + 8 + 64;
    for (size_t i = kChunkSize; i < header + payload.size(); ++i) env.stream[i] = 0x42;
    Watched swapped{decode_record(detail::raw_encrypt(env))};
    VectorSink sink;
    swapped.sink = &sink;
    PayloadSource src = swapped.source();
    CHECK_THROWS_WITH(open(w.bob, w.fed.pub(), src, sink),
                      Catch::Contains("payload signature does not verify"));
    CHECK(sink.data.empty());
    CHECK(swapped.released_before_end == 0);

    // nor can she make the envelope look single-recipient: the real count is signed
    auto one = detail::raw_decrypt(w.carol, w.fed.pub(), sealed);
    size_t count_at = 3 + 256 + 91;
    REQUIRE(one.stream[count_at] == 2);
    one.stream[count_at] = 1;
    std::fill_n(one.stream.begin() + static_cast<long>(count_at + 2 + 32), 32, 0);
    Watched relabelled{decode_record(detail::raw_encrypt(one))};
    VectorSink sink1;
    relabelled.sink = &sink1;
    PayloadSource src1 = relabelled.source();
    CHECK_THROWS_WITH(open(w.bob, w.fed.pub(), src1, sink1),
                      Catch::Contains("signature does not verify"));
    CHECK(sink1.data.empty());

    // the genuine envelope opens whole, once everything verified
    Watched genuine{decode_record(sealed)};
    VectorSink ok;
    genuine.sink = &ok;
    PayloadSource src2 = genuine.source();
    Opened info = open(w.bob, w.fed.pub(), src2, ok);
    CHECK(info.recipients == 2);
    CHECK(genuine.released_before_end == 0);
    CHECK(decode_record(ok.data).payload().size() == payload.size());
}

TEST_CASE("a held-back record larger than the memory allowance spills and comes out whole",
          "[envelope]") {
    World w;
    PublicRecord to[] = {w.bob.record, w.carol.record};
    Bytes payload = update_payload(300000, 1); // 1.2 MB
    Bytes sealed = seal_record(w.alice, to, RecordType::update, payload);
    Watched in{decode_record(sealed)};
    VectorSink sink;
    in.sink = &sink;
    PayloadSource src = in.source();
    OpenOptions oo;
    oo.hold_in_memory = 100000;
    open(w.carol, w.fed.pub(), src, sink, oo);
    CHECK(in.released_before_end == 0);
    Record r = decode_record(sink.data);
    CHECK(std::equal(r.payload().begin(), r.payload().end(), payload.begin(), payload.end()));
}

TEST_CASE("single-recipient envelopes stream, padded or not", "[envelope]") {
    World w;
    Bytes payload = update_payload(9 << 18, 1);
    for (size_t stanzas : {0ul, 4ul}) {
        INFO(stanzas);
        SealOptions so;
        so.stanzas = stanzas;
        Watched in{decode_record(
            seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update, payload, so))};
        VectorSink sink;
        in.sink = &sink;
        PayloadSource src = in.source();
        open(w.bob, w.fed.pub(), src, sink);
        CHECK(in.released_before_end > kChunkSize);
        CHECK(sink.data.size() == payload.size() + 40);
    }
}

TEST_CASE("one record per sender: a second record from the same member is refused", "[envelope]") {
    World w;
    Bytes first = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update,
                              update_payload(10, 1, 1));
    Bytes second = seal_record(w.alice, std::span(&w.bob.record, 1), RecordType::update,
                               update_payload(10, 1, 2));
    Bytes other = seal_record(w.carol, std::span(&w.bob.record, 1), RecordType::update,
                              update_payload(10, 1, 3));
    std::set<Fingerprint> seen;
    OpenOptions oo;
    oo.senders_seen = &seen;
    CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), first, oo));
    CHECK_THROWS_WITH(open_record(w.bob, w.fed.pub(), second, oo),
                      Catch::Contains("a second record from sender 'alice'"));
    CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), other, oo));
    CHECK(seen.size() == 2);
    oo.senders_seen = nullptr;
    CHECK_NOTHROW(open_record(w.bob, w.fed.pub(), second, oo));
}
