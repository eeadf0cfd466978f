#include "codec/buffer.hpp"
#include "codec/shard.hpp"
#include "codec/stream.hpp"
#include "helpers.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <unistd.h>

using namespace n3;
using namespace n3::codec;

namespace {

struct Shard {
    Bytes record; // the whole shard record
    Record rec;   // decoded
    ShardHeader h;
};

std::vector<Shard> make_shards(RecordType type, const Bytes& payload, unsigned k, unsigned m) {
    test::CollectShards sink;
    write_shards(type, payload, {k, m}, sink);
    std::vector<Shard> out;
    for (auto& s : sink.records) {
        Shard sh;
        sh.record = s.data;
        sh.rec = decode_record(sh.record);
        REQUIRE(sh.rec.type() == RecordType::shard);
        sh.h = parse_shard(sh.rec.payload(), "test");
        out.push_back(std::move(sh));
    }
    return out;
}

Bytes record_bytes(const Record& r) {
    return encode_record(r.type(), r.payload());
}

// Runs every subset of size `pick` of n shards through f.
template <class F> void each_subset(unsigned n, unsigned pick, F&& f) {
    for (uint32_t mask = 0; mask < (1u << n); ++mask)
        if (static_cast<unsigned>(__builtin_popcount(mask)) == pick) f(mask);
}

} // namespace

TEST_CASE("shard specs are parsed and checked") {
    auto s = parse_shard_spec("10+4");
    REQUIRE(s.k == 10);
    REQUIRE(s.m == 4);
    REQUIRE(parse_shard_spec("3+0").m == 0);
    for (const char* bad : {"", "4", "4+", "+2", "0+2", "4+x", "200+100", "4+2+1", "-1+2"})
        REQUIRE_THROWS_AS(parse_shard_spec(bad), UsageError);
}

TEST_CASE("every subset of K shards rebuilds the record bit-exact") {
    Bytes payload = test::make_update(11, 37, 29); // not a multiple of K
    Bytes original = encode_record(RecordType::update, payload);
    for (auto [k, m] : {std::pair{4u, 2u}, std::pair{10u, 4u}}) {
        auto shards = make_shards(RecordType::update, payload, k, m);
        REQUIRE(shards.size() == k + m);
        size_t subsets = 0;
        each_subset(k + m, k, [&](uint32_t mask) {
            ShardAssembler a;
            std::optional<Record> out;
            unsigned fed = 0;
            // Feed in reverse index order so parity often arrives first.
            for (int i = static_cast<int>(k + m) - 1; i >= 0; --i) {
                if (!(mask & (1u << i))) continue;
                auto r = a.add(shards[i].h, shards[i].rec.payload(), "test");
                ++fed;
                REQUIRE(r.has_value() == (fed == k));
                if (r) out = r;
            }
            REQUIRE(out);
            REQUIRE(record_bytes(*out) == original);
            REQUIRE(a.incomplete().empty());
            ++subsets;
        });
        REQUIRE(subsets == (k == 4 ? 15u : 1001u));
    }
}

TEST_CASE("K-1 shards fail with a message naming the group and the count") {
    auto shards = make_shards(RecordType::update, test::make_update(12), 4, 2);
    ShardAssembler a;
    for (unsigned i : {5u, 0u, 3u}) REQUIRE_FALSE(a.add(shards[i].h, shards[i].rec.payload(), "t"));
    // Duplicates do not count twice.
    REQUIRE_FALSE(a.add(shards[0].h, shards[0].rec.payload(), "t"));
    auto msgs = a.incomplete();
    REQUIRE(msgs.size() == 1);
    REQUIRE_THAT(msgs[0], Catch::Contains("group " + group_hex(shards[0].h.group)) &&
                              Catch::Contains("only 3 of the 4 shards"));
}

TEST_CASE("a shard's fields are all checked") {
    auto shards = make_shards(RecordType::update, test::make_update(13), 4, 2);
    Bytes good(shards[1].rec.payload().begin(), shards[1].rec.payload().end());
    auto fails = [&](size_t at, uint8_t value, const char* what) {
        Bytes bad = good;
        bad[at] = value;
        INFO(what);
        REQUIRE_THROWS_AS(parse_shard(bad, "t"), DataError);
    };
    fails(0, 'X', "magic");
    fails(4, 2, "version");
    fails(5, 1, "reserved");
    fails(24, 6, "index beyond K+M");
    fails(26, 0, "K = 0");
    fails(28, 255, "K+M > 255");
    fails(32, 1, "record length");
    fails(40, 1, "shard length");
    fails(48, static_cast<uint8_t>(good[48] ^ 1), "data crc");
    fails(good.size() - 1, static_cast<uint8_t>(good.back() ^ 0x80), "data byte");
    REQUIRE_THROWS_AS(parse_shard(ByteView(good).first(good.size() - 1), "t"), DataError);
    REQUIRE_THROWS_AS(parse_shard(ByteView(good).first(20), "t"), DataError);
    REQUIRE_NOTHROW(parse_shard(good, "t"));
}

TEST_CASE("groups are independent and shards of one id that disagree are reported") {
    Bytes p1 = test::make_update(14), p2 = test::make_update(15, 10, 10);
    auto g1 = make_shards(RecordType::update, p1, 4, 2);
    auto g2 = make_shards(RecordType::model, p2, 3, 3);
    ShardAssembler a;
    // Interleaved, with a foreign shard that reuses g1's id under other parameters.
    ShardHeader forged = g2[0].h;
    forged.group = g1[0].h.group;
    Bytes fp(g2[0].rec.payload().begin(), g2[0].rec.payload().end());
    std::copy(forged.group.begin(), forged.group.end(), fp.begin() + 8);
    REQUIRE_FALSE(a.add(forged, fp, "t"));
    std::vector<Record> got;
    for (unsigned i = 0; i < 6; ++i) {
        if (auto r = a.add(g1[5 - i].h, g1[5 - i].rec.payload(), "t")) got.push_back(*r);
        if (auto r = a.add(g2[i].h, g2[i].rec.payload(), "t")) got.push_back(*r);
    }
    REQUIRE(got.size() == 2);
    auto msgs = a.incomplete();
    REQUIRE(msgs.size() == 1);
    REQUIRE_THAT(msgs[0], Catch::Contains("disagree"));
}

TEST_CASE("shards of different records under one id fail the checksum, not silently") {
    auto g1 = make_shards(RecordType::update, test::make_update(16), 2, 1);
    auto g2 = make_shards(RecordType::update, test::make_update(17), 2, 1);
    ShardAssembler a;
    ShardHeader h = g2[1].h;
    h.group = g1[0].h.group;
    REQUIRE_FALSE(a.add(g1[0].h, g1[0].rec.payload(), "t"));
    REQUIRE_THROWS_WITH(a.add(h, g2[1].rec.payload(), "t"), Catch::Contains("fails its checksum"));
}

TEST_CASE("the stream decoder rebuilds groups, unpacks, passes plain records, counts bad shards") {
    Bytes u = test::make_update(20);
    Bytes plain = encode_record(RecordType::update, u);
    EncodeOptions o;
    o.pack = true;
    o.packing.zstd = true;
    o.shards = ShardSpec{3, 2};
    VectorSink encoded;
    {
        char path[] = "/tmp/n3-codec-test.XXXXXX";
        int fd = mkstemp(path);
        REQUIRE(fd >= 0);
        REQUIRE(write(fd, plain.data(), plain.size()) == static_cast<ssize_t>(plain.size()));
        close(fd);
        Input in(path);
        StreamEncoder enc(o, encoded);
        enc.read(in);
        unlink(path);
    }
    // Corrupt the first shard's data (the record CRC catches it), then add a plain record.
    Bytes stream = encoded.data;
    stream[32 + kShardHeaderSize + 5] ^= 1;
    stream.insert(stream.end(), plain.begin(), plain.end());
    char path[] = "/tmp/n3-codec-test.XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(write(fd, stream.data(), stream.size()) == static_cast<ssize_t>(stream.size()));
    close(fd);
    VectorSink out;
    StreamDecoder dec(out);
    {
        Input in(path);
        dec.read(in);
    }
    unlink(path);
    dec.finish();
    REQUIRE(dec.errors().empty());
    REQUIRE(dec.warnings().size() == 1);
    REQUIRE(dec.stats().groups == 1);
    Bytes twice = plain;
    twice.insert(twice.end(), plain.begin(), plain.end());
    REQUIRE(out.data == twice);
}

TEST_CASE("CRC-64 values of adjacent pieces combine to the CRC of the whole") {
    Bytes b(100000);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 131 + (i >> 7));
    uint64_t whole = crc64(0, b);
    for (size_t cut : {size_t(0), size_t(1), size_t(7), size_t(4096), size_t(99999), b.size()}) {
        ByteView a = ByteView(b).first(cut), c = ByteView(b).subspan(cut);
        REQUIRE(crc64_combine(crc64(0, a), crc64(0, c), c.size()) == whole);
    }
}

TEST_CASE("sharding a record with a wrong stored checksum fails before writing") {
    Bytes payload = test::make_update(30);
    Bytes rec = encode_record(RecordType::update, payload);
    uint64_t stored = 0;
    for (int i = 7; i >= 0; --i) stored = (stored << 8) | rec[rec.size() - 8 + i];
    test::CollectShards ok;
    REQUIRE_NOTHROW(write_shards(RecordType::update, payload, {4, 2}, ok, stored));
    test::CollectShards bad;
    REQUIRE_THROWS_WITH(write_shards(RecordType::update, payload, {4, 2}, bad, stored ^ 1),
                        Catch::Contains("checksum mismatch"));
    REQUIRE(bad.records.empty());
    // The shards made with the verified stored checksum rebuild the record.
    ShardAssembler a;
    std::optional<Record> out;
    for (auto& s : ok.records) {
        Record r = decode_record(s.data);
        if (auto got = a.add(parse_shard(r.payload(), "t"), r.payload(), "t")) out = got;
    }
    REQUIRE(out);
    REQUIRE(encode_record(out->type(), out->payload()) == rec);
}

TEST_CASE("a large record coded on two threads gives the same shards as on one") {
    Bytes payload((size_t(17) << 20) + 12345);
    uint32_t x = 1;
    for (auto& b : payload) b = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
    Bytes rec = encode_record(RecordType::sealed, payload);
    uint64_t stored = 0;
    for (int i = 7; i >= 0; --i) stored = (stored << 8) | rec[rec.size() - 8 + i];
    test::CollectShards one, two;
    write_shards(RecordType::sealed, payload, {5, 3}, one, std::nullopt, 1);
    write_shards(RecordType::sealed, payload, {5, 3}, two, stored, 2);
    REQUIRE(one.records.size() == 8);
    ShardAssembler a;
    std::optional<Record> out;
    for (size_t i = 0; i < 8; ++i) {
        Record r1 = decode_record(one.records[i].data), r2 = decode_record(two.records[i].data);
        // Same data and CRC; only the random group id differs.
        REQUIRE(
            std::equal(r1.payload().begin() + 24, r1.payload().end(), r2.payload().begin() + 24));
        if (i >= 3)
            if (auto got = a.add(parse_shard(r2.payload(), "t"), r2.payload(), "t")) out = got;
    }
    REQUIRE(out);
    REQUIRE(encode_record(out->type(), out->payload()) == rec);
}

TEST_CASE("shards written from a file and rebuilt through temporary files match the in-memory "
          "ones") {
    Bytes payload = test::make_update(13, 61, 17);
    Bytes original = encode_record(RecordType::update, payload);
    TempFile file("test");
    file.write(Bytes(100, 0x55)); // the record need not start the file
    file.write(original);
    Preamble pre{kFormatVersion, RecordType::update, payload.size()};
    for (auto [k, m] : {std::pair{4u, 2u}, {1u, 1u}, {7u, 0u}, {3u, 5u}}) {
        test::CollectShards from_file, in_memory;
        write_shards_file(file.fd(), 100, pre, {k, m}, from_file, true, "test");
        write_shards(RecordType::update, payload, {k, m}, in_memory);
        REQUIRE(from_file.records.size() == k + m);
        for (unsigned i = 0; i < k + m; ++i) {
            // Equal but for the random group id (bytes 8..24 of the shard payload).
            Bytes a = from_file.records[i].data, b = in_memory.records[i].data;
            Record ra = decode_record(a), rb = decode_record(b);
            REQUIRE(ra.payload().size() == rb.payload().size());
            REQUIRE(std::equal(ra.payload().begin() + 24, ra.payload().end(),
                               rb.payload().begin() + 24));
        }
        // The last K of them (the parity first, so the first data shards are rebuilt).
        ShardAssembler a;
        std::optional<ShardAssembler::Rebuilt> got;
        for (unsigned i = k + m; i-- > 0 && !got;) {
            Record r = decode_record(from_file.records[i].data);
            ShardHeader h = parse_shard(ViewSource(r.payload()), "test");
            got = a.add_spilled(h, ViewSource(r.payload()), "test");
        }
        REQUIRE(got);
        REQUIRE(got->type == RecordType::update);
        Bytes back(original.size());
        got->file->read_at(0, back);
        REQUIRE(back == original);
    }
}

TEST_CASE("a corrupted record in a file writes no shard") {
    Bytes payload = test::make_update(2, 40, 10);
    Bytes original = encode_record(RecordType::update, payload);
    original[kPreambleSize + 300] ^= 1;
    TempFile file("test");
    file.write(original);
    test::CollectShards sink;
    REQUIRE_THROWS_WITH(
        write_shards_file(file.fd(), 0,
                          Preamble{kFormatVersion, RecordType::update, payload.size()}, {4, 2},
                          sink, true, "test"),
        Catch::Contains("checksum mismatch"));
    REQUIRE(sink.records.empty());
}
