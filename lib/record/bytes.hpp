// n3/record/bytes.hpp — little-endian integers in byte buffers, for every binary format in n3
// (record framing, packed records, shards, key files, envelopes). Header-only; cannot fail.
#pragma once

#include "record/io.hpp"

#include <cstdint>

namespace n3 {

// Reads an n-byte (n <= 8) little-endian unsigned integer.
inline uint64_t get_le(const uint8_t* p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
// Writes the low n bytes of v, little-endian.
inline void put_le(uint8_t* p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
// Appends the low n bytes of v, little-endian.
inline void append_le(Bytes& b, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
inline void put_u16(Bytes& b, uint16_t v) {
    append_le(b, v, 2);
}
inline void put_u32(Bytes& b, uint32_t v) {
    append_le(b, v, 4);
}
inline void put_u64(Bytes& b, uint64_t v) {
    append_le(b, v, 8);
}

} // namespace n3
