// Test helpers: small updates with random tensors, and shard records collected in memory.
#pragma once

#include "codec/shard.hpp"
#include "record/format.hpp"
#include "record/safetensors.hpp"

#include <cstring>
#include <deque>
#include <random>

namespace n3::test {

inline std::vector<float> normal(size_t n, float sd, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

inline ByteView bytes_of(const std::vector<float>& v) {
    return {reinterpret_cast<const uint8_t*>(v.data()), v.size() * 4};
}

// An update with F32, F16 and I64 tensors and some metadata.
inline Bytes make_update(uint32_t seed, size_t rows = 64, size_t cols = 33) {
    SafetensorsBuilder b;
    b.set_meta(meta::round, "7");
    b.set_meta(meta::samples, "1000");
    auto w = normal(rows * cols, 0.02f, seed);
    auto bias = normal(cols, 0.01f, seed + 1);
    std::vector<uint16_t> h(17);
    for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_f16(static_cast<float>(i) * 0.25f - 2.0f);
    std::vector<int64_t> steps = {1, 2, 3};
    b.add_owned("layer.weight", DType::F32, {int64_t(rows), int64_t(cols)},
                Bytes(bytes_of(w).begin(), bytes_of(w).end()));
    b.add_owned("layer.bias", DType::F32, {int64_t(cols)},
                Bytes(bytes_of(bias).begin(), bytes_of(bias).end()));
    b.add_owned(
        "half", DType::F16, {17},
        Bytes(reinterpret_cast<uint8_t*>(h.data()), reinterpret_cast<uint8_t*>(h.data()) + 34));
    b.add_owned("steps", DType::I64, {3},
                Bytes(reinterpret_cast<uint8_t*>(steps.data()),
                      reinterpret_cast<uint8_t*>(steps.data()) + 24));
    return b.bytes();
}

inline std::vector<float> floats(const TensorSet& s, const std::string& name) {
    const TensorInfo* t = s.find(name);
    std::vector<float> v(t->numel());
    for (size_t i = 0; i < v.size(); ++i)
        v[i] = static_cast<float>(element_as_double(t->dtype, s.data(*t).data(), i));
    return v;
}

// Collects each shard record as its own byte string.
class CollectShards final : public codec::ShardSink {
public:
    Sink& open(const codec::ShardHeader&) override {
        records.emplace_back();
        return records.back();
    }
    void close(const codec::ShardHeader&) override {}
    std::deque<VectorSink> records;
};

} // namespace n3::test
