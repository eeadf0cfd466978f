#include "codec/transform.hpp"
#include "helpers.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

using namespace n3;
using namespace n3::codec;

TEST_CASE("int8 blockwise error is at most half a scale in every block") {
    for (uint32_t block : {1u, 7u, 64u, 128u, 1000u}) {
        auto x = test::normal(5000, 0.05f, block);
        x[17] = 3.0f; // an outlier only widens its own block
        std::vector<int8_t> q(x.size());
        std::vector<float> scales(block_count(x.size(), block)), y(x.size());
        quantize_int8(x, block, {}, q, scales);
        dequantize_int8(q, scales, block, y);
        for (size_t i = 0; i < x.size(); ++i) {
            float s = scales[i / block];
            INFO("block " << block << " element " << i);
            REQUIRE(std::fabs(x[i] - y[i]) <= 0.5f * s * (1.0f + 1e-5f) + 1e-30f);
            REQUIRE(std::abs(int(q[i])) <= 127);
        }
        // The outlier's block has a much larger scale than a typical block.
        REQUIRE(scales[17 / block] >= 3.0f / 127.0f * 0.999f);
    }
}

TEST_CASE("int4 blockwise error is at most half a scale and nibbles round-trip") {
    auto x = test::normal(1001, 1.0f, 5); // odd length: the last byte holds one value
    uint32_t block = 32;
    Bytes packed((x.size() + 1) / 2);
    std::vector<float> scales(block_count(x.size(), block)), y(x.size());
    quantize_int4(x, block, {}, packed, scales);
    dequantize_int4(packed, scales, block, y);
    for (size_t i = 0; i < x.size(); ++i) {
        float s = scales[i / block];
        REQUIRE(std::fabs(x[i] - y[i]) <= 0.5f * s * (1.0f + 1e-5f));
        float k = y[i] / s;
        REQUIRE(std::fabs(k - std::round(k)) < 1e-3f);
        REQUIRE(std::fabs(k) <= 7.0f + 1e-3f);
    }
}

TEST_CASE("a block of zeros quantizes to zero with scale zero") {
    std::vector<float> x(100, 0.0f), y(100, 1.0f), scales(1);
    std::vector<int8_t> q(100);
    quantize_int8(x, 128, {}, q, scales);
    dequantize_int8(q, scales, 128, y);
    REQUIRE(scales[0] == 0.0f);
    for (float v : y) REQUIRE(v == 0.0f);
}

TEST_CASE("stochastic rounding is unbiased and stays within one scale") {
    std::vector<float> x(64);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.3f + 0.01f * static_cast<float>(i);
    x[0] = 1.27f; // fixes the scale at 0.01
    std::vector<double> mean(x.size(), 0.0);
    const int rounds = 2000;
    std::vector<int8_t> q(x.size());
    std::vector<float> scales(1), y(x.size());
    for (int r = 0; r < rounds; ++r) {
        quantize_int8(x, 64, {true, static_cast<uint32_t>(r * 7919 + 1)}, q, scales);
        dequantize_int8(q, scales, 64, y);
        for (size_t i = 0; i < x.size(); ++i) {
            REQUIRE(std::fabs(x[i] - y[i]) < scales[0] * 1.0001f);
            mean[i] += y[i];
        }
    }
    // Nearest rounding of 0.305 would be biased by half a scale; stochastic is not.
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i)
        worst = std::max(worst, std::fabs(mean[i] / rounds - double(x[i])));
    REQUIRE(worst < 0.1 * scales[0]);
}

TEST_CASE("fp16 and bf16 conversions round-trip within their precision") {
    auto x = test::normal(1000, 1.0f, 9);
    std::vector<uint16_t> h(x.size());
    std::vector<float> y(x.size());
    to_f16(x, h);
    from_f16(h, y);
    for (size_t i = 0; i < x.size(); ++i)
        REQUIRE(std::fabs(x[i] - y[i]) <= std::fabs(x[i]) * 1e-3f + 1e-7f);
    to_bf16(x, h);
    from_bf16(h, y);
    for (size_t i = 0; i < x.size(); ++i)
        REQUIRE(std::fabs(x[i] - y[i]) <= std::fabs(x[i]) * 8e-3f);
}

TEST_CASE("top-k keeps the largest magnitudes in index order") {
    std::vector<float> x = {0.1f, -5.0f, 0.2f, 3.0f, -0.3f, 3.0f, 0.0f};
    auto idx = topk_indices(x, 3);
    REQUIRE(idx == std::vector<uint32_t>{1, 3, 5});
    idx = topk_indices(x, 2); // tie at 3.0: the lower index wins
    REQUIRE(idx == std::vector<uint32_t>{1, 3});
    REQUIRE(topk_indices(x, 100).size() == x.size());
    std::vector<float> same(10, 1.0f);
    REQUIRE(topk_indices(same, 4) == std::vector<uint32_t>{0, 1, 2, 3});
}

TEST_CASE("byte-plane shuffle is inverted by unshuffle") {
    for (size_t width : {1u, 2u, 4u, 8u}) {
        Bytes in(width * 333);
        for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 31 + 7);
        Bytes mid(in.size()), back(in.size());
        shuffle_bytes(in, width, mid.data());
        unshuffle_bytes(mid, width, back.data());
        REQUIRE(back == in);
        if (width == 4) REQUIRE(mid[1] == in[4]); // plane 0 holds byte 0 of each element
    }
}

TEST_CASE("non-finite values are found") {
    std::vector<float> x(100, 1.0f);
    REQUIRE(find_non_finite(x) == 100);
    x[42] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE(find_non_finite(x) == 42);
    x[42] = 1.0f;
    x[99] = -std::numeric_limits<float>::infinity();
    REQUIRE(find_non_finite(x) == 99);
}
