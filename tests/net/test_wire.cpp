#include "net/wire.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <random>

using namespace n3;
using namespace n3::net;

namespace {

Bytes sample_record(size_t payload, uint32_t seed = 1) {
    Bytes p(payload);
    std::mt19937 rng(seed);
    for (auto& b : p) b = static_cast<uint8_t>(rng());
    return encode_record(RecordType::shard, p);
}

// Feeds `rec` split at the given frame size; returns the preamble or throws.
Preamble check_split(const Bytes& rec, size_t frame, uint64_t max = kDefaultMaxPayload) {
    RecordAssembler a(max, "test");
    for (size_t off = 0; off < rec.size(); off += frame)
        a.add(ByteView(rec).subspan(off, std::min(frame, rec.size() - off)));
    return a.finish();
}

} // namespace

TEST_CASE("a record passes in any split into frames") {
    Bytes rec = sample_record(100000);
    for (size_t frame : {size_t(1), size_t(7), size_t(31), size_t(32), size_t(33), size_t(4096),
                         rec.size() - 8, rec.size() - 1, rec.size(), kFrameSize}) {
        INFO("frame size " << frame);
        Preamble p = check_split(rec, frame);
        CHECK(p.payload_len == 100000);
        CHECK(p.type == RecordType::shard);
    }
}

TEST_CASE("an empty payload passes") {
    Bytes rec = sample_record(0);
    CHECK(check_split(rec, 5).payload_len == 0);
}

TEST_CASE("truncated, long, corrupt and foreign messages are refused") {
    Bytes rec = sample_record(5000);
    SECTION("truncated header") {
        Bytes cut(rec.begin(), rec.begin() + 20);
        CHECK_THROWS_WITH(check_split(cut, 7), Catch::Contains("truncated record header"));
    }
    SECTION("truncated payload") {
        Bytes cut(rec.begin(), rec.end() - 9);
        CHECK_THROWS_WITH(check_split(cut, 1000), Catch::Contains("truncated record"));
    }
    SECTION("one byte missing from the trailer") {
        Bytes cut(rec.begin(), rec.end() - 1);
        CHECK_THROWS_AS(check_split(cut, 1000), DataError);
    }
    SECTION("two records in one message") {
        Bytes two = rec;
        two.insert(two.end(), rec.begin(), rec.end());
        CHECK_THROWS_WITH(check_split(two, 999),
                          Catch::Contains("more bytes than its record declares"));
    }
    SECTION("a flipped payload bit") {
        rec[100] ^= 0x10;
        CHECK_THROWS_WITH(check_split(rec, 64), Catch::Contains("checksum mismatch"));
    }
    SECTION("a flipped trailer bit") {
        rec.back() ^= 0x01;
        CHECK_THROWS_WITH(check_split(rec, 64), Catch::Contains("checksum mismatch"));
    }
    SECTION("garbage") {
        Bytes junk(4096, 0x41);
        CHECK_THROWS_WITH(check_split(junk, 100), Catch::Contains("not an n3 record"));
    }
    SECTION("larger than the receiver's limit") {
        CHECK_THROWS_WITH(check_split(rec, 64, 4999), Catch::Contains("record too large"));
        CHECK_NOTHROW(check_split(rec, 64, 5000));
    }
}

TEST_CASE("a huge declared length is refused before any payload arrives") {
    uint8_t pre[kPreambleSize];
    encode_preamble(Preamble{kFormatVersion, RecordType::update, uint64_t(1) << 39}, pre);
    RecordAssembler a(uint64_t(1) << 30, "peer");
    CHECK_THROWS_WITH(a.add(ByteView(pre, kPreambleSize)), Catch::Contains("record too large"));
}

TEST_CASE("endpoints are checked with clear messages") {
    CHECK(check_endpoint("tcp://*:7000", EndpointRole::bind).port == 7000);
    CHECK(check_endpoint("tcp://127.0.0.1:7000", EndpointRole::connect).host == "127.0.0.1");
    CHECK(check_endpoint("tcp://[::1]:7000", EndpointRole::connect).host == "::1");
    CHECK(check_endpoint("tcp://hub.example:7000", EndpointRole::connect).port == 7000);
    CHECK(check_endpoint("tcp://*:*", EndpointRole::bind).port == 0);
    CHECK(check_endpoint("ipc:///tmp/n3.sock", EndpointRole::bind).host == "/tmp/n3.sock");
    auto bad = [](const std::string& e, EndpointRole r, const std::string& what) {
        INFO(e);
        CHECK_THROWS_WITH(check_endpoint(e, r), Catch::Contains(what));
        CHECK_THROWS_AS(check_endpoint(e, r), UsageError);
    };
    bad("localhost:7000", EndpointRole::connect, "no transport");
    bad("udp://h:1", EndpointRole::connect, "unsupported transport 'udp'");
    bad("inproc://x", EndpointRole::bind, "unsupported transport");
    bad("tcp://host", EndpointRole::connect, "has no port");
    bad("tcp://:7000", EndpointRole::connect, "has no host");
    bad("tcp://h:70000", EndpointRole::connect, "bad port");
    bad("tcp://h:0", EndpointRole::connect, "bad port");
    bad("tcp://h:x1", EndpointRole::connect, "bad port");
    bad("tcp://*:7000", EndpointRole::connect, "'*' is for listening");
    bad("tcp://::1:7000", EndpointRole::connect, "IPv6 address in brackets");
    bad("tcp://a b:7000", EndpointRole::connect, "bad character");
    bad("ipc://", EndpointRole::bind, "no socket path");
    bad("ipc://" + std::string(200, 'x'), EndpointRole::bind, "longer than");
}

namespace {
// Checks `rec` with RecordAssembler::whole, cut into frames of `frame` bytes.
Preamble check_whole(const Bytes& rec, size_t frame) {
    std::vector<ByteView> frames;
    for (size_t off = 0; off < rec.size(); off += frame)
        frames.push_back(ByteView(rec).subspan(off, std::min(frame, rec.size() - off)));
    RecordAssembler a(kDefaultMaxPayload, "test");
    return a.whole(frames);
}
} // namespace

TEST_CASE("a large message is checked on two threads with the same verdicts") {
    const size_t n = (size_t(24) << 20) + 12345; // above the two-thread threshold
    Bytes rec = sample_record(n, 7);
    // Frame sizes that put the payload's end, the trailer and the split point in different
    // places: the trailer within one frame, across two, alone in the last frame.
    for (size_t frame :
         {kFrameSize, size_t(1000003), rec.size() - 4, rec.size() - 8, rec.size() / 2 + 1}) {
        INFO("frame size " << frame);
        CHECK(check_whole(rec, frame).payload_len == n);
        for (size_t at : {size_t(kPreambleSize), size_t(100), rec.size() / 2 - 1, rec.size() / 2,
                          rec.size() / 2 + 1, rec.size() - 9, rec.size() - 8, rec.size() - 1}) {
            INFO("flipped byte " << at);
            Bytes bad = rec;
            bad[at] ^= 0x20;
            CHECK_THROWS_AS(check_whole(bad, frame), DataError);
        }
    }
    Bytes cut(rec.begin(), rec.end() - 1);
    CHECK_THROWS_WITH(check_whole(cut, kFrameSize), Catch::Contains("truncated record"));
    Bytes longer = rec;
    longer.push_back(0);
    CHECK_THROWS_WITH(check_whole(longer, kFrameSize),
                      Catch::Contains("more bytes than its record declares"));
    CHECK(check_whole(sample_record(5000), 700).payload_len == 5000); // the one-thread path
}
