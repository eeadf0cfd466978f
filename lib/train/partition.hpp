// n3/train/partition.hpp — split a data set among federated clients, as NIID-Bench does.
//
//   auto spec = PartitionSpec::parse("dirichlet:0.5");      // UsageError when malformed
//   std::vector<size_t> mine = partition(dataset, spec, clients, client, seed);
//   auto all = partition_all(dataset, spec, clients, seed);   // every client's share
//
// Algorithms follow Li, Diao, Chen, He, "Federated Learning on Non-IID Data Silos: An
// Experimental Study" (ICDE 2022) and its code (NIID-Bench, utils.py partition_data):
//   iid            a random permutation split into `clients` near-equal parts
//   dirichlet:A    per class, proportions ~ Dir(A) over the clients, zeroed for clients that
//                  already hold >= N/clients samples, renormalised; the class's shuffled indices
//                  are cut at the cumulative proportions; redrawn until every client has >= 10
//   classes:K      client i holds label i mod C plus K-1 other distinct random labels; each
//                  label's shuffled samples are split equally among the clients that hold it
//                  (a label nobody holds is unused)
//   labels:L,L,... an exact label assignment, one group per client in client order, labels of a
//                  group joined by '+' (labels:0+7,1+6,... gives client 0 labels 0 and 7); each
//                  label's shuffled samples are split equally among its holders, as for classes:K,
//                  so a published #C=k draw (another RNG's) runs as it is
//   quantity:A     client sizes ~ Dir(A) (redrawn until each has >= 10), random samples
//   natural        text only: each book (bible-kjv verse references) goes to one client,
//                  book b to client b mod clients; lines without a book go with the book before
// Everything is drawn from one SplitMix64/xoshiro256** stream seeded by `seed`, so a split is
// the same on every machine; every client computes the whole split and keeps its share, so the
// shares are disjoint and (for iid, dirichlet, quantity, natural) complete. A client's indices
// are shuffled (text: sorted, so the corpus keeps its order).
//
// Errors: UsageError for a bad spec or client index out of range (exit 2), a labels: list whose
// group count is not the number of clients, a label repeated within a group or not in the
// data; DataError when the data cannot be split that way (too few samples for 10 per client,
// no labels, no books).
#pragma once

#include "train/data.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace n3::train {

struct PartitionSpec {
    enum class Kind { iid, dirichlet, classes, quantity, natural, labels } kind = Kind::iid;
    double alpha = 0.5;                      // dirichlet, quantity
    int k = 1;                               // classes
    std::vector<std::vector<int64_t>> label; // labels: each client's labels, in order
    static PartitionSpec parse(const std::string& s);
};

// A small deterministic generator (xoshiro256** seeded with SplitMix64) and the draws the
// partitioners need, written out so results do not depend on the C++ library.
class Rng {
public:
    explicit Rng(uint64_t seed);
    uint64_t next();
    double uniform();           // [0, 1)
    uint64_t below(uint64_t n); // [0, n), unbiased
    double normal();            // N(0, 1)
    double gamma(double shape); // Gamma(shape, 1), Marsaglia-Tsang
    std::vector<double> dirichlet(double alpha, size_t n);
    template <class T> void shuffle(std::vector<T>& v) {
        for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
    }

private:
    uint64_t s_[4];
};

std::vector<std::vector<size_t>> partition_all(const Dataset& d, const PartitionSpec& spec,
                                               int clients, uint64_t seed);
std::vector<size_t> partition(const Dataset& d, const PartitionSpec& spec, int clients, int client,
                              uint64_t seed);

} // namespace n3::train
