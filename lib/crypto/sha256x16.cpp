// SHA-256 in sixteen lanes: the rounds of FIPS 180-4 section 6.2.2 on 512-bit vectors, each
// 32-bit lane one message. The rotations are single instructions (vprord) and the three-input
// functions (Ch, Maj and the xors of Sigma) single ternary-logic instructions; a block's
// sixteen words are gathered from the sixteen messages and byte-swapped. Compiled for AVX-512
// by function attribute only, so the rest of n3 runs on any x86-64; tests/crypto/test_suite.cpp
// checks it against OpenSSL.
#include "crypto/sha256x16.hpp"

#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_epi32(), which -Wmaybe-uninitialized
// takes for a read of an uninitialised value.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

namespace n3::crypto::sha256x16 {

#if defined(__x86_64__)

namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

constexpr uint32_t kIV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

// Ternary-logic truth tables: a ^ b ^ c, a ? b : c (Ch), majority (Maj).
constexpr int kXor3 = 0x96, kCh = 0xCA, kMaj = 0xE8;

#define N3_AVX512 __attribute__((target("avx512f,avx512bw")))

// `nblocks` 64-byte blocks of each lane's message, lane j's at base + off[j] (bytes).
N3_AVX512 void blocks(__m512i (&state)[8], const uint8_t* base, __m512i off, size_t nblocks) {
    const __m512i bswap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
    __m512i s[8];
    for (int i = 0; i < 8; ++i) s[i] = state[i];
    for (size_t blk = 0; blk < nblocks; ++blk) {
        __m512i w[16];
        for (int t = 0; t < 16; ++t)
            w[t] =
                _mm512_shuffle_epi8(_mm512_i32gather_epi32(off, base + 64 * blk + 4 * t, 1), bswap);
        __m512i a = s[0], b = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
#pragma GCC unroll 64
        for (int t = 0; t < 64; ++t) {
            if (t >= 16) {
                const __m512i w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
                const __m512i s0 =
                    _mm512_ternarylogic_epi32(_mm512_ror_epi32(w15, 7), _mm512_ror_epi32(w15, 18),
                                              _mm512_srli_epi32(w15, 3), kXor3);
                const __m512i s1 =
                    _mm512_ternarylogic_epi32(_mm512_ror_epi32(w2, 17), _mm512_ror_epi32(w2, 19),
                                              _mm512_srli_epi32(w2, 10), kXor3);
                w[t & 15] = _mm512_add_epi32(_mm512_add_epi32(w[t & 15], s0),
                                             _mm512_add_epi32(w[(t - 7) & 15], s1));
            }
            const __m512i big_s1 = _mm512_ternarylogic_epi32(
                _mm512_ror_epi32(e, 6), _mm512_ror_epi32(e, 11), _mm512_ror_epi32(e, 25), kXor3);
            const __m512i ch = _mm512_ternarylogic_epi32(e, f, g, kCh);
            const __m512i kw = _mm512_add_epi32(w[t & 15], _mm512_set1_epi32(int(kK[t])));
            const __m512i t1 =
                _mm512_add_epi32(_mm512_add_epi32(h, big_s1), _mm512_add_epi32(ch, kw));
            const __m512i big_s0 = _mm512_ternarylogic_epi32(
                _mm512_ror_epi32(a, 2), _mm512_ror_epi32(a, 13), _mm512_ror_epi32(a, 22), kXor3);
            const __m512i maj = _mm512_ternarylogic_epi32(a, b, c, kMaj);
            h = g;
            g = f;
            f = e;
            e = _mm512_add_epi32(d, t1);
            d = c;
            c = b;
            b = a;
            a = _mm512_add_epi32(t1, _mm512_add_epi32(big_s0, maj));
        }
        s[0] = _mm512_add_epi32(s[0], a);
        s[1] = _mm512_add_epi32(s[1], b);
        s[2] = _mm512_add_epi32(s[2], c);
        s[3] = _mm512_add_epi32(s[3], d);
        s[4] = _mm512_add_epi32(s[4], e);
        s[5] = _mm512_add_epi32(s[5], f);
        s[6] = _mm512_add_epi32(s[6], g);
        s[7] = _mm512_add_epi32(s[7], h);
    }
    for (int i = 0; i < 8; ++i) state[i] = s[i];
}

// Lane j's offset: j * stride.
N3_AVX512 __m512i lane_offsets(size_t stride) {
    return _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(static_cast<int>(stride)));
}

N3_AVX512 void hash16(const uint8_t (*heads)[32], const uint8_t* base, size_t stride, size_t n,
                      std::array<uint8_t, 32>* out) {
    __m512i st[8];
    for (int i = 0; i < 8; ++i) st[i] = _mm512_set1_epi32(static_cast<int>(kIV[i]));
    // Block 0: the head and the body's first 32 bytes; then the body's whole blocks from byte
    // 32; then the rest of the body and the padding, in one or two blocks.
    alignas(64) uint8_t first[16][64];
    for (size_t j = 0; j < 16; ++j) {
        std::memcpy(first[j], heads[j], 32);
        std::memcpy(first[j] + 32, base + j * stride, 32);
    }
    blocks(st, &first[0][0], lane_offsets(64), 1);
    const size_t whole = (n - 32) / 64, rest = (n - 32) % 64;
    blocks(st, base + 32, lane_offsets(stride), whole);
    const size_t tail_blocks = rest + 9 <= 64 ? 1 : 2;
    const uint64_t bits = (32 + uint64_t(n)) * 8;
    alignas(64) uint8_t tail[16][128];
    std::memset(tail, 0, sizeof tail);
    for (size_t j = 0; j < 16; ++j) {
        std::memcpy(tail[j], base + j * stride + 32 + whole * 64, rest);
        tail[j][rest] = 0x80;
        for (size_t i = 0; i < 8; ++i)
            tail[j][tail_blocks * 64 - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
    }
    blocks(st, &tail[0][0], lane_offsets(128), tail_blocks);
    alignas(64) uint32_t words[8][16];
    for (int i = 0; i < 8; ++i) _mm512_store_si512(words[i], st[i]);
    for (size_t j = 0; j < 16; ++j)
        for (size_t i = 0; i < 8; ++i)
            for (size_t k = 0; k < 4; ++k)
                out[j][4 * i + k] = static_cast<uint8_t>(words[i][j] >> (24 - 8 * k));
}

} // namespace

bool available() {
    static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    return yes;
}

void hash(const uint8_t (*heads)[32], const uint8_t* base, size_t stride, size_t n,
          std::array<uint8_t, 32>* out) {
    hash16(heads, base, stride, n, out);
}

#else

bool available() {
    return false;
}

void hash(const uint8_t (*)[32], const uint8_t*, size_t, size_t, std::array<uint8_t, 32>*) {}

#endif

} // namespace n3::crypto::sha256x16
