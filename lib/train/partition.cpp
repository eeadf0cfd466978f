#include "train/partition.hpp"

#include "record/error.hpp"
#include "record/number.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <numeric>

namespace n3::train {

namespace {

double parse_alpha(const std::string& v, const std::string& what) {
    double a = 0;
    auto r = std::from_chars(v.data(), v.data() + v.size(), a);
    if (v.empty() || r.ec != std::errc() || r.ptr != v.data() + v.size() || !(a > 0) || a > 1e6)
        throw UsageError("--partition " + what + ": ALPHA must be a positive number, not '" + v +
                         "'");
    return a;
}

uint64_t splitmix(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

constexpr size_t kMinShare = 10;   // NIID-Bench's min_require_size
constexpr int kMaxRedraws = 10000; // bound the redraw loops; NIID-Bench loops forever

} // namespace

PartitionSpec PartitionSpec::parse(const std::string& s) {
    PartitionSpec p;
    auto colon = s.find(':');
    std::string kind = s.substr(0, colon);
    std::string arg = colon == std::string::npos ? "" : s.substr(colon + 1);
    auto need_arg = [&] {
        if (colon == std::string::npos)
            throw UsageError("--partition " + kind + " needs a parameter",
                             kind == "classes" ? "e.g. classes:2" : "e.g. " + kind + ":0.5");
    };
    if (kind == "iid" || kind == "natural") {
        if (colon != std::string::npos)
            throw UsageError("--partition " + kind + " takes no parameter");
        p.kind = kind == "iid" ? Kind::iid : Kind::natural;
    } else if (kind == "dirichlet") {
        need_arg();
        p.kind = Kind::dirichlet;
        p.alpha = parse_alpha(arg, kind);
    } else if (kind == "quantity") {
        need_arg();
        p.kind = Kind::quantity;
        p.alpha = parse_alpha(arg, kind);
    } else if (kind == "classes") {
        need_arg();
        p.kind = Kind::classes;
        auto k = parse_uint(arg, INT_MAX);
        if (!k || *k < 1)
            throw UsageError("--partition classes:K: K must be a positive integer, not '" + arg +
                             "'");
        p.k = static_cast<int>(*k);
    } else if (kind == "labels") {
        if (colon == std::string::npos || arg.empty())
            throw UsageError("--partition labels needs one label group per client",
                             "e.g. labels:0+7,1+6,2+4 for three clients");
        p.kind = Kind::labels;
        size_t start = 0;
        for (;;) {
            size_t comma = arg.find(',', start);
            std::string group = arg.substr(start, comma - start);
            std::vector<int64_t> mine;
            size_t g = 0;
            for (;;) {
                size_t plus = group.find('+', g);
                std::string item = group.substr(g, plus - g);
                auto v = parse_uint(item, 1000000);
                if (!v)
                    throw UsageError("--partition labels: '" + item + "' in client " +
                                         std::to_string(p.label.size()) +
                                         "'s group is not a label number",
                                     "groups are labels joined by '+', separated by ','");
                if (std::find(mine.begin(), mine.end(), int64_t(*v)) != mine.end())
                    throw UsageError("--partition labels: client " +
                                     std::to_string(p.label.size()) + " lists label " + item +
                                     " twice");
                mine.push_back(int64_t(*v));
                if (plus == std::string::npos) break;
                g = plus + 1;
            }
            p.label.push_back(std::move(mine));
            if (comma == std::string::npos) break;
            start = comma + 1;
        }
    } else {
        throw UsageError("--partition must be iid, dirichlet:ALPHA, classes:K, quantity:ALPHA, "
                         "labels:L+L,... or natural, not '" +
                         s + "'");
    }
    return p;
}

Rng::Rng(uint64_t seed) {
    uint64_t x = seed;
    for (auto& s : s_) s = splitmix(x);
}

uint64_t Rng::next() {
    uint64_t r = rotl(s_[1] * 5, 7) * 9;
    uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return r;
}

double Rng::uniform() {
    return double(next() >> 11) * 0x1.0p-53;
}

uint64_t Rng::below(uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    for (;;) {
        uint64_t r = next();
        if (r < limit) return r % n;
    }
}

double Rng::normal() {
    // Box-Muller; one value per call keeps the stream simple to reason about.
    double u1 = 0;
    while (u1 <= 0) u1 = uniform();
    double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

double Rng::gamma(double shape) {
    if (shape < 1) {
        double u = 0;
        while (u <= 0) u = uniform();
        return gamma(shape + 1) * std::pow(u, 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
        double x = normal(), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = uniform();
        if (u < 1 - 0.0331 * x * x * x * x) return d * v;
        if (u > 0 && std::log(u) < 0.5 * x * x + d * (1 - v + std::log(v))) return d * v;
    }
}

std::vector<double> Rng::dirichlet(double alpha, size_t n) {
    std::vector<double> p(n);
    double sum = 0;
    for (auto& x : p) sum += (x = gamma(alpha));
    if (!(sum > 0)) { // every draw underflowed (tiny alpha): put all the mass on one
        std::fill(p.begin(), p.end(), 0.0);
        p[below(n)] = 1;
        return p;
    }
    for (auto& x : p) x /= sum;
    return p;
}

namespace {

using Shares = std::vector<std::vector<size_t>>;

// numpy.array_split: the first (n % parts) parts get one more element.
Shares array_split(const std::vector<size_t>& v, size_t parts) {
    Shares out(parts);
    size_t base = v.size() / parts, extra = v.size() % parts, pos = 0;
    for (size_t i = 0; i < parts; ++i) {
        size_t len = base + (i < extra ? 1 : 0);
        out[i].assign(v.begin() + long(pos), v.begin() + long(pos + len));
        pos += len;
    }
    return out;
}

// Cuts `v` at floor(cumsum(p) * len), as NIID-Bench does with np.split.
Shares split_by_proportions(const std::vector<size_t>& v, const std::vector<double>& p) {
    Shares out(p.size());
    double cum = 0;
    size_t start = 0;
    for (size_t j = 0; j < p.size(); ++j) {
        cum += p[j];
        size_t end =
            j + 1 == p.size() ? v.size() : std::min(v.size(), size_t(cum * double(v.size())));
        end = std::max(end, start);
        out[j].assign(v.begin() + long(start), v.begin() + long(end));
        start = end;
    }
    return out;
}

std::vector<size_t> iota(size_t n) {
    std::vector<size_t> v(n);
    std::iota(v.begin(), v.end(), size_t(0));
    return v;
}

std::vector<std::vector<size_t>> by_label(const Dataset& d, int64_t classes) {
    std::vector<std::vector<size_t>> idx(static_cast<size_t>(classes));
    for (size_t i = 0; i < d.labels.size(); ++i) idx[size_t(d.labels[i])].push_back(i);
    return idx;
}

Shares dirichlet_split(const Dataset& d, double alpha, size_t parties, Rng& rng) {
    const int64_t K = d.classes();
    const size_t N = d.size();
    auto classes = by_label(d, K);
    for (int attempt = 0; attempt < kMaxRedraws; ++attempt) {
        Shares batch(parties);
        for (int64_t k = 0; k < K; ++k) {
            std::vector<size_t> idx_k = classes[size_t(k)];
            rng.shuffle(idx_k);
            auto p = rng.dirichlet(alpha, parties);
            double sum = 0;
            for (size_t j = 0; j < parties; ++j) {
                if (double(batch[j].size()) >= double(N) / double(parties)) p[j] = 0;
                sum += p[j];
            }
            // NIID-Bench divides by zero here (NaN proportions) when every party is full; that
            // cannot happen while samples remain, but keep the split defined.
            if (sum > 0)
                for (auto& x : p) x /= sum;
            else
                p.assign(parties, 1.0 / double(parties));
            auto parts = split_by_proportions(idx_k, p);
            for (size_t j = 0; j < parties; ++j)
                batch[j].insert(batch[j].end(), parts[j].begin(), parts[j].end());
        }
        size_t min_size = SIZE_MAX;
        for (auto& b : batch) min_size = std::min(min_size, b.size());
        if (min_size >= kMinShare) {
            for (auto& b : batch) rng.shuffle(b);
            return batch;
        }
    }
    throw DataError(d.name + ": dirichlet:" + std::to_string(alpha) + " could not give each of " +
                        std::to_string(parties) + " clients 10 samples in " +
                        std::to_string(kMaxRedraws) + " draws",
                    "use fewer clients or a larger alpha");
}

// Each label's shuffled samples split equally among the clients that hold it (in client
// order), as NIID-Bench does for #C=k; a label nobody holds is unused.
Shares split_by_holders(const Dataset& d, const std::vector<std::vector<int64_t>>& contain,
                        Rng& rng) {
    const int64_t K = d.classes();
    auto classes = by_label(d, K);
    std::vector<size_t> times(size_t(K), 0);
    for (auto& cur : contain)
        for (int64_t c : cur) times[size_t(c)]++;
    Shares out(contain.size());
    for (int64_t c = 0; c < K; ++c) {
        if (times[size_t(c)] == 0) continue;
        auto idx = classes[size_t(c)];
        rng.shuffle(idx);
        auto parts = array_split(idx, times[size_t(c)]);
        size_t ids = 0;
        for (size_t j = 0; j < contain.size(); ++j)
            if (std::find(contain[j].begin(), contain[j].end(), c) != contain[j].end()) {
                out[j].insert(out[j].end(), parts[ids].begin(), parts[ids].end());
                ++ids;
            }
    }
    for (auto& b : out) rng.shuffle(b);
    return out;
}

Shares classes_split(const Dataset& d, int k, size_t parties, Rng& rng) {
    const int64_t K = d.classes();
    if (k > K)
        throw UsageError("--partition classes:" + std::to_string(k) + ": " + d.name + " has only " +
                         std::to_string(K) + " classes");
    if (k == K) { // every party holds every label: split each label equally
        auto classes = by_label(d, K);
        Shares out(parties);
        for (int64_t c = 0; c < K; ++c) {
            auto idx = classes[size_t(c)];
            rng.shuffle(idx);
            auto parts = array_split(idx, parties);
            for (size_t j = 0; j < parties; ++j)
                out[j].insert(out[j].end(), parts[j].begin(), parts[j].end());
        }
        for (auto& b : out) rng.shuffle(b);
        return out;
    }
    std::vector<std::vector<int64_t>> contain(parties);
    for (size_t i = 0; i < parties; ++i) {
        auto& cur = contain[i];
        cur.push_back(int64_t(i % size_t(K)));
        while (cur.size() < size_t(k)) {
            auto ind = int64_t(rng.below(uint64_t(K)));
            if (std::find(cur.begin(), cur.end(), ind) == cur.end()) cur.push_back(ind);
        }
    }
    return split_by_holders(d, contain, rng);
}

Shares labels_split(const Dataset& d, const std::vector<std::vector<int64_t>>& label,
                    size_t parties, Rng& rng) {
    if (label.size() != parties)
        throw UsageError("--partition labels: lists " + std::to_string(label.size()) +
                             " label groups for " + std::to_string(parties) + " clients",
                         "give one group per client, e.g. labels:0+7,1+6 for --clients 2");
    const int64_t K = d.classes();
    for (size_t j = 0; j < parties; ++j)
        for (int64_t c : label[j])
            if (c >= K)
                throw UsageError("--partition labels: client " + std::to_string(j) + "'s label " +
                                 std::to_string(c) + " is not in " + d.name + " (labels 0 to " +
                                 std::to_string(K - 1) + ")");
    return split_by_holders(d, label, rng);
}

Shares quantity_split(const Dataset& d, double alpha, size_t parties, Rng& rng) {
    auto idxs = iota(d.size());
    rng.shuffle(idxs);
    for (int attempt = 0; attempt < kMaxRedraws; ++attempt) {
        auto p = rng.dirichlet(alpha, parties);
        double min_share = *std::min_element(p.begin(), p.end()) * double(idxs.size());
        if (min_share >= double(kMinShare)) return split_by_proportions(idxs, p);
    }
    throw DataError(d.name + ": quantity:" + std::to_string(alpha) + " could not give each of " +
                        std::to_string(parties) + " clients 10 samples in " +
                        std::to_string(kMaxRedraws) + " draws",
                    "use fewer clients or a larger alpha");
}

Shares natural_split(const Dataset& d, size_t parties) {
    if (!d.is_text())
        throw UsageError("--partition natural splits text by book; " + d.name + " is not text",
                         "use iid, dirichlet:ALPHA, classes:K or quantity:ALPHA");
    if (d.book_names.empty())
        throw DataError(d.name + ": no book markers (lines starting like 'Ge1:1 ') for a natural "
                                 "partition",
                        "use --partition iid or quantity:ALPHA for plain text");
    if (d.book_names.size() < parties)
        throw UsageError("--partition natural: " + d.name + " has " +
                         std::to_string(d.book_names.size()) + " books, fewer than " +
                         std::to_string(parties) + " clients");
    Shares out(parties);
    int32_t current = 0;
    for (size_t i = 0; i < d.size(); ++i) {
        if (d.book[i] >= 0) current = d.book[i];
        out[size_t(current) % parties].push_back(i);
    }
    return out;
}

} // namespace

std::vector<std::vector<size_t>> partition_all(const Dataset& d, const PartitionSpec& spec,
                                               int clients, uint64_t seed) {
    if (clients < 1) throw UsageError("--clients must be at least 1");
    const auto parties = size_t(clients);
    if (d.size() < parties)
        throw DataError(d.name + ": " + std::to_string(d.size()) +
                        " samples cannot be split among " + std::to_string(clients) + " clients");
    bool labelled = spec.kind == PartitionSpec::Kind::dirichlet ||
                    spec.kind == PartitionSpec::Kind::classes ||
                    spec.kind == PartitionSpec::Kind::labels;
    if (labelled && d.is_text())
        throw UsageError(std::string("--partition ") +
                             (spec.kind == PartitionSpec::Kind::dirichlet ? "dirichlet"
                              : spec.kind == PartitionSpec::Kind::classes ? "classes"
                                                                          : "labels") +
                             " splits by label; " + d.name + " is text without labels",
                         "use iid, quantity:ALPHA or natural for text");
    Rng rng(seed);
    Shares out;
    switch (spec.kind) {
    case PartitionSpec::Kind::iid: {
        auto idxs = iota(d.size());
        rng.shuffle(idxs);
        out = array_split(idxs, parties);
        break;
    }
    case PartitionSpec::Kind::dirichlet: out = dirichlet_split(d, spec.alpha, parties, rng); break;
    case PartitionSpec::Kind::classes: out = classes_split(d, spec.k, parties, rng); break;
    case PartitionSpec::Kind::quantity: out = quantity_split(d, spec.alpha, parties, rng); break;
    case PartitionSpec::Kind::natural: out = natural_split(d, parties); break;
    case PartitionSpec::Kind::labels: out = labels_split(d, spec.label, parties, rng); break;
    }
    if (d.is_text())
        for (auto& b : out) std::sort(b.begin(), b.end());
    return out;
}

std::vector<size_t> partition(const Dataset& d, const PartitionSpec& spec, int clients, int client,
                              uint64_t seed) {
    if (client < 0 || client >= clients)
        throw UsageError("--client " + std::to_string(client) + " is out of range for " +
                             std::to_string(clients) + " clients",
                         "clients are numbered 0 to " + std::to_string(clients - 1));
    auto all = partition_all(d, spec, clients, seed);
    return std::move(all[size_t(client)]);
}

} // namespace n3::train
