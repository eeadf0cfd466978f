#include "crypto/primitives.hpp"
#include "record/bytes.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <cstring>
#include <new>

namespace n3::crypto {

void init() {
    static const bool ok = sodium_init() >= 0;
    if (!ok) throw EnvError("libsodium failed to initialise");
}

Secret::Secret(size_t size) : n_(size) {
    init();
    p_ = static_cast<uint8_t*>(sodium_malloc(size ? size : 1));
    if (!p_) throw std::bad_alloc();
    std::memset(p_, 0, size);
}
Secret::~Secret() {
    sodium_free(p_);
}
Secret::Secret(const Secret& other) : Secret(other.n_) {
    std::memcpy(p_, other.p_, n_);
}
Secret& Secret::operator=(const Secret& other) {
    if (this != &other) {
        Secret copy(other);
        std::swap(p_, copy.p_);
        std::swap(n_, copy.n_);
    }
    return *this;
}

Hasher::Hasher(std::string_view personal, std::span<const uint8_t> key, size_t outlen) {
    init();
    unsigned char pers[crypto_generichash_blake2b_PERSONALBYTES] = {};
    std::memcpy(pers, personal.data(), std::min(personal.size(), sizeof pers));
    crypto_generichash_blake2b_init_salt_personal(&state_, key.empty() ? nullptr : key.data(),
                                                  key.size(), outlen, nullptr, pers);
}
Hasher& Hasher::part_u64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    return raw(b);
}
Hasher& Hasher::part(std::span<const uint8_t> bytes) {
    part_u64(bytes.size());
    return raw(bytes);
}
Hasher& Hasher::raw(std::span<const uint8_t> bytes) {
    crypto_generichash_blake2b_update(&state_, bytes.data(), bytes.size());
    return *this;
}
void Hasher::final(std::span<uint8_t> out) {
    crypto_generichash_blake2b_final(&state_, out.data(), out.size());
}
Digest Hasher::digest() {
    Digest d;
    final(d);
    return d;
}
Hash32 Hasher::hash32() {
    Hash32 d;
    final(d);
    return d;
}
Scalar Hasher::scalar() {
    Digest d = digest();
    Scalar s;
    crypto_core_ristretto255_scalar_reduce(s.data(), d.data());
    sodium_memzero(d.data(), d.size());
    return s;
}

bool point_valid(const Point& p) {
    init();
    return !sodium_is_zero(p.data(), p.size()) &&
           crypto_core_ristretto255_is_valid_point(p.data()) == 1;
}

bool scalar_canonical(const Scalar& s) {
    // libsodium 1.0.18 has no public "is canonical" for scalars: reduce and compare.
    uint8_t wide[64] = {};
    std::memcpy(wide, s.data(), 32);
    uint8_t reduced[32];
    crypto_core_ristretto255_scalar_reduce(reduced, wide);
    return sodium_memcmp(reduced, s.data(), 32) == 0;
}
bool scalar_valid(const Scalar& s) {
    return scalar_canonical(s) && !sodium_is_zero(s.data(), 32);
}

Point base_mul(std::span<const uint8_t> scalar) {
    Point p;
    if (crypto_scalarmult_ristretto255_base(p.data(), scalar.data()) != 0)
        throw DataError("degenerate scalar (the identity point)");
    return p;
}
bool mul(Point& out, std::span<const uint8_t> scalar, const Point& p) {
    return crypto_scalarmult_ristretto255(out.data(), scalar.data(), p.data()) == 0 &&
           !sodium_is_zero(out.data(), out.size());
}
Point add(const Point& a, const Point& b) {
    Point r;
    if (crypto_core_ristretto255_add(r.data(), a.data(), b.data()) != 0)
        throw DataError("invalid point");
    return r;
}
void scalar_random(std::span<uint8_t> out) {
    init();
    do crypto_core_ristretto255_scalar_random(out.data());
    while (sodium_is_zero(out.data(), 32));
}
void scalar_add(std::span<uint8_t> out, std::span<const uint8_t> a, std::span<const uint8_t> b) {
    crypto_core_ristretto255_scalar_add(out.data(), a.data(), b.data());
}
void scalar_mul(std::span<uint8_t> out, std::span<const uint8_t> a, std::span<const uint8_t> b) {
    crypto_core_ristretto255_scalar_mul(out.data(), a.data(), b.data());
}

Signature schnorr_sign(const Secret& y, const Point& Y, std::span<const uint8_t> message) {
    uint8_t rand[32];
    random_bytes(rand);
    Secret u(32);
    {
        Scalar s = Hasher("n3/v1/nonce").part(y.view()).part(rand).part(Y).part(message).scalar();
        std::memcpy(u.data(), s.data(), 32);
        sodium_memzero(s.data(), 32);
    }
    if (sodium_is_zero(u.data(), 32)) throw DataError("signature nonce is zero");
    Signature sig;
    Point U = base_mul(u.view());
    Scalar c = Hasher("n3/v1/chal").part(U).part(Y).part(message).scalar();
    Secret cy(32);
    scalar_mul({cy.data(), 32}, c, y.view());
    std::copy(U.begin(), U.end(), sig.begin());
    scalar_add({sig.data() + 32, 32}, u.view(), cy.view());
    return sig;
}

bool schnorr_verify(const Point& Y, std::span<const uint8_t> message, const Signature& sig) {
    init();
    Point U;
    Scalar z;
    std::copy(sig.begin(), sig.begin() + 32, U.begin());
    std::copy(sig.begin() + 32, sig.end(), z.begin());
    if (!point_valid(Y) || !point_valid(U) || !scalar_valid(z)) return false;
    Scalar c = Hasher("n3/v1/chal").part(U).part(Y).part(message).scalar();
    Point zG, cY;
    if (crypto_scalarmult_ristretto255_base(zG.data(), z.data()) != 0) return false;
    if (!mul(cY, c, Y)) return false;
    Point rhs;
    if (crypto_core_ristretto255_add(rhs.data(), U.data(), cY.data()) != 0) return false;
    return sodium_memcmp(zG.data(), rhs.data(), 32) == 0;
}

void random_bytes(std::span<uint8_t> out) {
    init();
    randombytes_buf(out.data(), out.size());
}
bool equal(std::span<const uint8_t> a, std::span<const uint8_t> b) {
    return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

void put_u16(Bytes& b, uint16_t v) {
    append_le(b, v, 2);
}
void put_u32(Bytes& b, uint32_t v) {
    append_le(b, v, 4);
}
void put_u64(Bytes& b, uint64_t v) {
    append_le(b, v, 8);
}

void Cursor::fail(const std::string& what) const {
    throw DataError(where_ + ": " + what);
}
ByteView Cursor::take(size_t n) {
    if (n > left()) fail("truncated");
    ByteView v = b_.subspan(pos_, n);
    pos_ += n;
    return v;
}
uint8_t Cursor::u8() {
    return take(1)[0];
}
uint16_t Cursor::u16() {
    auto v = take(2);
    return static_cast<uint16_t>(v[0] | (v[1] << 8));
}
uint32_t Cursor::u32() {
    auto v = take(4);
    uint32_t r = 0;
    for (int i = 3; i >= 0; --i) r = (r << 8) | v[static_cast<size_t>(i)];
    return r;
}
uint64_t Cursor::u64() {
    auto v = take(8);
    uint64_t r = 0;
    for (int i = 7; i >= 0; --i) r = (r << 8) | v[static_cast<size_t>(i)];
    return r;
}
void Cursor::expect_end() const {
    if (left() != 0) fail(std::to_string(left()) + " unexpected trailing bytes");
}

} // namespace n3::crypto
