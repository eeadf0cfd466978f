// Unit tests for lib/merge: every rule against a double-precision reference computed here,
// order invariance, robustness against scaled and sign-flipped updates, server state across
// rounds, known answers, and every kind of bad input.
#include "merge/inputs.hpp"
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
#include <map>
#include <numeric>
#include <random>

using namespace n3;
using namespace n3::merge;
namespace fs = std::filesystem;

namespace {

using Vec = std::vector<double>;
using Model = std::map<std::string, Vec>; // tensor name -> values (shapes: w 3x5, b 5)

const std::vector<std::pair<std::string, std::vector<int64_t>>> kShapes = {{"w", {3, 5}},
                                                                           {"b", {5}}};

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "n3-merge-test.XXXXXX").string();
        path = ::mkdtemp(t.data());
    }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

Model random_model(std::mt19937_64& rng, double mean = 0, double sd = 1) {
    std::normal_distribution<double> d(mean, sd);
    Model m;
    for (auto& [name, shape] : kShapes) {
        size_t n = 1;
        for (auto s : shape) n *= size_t(s);
        Vec v(n);
        for (auto& x : v) x = double(float(d(rng))); // exactly representable in F32
        m[name] = v;
    }
    return m;
}

Bytes payload_of(const Model& m, const Metadata& meta, DType dtype = DType::F32) {
    SafetensorsBuilder b;
    b.set_metadata(meta);
    for (auto& [name, shape] : kShapes) {
        const Vec& v = m.at(name);
        Bytes data;
        for (double x : v) {
            if (dtype == DType::F32) {
                float f = float(x);
                uint8_t p[4];
                std::memcpy(p, &f, 4);
                data.insert(data.end(), p, p + 4);
            } else {
                uint16_t h = f32_to_f16(float(x));
                data.push_back(uint8_t(h));
                data.push_back(uint8_t(h >> 8));
            }
        }
        b.add_owned(name, dtype, shape, data);
    }
    return b.bytes();
}

void write_bytes(const std::string& path, const Bytes& bytes, bool append = false) {
    std::ofstream f(path, std::ios::binary | (append ? std::ios::app : std::ios::trunc));
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

std::string write_model(const std::string& path, const Model& m, Metadata meta = {},
                        RecordType type = RecordType::model, DType dtype = DType::F32) {
    Bytes payload = payload_of(m, meta, dtype);
    write_bytes(path, encode_record(type, payload));
    return model_hash(payload);
}

std::string write_update(const std::string& path, const Model& m, uint64_t samples,
                         const std::string& base, Metadata extra = {}) {
    extra[meta::samples] = std::to_string(samples);
    extra[meta::base] = base;
    extra[meta::round] = "1";
    return write_model(path, m, extra, RecordType::update);
}

Model read_model(const Bytes& payload, DType* dtype = nullptr) {
    TensorSet set = TensorSet::parse(payload);
    Model m;
    for (auto& t : set.tensors()) {
        Vec v(t.numel());
        for (size_t i = 0; i < v.size(); ++i)
            v[i] = element_as_double(t.dtype, set.data(t).data(), i);
        m[t.name] = v;
        if (dtype) *dtype = t.dtype;
    }
    return m;
}

// Each output element must equal the reference rounded to F32 (within one F32 rounding).
void require_close(const Model& got, const Model& want, double tol = 1e-6) {
    REQUIRE(got.size() == want.size());
    for (auto& [name, v] : want) {
        const Vec& g = got.at(name);
        REQUIRE(g.size() == v.size());
        for (size_t i = 0; i < v.size(); ++i) {
            INFO(name << "[" << i << "] got " << g[i] << " want " << v[i]);
            REQUIRE(std::abs(g[i] - v[i]) <= tol * std::max(1.0, std::abs(v[i])));
        }
    }
}

template <class F>
Model map_model(const std::vector<Model>& ms, F&& f) { // f(column of values) -> value
    Model out;
    for (auto& [name, v] : ms[0]) {
        Vec r(v.size());
        for (size_t j = 0; j < v.size(); ++j) {
            Vec col;
            for (auto& m : ms) col.push_back(m.at(name)[j]);
            r[j] = f(col);
        }
        out[name] = r;
    }
    return out;
}

Model weighted_mean(const std::vector<Model>& ms, const Vec& w) {
    double total = std::accumulate(w.begin(), w.end(), 0.0);
    Model out;
    for (auto& [name, v] : ms[0]) {
        Vec r(v.size(), 0.0);
        for (size_t i = 0; i < ms.size(); ++i)
            for (size_t j = 0; j < v.size(); ++j) r[j] += w[i] * ms[i].at(name)[j];
        for (auto& x : r) x /= total;
        out[name] = r;
    }
    return out;
}

Model add(const Model& a, const Model& b, double s = 1) {
    Model out = a;
    for (auto& [name, v] : out)
        for (size_t j = 0; j < v.size(); ++j) v[j] += s * b.at(name)[j];
    return out;
}

double distance2(const Model& a, const Model& b) {
    double s = 0;
    for (auto& [name, v] : a)
        for (size_t j = 0; j < v.size(); ++j) s += std::pow(v[j] - b.at(name)[j], 2);
    return s;
}

Result merge_files(const std::vector<std::string>& inputs, Options opt,
                   std::optional<std::string> base = std::nullopt,
                   std::optional<std::string> state = std::nullopt) {
    Request r;
    r.inputs = inputs;
    r.base = std::move(base);
    r.state = std::move(state);
    r.options = std::move(opt);
    return run(r);
}

Options with_rule(const std::string& rule) {
    Options o;
    o.rule = Rule::parse(rule);
    return o;
}

// A federation round: a base model and n updates trained from it.
struct Round {
    TempDir dir;
    std::string base_path, base_hash;
    Model base;
    std::vector<Model> updates;
    std::vector<uint64_t> samples;
    std::vector<std::string> paths;

    explicit Round(size_t n, uint64_t seed = 1) {
        std::mt19937_64 rng(seed);
        base = random_model(rng);
        base_path = dir / "base.n3";
        base_hash = write_model(base_path, base, {{meta::round, "7"}, {meta::spec_hash, "abc"}});
        for (size_t i = 0; i < n; ++i) {
            updates.push_back(random_model(rng, 0, 0.1));
            samples.push_back(10 + 7 * i);
            paths.push_back(dir / ("u" + std::to_string(i) + ".n3"));
            write_update(paths.back(), updates.back(), samples.back(), base_hash);
        }
    }
};

} // namespace

TEST_CASE("crc64_combine joins the checksums of two pieces", "[merge][crc]") {
    std::mt19937_64 rng(3);
    Bytes data(5000);
    for (auto& b : data) b = uint8_t(rng());
    uint64_t whole = crc64(0, data);
    for (size_t cut : {size_t(0), size_t(1), size_t(7), size_t(64), size_t(4999), size_t(5000)}) {
        ByteView a(data.data(), cut), b(data.data() + cut, data.size() - cut);
        REQUIRE(crc64_combine(crc64(0, a), crc64(0, b), b.size()) == whole);
    }
}

TEST_CASE("rule names parse with their parameters", "[merge][rule]") {
    REQUIRE(Rule::parse("fedavg").kind == RuleKind::fedavg);
    REQUIRE(Rule::parse("trimmed-mean:0.2").trim == Approx(0.2));
    REQUIRE(*Rule::parse("krum:2").f == 2);
    Rule mk = Rule::parse("multi-krum:1,4");
    REQUIRE((*mk.f == 1 && *mk.m == 4));
    REQUIRE_THROWS_AS(Rule::parse("fedsgd"), UsageError);
    REQUIRE_THROWS_AS(Rule::parse("trimmed-mean:0.5"), UsageError);
    REQUIRE_THROWS_AS(Rule::parse("krum:x"), UsageError);
    REQUIRE_THROWS_AS(Rule::parse("fedavg:1"), UsageError);
    REQUIRE_THROWS_AS(Rule::parse("multi-krum:1,0"), UsageError);
}

TEST_CASE("known answers", "[merge][kat]") {
    TempDir d;
    auto one = [](double w, double b) { return Model{{"w", Vec(15, w)}, {"b", Vec(5, b)}}; };
    std::string base = write_model(d / "base.n3", one(2.0, 2.0));
    write_update(d / "a.n3", one(0.5, 1.0), 1, base);
    write_update(d / "b.n3", one(-1.0, 3.0), 3, base);
    write_update(d / "c.n3", one(4.0, -8.0), 4, base);

    // fedavg: (1*0.5 + 3*-1 + 4*4) / 8 = 1.6875; (1 + 9 - 32) / 8 = -2.75
    Model m = read_model(
        merge_files({d / "a.n3", d / "b.n3", d / "c.n3"}, with_rule("fedavg")).payload());
    REQUIRE(m["w"][0] == 1.6875);
    REQUIRE(m["b"][4] == -2.75);
    // uniform: (0.5 - 1 + 4) / 3
    Options u = with_rule("fedavg");
    u.weights = WeightMode::uniform;
    m = read_model(merge_files({d / "a.n3", d / "b.n3", d / "c.n3"}, u).payload());
    REQUIRE(m["w"][3] == Approx(3.5 / 3).epsilon(1e-7));
    // median of 0.5, -1, 4 is 0.5; of 1, 3, -8 is 1
    m = read_model(
        merge_files({d / "a.n3", d / "b.n3", d / "c.n3"}, with_rule("median")).payload());
    REQUIRE(m["w"][0] == 0.5);
    REQUIRE(m["b"][0] == 1.0);
    // with --base: 2 + median
    m = read_model(
        merge_files({d / "a.n3", d / "b.n3", d / "c.n3"}, with_rule("median"), d / "base.n3")
            .payload());
    REQUIRE(m["w"][0] == 2.5);
    // fedadam, first round, a and b: delta -0.625, m -0.0625, v 0.00390724, next 1.9901587
    m = read_model(
        merge_files({d / "a.n3", d / "b.n3"}, with_rule("fedadam"), d / "base.n3", d / "adam.state")
            .payload());
    REQUIRE(float(m["w"][0]) == Approx(1.9901587f).epsilon(1e-7));
}

TEST_CASE("fedavg matches the weighted mean, with and without a base model", "[merge][fedavg]") {
    Round r(6);
    Model want = weighted_mean(r.updates, Vec(r.samples.begin(), r.samples.end()));
    Result res = merge_files(r.paths, with_rule("fedavg"));
    REQUIRE(res.type() == RecordType::update);
    REQUIRE(res.metadata().at(meta::base) == r.base_hash);
    REQUIRE(res.metadata().at(meta::samples) ==
            std::to_string(std::accumulate(r.samples.begin(), r.samples.end(), uint64_t(0))));
    require_close(read_model(res.payload()), want);

    Result next = merge_files(r.paths, with_rule("fedavg"), r.base_path);
    REQUIRE(next.type() == RecordType::model);
    REQUIRE(next.metadata().at(meta::round) == "8");
    REQUIRE(next.metadata().at(meta::spec_hash) == "abc");
    require_close(read_model(next.payload()), add(r.base, want));

    Options lr = with_rule("fedavg");
    lr.server_lr = 0.5;
    require_close(read_model(merge_files(r.paths, lr, r.base_path).payload()),
                  add(r.base, want, 0.5));

    Options list = with_rule("fedavg");
    parse_weights("1,0,2,0,0,1", list);
    require_close(read_model(merge_files(r.paths, list).payload()),
                  weighted_mean(r.updates, {1, 0, 2, 0, 0, 1}));
}

TEST_CASE("inputs may store their tensors in another order", "[merge][layout]") {
    Round r(3, 70);
    // Rewrite update 1 with its tensors in the opposite data order (b before w).
    SafetensorsBuilder b;
    b.set_metadata({{meta::samples, std::to_string(r.samples[1])}, {meta::base, r.base_hash}});
    for (auto name : {"b", "w"}) {
        Bytes data;
        for (double x : r.updates[1].at(name)) {
            float f = float(x);
            uint8_t q[4];
            std::memcpy(q, &f, 4);
            data.insert(data.end(), q, q + 4);
        }
        b.add_owned(name, DType::F32,
                    std::string(name) == "w" ? std::vector<int64_t>{3, 5} : std::vector<int64_t>{5},
                    data);
    }
    write_bytes(r.paths[1], encode_record(RecordType::update, b.bytes()));
    Result res = merge_files(r.paths, with_rule("fedavg"), r.base_path);
    require_close(read_model(res.payload()),
                  add(r.base, weighted_mean(r.updates, Vec(r.samples.begin(), r.samples.end()))));
    // A corrupted byte in the first tensor of that file is still caught by the fused check.
    Bytes bytes = read_file(r.paths[1]);
    bytes[bytes.size() - kTrailerSize - 60 * 4 / 4 - 1] ^= 0x10;
    write_bytes(r.paths[1], bytes);
    REQUIRE_THROWS_WITH(merge_files(r.paths, with_rule("fedavg"), r.base_path),
                        Catch::Contains("corrupted record (checksum mismatch)"));
}

TEST_CASE("the same inputs in any order give the same bytes", "[merge][order]") {
    Round r(7, 11);
    std::vector<std::string> rev(r.paths.rbegin(), r.paths.rend());
    std::vector<std::string> shuffled = r.paths;
    std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937_64(5));
    // One stream file holding every record, in yet another order.
    std::string stream = r.dir / "all.n3";
    for (auto& p : shuffled) write_bytes(stream, read_file(p), true);
    std::swap(shuffled.front(), shuffled.back());
    for (std::string rule :
         {"fedavg", "median", "trimmed-mean:0.2", "krum:1", "multi-krum:1,3", "fedadam"}) {
        INFO(rule);
        Options o = with_rule(rule);
        o.clip_norm = 0.4; // also exercises the norm pass
        std::optional<std::string> base, state;
        if (rule == "fedadam") base = r.base_path, state = r.dir / "never-written.state";
        Bytes a = merge_files(r.paths, o, base, state).payload();
        REQUIRE(merge_files(rev, o, base, state).payload() == a);
        REQUIRE(merge_files({stream}, o, base, state).payload() == a);
        o.threads = 1;
        REQUIRE(merge_files(shuffled, o, base, state).payload() == a);
    }
}

TEST_CASE("median and trimmed mean match their references", "[merge][robust]") {
    // 5 and 6 take the sorting network, 34 the per-coordinate sort.
    for (size_t n : {size_t(5), size_t(6), size_t(34)}) {
        Round r(n, 20 + n);
        Model med = map_model(r.updates, [](Vec c) {
            std::sort(c.begin(), c.end());
            return c.size() % 2 ? c[c.size() / 2] : (c[c.size() / 2 - 1] + c[c.size() / 2]) / 2;
        });
        require_close(read_model(merge_files(r.paths, with_rule("median")).payload()), med);
        Model tm = map_model(r.updates, [](Vec c) {
            std::sort(c.begin(), c.end());
            size_t k = size_t(std::floor(0.2 * double(c.size())));
            double s = 0;
            for (size_t i = k; i < c.size() - k; ++i) s += c[i];
            return s / double(c.size() - 2 * k);
        });
        require_close(read_model(merge_files(r.paths, with_rule("trimmed-mean:0.2")).payload()),
                      tm);
    }
}

TEST_CASE("clipping scales each update to the norm bound before the rule", "[merge][clip]") {
    Round r(4, 40);
    double c = 0.3;
    std::vector<Model> clipped;
    for (auto& u : r.updates) {
        double norm = std::sqrt(distance2(u, Model{{"w", Vec(15, 0.0)}, {"b", Vec(5, 0.0)}}));
        REQUIRE(norm > c); // so the test clips something
        Model s = u;
        for (auto& [name, v] : s)
            for (auto& x : v) x *= c / norm;
        clipped.push_back(s);
    }
    Options o = with_rule("fedavg");
    o.clip_norm = c;
    Result res = merge_files(r.paths, o);
    require_close(read_model(res.payload()),
                  weighted_mean(clipped, Vec(r.samples.begin(), r.samples.end())));
    for (auto& in : res.inputs()) REQUIRE(in.clip_scale < 1);
}

TEST_CASE("Krum, Multi-Krum, median and trimmed mean keep to the honest cluster",
          "[merge][byzantine]") {
    for (std::string attack : {"scaled", "sign-flipped"}) {
        INFO(attack);
        TempDir d;
        std::mt19937_64 rng(99);
        Model center = random_model(rng, 0.5, 0.2);
        std::vector<Model> honest;
        std::vector<std::string> paths, bad_names;
        for (int i = 0; i < 10; ++i) {
            Model u = add(center, random_model(rng, 0, 0.01));
            if (i >= 8) { // two attackers
                for (auto& [name, v] : u)
                    for (auto& x : v) x = attack == "scaled" ? 50 * x : -3 * x;
                bad_names.push_back(d / ("u" + std::to_string(i) + ".n3"));
            } else {
                honest.push_back(u);
            }
            paths.push_back(d / ("u" + std::to_string(i) + ".n3"));
            write_update(paths.back(), u, 100, "");
        }
        Model honest_mean = weighted_mean(honest, Vec(8, 1.0));
        double spread = 0; // how far honest updates sit from their mean
        for (auto& h : honest) spread = std::max(spread, distance2(h, honest_mean));

        // fedavg is pulled away: this is what the robust rules must resist.
        REQUIRE(distance2(read_model(merge_files(paths, with_rule("fedavg")).payload()),
                          honest_mean) > 100 * spread);

        for (std::string rule : {"krum:2", "multi-krum:2", "median", "trimmed-mean:0.2"}) {
            INFO(rule);
            Result res = merge_files(paths, with_rule(rule));
            REQUIRE(distance2(read_model(res.payload()), honest_mean) <= spread);
            if (rule.find("krum") != std::string::npos) {
                size_t chosen = 0;
                for (auto& in : res.inputs()) {
                    bool is_bad =
                        std::find(bad_names.begin(), bad_names.end(), in.name) != bad_names.end();
                    if (in.selected) REQUIRE_FALSE(is_bad);
                    chosen += in.selected;
                }
                REQUIRE(chosen == (rule == "krum:2" ? 1u : 8u));
            }
        }
        // Multi-Krum with m = n - f averages exactly the honest ones.
        require_close(read_model(merge_files(paths, with_rule("multi-krum:2,8")).payload()),
                      honest_mean);
    }
}

TEST_CASE("krum matches the reference selection", "[merge][krum]") {
    Round r(7, 50);
    size_t n = 7, f = 2;
    std::vector<double> score(n);
    for (size_t i = 0; i < n; ++i) {
        Vec d;
        for (size_t j = 0; j < n; ++j)
            if (j != i) d.push_back(distance2(r.updates[i], r.updates[j]));
        std::sort(d.begin(), d.end());
        score[i] = std::accumulate(d.begin(), d.begin() + long(n - f - 2), 0.0);
    }
    size_t best = size_t(std::min_element(score.begin(), score.end()) - score.begin());
    require_close(read_model(merge_files(r.paths, with_rule("krum:2")).payload()), r.updates[best]);
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return score[a] < score[b]; });
    std::vector<Model> top = {r.updates[order[0]], r.updates[order[1]], r.updates[order[2]]};
    require_close(read_model(merge_files(r.paths, with_rule("multi-krum:2,3")).payload()),
                  weighted_mean(top, Vec(3, 1.0)));
    REQUIRE_THROWS_AS(merge_files(r.paths, with_rule("krum:3")), IncompleteError); // n < 2f+3
}

TEST_CASE("server optimisers keep their state across rounds", "[merge][fedopt]") {
    for (std::string rule : {"fedavgm", "fedadam", "fedyogi", "fedadagrad"}) {
        INFO(rule);
        TempDir d;
        std::mt19937_64 rng(7);
        Model x = random_model(rng);
        Model m, v;
        for (auto& [name, vals] : x)
            m[name] = Vec(vals.size(), 0.0), v[name] = Vec(vals.size(), 1e-6);
        const double b1 = 0.9, b2 = 0.99, tau = 1e-3, lr = rule == "fedavgm" ? 1.0 : 0.01;
        std::string state = d / "server.state";
        std::string model_path = d / "model0.n3";
        std::string hash = write_model(model_path, x);
        for (int round = 0; round < 4; ++round) {
            std::vector<Model> ups;
            std::vector<std::string> paths;
            Vec w;
            for (int i = 0; i < 3; ++i) {
                ups.push_back(random_model(rng, 0.01 * round, 0.05));
                w.push_back(5 + i);
                paths.push_back(d /
                                ("r" + std::to_string(round) + "u" + std::to_string(i) + ".n3"));
                write_update(paths.back(), ups.back(), 5 + i, hash);
            }
            Model delta = weighted_mean(ups, w);
            for (auto& [name, xs] : x)
                for (size_t j = 0; j < xs.size(); ++j) {
                    double dl = delta[name][j], step;
                    double& mj = m[name][j];
                    double& vj = v[name][j];
                    if (rule == "fedavgm") {
                        mj = double(float(b1 * mj + dl));
                        step = mj;
                    } else {
                        mj = double(float(b1 * mj + (1 - b1) * dl));
                        double d2 = dl * dl;
                        if (rule == "fedadam")
                            vj = b2 * vj + (1 - b2) * d2;
                        else if (rule == "fedyogi")
                            vj = vj - (1 - b2) * d2 * (vj > d2 ? 1 : vj < d2 ? -1 : 0);
                        else
                            vj = vj + d2;
                        vj = double(float(vj));
                        step = mj / (std::sqrt(vj) + tau);
                    }
                    xs[j] = double(float(xs[j] + lr * step));
                }
            Result res = merge_files(paths, with_rule(rule), model_path, state);
            REQUIRE(res.metadata().at(meta::round) == std::to_string(round + 1));
            Model got = read_model(res.payload());
            require_close(got, x, 1e-6);
            x = got; // continue from exactly what was produced
            model_path = d / ("model" + std::to_string(round + 1) + ".n3");
            VectorSink s;
            res.write(s);
            write_bytes(model_path, s.data);
            hash = model_hash(decode_record(s.data).payload());
            res.save_state();
            REQUIRE(fs::exists(state));
        }
        // The state remembers the model it produced: an older base is refused.
        write_update(d / "late.n3", x, 1,
                     model_hash(decode_record(read_file(d / "model1.n3")).payload()));
        REQUIRE_THROWS_AS(merge_files({d / "late.n3"}, with_rule(rule), d / "model1.n3", state),
                          DataError);
        // Another rule's state is refused.
        Options other = with_rule(rule == "fedadam" ? "fedyogi" : "fedadam");
        REQUIRE_THROWS_AS(merge_files({d / "late.n3"}, other, d / "model1.n3", state), DataError);
    }
}

TEST_CASE("mix averages a node's model with its neighbours'", "[merge][mix]") {
    TempDir d;
    std::mt19937_64 rng(5);
    std::vector<Model> ms;
    std::vector<std::string> paths;
    for (int i = 0; i < 4; ++i) {
        ms.push_back(random_model(rng));
        paths.push_back(d / ("m" + std::to_string(i) + ".n3"));
        write_model(paths.back(), ms.back(), {{meta::round, "3"}});
    }
    Options o = with_rule("mix");
    o.weights = WeightMode::uniform;
    Result res = merge_files(paths, o);
    REQUIRE(res.type() == RecordType::model);
    REQUIRE(res.metadata().at(meta::round) == "3");
    require_close(read_model(res.payload()), weighted_mean(ms, Vec(4, 1.0)));

    Request self;
    self.inputs = {paths[1], paths[2], paths[3]};
    self.self = paths[0];
    self.options = with_rule("mix");
    self.options.self_weight = 0.7;
    require_close(read_model(run(self).payload()), weighted_mean(ms, {0.7, 0.1, 0.1, 0.1}));

    // Updates are not models.
    write_update(d / "u.n3", ms[0], 1, "");
    REQUIRE_THROWS_AS(merge_files({paths[0], d / "u.n3"}, o), DataError);
}

TEST_CASE("F16 inputs give an F16 output", "[merge][dtype]") {
    TempDir d;
    std::mt19937_64 rng(8);
    std::vector<Model> ms;
    for (int i = 0; i < 3; ++i) {
        Model m = random_model(rng);
        for (auto& [n, v] : m)
            for (auto& x : v) x = double(f16_to_f32(f32_to_f16(float(x))));
        ms.push_back(m);
        write_model(d / ("h" + std::to_string(i) + ".n3"), m, {}, RecordType::model, DType::F16);
    }
    DType dt{};
    Model got = read_model(
        merge_files({d / "h0.n3", d / "h1.n3", d / "h2.n3"}, with_rule("median")).payload(), &dt);
    REQUIRE(dt == DType::F16);
    require_close(got, map_model(ms, [](Vec c) {
                      std::sort(c.begin(), c.end());
                      return c[1];
                  }));
}

TEST_CASE("bad inputs are refused by name, or skipped with --skip-bad", "[merge][bad]") {
    Round r(4, 60);
    auto expect_error = [&](std::vector<std::string> inputs, const std::string& pattern,
                            std::optional<std::string> base = std::nullopt,
                            Options o = with_rule("fedavg")) {
        try {
            merge_files(inputs, o, base);
            FAIL("no error");
        } catch (const DataError& e) {
            INFO(e.what());
            REQUIRE(std::string(e.what()).find(pattern) != std::string::npos);
        }
    };
    std::mt19937_64 rng(61);
    // NaN, in the last element of the last tensor (found by the check on the sum)
    Model nan = random_model(rng, 0, 0.1);
    nan["w"][14] = std::nan("");
    std::string p_nan = r.dir / "nan.n3";
    write_update(p_nan, nan, 5, r.base_hash);
    expect_error({r.paths[0], p_nan, r.paths[1]}, "nan.n3: tensor 'w' holds NaN or Inf");
    expect_error({r.paths[0], p_nan, r.paths[1]}, "nan.n3: tensor 'w' holds NaN or Inf",
                 std::nullopt, with_rule("median"));
    expect_error({r.paths[0], p_nan, r.paths[1]}, "nan.n3: tensor 'w' holds NaN or Inf",
                 std::nullopt, with_rule("krum:0"));
    Options clip = with_rule("fedavg");
    clip.clip_norm = 1;
    expect_error({r.paths[0], p_nan, r.paths[1]}, "nan.n3: tensor 'w' holds NaN or Inf",
                 std::nullopt, clip);
    // another base model
    write_update(r.dir / "other.n3", random_model(rng), 5, std::string(64, 'e'));
    expect_error({r.paths[0], r.dir / "other.n3"}, "other.n3: was trained from model eeee",
                 r.base_path);
    expect_error({r.paths[0], r.paths[1], r.dir / "other.n3"},
                 "other.n3: was trained from model eeee");
    // another shape
    {
        SafetensorsBuilder b;
        b.set_metadata({{meta::samples, "3"}, {meta::base, r.base_hash}});
        b.add_owned("w", DType::F32, {5, 3}, Bytes(60, 0));
        b.add_owned("b", DType::F32, {5}, Bytes(20, 0));
        write_bytes(r.dir / "shape.n3", encode_record(RecordType::update, b.bytes()));
    }
    expect_error({r.paths[0], r.paths[1], r.dir / "shape.n3"},
                 "shape.n3: tensor 'w' has shape 5x3, expected 3x5");
    // another dtype
    write_model(r.dir / "f16.n3", r.updates[0], {{meta::samples, "1"}, {meta::base, r.base_hash}},
                RecordType::update, DType::F16);
    expect_error({r.paths[0], r.paths[1], r.dir / "f16.n3"},
                 "f16.n3: tensor 'w' has dtype F16, expected F32");
    // models mixed with updates
    write_model(r.dir / "model.n3", r.updates[1]);
    expect_error({r.paths[0], r.paths[1], r.dir / "model.n3"}, "model.n3: is a model record");
    expect_error({r.paths[0], r.dir / "model.n3"},
                 "model.n3: is a model record, but --base applies updates", r.base_path);
    // duplicate
    fs::copy_file(r.paths[0], r.dir / "copy.n3");
    expect_error({r.paths[0], r.paths[1], r.dir / "copy.n3"},
                 "copy.n3: is a duplicate of " + r.paths[0]);
    // no sample count
    write_model(r.dir / "nosamples.n3", r.updates[2], {{meta::base, r.base_hash}},
                RecordType::update);
    expect_error({r.paths[0], r.dir / "nosamples.n3"}, "nosamples.n3: has no sample count");
    // zero total weight
    write_update(r.dir / "z1.n3", r.updates[0], 0, r.base_hash);
    write_update(r.dir / "z2.n3", r.updates[1], 0, r.base_hash);
    expect_error({r.dir / "z1.n3", r.dir / "z2.n3"}, "total weight");
    // a corrupted byte in the tensor data: caught by the checksum fused into the data pass
    Bytes bytes = read_file(r.paths[3]);
    bytes[bytes.size() - 20] ^= 0x40;
    write_bytes(r.dir / "flip.n3", bytes);
    expect_error({r.paths[0], r.dir / "flip.n3"}, "flip.n3: corrupted record (checksum mismatch)");
    expect_error({r.paths[0], r.dir / "flip.n3"}, "flip.n3: corrupted record (checksum mismatch)",
                 std::nullopt, with_rule("median"));
    // ... and in the header, where parsing sees it first
    bytes = read_file(r.paths[3]);
    bytes[kPreambleSize + 12] ^= 0x01;
    write_bytes(r.dir / "flip2.n3", bytes);
    expect_error({r.paths[0], r.dir / "flip2.n3"},
                 "flip2.n3: corrupted record (checksum mismatch)");
    // truncated
    bytes = read_file(r.paths[3]);
    bytes.resize(bytes.size() - 9);
    write_bytes(r.dir / "cut.n3", bytes);
    expect_error({r.paths[0], r.dir / "cut.n3"}, "cut.n3: record 1 at byte 0: truncated record");
    // empty
    write_bytes(r.dir / "empty.n3", {});
    expect_error({r.paths[0], r.dir / "empty.n3"}, "empty.n3: no records");

    // --skip-bad: all of them dropped with a warning, the result is the good ones' average.
    Options skip = with_rule("fedavg");
    skip.skip_bad = true;
    Result res = merge_files({r.paths[0], p_nan, r.dir / "other.n3", r.dir / "shape.n3",
                              r.dir / "f16.n3", r.dir / "model.n3", r.dir / "copy.n3",
                              r.dir / "nosamples.n3", r.dir / "flip.n3", r.dir / "flip2.n3",
                              r.dir / "cut.n3", r.paths[1], r.paths[2]},
                             skip, r.base_path);
    REQUIRE(res.warnings().size() == 10);
    require_close(read_model(res.payload()),
                  add(r.base, weighted_mean({r.updates[0], r.updates[1], r.updates[2]},
                                            {double(r.samples[0]), double(r.samples[1]),
                                             double(r.samples[2])})));
    // ... but not below --min-inputs
    skip.min_inputs = 4;
    REQUIRE_THROWS_AS(merge_files({r.paths[0], p_nan, r.paths[1], r.paths[2]}, skip),
                      IncompleteError);
}
