// n3/crypto/sha256x16.hpp — SHA-256 (FIPS 180-4) of sixteen messages at once, one in each 32-bit
// lane of AVX-512 registers: suite 2's leaves (suite.hpp) sixteen chunks at a time. On this
// project's reference machine (AMD EPYC, SHA and AVX-512 instructions) it hashes about 1.2
// times as fast per core as OpenSSL's one message at a time with the SHA instructions, and
// SHA-256 is most of the cost of sealing with suite 2.
//
//   if (sha256x16::available()) sha256x16::hash(heads, base, stride, n, out);
//
// Message j is heads[j] (32 bytes) followed by n >= 32 bytes at base + j * stride; out[j] is
// its digest, the same as any SHA-256 gives. available() says whether this CPU and kernel run
// AVX-512 (F and BW); hash() must not be called where it is false. Nothing here throws.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace n3::crypto::sha256x16 {

bool available();
// stride * 15 must fit in 31 bits (the lanes' offsets are 32-bit).
void hash(const uint8_t (*heads)[32], const uint8_t* base, size_t stride, size_t n,
          std::array<uint8_t, 32>* out);

} // namespace n3::crypto::sha256x16
