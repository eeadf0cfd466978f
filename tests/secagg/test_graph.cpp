// SecAgg+ neighbourhood graphs: k-regular, symmetric, k-connected, and the same for every party
// that derives them from the same round; pair masks over the graph cancel exactly.
#include "record/error.hpp"
#include "secagg/graph.hpp"
#include "secagg/mask.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <numeric>
#include <random>

using namespace n3;
using namespace n3::secagg;

namespace {

std::vector<uint32_t> shuffled(uint32_t n, uint32_t seed) {
    std::vector<uint32_t> order(n);
    std::iota(order.begin(), order.end(), 1u);
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    return order;
}

// Connected after removing the members in `gone`?
bool connected_without(const Graph& g, const std::vector<bool>& gone) {
    uint32_t start = 0, alive = 0;
    for (uint32_t u = 1; u <= g.n(); ++u)
        if (!gone[u]) {
            ++alive;
            if (!start) start = u;
        }
    if (!start) return true;
    std::vector<bool> seen(g.n() + 1, false);
    std::vector<uint32_t> stack{start};
    seen[start] = true;
    uint32_t reached = 1;
    while (!stack.empty()) {
        uint32_t u = stack.back();
        stack.pop_back();
        for (auto v : g.neighbours(u))
            if (!gone[v] && !seen[v]) {
                seen[v] = true;
                ++reached;
                stack.push_back(v);
            }
    }
    return reached == alive;
}

} // namespace

TEST_CASE("Harary graphs are k-regular and symmetric", "[graph]") {
    for (auto [n, k] : std::vector<std::pair<uint32_t, uint32_t>>{
             {8, 4}, {9, 4}, {10, 3}, {50, 8}, {50, 7}, {7, 6}, {12, 2}}) {
        Graph g = Graph::harary(k, shuffled(n, n * 31 + k));
        REQUIRE_FALSE(g.is_complete());
        REQUIRE(g.degree() == k);
        for (uint32_t u = 1; u <= n; ++u) {
            auto nb = g.neighbours(u);
            REQUIRE(nb.size() == k);
            REQUIRE(std::is_sorted(nb.begin(), nb.end()));
            REQUIRE(std::adjacent_find(nb.begin(), nb.end()) == nb.end());
            for (size_t i = 0; i < nb.size(); ++i) {
                REQUIRE(nb[i] != u);
                REQUIRE(g.adjacent(nb[i], u));
                REQUIRE(g.slot(u, nb[i]) == static_cast<int>(i));
            }
        }
    }
    // k = n - 1 is the complete graph.
    Graph full = Graph::harary(6, shuffled(7, 1));
    for (uint32_t u = 1; u <= 7; ++u) REQUIRE(full.neighbours(u).size() == 6);
}

TEST_CASE("Harary graphs stay connected when fewer than k members are removed", "[graph]") {
    const uint32_t n = 12, k = 4;
    Graph g = Graph::harary(k, shuffled(n, 5));
    int checked = 0;
    for (uint32_t mask = 0; mask < (1u << n); ++mask) {
        if (__builtin_popcount(mask) != static_cast<int>(k - 1)) continue;
        std::vector<bool> gone(n + 1, false);
        for (uint32_t i = 0; i < n; ++i) gone[i + 1] = (mask >> i) & 1;
        REQUIRE(connected_without(g, gone));
        ++checked;
    }
    REQUIRE(checked == 220);
    // k removals can split it: a member's whole neighbourhood.
    std::vector<bool> gone(n + 1, false);
    for (auto v : g.neighbours(1)) gone[v] = true;
    REQUIRE_FALSE(connected_without(g, gone));
}

TEST_CASE("graphs that cannot exist are refused", "[graph]") {
    REQUIRE_THROWS_AS(Graph::harary(1, shuffled(8, 1)), UsageError);
    REQUIRE_THROWS_WITH(Graph::harary(8, shuffled(8, 1)),
                        Catch::Contains("needs more than 8 members"));
    REQUIRE_THROWS_WITH(Graph::harary(3, shuffled(9, 1)), Catch::Contains("both odd"));
    REQUIRE_THROWS_AS(Graph::harary(2, std::vector<uint32_t>{1, 2, 2, 4}), UsageError);
}

TEST_CASE("the complete graph joins everyone", "[graph]") {
    Graph g = Graph::complete(5);
    REQUIRE(g.is_complete());
    REQUIRE(g.neighbours(3) == std::vector<uint32_t>{1, 2, 4, 5});
    REQUIRE(g.slot(3, 5) == 3);
    REQUIRE_FALSE(g.adjacent(3, 3));
}

TEST_CASE("pair masks over a sparse graph cancel exactly", "[graph][mask]") {
    const uint32_t n = 10, k = 4;
    const size_t dim = 40000; // spans three keystream blocks and a ragged tail
    Graph g = Graph::harary(k, shuffled(n, 9));
    std::vector<Scalar> s(n + 1);
    std::vector<Point> S(n + 1);
    for (uint32_t u = 1; u <= n; ++u) {
        s[u] = random_scalar();
        S[u] = base_mul(s[u]);
    }
    const std::string ctx = "fed|round 3|k 4";
    std::vector<uint32_t> sum(dim, 0);
    for (uint32_t u = 1; u <= n; ++u) {
        std::vector<uint32_t> y(dim, 0);
        std::vector<MaskJob> jobs;
        for (auto v : g.neighbours(u))
            jobs.push_back({pair_key(s[u], S[v], ctx, u, v), pair_sign(u, v)});
        apply_masks(y, jobs, u % 3); // 0, 1 and 2 threads give the same values
        size_t zeros = static_cast<size_t>(std::count(y.begin(), y.end(), 0u));
        REQUIRE(zeros < 10); // each input is masked
        for (size_t i = 0; i < dim; ++i) sum[i] += y[i];
    }
    REQUIRE(std::all_of(sum.begin(), sum.end(), [](uint32_t v) { return v == 0; }));
}

TEST_CASE("many masks at once equal one mask at a time, on any number of threads", "[mask]") {
    std::vector<MaskJob> jobs;
    for (int i = 0; i < 5; ++i) {
        Key key{};
        key[0] = static_cast<uint8_t>(i + 1);
        jobs.push_back({key, i % 2 ? -1 : 1});
    }
    std::vector<uint32_t> one(50001, 7);
    for (auto& j : jobs) apply_mask(one, j.key, j.sign);
    for (unsigned threads : {1u, 2u, 3u, 8u}) {
        std::vector<uint32_t> many(50001, 7);
        apply_masks(many, jobs, threads);
        REQUIRE(many == one);
    }
}
