#include "record/error.hpp"
#include "secagg/fixed.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <random>

using namespace n3;
using namespace n3::secagg;

namespace {
std::vector<uint8_t> key(uint8_t k) {
    return std::vector<uint8_t>(32, k);
}
} // namespace

TEST_CASE("the chosen scale cannot wrap for n clipped inputs", "[fixed]") {
    for (uint32_t n : {1u, 5u, 20u, 50u, 1000u}) {
        for (double clip : {0.01, 1.0, 100.0}) {
            FixedPoint fp = FixedPoint::choose(n, clip);
            INFO("n=" << n << " clip=" << clip << " f=" << fp.frac_bits);
            REQUIRE(double(n) * (clip * std::ldexp(1.0, fp.frac_bits) + 1) < std::ldexp(1.0, 31));
            // and it is the finest such scale (at most 30 fractional bits)
            REQUIRE(
                (fp.frac_bits == 30 || double(n) * (clip * std::ldexp(1.0, fp.frac_bits + 1) + 1) >=
                                           std::ldexp(1.0, 31)));
            // Worst case: every member at +clip and at -clip.
            for (float sign : {1.0f, -1.0f}) {
                std::vector<float> x(3, sign * static_cast<float>(clip) * 4); // clipped
                std::vector<uint32_t> sum(3, 0), enc(3);
                for (uint32_t m = 0; m < n; ++m) {
                    fp.encode(x, enc, key(static_cast<uint8_t>(m)));
                    for (size_t i = 0; i < 3; ++i) sum[i] += enc[i];
                }
                std::vector<float> mean(3);
                fp.decode(sum, n, mean);
                for (float v : mean) REQUIRE(std::abs(v - sign * clip) <= fp.step() * 1.0001);
            }
        }
    }
    REQUIRE_THROWS_AS(FixedPoint::choose(1000, 1e7), UsageError);
    REQUIRE_THROWS_AS(FixedPoint::choose(0, 1), UsageError);
}

TEST_CASE("encoding error is below one step and rounding is unbiased", "[fixed]") {
    FixedPoint fp = FixedPoint::choose(10, 1.0);
    std::mt19937 g(5);
    std::uniform_real_distribution<float> d(-1, 1);
    std::vector<float> x(100000);
    for (auto& v : x) v = d(g);
    std::vector<uint32_t> enc(x.size());
    REQUIRE(fp.encode(x, enc, key(1)) == 0);
    std::vector<float> back(x.size());
    fp.decode(enc, 1, back);
    double bias = 0;
    for (size_t i = 0; i < x.size(); ++i) {
        REQUIRE(std::abs(back[i] - x[i]) < fp.step() * 1.0001);
        bias += double(back[i]) - x[i];
    }
    // Unbiased: the mean error is far below a step (1e5 samples: sd ~ step/2/sqrt(1e5)).
    REQUIRE(std::abs(bias / double(x.size())) < fp.step() * 0.02);
    // A value exactly between grid points rounds up about half the time.
    std::vector<float> half(20000, static_cast<float>(fp.step() * 0.5));
    std::vector<uint32_t> he(half.size());
    fp.encode(half, he, key(2));
    size_t ups = 0;
    for (auto v : he) ups += v;
    REQUIRE(ups > 9500);
    REQUIRE(ups < 10500);
}

TEST_CASE("clipping is counted, NaN and Inf are refused", "[fixed]") {
    FixedPoint fp = FixedPoint::choose(4, 0.5);
    std::vector<float> x{0.1f, 2.0f, -3.0f};
    std::vector<uint32_t> enc(3);
    REQUIRE(fp.encode(x, enc, key(3)) == 2);
    x[0] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_THROWS_AS(fp.encode(x, enc, key(3)), DataError);
    x[0] = std::numeric_limits<float>::infinity();
    REQUIRE_THROWS_AS(fp.encode(x, enc, key(3)), DataError);
}
