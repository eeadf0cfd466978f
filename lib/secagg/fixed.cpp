#include "secagg/fixed.hpp"

#include "record/error.hpp"

#include <cmath>
#include <sodium.h>
#include <string>

namespace n3::secagg {

FixedPoint FixedPoint::choose(uint32_t members, double clip) {
    if (members == 0) throw UsageError("secure aggregation needs at least one member");
    if (!(clip > 0) || !std::isfinite(clip)) throw UsageError("the clip bound must be positive");
    FixedPoint fp;
    fp.clip = clip;
    // Fewer than 4 fractional bits would make the encoding useless for model updates.
    for (int f = 30; f >= 4; --f) {
        if (double(members) * (clip * std::ldexp(1.0, f) + 1.0) < std::ldexp(1.0, 31)) {
            fp.frac_bits = f;
            return fp;
        }
    }
    throw UsageError("no precision left for " + std::to_string(members) + " members at clip " +
                         std::to_string(clip),
                     "lower the clip bound");
}

double FixedPoint::step() const {
    return std::ldexp(1.0, -frac_bits);
}

uint64_t FixedPoint::encode(std::span<const float> in, std::span<uint32_t> out,
                            std::span<const uint8_t> rounding_key) const {
    if (in.size() != out.size()) throw DataError("fixed-point encode: size mismatch");
    if (rounding_key.size() != crypto_stream_xchacha20_KEYBYTES)
        throw DataError("fixed-point encode: rounding key must be 32 bytes");
    const double scale = std::ldexp(1.0, frac_bits);
    uint64_t clipped = 0;
    // Uniform draws for stochastic rounding, from a keystream (deterministic given the key).
    constexpr size_t kBlock = 4096;
    std::vector<uint32_t> rnd(kBlock);
    uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {'n', '3', 'r', 'o', 'u', 'n', 'd'};
    for (size_t base = 0; base < in.size(); base += kBlock) {
        size_t n = std::min(kBlock, in.size() - base);
        std::fill(rnd.begin(), rnd.end(), 0u);
        crypto_stream_xchacha20_xor_ic(reinterpret_cast<uint8_t*>(rnd.data()),
                                       reinterpret_cast<const uint8_t*>(rnd.data()), n * 4, nonce,
                                       (base * 4) / 64, rounding_key.data());
        for (size_t i = 0; i < n; ++i) {
            double v = in[base + i];
            if (!std::isfinite(v))
                throw DataError("coordinate " + std::to_string(base + i) + " is not finite");
            if (v > clip) {
                v = clip;
                ++clipped;
            } else if (v < -clip) {
                v = -clip;
                ++clipped;
            }
            double s = v * scale;
            double fl = std::floor(s);
            double frac = s - fl; // in [0, 1)
            double u = (rnd[i] + 0.5) * (1.0 / 4294967296.0);
            int64_t q = static_cast<int64_t>(fl) + (u < frac ? 1 : 0);
            out[base + i] = static_cast<uint32_t>(static_cast<int32_t>(q));
        }
    }
    return clipped;
}

void FixedPoint::decode(std::span<const uint32_t> sum, double divisor, std::span<float> out) const {
    if (sum.size() != out.size()) throw DataError("fixed-point decode: size mismatch");
    if (!(divisor > 0)) throw DataError("fixed-point decode: divisor must be positive");
    const double inv = std::ldexp(1.0, -frac_bits) / divisor;
    for (size_t i = 0; i < sum.size(); ++i)
        out[i] = static_cast<float>(static_cast<int32_t>(sum[i]) * inv);
}

} // namespace n3::secagg
