#include "codec/packed.hpp"
#include "helpers.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

using namespace n3;
using namespace n3::codec;

namespace {

Bytes unpack_to_record(ByteView packed) {
    VectorSink out;
    unpack(packed, out, "test");
    return out.data;
}

TensorSet parse_record(const Bytes& rec, Record& keep) {
    keep = decode_record(rec);
    return TensorSet::parse(keep.payload());
}

size_t entry_offset(ByteView packed) {
    size_t clen = packed[6] | (packed[7] << 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | packed[16 + i];
    return 32 + clen + static_cast<size_t>(hlen);
}

} // namespace

TEST_CASE("lossless packing round-trips bit-exact") {
    Bytes payload = test::make_update(1);
    Bytes original = encode_record(RecordType::update, payload);
    for (bool zstd : {false, true}) {
        PackOptions o;
        o.zstd = zstd;
        Bytes packed = pack(RecordType::update, payload, o, nullptr, "test");
        REQUIRE(packed_info(packed, "test").chain == (zstd ? "shuffle,zstd=1" : "stored"));
        REQUIRE(unpack_to_record(packed) == original);
    }
}

TEST_CASE("lossless packing of a large tensor uses several threads and round-trips") {
    SafetensorsBuilder b;
    auto w = test::normal(3 * 1024 * 1024 + 3, 0.01f, 3); // > 8 MiB, not a multiple of 1 MiB
    b.add("big", DType::F32, {int64_t(w.size())}, test::bytes_of(w));
    Bytes payload = b.bytes();
    PackOptions o;
    o.zstd = true;
    o.threads = 2;
    Bytes packed = pack(RecordType::model, payload, o, nullptr, "test");
    REQUIRE(packed.size() < payload.size());
    REQUIRE(unpack_to_record(packed) == encode_record(RecordType::model, payload));
}

TEST_CASE("lossy packing keeps type, dtypes, shapes and metadata, and names the codec") {
    Bytes payload = test::make_update(2);
    TensorSet in = TensorSet::parse(payload);
    for (auto q : {Encoding::f16, Encoding::bf16, Encoding::int8, Encoding::int4}) {
        PackOptions o;
        o.quantize = q;
        o.zstd = true;
        Bytes packed = pack(RecordType::update, payload, o, nullptr, "test");
        Record keep;
        TensorSet out = parse_record(unpack_to_record(packed), keep);
        REQUIRE(keep.type() == RecordType::update);
        REQUIRE(out.meta(meta::round) == "7");
        REQUIRE(out.meta(meta::samples) == "1000");
        REQUIRE(out.meta(meta::codec) ==
                chain_text(o, false).substr(0, chain_text(o, false).find(",shuffle")));
        REQUIRE(out.tensors().size() == in.tensors().size());
        for (size_t i = 0; i < in.tensors().size(); ++i) {
            REQUIRE(out.tensors()[i].name == in.tensors()[i].name);
            REQUIRE(out.tensors()[i].dtype == in.tensors()[i].dtype);
            REQUIRE(out.tensors()[i].shape == in.tensors()[i].shape);
        }
        auto steps_in = in.data(*in.find("steps")), steps_out = out.data(*out.find("steps"));
        REQUIRE(Bytes(steps_in.begin(), steps_in.end()) ==
                Bytes(steps_out.begin(), steps_out.end()));
        auto x = test::floats(in, "layer.weight"), y = test::floats(out, "layer.weight");
        float amax = 0;
        for (float v : x) amax = std::max(amax, std::fabs(v));
        float qmax = q == Encoding::int8 ? 127.0f : q == Encoding::int4 ? 7.0f : 0.0f;
        for (size_t i = 0; i < x.size(); ++i) {
            if (qmax > 0)
                REQUIRE(std::fabs(x[i] - y[i]) <= 0.5f * amax / qmax * 1.0001f);
            else // relative precision, plus fp16's subnormal step near zero
                REQUIRE(std::fabs(x[i] - y[i]) <= std::fabs(x[i]) * 8e-3f + 6e-8f);
        }
    }
}

TEST_CASE("int8 packing respects each block's own scale") {
    SafetensorsBuilder b;
    auto w = test::normal(1000, 0.01f, 4);
    w[5] = 1.0f; // a large value in block 0 only
    b.add("w", DType::F32, {1000}, test::bytes_of(w));
    PackOptions o;
    o.quantize = Encoding::int8;
    o.block = 100;
    Record keep;
    TensorSet out =
        parse_record(unpack_to_record(pack(RecordType::update, b.bytes(), o, nullptr, "t")), keep);
    auto y = test::floats(out, "w");
    for (size_t blk = 0; blk < 10; ++blk) {
        float amax = 0;
        for (size_t i = blk * 100; i < blk * 100 + 100; ++i) amax = std::max(amax, std::fabs(w[i]));
        for (size_t i = blk * 100; i < blk * 100 + 100; ++i)
            REQUIRE(std::fabs(w[i] - y[i]) <= amax / 127.0f / 2.0f * 1.0001f);
    }
}

TEST_CASE("top-k sends the largest fraction of each float tensor") {
    Bytes payload = test::make_update(5);
    PackOptions o;
    o.topk = 0.05;
    Record keep;
    TensorSet out =
        parse_record(unpack_to_record(pack(RecordType::update, payload, o, nullptr, "t")), keep);
    TensorSet in = TensorSet::parse(payload);
    auto x = test::floats(in, "layer.weight"), y = test::floats(out, "layer.weight");
    size_t k = static_cast<size_t>(std::ceil(0.05 * double(x.size())));
    size_t nonzero = 0;
    float smallest_kept = 1e9f, largest_dropped = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        if (y[i] != 0.0f) {
            ++nonzero;
            REQUIRE(y[i] == x[i]); // topk alone keeps values exactly
            smallest_kept = std::min(smallest_kept, std::fabs(x[i]));
        } else {
            largest_dropped = std::max(largest_dropped, std::fabs(x[i]));
        }
    }
    REQUIRE(nonzero == k);
    REQUIRE(smallest_kept >= largest_dropped);
}

TEST_CASE("error feedback conserves the sum over rounds") {
    for (auto q : {Encoding::raw, Encoding::int8, Encoding::int4}) {
        PackOptions o;
        o.topk = 0.02;
        o.quantize = q;
        o.zstd = true;
        Residual r;
        std::vector<double> sum_in, sum_sent;
        for (uint32_t round = 0; round < 6; ++round) {
            Bytes payload = test::make_update(100 + round);
            TensorSet in = TensorSet::parse(payload);
            auto x = test::floats(in, "layer.weight");
            Record keep;
            TensorSet out =
                parse_record(unpack_to_record(pack(RecordType::update, payload, o, &r, "t")), keep);
            auto y = test::floats(out, "layer.weight");
            sum_in.resize(x.size());
            sum_sent.resize(x.size());
            for (size_t i = 0; i < x.size(); ++i) {
                sum_in[i] += x[i];
                sum_sent[i] += y[i];
            }
        }
        const auto res = r.values("layer.weight");
        REQUIRE(res.size() == sum_in.size());
        double worst = 0, scale = 0;
        for (size_t i = 0; i < sum_in.size(); ++i) {
            worst = std::max(worst, std::fabs(sum_sent[i] + res[i] - sum_in[i]));
            scale = std::max(scale, std::fabs(sum_in[i]));
        }
        INFO("encoding " << int(q));
        REQUIRE(worst <= scale * 1e-5);
        // ...and the residual is not trivially zero: top-k 2% left most of it behind.
        double rnorm = 0;
        for (float v : res) rnorm += std::fabs(v);
        REQUIRE(rnorm > 0);
    }
}

TEST_CASE("a residual that belongs to another model is refused") {
    Residual r;
    r.start();
    r.begin("other", {3});
    r.append(std::vector<float>(3, 0.0f));
    r.done();
    PackOptions o;
    o.topk = 0.1;
    REQUIRE_THROWS_AS(pack(RecordType::update, test::make_update(1), o, &r, "t"), DataError);
}

TEST_CASE("lossy packing refuses NaN and Inf, lossless packing keeps them") {
    SafetensorsBuilder b;
    std::vector<float> w = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
    b.add("w", DType::F32, {3}, test::bytes_of(w));
    PackOptions o;
    o.quantize = Encoding::int8;
    REQUIRE_THROWS_WITH(pack(RecordType::update, b.bytes(), o, nullptr, "u.n3"),
                        Catch::Contains("'w' has NaN at element 1"));
    PackOptions lossless;
    lossless.zstd = true;
    Bytes packed = pack(RecordType::update, b.bytes(), lossless, nullptr, "u.n3");
    REQUIRE(unpack_to_record(packed) == encode_record(RecordType::update, b.bytes()));
}

TEST_CASE("records that cannot be packed are refused") {
    PackOptions o;
    o.zstd = true;
    REQUIRE_THROWS_AS(pack(RecordType::sealed, Bytes(10), o, nullptr, "t"), DataError);
    o.quantize = Encoding::int8;
    REQUIRE_THROWS_WITH(pack(RecordType::masked, test::make_update(1), o, nullptr, "t"),
                        Catch::Contains("masked record must stay exact"));
}

TEST_CASE("damaged packed data is refused, never crashes") {
    PackOptions o;
    o.quantize = Encoding::int8;
    o.topk = 0.1;
    o.zstd = true;
    Bytes packed = pack(RecordType::update, test::make_update(6, 8, 8), o, nullptr, "t");

    SECTION("every truncation") {
        for (size_t n = 0; n < packed.size(); ++n)
            REQUIRE_THROWS_AS(unpack_to_record(ByteView(packed).first(n)), DataError);
    }
    SECTION("every single-byte change either fails cleanly or decodes") {
        for (size_t i = 0; i < packed.size(); ++i) {
            Bytes bad = packed;
            bad[i] ^= 0x5a;
            try {
                unpack_to_record(bad);
            } catch (const DataError&) {
            }
        }
    }
    SECTION("wrong version, unknown encoding, unknown lossless method, trailing bytes") {
        Bytes bad = packed;
        bad[4] = 2;
        REQUIRE_THROWS_WITH(unpack_to_record(bad), Catch::Contains("version 2"));
        bad = packed;
        bad[entry_offset(packed)] = 9;
        REQUIRE_THROWS_WITH(unpack_to_record(bad), Catch::Contains("unknown codec stage"));
        bad = packed;
        bad[entry_offset(packed) + 16] = 7; // first segment's method
        REQUIRE_THROWS_WITH(unpack_to_record(bad), Catch::Contains("unknown codec stage"));
        bad = packed;
        bad.push_back(0);
        REQUIRE_THROWS_WITH(unpack_to_record(bad), Catch::Contains("after the last tensor"));
        bad = packed;
        bad[5] = 5; // original type "sealed"
        REQUIRE_THROWS_AS(unpack_to_record(bad), DataError);
    }
}
