// n3/crypto/primitives.hpp — the only layer of n3_crypto that talks to libsodium directly.
//
// Everything above it is built from: ristretto255 points and scalars (with the checks that
// libsodium 1.0.18 leaves to the caller: the identity point, non-canonical scalars), BLAKE2b
// with one 16-byte personalisation string per purpose (domain separation), and hedged Schnorr
// signatures. Secrets live in sodium_malloc'd guarded memory (Secret).
//
//   crypto::init();                                 // once; throws EnvError if libsodium fails
//   Hasher h("n3/v1/chal"); h.part(U); h.part(Y); Scalar c = h.scalar();
//   Signature s = schnorr_sign(y, Y, digest);  bool ok = schnorr_verify(Y, digest, s);
//
// Decoders return false / throw DataError for invalid encodings; nothing here prints.
#pragma once

#include "record/io.hpp"

#include <sodium.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace n3::crypto {

using Point = std::array<uint8_t, 32>;  // canonical ristretto255 encoding
using Scalar = std::array<uint8_t, 32>; // little-endian, reduced mod l (public scalars)
using Digest = std::array<uint8_t, 64>; // BLAKE2b-512 transcript digests
using Hash32 = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>; // U (point) || z (scalar)

// sodium_init(); throws EnvError when it fails. Every entry point of n3_crypto calls it.
void init();

// A fixed-size secret in guarded memory (sodium_malloc, mprotect'ed guard pages, wiped on free).
class Secret {
public:
    explicit Secret(size_t size = 32);
    ~Secret();
    Secret(const Secret& other);
    Secret& operator=(const Secret& other);
    uint8_t* data() { return p_; }
    const uint8_t* data() const { return p_; }
    size_t size() const { return n_; }
    std::span<const uint8_t> view() const { return {p_, n_}; }

private:
    uint8_t* p_;
    size_t n_;
};

// BLAKE2b with a personalisation string (at most 16 bytes, zero-padded) and an optional key.
// part() absorbs a length-prefixed (LE64) field, so transcripts are unambiguous; raw() absorbs
// bytes as they are (for already-framed data).
class Hasher {
public:
    explicit Hasher(std::string_view personal, std::span<const uint8_t> key = {},
                    size_t outlen = 64);
    Hasher& part(std::span<const uint8_t> bytes);
    Hasher& part(std::string_view s) {
        return part(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
    }
    Hasher& part_u64(uint64_t v);
    Hasher& raw(std::span<const uint8_t> bytes);
    void final(std::span<uint8_t> out); // out.size() must equal outlen
    Digest digest();                    // outlen 64
    Hash32 hash32();                    // outlen 32
    Scalar scalar();                    // outlen 64, reduced mod l

private:
    crypto_generichash_blake2b_state state_;
};

// Points: valid() is a canonical encoding that is not the identity (libsodium 1.0.18's
// is_valid_point accepts the all-zero identity; we reject it).
bool point_valid(const Point& p);
// Scalars: canonical (< l) and non-zero.
bool scalar_canonical(const Scalar& s);
bool scalar_valid(const Scalar& s);

Point base_mul(std::span<const uint8_t> scalar); // throws DataError when the result is the identity
// scalar * point; false when the result is the identity (a degenerate key or scalar).
bool mul(Point& out, std::span<const uint8_t> scalar, const Point& p);
Point add(const Point& a, const Point& b);
void scalar_random(std::span<uint8_t> out); // non-zero, canonical
void scalar_add(std::span<uint8_t> out, std::span<const uint8_t> a, std::span<const uint8_t> b);
void scalar_mul(std::span<uint8_t> out, std::span<const uint8_t> a, std::span<const uint8_t> b);

// Hedged Schnorr over ristretto255, key-prefixed: u = Hs(nonce; y, rand32, Y, m), U = uG,
// c = Hs(chal; U, Y, m), z = u + c y; verify zG == U + cY with U valid and z canonical.
Signature schnorr_sign(const Secret& y, const Point& Y, std::span<const uint8_t> message);
bool schnorr_verify(const Point& Y, std::span<const uint8_t> message, const Signature& sig);

void random_bytes(std::span<uint8_t> out);
bool equal(std::span<const uint8_t> a, std::span<const uint8_t> b); // constant time

// Little-endian helpers for the binary bodies.
void put_u16(Bytes& b, uint16_t v);
void put_u32(Bytes& b, uint32_t v);
void put_u64(Bytes& b, uint64_t v);
inline void put(Bytes& b, std::span<const uint8_t> s) {
    b.insert(b.end(), s.begin(), s.end());
}

// A bounds-checked reader over a binary body; every short read throws DataError("<where>: ...").
class Cursor {
public:
    Cursor(ByteView bytes, std::string where) : b_(bytes), where_(std::move(where)) {}
    uint8_t u8();
    uint16_t u16();
    uint32_t u32();
    uint64_t u64();
    ByteView take(size_t n);
    template <size_t N> std::array<uint8_t, N> array() {
        std::array<uint8_t, N> a{};
        auto v = take(N);
        std::copy(v.begin(), v.end(), a.begin());
        return a;
    }
    size_t left() const { return b_.size() - pos_; }
    size_t pos() const { return pos_; }
    void expect_end() const;
    [[noreturn]] void fail(const std::string& what) const;

private:
    ByteView b_;
    size_t pos_ = 0;
    std::string where_;
};

} // namespace n3::crypto
