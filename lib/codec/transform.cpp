#include "codec/transform.hpp"

#include "codec/buffer.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>

// The build is generic x86-64 -O2; hot loops get an AVX2 clone chosen at load time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define N3_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define N3_HOT
#endif

namespace n3::codec {

namespace {

// |x| as integer bits: for non-NaN floats the order of the bits is the order of the values,
// so the maximum is an integer max that vectorises (a float max of fabs does not).
N3_HOT uint32_t absmax_bits(const float* x, size_t n) {
    uint32_t m = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, x + i, 4);
        b &= 0x7fffffffU;
        m = b > m ? b : m;
    }
    return m;
}

inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

// q = round(x * inv) clamped to [-qmax, qmax]; `x*inv ± 0.5` then truncation vectorises,
// lrintf does not.
N3_HOT void round_block(const float* x, size_t n, float inv, float qmax, int8_t* q) {
    for (size_t i = 0; i < n; ++i) {
        float v = x[i] * inv;
        v += std::copysign(0.5f, v);
        v = v > qmax ? qmax : v;
        v = v < -qmax ? -qmax : v;
        q[i] = static_cast<int8_t>(static_cast<int>(v));
    }
}

// q = floor(x * inv + u), u uniform in [0, 1) from a hash of (seed, global index): unbiased.
// x * inv + u + 128 is positive, so truncation is floor; floorf itself does not vectorise.
N3_HOT void round_block_stochastic(const float* x, size_t n, float inv, float qmax, int8_t* q,
                                   uint32_t seed, uint32_t first) {
    int lim = static_cast<int>(qmax);
    for (size_t i = 0; i < n; ++i) {
        uint32_t h = mix32(seed + first + static_cast<uint32_t>(i) * 0x9e3779b9U);
        float u = static_cast<float>(static_cast<int32_t>(h >> 8)) * (1.0f / 16777216.0f);
        int t = static_cast<int>(x[i] * inv + u + 128.0f) - 128;
        t = t > lim ? lim : t;
        t = t < -lim ? -lim : t;
        q[i] = static_cast<int8_t>(t);
    }
}

void quantize_blocks(std::span<const float> x, uint32_t block, Rounding r, float qmax, int8_t* q,
                     std::span<float> scales, size_t first) {
    size_t n = x.size();
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, ++bi) {
        size_t len = std::min<size_t>(block, n - b0);
        const float* xs = x.data() + b0;
        float amax = std::bit_cast<float>(absmax_bits(xs, len));
        float scale = amax / qmax;
        scales[bi] = scale;
        float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        if (r.stochastic)
            round_block_stochastic(xs, len, inv, qmax, q + b0, r.seed,
                                   static_cast<uint32_t>((first + b0) * 0x9e3779b9U));
        else
            round_block(xs, len, inv, qmax, q + b0);
    }
}

N3_HOT void scale_block_i8(const int8_t* q, size_t n, float s, float* out) {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(q[i]) * s;
}

N3_HOT void pack_nibbles(const int8_t* q, size_t pairs, uint8_t* out) {
    for (size_t i = 0; i < pairs; ++i)
        out[i] = static_cast<uint8_t>((static_cast<uint8_t>(q[2 * i]) & 0x0fU) |
                                      (static_cast<uint8_t>(q[2 * i + 1]) << 4));
}

N3_HOT void unpack_nibbles(const uint8_t* p, size_t pairs, int8_t* q) {
    for (size_t i = 0; i < pairs; ++i) {
        q[2 * i] = static_cast<int8_t>(static_cast<int8_t>(p[i] << 4) >> 4);
        q[2 * i + 1] = static_cast<int8_t>(static_cast<int8_t>(p[i]) >> 4);
    }
}

} // namespace

size_t find_non_finite(std::span<const float> x) {
    if (absmax_bits(x.data(), x.size()) < 0x7f800000U) return x.size();
    for (size_t i = 0; i < x.size(); ++i)
        if ((std::bit_cast<uint32_t>(x[i]) & 0x7fffffffU) >= 0x7f800000U) return i;
    return x.size();
}

size_t block_count(size_t n, uint32_t block) {
    return (n + block - 1) / block;
}

void quantize_int8(std::span<const float> x, uint32_t block, Rounding r, std::span<int8_t> q,
                   std::span<float> scales, size_t first) {
    quantize_blocks(x, block, r, 127.0f, q.data(), scales, first);
}

void dequantize_int8(std::span<const int8_t> q, std::span<const float> scales, uint32_t block,
                     std::span<float> out) {
    size_t n = q.size();
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, ++bi)
        scale_block_i8(q.data() + b0, std::min<size_t>(block, n - b0), scales[bi], out.data() + b0);
}

void quantize_int4(std::span<const float> x, uint32_t block, Rounding r, std::span<uint8_t> packed,
                   std::span<float> scales, size_t first) {
    Scratch<int8_t> q(x.size() + 1);
    quantize_blocks(x, block, r, 7.0f, q.data(), scales, first);
    pack_nibbles(q.data(), packed.size(), packed.data());
}

void dequantize_int4(std::span<const uint8_t> packed, std::span<const float> scales, uint32_t block,
                     std::span<float> out) {
    Scratch<int8_t> q(packed.size() * 2);
    unpack_nibbles(packed.data(), packed.size(), q.data());
    dequantize_int8(q.cspan().first(out.size()), scales, block, out);
}

void to_f16(std::span<const float> x, std::span<uint16_t> out) {
    for (size_t i = 0; i < x.size(); ++i) out[i] = f32_to_f16(x[i]);
}
void from_f16(std::span<const uint16_t> h, std::span<float> out) {
    for (size_t i = 0; i < h.size(); ++i) out[i] = f16_to_f32(h[i]);
}
void to_bf16(std::span<const float> x, std::span<uint16_t> out) {
    for (size_t i = 0; i < x.size(); ++i) out[i] = f32_to_bf16(x[i]);
}
void from_bf16(std::span<const uint16_t> h, std::span<float> out) {
    for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_f32(h[i]);
}

// The k-th largest magnitude by radix selection on the magnitude bits (for non-NaN floats
// their order is the order of the values): a histogram of the high 16 bits, then of the low 16
// bits within the bin that holds the k-th; two streaming passes instead of nth_element.
std::vector<uint32_t> topk_indices(std::span<const float> x, size_t k) {
    size_t n = x.size();
    k = std::min(k, n);
    std::vector<uint32_t> out;
    if (k == 0) return out;
    auto mag = [&](size_t i) { return std::bit_cast<uint32_t>(x[i]) & 0x7fffffffU; };
    std::vector<uint64_t> hist(65536, 0);
    for (size_t i = 0; i < n; ++i) ++hist[mag(i) >> 16];
    uint32_t hi = 65535;
    uint64_t above = 0; // elements in bins above hi
    while (above + hist[hi] < k) above += hist[hi--];
    std::fill(hist.begin(), hist.end(), 0);
    for (size_t i = 0; i < n; ++i)
        if ((mag(i) >> 16) == hi) ++hist[mag(i) & 0xffffU];
    uint32_t lo = 65535;
    while (above + hist[lo] < k) above += hist[lo--];
    uint32_t thr = (hi << 16) | lo;
    size_t ties = k - above; // how many elements equal to thr to keep
    out.reserve(k);
    for (size_t i = 0; i < n; ++i) {
        uint32_t m = mag(i);
        if (m > thr || (m == thr && ties > 0)) {
            if (m == thr) --ties;
            out.push_back(static_cast<uint32_t>(i));
        }
    }
    return out;
}

N3_HOT void shuffle_bytes(std::span<const uint8_t> in, size_t width, uint8_t* out) {
    size_t n = in.size() / width;
    const uint8_t* p = in.data();
    if (width == 4) {
        for (size_t i = 0; i < n; ++i) {
            out[i] = p[4 * i];
            out[n + i] = p[4 * i + 1];
            out[2 * n + i] = p[4 * i + 2];
            out[3 * n + i] = p[4 * i + 3];
        }
    } else if (width == 2) {
        for (size_t i = 0; i < n; ++i) {
            out[i] = p[2 * i];
            out[n + i] = p[2 * i + 1];
        }
    } else {
        for (size_t j = 0; j < width; ++j)
            for (size_t i = 0; i < n; ++i) out[j * n + i] = p[i * width + j];
    }
}

N3_HOT void unshuffle_bytes(std::span<const uint8_t> in, size_t width, uint8_t* out) {
    size_t n = in.size() / width;
    const uint8_t* p = in.data();
    if (width == 4) {
        for (size_t i = 0; i < n; ++i) {
            out[4 * i] = p[i];
            out[4 * i + 1] = p[n + i];
            out[4 * i + 2] = p[2 * n + i];
            out[4 * i + 3] = p[3 * n + i];
        }
    } else if (width == 2) {
        for (size_t i = 0; i < n; ++i) {
            out[2 * i] = p[i];
            out[2 * i + 1] = p[n + i];
        }
    } else {
        for (size_t j = 0; j < width; ++j)
            for (size_t i = 0; i < n; ++i) out[i * width + j] = p[j * n + i];
    }
}

} // namespace n3::codec
