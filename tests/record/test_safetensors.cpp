// Tensor payloads: build/parse round trips, alignment, validation of hostile headers.
#include "record/error.hpp"
#include "record/format.hpp"
#include "record/safetensors.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>

using namespace n3;

namespace {

Bytes floats(std::initializer_list<float> v) {
    Bytes b(v.size() * 4);
    std::memcpy(b.data(), v.begin(), b.size());
    return b;
}

// Builds raw safetensors bytes from a JSON header text and a data section.
Bytes raw(const std::string& header, size_t data_len) {
    Bytes b(8);
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
    b.insert(b.end(), header.begin(), header.end());
    b.resize(b.size() + data_len, 0);
    return b;
}

} // namespace

TEST_CASE("tensors round-trip with metadata", "[safetensors]") {
    SafetensorsBuilder b;
    b.set_meta("samples", "600");
    b.set_meta("round", "3");
    Bytes w = floats({1, 2, 3, 4, 5, 6});
    b.add("layer.0.weight", DType::F32, {2, 3}, w);
    b.add_owned("layer.0.bias", DType::F32, {2}, floats({-1, 0.5f}));
    b.add_owned("empty", DType::F32, {0, 4}, {});
    b.add_owned("scalar", DType::I64, {}, Bytes(8, 0));
    Bytes bytes = b.bytes();
    REQUIRE(bytes.size() == b.size());

    TensorSet s = TensorSet::parse(bytes);
    REQUIRE(s.meta("samples") == "600");
    REQUIRE(s.meta("round") == "3");
    REQUIRE_FALSE(s.meta("nothing"));
    REQUIRE(s.tensors().size() == 4);
    // Data order is the order added.
    REQUIRE(s.tensors()[0].name == "layer.0.weight");
    REQUIRE(s.tensors()[1].name == "layer.0.bias");
    const TensorInfo* t = s.find("layer.0.weight");
    REQUIRE(t);
    REQUIRE(t->shape == std::vector<int64_t>{2, 3});
    REQUIRE(Bytes(s.data(*t).begin(), s.data(*t).end()) == w);
    REQUIRE(s.find("empty")->numel() == 0);
    REQUIRE(s.find("scalar")->numel() == 1);
    REQUIRE(s.total_elements() == 6 + 2 + 0 + 1);
    REQUIRE(tensor_l2(DType::F32, s.data(*t)) == Approx(std::sqrt(91.0)));
}

TEST_CASE("tensor data starts 64-byte aligned within a record", "[safetensors]") {
    for (int extra = 0; extra < 70; ++extra) {
        SafetensorsBuilder b;
        b.set_meta("k", std::string(static_cast<size_t>(extra), 'x'));
        b.add_owned("t", DType::F32, {3}, floats({1, 2, 3}));
        Bytes p = b.bytes();
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | p[static_cast<size_t>(i)];
        REQUIRE((kPreambleSize + 8 + n) % kTensorAlign == 0);
        REQUIRE(TensorSet::parse(p).tensors().size() == 1);
    }
}

TEST_CASE("equal inputs give equal bytes", "[safetensors]") {
    auto make = [] {
        SafetensorsBuilder b;
        b.set_meta("z", "1");
        b.set_meta("a", "2");
        b.add_owned("w", DType::F32, {2}, floats({1, 2}));
        return b.bytes();
    };
    REQUIRE(make() == make());
}

TEST_CASE("many tensors", "[safetensors]") {
    SafetensorsBuilder b;
    for (int i = 0; i < 20000; ++i)
        b.add_owned("t" + std::to_string(i), DType::U8, {1}, Bytes{static_cast<uint8_t>(i)});
    Bytes bytes = b.bytes(); // the set views these bytes: keep them alive
    TensorSet s = TensorSet::parse(bytes);
    REQUIRE(s.tensors().size() == 20000);
    REQUIRE(s.data(*s.find("t19999"))[0] == static_cast<uint8_t>(19999));
}

TEST_CASE("hostile tensor headers are refused", "[safetensors]") {
    auto refuses = [](const Bytes& b, const std::string& what) {
        INFO(what);
        REQUIRE_THROWS_AS(TensorSet::parse(b), DataError);
    };
    refuses(Bytes{1, 2, 3}, "shorter than the length field");
    refuses(raw("{", 0), "bad JSON");
    refuses(raw("[]", 0), "not an object");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4), "past the end");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "size/shape");
    refuses(raw(R"({"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,8]}})", 8), "dtype");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), "negative");
    refuses(
        raw(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", 8),
        "overflow");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8), "reversed");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                8),
            "overlap");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "gap");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8), "trailing bytes");
    refuses(raw(R"({"__metadata__":{"a":1}})", 0), "non-string metadata");
    refuses(raw(R"({"a":{"dtype":"F32","shape":[1]}})", 4), "missing offsets");
    Bytes huge = raw("{}", 0);
    huge[7] = 0x7f;
    refuses(huge, "header length");
    REQUIRE(TensorSet::parse(raw("{}", 0)).tensors().empty());
    REQUIRE(TensorSet::parse(raw("{}   ", 0)).tensors().empty()); // space padding is allowed
}

TEST_CASE("builder refuses inconsistent tensors", "[safetensors]") {
    SafetensorsBuilder b;
    REQUIRE_THROWS_AS(b.add_owned("w", DType::F32, {3}, floats({1, 2})), DataError);
    b.add_owned("w", DType::F32, {2}, floats({1, 2}));
    REQUIRE_THROWS_AS(b.add_owned("w", DType::F32, {2}, floats({1, 2})), DataError);
    REQUIRE_THROWS_AS(b.add_owned("__metadata__", DType::F32, {1}, floats({1})), DataError);
}

TEST_CASE("half-precision conversions", "[safetensors]") {
    REQUIRE(f16_to_f32(0x3c00) == 1.0f);
    REQUIRE(f16_to_f32(0xc000) == -2.0f);
    REQUIRE(f16_to_f32(0x7bff) == 65504.0f);
    REQUIRE(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));
    REQUIRE(std::isinf(f16_to_f32(0x7c00)));
    REQUIRE(std::isnan(f16_to_f32(0x7e00)));
    // Every finite f16 survives f16 -> f32 -> f16.
    for (uint32_t h = 0; h < 0x10000; ++h) {
        if ((h & 0x7c00) == 0x7c00) continue;
        REQUIRE(f32_to_f16(f16_to_f32(static_cast<uint16_t>(h))) == h);
    }
    REQUIRE(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00); // tie to even
    REQUIRE(f32_to_f16(1e6f) == 0x7c00);                         // overflow to inf
    REQUIRE(bf16_to_f32(f32_to_bf16(3.0f)) == 3.0f);
    REQUIRE(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80); // tie to even
    REQUIRE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("model hash is BLAKE2b-256 of the payload", "[safetensors]") {
    // b2sum -l 256 of the empty input.
    REQUIRE(model_hash({}) == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8");
}
