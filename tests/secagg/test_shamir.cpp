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
