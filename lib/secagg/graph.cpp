#include "secagg/graph.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <string>

namespace n3::secagg {

Graph Graph::complete(uint32_t n) {
    Graph g;
    g.n_ = n;
    g.k_ = n ? n - 1 : 0;
    g.complete_ = true;
    return g;
}

Graph Graph::harary(uint32_t k, std::vector<uint32_t> order) {
    const uint32_t n = static_cast<uint32_t>(order.size());
    if (k < 2) throw UsageError("--neighbours must be at least 2 (or 0 for every member)");
    if (k >= n)
        throw UsageError("--neighbours " + std::to_string(k) + " needs more than " +
                         std::to_string(k) + " members; the roster has " + std::to_string(n));
    if (k % 2 == 1 && n % 2 == 1)
        throw UsageError("no graph gives each of " + std::to_string(n) + " members exactly " +
                         std::to_string(k) + " neighbours (both odd)");
    {
        std::vector<uint32_t> sorted = order;
        std::sort(sorted.begin(), sorted.end());
        for (uint32_t i = 0; i < n; ++i)
            if (sorted[i] != i + 1)
                throw UsageError("graph: the ring order is not a permutation of the roster");
    }
    Graph g;
    g.n_ = n;
    g.k_ = k;
    g.complete_ = false;
    g.adj_.assign(n, {});
    auto join = [&](uint32_t p, uint32_t q) {
        g.adj_[order[p] - 1].push_back(order[q]);
        g.adj_[order[q] - 1].push_back(order[p]);
    };
    for (uint32_t p = 0; p < n; ++p) {
        for (uint32_t d = 1; d <= k / 2; ++d) join(p, (p + d) % n);
        if (k % 2 == 1 && p < n / 2) join(p, p + n / 2);
    }
    for (auto& a : g.adj_) std::sort(a.begin(), a.end());
    return g;
}

std::vector<uint32_t> Graph::neighbours(uint32_t u) const {
    if (!complete_) return adj_[u - 1];
    std::vector<uint32_t> out;
    out.reserve(n_ ? n_ - 1 : 0);
    for (uint32_t v = 1; v <= n_; ++v)
        if (v != u) out.push_back(v);
    return out;
}

bool Graph::adjacent(uint32_t u, uint32_t v) const {
    return slot(u, v) >= 0;
}

int Graph::slot(uint32_t u, uint32_t v) const {
    if (u == v || u < 1 || v < 1 || u > n_ || v > n_) return -1;
    if (complete_) return static_cast<int>(v < u ? v - 1 : v - 2);
    const auto& a = adj_[u - 1];
    auto it = std::lower_bound(a.begin(), a.end(), v);
    return it != a.end() && *it == v ? static_cast<int>(it - a.begin()) : -1;
}

} // namespace n3::secagg
