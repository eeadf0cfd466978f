// n3/secagg/graph.hpp — who masks with whom in a secure-aggregation round.
//
// The complete graph (every member masks with every other, Bonawitz et al., CCS 2017) or, for
// large rosters, SecAgg+ (Bell et al., CCS 2020): a k-regular Harary graph H(k, n) whose ring
// places the members in a pseudo-random order derived from the round's public values, so every
// party computes the same graph without talking. Member u masks pairwise with its k neighbours
// only and deals its Shamir shares to its closed neighbourhood N[u] = N(u) + {u}.
//
// H(k, n): on a ring of n positions, each position is joined to the k/2 nearest on each side;
// for odd k (n even) also to the opposite position. It is k-regular and k-connected: removing
// fewer than k members never splits it.
//
//   Graph g = Graph::harary(n, k, seed);   // or Graph::complete(n)
//   g.neighbours(u);                       // sorted member indices (1..n), u excluded
//   g.adjacent(u, v);
//
// harary() throws UsageError when no such graph exists (k < 2, k >= n, n and k both odd).
#pragma once

#include <cstdint>
#include <vector>

namespace n3::secagg {

class Graph {
public:
    static Graph complete(uint32_t n);
    // `order[p]` is the member (1..n) at ring position p: a permutation of 1..n.
    static Graph harary(uint32_t k, std::vector<uint32_t> order);

    uint32_t n() const { return n_; }
    uint32_t degree() const { return k_; }
    bool is_complete() const { return complete_; }
    // Sorted neighbours of member u (1-based), u itself excluded.
    std::vector<uint32_t> neighbours(uint32_t u) const;
    bool adjacent(uint32_t u, uint32_t v) const;
    // Where member `v` sits in u's sorted neighbour list; -1 when not adjacent.
    int slot(uint32_t u, uint32_t v) const;

private:
    uint32_t n_ = 0, k_ = 0;
    bool complete_ = true;
    std::vector<std::vector<uint32_t>> adj_; // sparse only: adj_[u - 1], sorted
};

} // namespace n3::secagg
