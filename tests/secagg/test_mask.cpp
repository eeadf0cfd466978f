#include "record/error.hpp"
#include "secagg/fixed.hpp"
#include "secagg/mask.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <set>

using namespace n3;
using namespace n3::secagg;

namespace {

// One member's state in a simulated round.
struct Member {
    uint32_t id;
    Scalar s, b;
    Point S;
    std::vector<uint32_t> x, y;
};

std::vector<Member> make_round(uint32_t n, size_t dim) {
    std::vector<Member> m;
    for (uint32_t i = 1; i <= n; ++i) {
        Member a;
        a.id = i;
        a.s = random_scalar();
        a.b = random_scalar();
        a.S = base_mul(a.s);
        a.x.resize(dim);
        for (size_t k = 0; k < dim; ++k) a.x[k] = i * 1000003u + static_cast<uint32_t>(k) * 7919u;
        m.push_back(a);
    }
    const std::string ctx = "fed|round 7";
    for (auto& u : m) {
        u.y = u.x;
        apply_mask(u.y, self_key(u.b, ctx), +1);
        for (auto& v : m)
            if (v.id != u.id)
                apply_mask(u.y, pair_key(u.s, v.S, ctx, u.id, v.id), pair_sign(u.id, v.id));
    }
    return m;
}

} // namespace

TEST_CASE("pair keys agree from both sides and differ across contexts", "[mask]") {
    Scalar a = random_scalar(), b = random_scalar();
    Point A = base_mul(a), B = base_mul(b);
    REQUIRE(pair_key(a, B, "r1", 1, 2) == pair_key(b, A, "r1", 2, 1));
    REQUIRE(pair_key(a, B, "r1", 1, 2) != pair_key(a, B, "r2", 1, 2));
    Point identity{};
    REQUIRE_THROWS_AS(pair_key(a, identity, "r1", 1, 2), DataError);
    Point junk;
    junk.fill(0xff);
    REQUIRE_THROWS_AS(pair_key(a, junk, "r1", 1, 2), DataError);
}

TEST_CASE("masks cancel exactly and dropouts are recovered", "[mask]") {
    const uint32_t n = 6;
    const size_t dim = 1000;
    auto m = make_round(n, dim);
    const std::string ctx = "fed|round 7";
    // Every dropout set: survivors' masked sum, minus self masks, minus pair masks with dropped.
    for (uint32_t dropped = 0; dropped < (1u << n); ++dropped) {
        if (__builtin_popcount(dropped) > 3) continue;
        std::vector<uint32_t> sum(dim, 0), want(dim, 0);
        for (auto& u : m) {
            if (dropped & (1u << (u.id - 1))) continue;
            for (size_t k = 0; k < dim; ++k) {
                sum[k] += u.y[k];
                want[k] += u.x[k];
            }
        }
        for (auto& u : m) {
            if (dropped & (1u << (u.id - 1))) continue;
            apply_mask(sum, self_key(u.b, ctx), -1);
            for (auto& v : m)
                if (dropped & (1u << (v.id - 1)))
                    // The server knows v's rebuilt s_v and u's public S_u.
                    apply_mask(sum, pair_key(v.s, u.S, ctx, v.id, u.id), -pair_sign(u.id, v.id));
        }
        INFO("dropped set " << dropped);
        REQUIRE(sum == want);
    }
}

TEST_CASE("a masked input looks uniform whatever the update", "[mask]") {
    const size_t dim = 1 << 18;
    // Two members with opposite extreme updates: all zeros, and all the same large value.
    Scalar s1 = random_scalar(), s2 = random_scalar(), b1 = random_scalar();
    std::vector<uint32_t> zero(dim, 0), big(dim, 0x7fff0000u);
    for (auto* v : {&zero, &big}) {
        apply_mask(*v, self_key(b1, "c"), +1);
        apply_mask(*v, pair_key(s1, base_mul(s2), "c", 1, 2), +1);
        // Every bit of the masked values is set about half the time, and the top byte's
        // histogram is flat: a chi-square test with 255 degrees of freedom.
        std::vector<double> hist(256, 0);
        for (int bit = 0; bit < 32; ++bit) {
            size_t ones = 0;
            for (auto x : *v) ones += (x >> bit) & 1;
            double z = (double(ones) - dim / 2.0) / std::sqrt(dim / 4.0);
            INFO("bit " << bit);
            REQUIRE(std::abs(z) < 6);
        }
        for (auto x : *v) hist[x >> 24] += 1;
        double chi = 0, e = dim / 256.0;
        for (double h : hist) chi += (h - e) * (h - e) / e;
        REQUIRE(chi < 400); // p < 1e-7 for 255 degrees of freedom
    }
}
