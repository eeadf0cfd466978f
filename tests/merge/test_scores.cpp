// Contribution scores (lib/merge/scores.cpp) against a reference computed here in double
// precision from the vectors themselves (not from their Gram matrix), their independence of
// input order, --min-score, and the holdout hook.
#include "merge/merge.hpp"
#include "record/error.hpp"
#include "record/format.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

using namespace n3;
using namespace n3::merge;
namespace fs = std::filesystem;

namespace {

using Vec = std::vector<double>;
constexpr size_t kN = 40; // one tensor "w" of 40 elements

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "n3-scores-test.XXXXXX").string();
        path = ::mkdtemp(t.data());
    }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

Bytes payload_of(const Vec& v, const Metadata& meta) {
    SafetensorsBuilder b;
    b.set_metadata(meta);
    Bytes data(v.size() * 4);
    for (size_t i = 0; i < v.size(); ++i) {
        float f = float(v[i]);
        std::memcpy(data.data() + 4 * i, &f, 4);
    }
    b.add_owned("w", DType::F32, {int64_t(v.size())}, data);
    return b.bytes();
}

std::string write(const std::string& path, const Vec& v, RecordType type, Metadata meta) {
    Bytes p = payload_of(v, meta);
    Bytes rec = encode_record(type, p);
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(rec.data()), std::streamsize(rec.size()));
    return model_hash(p);
}

Vec random_vec(std::mt19937_64& rng, double sd) {
    std::normal_distribution<double> d(0, sd);
    Vec v(kN);
    for (auto& x : v) x = double(float(d(rng)));
    return v;
}

double dotp(const Vec& a, const Vec& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

struct World {
    TempDir dir;
    std::string base_hash;
    Vec base;
    std::vector<Vec> ups;
    std::vector<std::string> paths, hashes;
    explicit World(size_t honest = 5) {
        std::mt19937_64 rng(7);
        base = random_vec(rng, 1);
        base_hash = write(dir / "base.n3", base, RecordType::model, {{meta::round, "3"}});
        Vec dir_common = random_vec(rng, 0.1);
        for (size_t i = 0; i < honest; ++i) {
            Vec u = random_vec(rng, 0.03);
            for (size_t j = 0; j < kN; ++j) u[j] = double(float(u[j] + dir_common[j]));
            add(u);
        }
        add(Vec(kN, 0.0)); // a free rider: the global model back, unchanged
        Vec scaled = ups[0];
        for (auto& x : scaled) x = double(float(x * 8));
        add(scaled); // a scaled update
    }
    void add(const Vec& u) {
        size_t i = ups.size();
        ups.push_back(u);
        std::string p = dir / ("u" + std::to_string(i) + ".n3");
        hashes.push_back(write(p, u, RecordType::update,
                               {{meta::samples, std::to_string(10 * (i + 1))},
                                {meta::base, base_hash},
                                {meta::round, "3"},
                                {meta::receipt_key, "key" + std::to_string(i)}}));
        paths.push_back(p);
    }
    Request request() const {
        Request r;
        r.inputs = paths;
        r.base = dir / "base.n3";
        r.options.scores = true;
        return r;
    }
};

// The reference: leave-one-out mean direction, pairwise distances and norms from the vectors.
Scores reference(const std::vector<Vec>& ups, size_t i, size_t f) {
    size_t n = ups.size();
    Vec mean(kN, 0.0); // the other updates' unit directions, summed
    for (size_t j = 0; j < n; ++j) {
        double nj = std::sqrt(dotp(ups[j], ups[j]));
        if (j != i && nj > 0)
            for (size_t k = 0; k < kN; ++k) mean[k] += ups[j][k] / nj;
    }
    Scores s;
    double ni = std::sqrt(dotp(ups[i], ups[i])), nm = std::sqrt(dotp(mean, mean));
    s.cosine = ni > 0 && nm > 0 ? dotp(ups[i], mean) / (ni * nm) : 0;
    Vec d;
    for (size_t j = 0; j < n; ++j) {
        if (j == i) continue;
        double q = 0;
        for (size_t k = 0; k < kN; ++k) q += (ups[i][k] - ups[j][k]) * (ups[i][k] - ups[j][k]);
        d.push_back(q);
    }
    std::sort(d.begin(), d.end());
    s.krum = 0;
    for (size_t k = 0; k < n - f - 2; ++k) s.krum += d[k];
    Vec norms;
    for (auto& u : ups) norms.push_back(std::sqrt(dotp(u, u)));
    std::sort(norms.begin(), norms.end());
    double med = n % 2 ? norms[n / 2] : (norms[n / 2 - 1] + norms[n / 2]) / 2;
    s.norm_ratio = ni / med;
    double r = s.norm_ratio;
    s.score = r > 0 ? std::max(0.0, s.cosine) * std::min(r, 1 / r) : 0;
    return s;
}

const InputScore& by_hash(const Result& res, const std::string& h) {
    for (auto& s : res.scores())
        if (s.hash == h) return s;
    FAIL("no score for " << h);
    throw 0;
}

} // namespace

TEST_CASE("scores match a reference computed from the vectors") {
    World w;
    Result res = run(w.request());
    REQUIRE(res.scores().size() == w.ups.size());
    const size_t n = w.ups.size(), f = (n - 3) / 2;
    for (size_t i = 0; i < n; ++i) {
        const InputScore& s = by_hash(res, w.hashes[i]);
        Scores want = reference(w.ups, i, f);
        INFO("input " << i);
        CHECK(s.scores.cosine == Approx(want.cosine).margin(1e-9));
        CHECK(s.scores.krum == Approx(want.krum).epsilon(1e-9));
        CHECK(s.scores.norm_ratio == Approx(want.norm_ratio).epsilon(1e-9));
        CHECK(s.scores.score == Approx(want.score).margin(1e-9));
        CHECK(s.accepted);
        CHECK(s.receipt_key == "key" + std::to_string(i));
        CHECK(s.weight > 0);
    }
    // The free rider scores 0; the scaled update is 8 times the median norm and scores low.
    CHECK(by_hash(res, w.hashes[5]).scores.score == 0);
    CHECK(by_hash(res, w.hashes[6]).scores.norm_ratio > 5);
    CHECK(by_hash(res, w.hashes[6]).scores.score < 0.2);
    for (size_t i = 0; i < 5; ++i) CHECK(by_hash(res, w.hashes[i]).scores.score > 0.5);
}

TEST_CASE("scores: the same inputs in any order give the same scores, in the same order") {
    World w;
    Result a = run(w.request());
    Request r = w.request();
    std::reverse(r.inputs.begin(), r.inputs.end());
    r.options.threads = 1;
    Result b = run(r);
    REQUIRE(a.scores().size() == b.scores().size());
    for (size_t i = 0; i < a.scores().size(); ++i) {
        CHECK(a.scores()[i].hash == b.scores()[i].hash);
        CHECK(a.scores()[i].weight == b.scores()[i].weight);
        CHECK(a.scores()[i].scores.cosine == b.scores()[i].scores.cosine);
        CHECK(a.scores()[i].scores.krum == b.scores()[i].scores.krum);
        CHECK(a.scores()[i].scores.score == b.scores()[i].scores.score);
    }
}

TEST_CASE("min-score skips low scorers like --skip-bad, and the merge goes on without them") {
    World w;
    Request r = w.request();
    r.options.min_score = 0.3;
    Result res = run(r);
    CHECK(res.warnings().size() == 2);
    CHECK_FALSE(by_hash(res, w.hashes[5]).accepted);
    CHECK_FALSE(by_hash(res, w.hashes[6]).accepted);
    CHECK(by_hash(res, w.hashes[5]).weight == 0);
    double total = 0;
    for (auto& s : res.scores()) total += s.weight;
    CHECK(total == Approx(1.0));
    CHECK(res.inputs().size() == 5);
    // The merged model is the fedavg of the five honest updates.
    Request honest = w.request();
    honest.inputs.resize(5);
    honest.options.scores = false;
    CHECK(run(honest).payload() == res.payload());
    // A threshold nobody reaches leaves too few inputs (exit 3).
    r.options.min_score = 2;
    CHECK_THROWS_AS(run(r), IncompleteError);
    r.options.min_score = 0.1;
    r.options.min_score_of = "holdout";
    CHECK_THROWS_AS(run(r), UsageError);
}

TEST_CASE("scores: models are refused, --holdout needs a base") {
    World w;
    Request r = w.request();
    r.inputs = {w.dir / "base.n3"};
    r.base.reset();
    CHECK_THROWS_AS(run(r), UsageError);
    Request h = w.request();
    h.base.reset();
    h.options.holdout_loss = [](ByteView) { return 0.0; };
    CHECK_THROWS_AS(run(h), UsageError);
}

TEST_CASE("holdout: each update alone applied to the base, scored by the loss it removes") {
    World w;
    // A loss the test can compute: squared distance to a target the honest updates move toward.
    Vec target = w.base;
    for (size_t k = 0; k < kN; ++k) target[k] += w.ups[1][k];
    auto loss_of = [&](const Vec& m) {
        double s = 0;
        for (size_t k = 0; k < kN; ++k) s += (m[k] - target[k]) * (m[k] - target[k]);
        return s;
    };
    Request r = w.request();
    r.options.holdout_loss = [&](ByteView payload) {
        TensorSet set = TensorSet::parse(payload);
        const TensorInfo* t = set.find("w");
        Vec m(kN);
        for (size_t k = 0; k < kN; ++k) m[k] = element_as_double(t->dtype, set.data(*t).data(), k);
        return loss_of(m);
    };
    Result res = run(r);
    for (size_t i = 0; i < w.ups.size(); ++i) {
        Vec applied(kN);
        for (size_t k = 0; k < kN; ++k) applied[k] = double(float(w.base[k] + w.ups[i][k]));
        const InputScore& s = by_hash(res, w.hashes[i]);
        REQUIRE(s.scores.holdout);
        CHECK(*s.scores.holdout == Approx(loss_of(w.base) - loss_of(applied)).epsilon(1e-9));
    }
    CHECK(*by_hash(res, w.hashes[5]).scores.holdout == 0); // the free rider: no change
    CHECK(*by_hash(res, w.hashes[6]).scores.holdout < 0);  // scaled 8x: overshoots
    CHECK(*by_hash(res, w.hashes[1]).scores.holdout > 0);  // the target's own update
}
