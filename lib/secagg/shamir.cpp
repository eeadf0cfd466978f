#include "secagg/shamir.hpp"

#include "crypto/primitives.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <set>
#include <sodium.h>
#include <string>

namespace n3::secagg {

namespace {

Scalar add(const Scalar& a, const Scalar& b) {
    Scalar r;
    crypto_core_ristretto255_scalar_add(r.data(), a.data(), b.data());
    return r;
}
Scalar sub(const Scalar& a, const Scalar& b) {
    Scalar r;
    crypto_core_ristretto255_scalar_sub(r.data(), a.data(), b.data());
    return r;
}
Scalar mul(const Scalar& a, const Scalar& b) {
    Scalar r;
    crypto_core_ristretto255_scalar_mul(r.data(), a.data(), b.data());
    return r;
}
Scalar invert(const Scalar& a) {
    Scalar r;
    if (crypto_core_ristretto255_scalar_invert(r.data(), a.data()) != 0)
        throw DataError("shamir: duplicate share coordinates");
    return r;
}
Point point_add(const Point& a, const Point& b) {
    Point r;
    if (crypto_core_ristretto255_add(r.data(), a.data(), b.data()) != 0)
        throw DataError("shamir: invalid commitment");
    return r;
}
bool is_zero(const Scalar& s) {
    uint8_t acc = 0;
    for (auto b : s) acc |= b;
    return acc == 0;
}

} // namespace

Scalar random_scalar() {
    Scalar s;
    crypto::scalar_random(s); // canonical and non-zero
    return s;
}

Point base_mul(const Scalar& s) {
    return crypto::base_mul(s);
}

Scalar scalar_from_u64(uint64_t v) {
    Scalar s{};
    for (int i = 0; i < 8; ++i) s[static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
    return s;
}

namespace shamir {

Dealing deal(const Scalar& secret, uint32_t t, uint32_t n) {
    std::vector<uint32_t> xs(n);
    for (uint32_t i = 0; i < n; ++i) xs[i] = i + 1;
    return deal_at(secret, t, xs);
}

Dealing deal_at(const Scalar& secret, uint32_t t, const std::vector<uint32_t>& xs) {
    crypto::init();
    if (t < 1 || t > xs.size()) throw UsageError("shamir: need 1 <= t <= n");
    if (std::set<uint32_t>(xs.begin(), xs.end()).size() != xs.size() ||
        std::find(xs.begin(), xs.end(), 0u) != xs.end())
        throw UsageError("shamir: share positions must be distinct and non-zero");
    std::vector<Scalar> coeffs{secret};
    for (uint32_t j = 1; j < t; ++j) coeffs.push_back(random_scalar());
    Dealing d;
    for (auto& c : coeffs) {
        Point p{};
        // A zero coefficient has the identity as its image, which libsodium refuses to
        // compute; the secret is never zero in practice (random_scalar), but be exact.
        if (is_zero(c)) throw UsageError("shamir: the secret must not be zero");
        p = base_mul(c);
        d.commitments.push_back(p);
    }
    for (uint32_t i : xs) {
        Scalar x = scalar_from_u64(i), acc{}, xp = scalar_from_u64(1);
        for (auto& c : coeffs) {
            acc = add(acc, mul(c, xp));
            xp = mul(xp, x);
        }
        d.shares.push_back(Share{i, acc});
    }
    return d;
}

bool verify(const Share& share, const std::vector<Point>& commitments) {
    crypto::init();
    if (share.x == 0 || commitments.empty()) return false;
    if (is_zero(share.y)) return false;
    Point lhs;
    if (crypto_scalarmult_ristretto255_base(lhs.data(), share.y.data()) != 0) return false;
    Scalar x = scalar_from_u64(share.x), xp = scalar_from_u64(1);
    Point rhs = commitments[0];
    for (size_t j = 1; j < commitments.size(); ++j) {
        xp = mul(xp, x);
        Point term;
        if (crypto_scalarmult_ristretto255(term.data(), xp.data(), commitments[j].data()) != 0)
            return false;
        rhs = point_add(rhs, term);
    }
    return sodium_memcmp(lhs.data(), rhs.data(), lhs.size()) == 0;
}

namespace {

// Lagrange interpolation at 0 of exactly t shares with distinct x.
Scalar interpolate(const std::vector<Share>& good) {
    const size_t t = good.size();
    Scalar secret{};
    for (size_t i = 0; i < t; ++i) {
        Scalar num = scalar_from_u64(1), den = scalar_from_u64(1);
        Scalar xi = scalar_from_u64(good[i].x);
        for (size_t j = 0; j < t; ++j) {
            if (i == j) continue;
            Scalar xj = scalar_from_u64(good[j].x);
            num = mul(num, xj);
            den = mul(den, sub(xj, xi));
        }
        secret = add(secret, mul(good[i].y, mul(num, invert(den))));
    }
    return secret;
}

} // namespace

Scalar combine(const std::vector<Share>& shares, const std::vector<Point>& commitments) {
    crypto::init();
    const size_t t = commitments.size();
    // Optimistic path: interpolate the first t shares with distinct x and check the result
    // against C_0 = secret G, one base multiplication instead of t - 1 per share. A wrong share
    // moves the interpolated value (its Lagrange coefficient is non-zero), and wrong shares that
    // cancel out still give the committed secret, so an accepted result is always right.
    {
        std::vector<Share> first;
        std::set<uint32_t> seen;
        for (auto& s : shares) {
            if (first.size() == t) break;
            if (s.x == 0 || !seen.insert(s.x).second) continue;
            first.push_back(s);
        }
        if (t > 0 && first.size() == t) {
            Scalar secret = interpolate(first);
            Point image;
            if (!is_zero(secret) &&
                crypto_scalarmult_ristretto255_base(image.data(), secret.data()) == 0 &&
                sodium_memcmp(image.data(), commitments[0].data(), image.size()) == 0)
                return secret;
            sodium_memzero(secret.data(), secret.size());
        }
    }
    // Some share is wrong: check each against the commitments and use t that verify.
    std::vector<Share> good;
    std::set<uint32_t> seen;
    for (auto& s : shares) {
        if (good.size() == t) break;
        if (seen.count(s.x) || !verify(s, commitments)) continue;
        seen.insert(s.x);
        good.push_back(s);
    }
    if (good.size() < t)
        throw DataError("only " + std::to_string(good.size()) + " of the " + std::to_string(t) +
                        " shares needed verify");
    return interpolate(good);
}

} // namespace shamir
} // namespace n3::secagg
