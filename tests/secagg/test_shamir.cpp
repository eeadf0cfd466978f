#include "record/error.hpp"
#include "secagg/shamir.hpp"

#include <catch2/catch.hpp>

using namespace n3;
using namespace n3::secagg;

TEST_CASE("every t-subset of shares rebuilds the secret", "[shamir]") {
    const uint32_t n = 6, t = 3;
    Scalar secret = random_scalar();
    auto d = shamir::deal(secret, t, n);
    REQUIRE(d.commitments.size() == t);
    REQUIRE(d.commitments[0] == base_mul(secret));
    for (auto& s : d.shares) REQUIRE(shamir::verify(s, d.commitments));
    int subsets = 0;
    for (uint32_t mask = 0; mask < (1u << n); ++mask) {
        if (__builtin_popcount(mask) != static_cast<int>(t)) continue;
        std::vector<shamir::Share> pick;
        for (uint32_t i = 0; i < n; ++i)
            if (mask & (1u << i)) pick.push_back(d.shares[i]);
        REQUIRE(shamir::combine(pick, d.commitments) == secret);
        ++subsets;
    }
    REQUIRE(subsets == 20);
}

TEST_CASE("t-1 shares reveal nothing usable and are refused", "[shamir]") {
    Scalar secret = random_scalar();
    auto d = shamir::deal(secret, 3, 5);
    std::vector<shamir::Share> two{d.shares[0], d.shares[3]};
    REQUIRE_THROWS_WITH(shamir::combine(two, d.commitments),
                        Catch::Contains("only 2 of the 3 shares needed verify"));
    // A duplicated share does not count twice.
    std::vector<shamir::Share> dup{d.shares[0], d.shares[0], d.shares[1]};
    REQUIRE_THROWS_AS(shamir::combine(dup, d.commitments), DataError);
}

TEST_CASE("a corrupted or forged share is caught and skipped", "[shamir]") {
    Scalar secret = random_scalar();
    auto d = shamir::deal(secret, 3, 5);
    auto bad = d.shares[1];
    bad.y[0] ^= 1;
    REQUIRE_FALSE(shamir::verify(bad, d.commitments));
    auto moved = d.shares[1];
    moved.x = 4; // a share presented at another position
    REQUIRE_FALSE(shamir::verify(moved, d.commitments));
    // combine uses only shares that verify: one bad among four still rebuilds.
    std::vector<shamir::Share> mix{bad, d.shares[0], d.shares[2], d.shares[4]};
    REQUIRE(shamir::combine(mix, d.commitments) == secret);
    // Shares of another dealing do not verify against these commitments.
    auto other = shamir::deal(random_scalar(), 3, 5);
    REQUIRE_FALSE(shamir::verify(other.shares[0], d.commitments));
    // t == 1: every share is the secret itself.
    auto one = shamir::deal(secret, 1, 3);
    REQUIRE(one.shares[2].y == secret);
    REQUIRE_THROWS_AS(shamir::deal(secret, 4, 3), UsageError);
}

TEST_CASE("shares dealt at chosen positions rebuild from any t of them", "[shamir]") {
    Scalar secret = random_scalar();
    std::vector<uint32_t> xs{3, 9, 14, 20, 41};
    auto d = shamir::deal_at(secret, 3, xs);
    REQUIRE(d.shares.size() == 5);
    for (size_t i = 0; i < xs.size(); ++i) {
        REQUIRE(d.shares[i].x == xs[i]);
        REQUIRE(shamir::verify(d.shares[i], d.commitments));
    }
    REQUIRE(shamir::combine({d.shares[4], d.shares[1], d.shares[2]}, d.commitments) == secret);
    REQUIRE_THROWS_AS(shamir::deal_at(secret, 2, {3, 3, 4}), UsageError);
    REQUIRE_THROWS_AS(shamir::deal_at(secret, 2, {0, 3}), UsageError);
    // Shares of another secret at the same positions: nothing verifies, nothing is returned.
    auto other = shamir::deal_at(random_scalar(), 3, xs);
    REQUIRE_THROWS_WITH(shamir::combine(other.shares, d.commitments),
                        Catch::Contains("only 0 of the 3"));
    // Two wrong shares among five: the three right ones still rebuild the secret.
    std::vector<shamir::Share> mix = d.shares;
    mix[0].y = other.shares[0].y;
    mix[3].y = other.shares[3].y;
    REQUIRE(shamir::combine(mix, d.commitments) == secret);
}
