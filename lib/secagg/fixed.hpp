// n3/secagg/fixed.hpp — fixed-point encoding of updates into Z_2^32 for secure aggregation.
//
// Each coordinate is clipped to [-clip, clip], scaled by 2^frac_bits, rounded stochastically
// (unbiased: E[round(v)] = v) and stored as a two's-complement 32-bit value. Sums are taken
// mod 2^32; they decode exactly as long as |sum| < 2^31, which choose() guarantees for
// `members` clipped inputs: members * (clip * 2^f + 1) < 2^31. The rounding error of one input
// is below one step (2^-f) per coordinate, so the error of a mean of n inputs is below 2^-f.
//
//   FixedPoint fp = FixedPoint::choose(20, 1.0);          // 20 members, |x| <= 1
//   fp.encode(x, out, rng_key);  ...  fp.decode_sum(sum, n, mean);
//
// choose() throws UsageError when no precision is left (clip * members too large).
#pragma once

#include "record/io.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace n3::secagg {

struct FixedPoint {
    double clip = 1.0;
    int frac_bits = 16;

    // The finest scale whose sum over `members` clipped inputs cannot wrap.
    static FixedPoint choose(uint32_t members, double clip);
    double step() const; // 2^-frac_bits: the precision the encoding costs

    // Clips, scales, rounds stochastically with a keystream from `rounding_key` (32 bytes;
    // random in production, fixed in tests). Returns how many coordinates were clipped.
    // NaN or Inf inputs throw DataError.
    uint64_t encode(std::span<const float> in, std::span<uint32_t> out,
                    std::span<const uint8_t> rounding_key) const;
    // Interprets a Z_2^32 sum as a signed fixed-point value and divides by `divisor`.
    void decode(std::span<const uint32_t> sum, double divisor, std::span<float> out) const;
};

} // namespace n3::secagg
