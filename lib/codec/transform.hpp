// n3/codec/transform.hpp — the element transforms behind n3-encode's lossy and lossless stages.
//
// Blockwise symmetric quantization: the values are cut into blocks of `block` elements; each
// block stores scale = absmax / qmax (qmax 127 for int8, 7 for int4) and q = round(x / scale),
// so |x - q * scale| <= scale / 2 (round to nearest) or < scale (stochastic rounding, which is
// unbiased: E[q * scale] = x). int4 packs two values per byte, low nibble first.
// top-k keeps the k largest magnitudes of a tensor and returns their indices in ascending order.
// The byte-plane shuffle puts byte j of every element together, so zstd sees the slowly
// varying exponent bytes side by side.
//
// Transforms take spans of the right sizes (checked by the callers in packed.cpp) and never throw,
// except find_non_finite's callers, which refuse NaN and Inf before quantizing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace n3::codec {

// Index of the first NaN or Inf in x, or x.size() when all are finite.
size_t find_non_finite(std::span<const float> x);

size_t block_count(size_t n, uint32_t block);

// Rounding for the quantizers: nearest, or stochastic with the given seed (a counter-based
// hash of seed and element index supplies the uniform draw, so results are reproducible).
struct Rounding {
    bool stochastic = false;
    uint32_t seed = 0;
};

// x.size() == q.size(); scales.size() == block_count(x.size(), block). `first`: the index of
// x[0] in its tensor, when x is one window of it (a multiple of block), for stochastic draws.
void quantize_int8(std::span<const float> x, uint32_t block, Rounding r, std::span<int8_t> q,
                   std::span<float> scales, size_t first = 0);
void dequantize_int8(std::span<const int8_t> q, std::span<const float> scales, uint32_t block,
                     std::span<float> out);
// packed.size() == (x.size() + 1) / 2.
void quantize_int4(std::span<const float> x, uint32_t block, Rounding r, std::span<uint8_t> packed,
                   std::span<float> scales, size_t first = 0);
void dequantize_int4(std::span<const uint8_t> packed, std::span<const float> scales, uint32_t block,
                     std::span<float> out);

void to_f16(std::span<const float> x, std::span<uint16_t> out);
void from_f16(std::span<const uint16_t> h, std::span<float> out);
void to_bf16(std::span<const float> x, std::span<uint16_t> out);
void from_bf16(std::span<const uint16_t> h, std::span<float> out);

// The k elements of largest magnitude (ties broken towards lower indices), ascending indices.
std::vector<uint32_t> topk_indices(std::span<const float> x, size_t k);

// Byte-plane shuffle of n = in.size() / width elements: out[j * n + i] = in[i * width + j].
void shuffle_bytes(std::span<const uint8_t> in, size_t width, uint8_t* out);
void unshuffle_bytes(std::span<const uint8_t> in, size_t width, uint8_t* out);

} // namespace n3::codec
