#include "record/error.hpp"
#include "train/partition.hpp"

#include <catch2/catch.hpp>
#include <numeric>
#include <set>

using namespace n3;
using namespace n3::train;

namespace {

// 10 classes with unequal sizes, labels interleaved.
Dataset labelled(size_t n) {
    Dataset d;
    d.name = "synthetic";
    d.format = Format::csv;
    d.shape = {1};
    for (size_t i = 0; i < n; ++i) {
        d.labels.push_back(int64_t((i * 7 + i / 13) % 10));
        d.values.push_back(float(i));
    }
    return d;
}

void check_disjoint_and_complete(const std::vector<std::vector<size_t>>& parts, size_t n,
                                 bool complete = true) {
    std::vector<int> seen(n, 0);
    for (auto& p : parts)
        for (size_t i : p) {
            REQUIRE(i < n);
            seen[i]++;
        }
    for (size_t i = 0; i < n; ++i) {
        REQUIRE(seen[i] <= 1);
        if (complete) REQUIRE(seen[i] == 1);
    }
}

std::set<int64_t> labels_of(const Dataset& d, const std::vector<size_t>& part) {
    std::set<int64_t> s;
    for (size_t i : part) s.insert(d.labels[i]);
    return s;
}

} // namespace

TEST_CASE("partition specs parse and refuse nonsense") {
    CHECK(PartitionSpec::parse("iid").kind == PartitionSpec::Kind::iid);
    auto dir = PartitionSpec::parse("dirichlet:0.5");
    CHECK(dir.kind == PartitionSpec::Kind::dirichlet);
    CHECK(dir.alpha == 0.5);
    CHECK(PartitionSpec::parse("classes:3").k == 3);
    CHECK(PartitionSpec::parse("quantity:2").alpha == 2);
    CHECK_THROWS_AS(PartitionSpec::parse("dirichlet"), UsageError);
    CHECK_THROWS_AS(PartitionSpec::parse("dirichlet:-1"), UsageError);
    CHECK_THROWS_AS(PartitionSpec::parse("dirichlet:abc"), UsageError);
    CHECK_THROWS_AS(PartitionSpec::parse("classes:0"), UsageError);
    CHECK_THROWS_AS(PartitionSpec::parse("iid:3"), UsageError);
    CHECK_THROWS_AS(PartitionSpec::parse("random"), UsageError);
}

TEST_CASE("every partitioner is disjoint, complete where promised, and reproducible") {
    Dataset d = labelled(3000);
    for (const char* s :
         {"iid", "dirichlet:0.5", "dirichlet:0.1", "quantity:0.5", "classes:2", "classes:10"}) {
        INFO(s);
        auto spec = PartitionSpec::parse(s);
        auto a = partition_all(d, spec, 7, 42);
        auto b = partition_all(d, spec, 7, 42);
        auto c = partition_all(d, spec, 7, 43);
        REQUIRE(a.size() == 7);
        CHECK(a == b);
        CHECK(a != c);
        // classes:2 with 7 clients may leave a label unheld; its samples are then unused.
        check_disjoint_and_complete(a, d.size(),
                                    spec.kind != PartitionSpec::Kind::classes || spec.k == 10);
        CHECK(partition(d, spec, 7, 3, 42) == a[3]);
    }
}

TEST_CASE("iid splits into near-equal shares") {
    Dataset d = labelled(1003);
    auto parts = partition_all(d, PartitionSpec::parse("iid"), 10, 1);
    for (size_t i = 0; i < parts.size(); ++i) CHECK(parts[i].size() == (i < 3 ? 101u : 100u));
}

TEST_CASE("classes:K gives each client exactly K labels, label i mod C among them") {
    Dataset d = labelled(3000);
    for (int k : {1, 2, 3, 5}) {
        auto parts = partition_all(d, PartitionSpec{PartitionSpec::Kind::classes, 0, k, {}}, 10, 5);
        for (size_t i = 0; i < parts.size(); ++i) {
            auto ls = labels_of(d, parts[i]);
            CHECK(ls.size() == size_t(k));
            CHECK(ls.count(int64_t(i % 10)) == 1);
        }
    }
    CHECK_THROWS_AS(partition_all(d, PartitionSpec::parse("classes:11"), 10, 5), UsageError);
}

TEST_CASE("labels: gives each client exactly its listed labels, split equally among holders") {
    auto spec = PartitionSpec::parse("labels:0+7,1+6,7");
    REQUIRE(spec.kind == PartitionSpec::Kind::labels);
    REQUIRE(spec.label == std::vector<std::vector<int64_t>>{{0, 7}, {1, 6}, {7}});
    Dataset d = labelled(3000);
    auto parts = partition_all(d, spec, 3, 11);
    CHECK(labels_of(d, parts[0]) == std::set<int64_t>{0, 7});
    CHECK(labels_of(d, parts[1]) == std::set<int64_t>{1, 6});
    CHECK(labels_of(d, parts[2]) == std::set<int64_t>{7});
    check_disjoint_and_complete(parts, d.size(), false);
    // Label 7 has two holders, each gets half of its samples (numpy.array_split sizes).
    size_t sevens = 0, label0 = 0;
    for (int64_t l : d.labels) sevens += l == 7, label0 += l == 0;
    auto count = [&](const std::vector<size_t>& p, int64_t l) {
        size_t c = 0;
        for (size_t i : p) c += d.labels[i] == l;
        return c;
    };
    CHECK(count(parts[0], 7) == (sevens + 1) / 2);
    CHECK(count(parts[2], 7) == sevens / 2);
    CHECK(count(parts[0], 0) == label0);
    CHECK(partition_all(d, spec, 3, 11) == parts);
    CHECK(partition_all(d, spec, 3, 12) != parts); // the seed shuffles, the labels stay
    CHECK(labels_of(d, partition_all(d, spec, 3, 12)[1]) == std::set<int64_t>{1, 6});
    // The same assignment classes:2 draws gives the same split as classes:2 itself.
    auto drawn = partition_all(d, PartitionSpec::parse("classes:2"), 10, 5);
    std::string text = "labels:";
    for (size_t i = 0; i < drawn.size(); ++i) {
        auto ls = labels_of(d, drawn[i]);
        std::vector<int64_t> order(ls.begin(), ls.end());
        // client i's own label i comes first, as classes:K lists it
        std::stable_partition(order.begin(), order.end(),
                              [&](int64_t l) { return l == int64_t(i); });
        text += (i ? "," : "") + std::to_string(order[0]) + "+" + std::to_string(order[1]);
    }
    auto exact = partition_all(d, PartitionSpec::parse(text), 10, 5);
    for (size_t i = 0; i < exact.size(); ++i)
        CHECK(labels_of(d, exact[i]) == labels_of(d, drawn[i]));
}

TEST_CASE("labels: refuses malformed lists, wrong group counts and labels not in the data") {
    for (const char* s : {"labels", "labels:", "labels:0+", "labels:+1", "labels:0,,1", "labels:a",
                          "labels:0+0", "labels:1+2+1,3", "labels:-1"}) {
        INFO(s);
        CHECK_THROWS_AS(PartitionSpec::parse(s), UsageError);
    }
    Dataset d = labelled(300);
    CHECK_THROWS_AS(partition_all(d, PartitionSpec::parse("labels:0,1"), 3, 1), UsageError);
    CHECK_THROWS_AS(partition_all(d, PartitionSpec::parse("labels:0,1,10"), 3, 1), UsageError);
    CHECK_NOTHROW(partition_all(d, PartitionSpec::parse("labels:0,1,9"), 3, 1));
}

TEST_CASE("dirichlet shares hold at least 10 samples and are skewed for small alpha") {
    Dataset d = labelled(2000);
    for (uint64_t seed = 0; seed < 20; ++seed) {
        auto parts = partition_all(d, PartitionSpec::parse("dirichlet:0.1"), 20, seed);
        for (auto& p : parts) REQUIRE(p.size() >= 10);
    }
    auto parts = partition_all(d, PartitionSpec::parse("dirichlet:0.1"), 10, 3);
    size_t skewed = 0;
    for (auto& p : parts) skewed += labels_of(d, p).size() < 10;
    CHECK(skewed > 5); // with alpha 0.1 most clients miss some labels
    auto even = partition_all(d, PartitionSpec::parse("dirichlet:1000"), 10, 3);
    for (auto& p : even) CHECK(labels_of(d, p).size() == 10);
    // 10 samples each for 300 clients out of 2000 cannot be drawn often enough: a clear error.
    CHECK_THROWS_AS(partition_all(labelled(200), PartitionSpec::parse("dirichlet:0.01"), 19, 1),
                    DataError);
}

TEST_CASE("quantity skew varies sizes, with at least 10 per client") {
    Dataset d = labelled(5000);
    auto parts = partition_all(d, PartitionSpec::parse("quantity:0.5"), 8, 9);
    size_t lo = SIZE_MAX, hi = 0;
    for (auto& p : parts) {
        lo = std::min(lo, p.size());
        hi = std::max(hi, p.size());
    }
    CHECK(lo >= 10);
    CHECK(hi > 2 * lo);
}

TEST_CASE("natural partitions give whole books to clients, text stays in order") {
    Dataset d;
    d.name = "text";
    d.format = Format::text;
    d.text = "x";
    std::vector<int32_t> books = {0, 0, 1, -1, 1, 2, 3, 3, 4};
    for (size_t i = 0; i < books.size(); ++i) {
        d.line_begin.push_back(0);
        d.line_end.push_back(1);
        d.book.push_back(books[i]);
    }
    d.book_names = {"Ge", "Exo", "Lev", "Num", "Deu"};
    auto parts = partition_all(d, PartitionSpec::parse("natural"), 2, 0);
    CHECK(parts[0] == std::vector<size_t>{0, 1, 5, 8});
    CHECK(parts[1] == std::vector<size_t>{2, 3, 4, 6, 7});
    auto iid = partition_all(d, PartitionSpec::parse("iid"), 2, 0);
    CHECK(std::is_sorted(iid[0].begin(), iid[0].end()));
    check_disjoint_and_complete(iid, d.size());
    CHECK_THROWS_AS(partition_all(d, PartitionSpec::parse("natural"), 6, 0), UsageError);
    CHECK_THROWS_AS(partition_all(d, PartitionSpec::parse("dirichlet:0.5"), 2, 0), UsageError);
    CHECK_THROWS_AS(partition_all(labelled(100), PartitionSpec::parse("natural"), 2, 0),
                    UsageError);
}

TEST_CASE("client index out of range is a usage error") {
    Dataset d = labelled(100);
    CHECK_THROWS_AS(partition(d, PartitionSpec::parse("iid"), 4, 4, 0), UsageError);
    CHECK_THROWS_AS(partition(d, PartitionSpec::parse("iid"), 4, -1, 0), UsageError);
}

TEST_CASE("the generator is the published xoshiro256** over SplitMix64") {
    Rng r(0);
    // SplitMix64(0) seeds: e220a8397b1dcdaf 6e789e6aa1b965f4 06c45d188009454f f88bb8a8724c81ec;
    // the first xoshiro256** output is rotl(s1 * 5, 7) * 9.
    uint64_t s1 = 0x6e789e6aa1b965f4ULL;
    uint64_t x = s1 * 5;
    CHECK(r.next() == ((x << 7) | (x >> 57)) * 9);
    double sum = 0;
    for (int i = 0; i < 20000; ++i) sum += r.gamma(0.5);
    CHECK(sum / 20000 == Approx(0.5).epsilon(0.05));
}
