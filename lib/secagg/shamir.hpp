// n3/secagg/shamir.hpp — verifiable t-of-n secret sharing over the ristretto255 scalar field.
//
// Shamir's scheme (a Reed-Solomon code over Z_l) with Feldman commitments: the dealer publishes
// C_j = a_j * G for the polynomial's coefficients, so every holder can check its share
// (y * G == sum_j x^j * C_j) and a forged or corrupted share is caught before it is used.
// C_0 = secret * G is public by construction: share only secrets whose public image may be
// known (the per-round key-agreement secret, whose public key is published anyway; the
// self-mask seed, of which only a hash keys the mask).
//
//   auto d = shamir::deal(secret, t, n);           // d.shares[i].x == i + 1
//   shamir::verify(d.shares[2], d.commitments);     // true
//   Scalar s = shamir::combine(some_t_shares, d.commitments);
//
// combine() returns the committed secret or throws DataError when fewer than t shares verify:
// it interpolates t shares and checks the result against C_0 (one base multiplication), and
// only when that fails checks every share and uses t that verify.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace n3::secagg {

using Scalar = std::array<uint8_t, 32>;
using Point = std::array<uint8_t, 32>;

Scalar random_scalar();
Point base_mul(const Scalar& s); // s * G; throws DataError for the zero scalar
Scalar scalar_from_u64(uint64_t v);

namespace shamir {

struct Share {
    uint32_t x = 0; // 1..n: the holder's position in the roster
    Scalar y{};
};

struct Dealing {
    std::vector<Point> commitments; // t points: C_j = a_j G, C_0 = secret G
    std::vector<Share> shares;      // n shares, x = 1..n
};

Dealing deal(const Scalar& secret, uint32_t t, uint32_t n);
// Shares for the holders at positions `xs` only (distinct, non-zero): shares[i].x == xs[i].
// SecAgg+ deals to a member's neighbourhood, keeping roster positions as share coordinates.
Dealing deal_at(const Scalar& secret, uint32_t t, const std::vector<uint32_t>& xs);
bool verify(const Share& share, const std::vector<Point>& commitments);
// Reconstructs the secret from verified shares (at least t = commitments.size() of them,
// distinct x). Throws DataError naming how many verified when there are too few.
Scalar combine(const std::vector<Share>& shares, const std::vector<Point>& commitments);

} // namespace shamir
} // namespace n3::secagg
