// A whole secure-aggregation round between real member keys: the result equals the plain
// weighted mean within the fixed-point error for every dropout set up to n - t, and every
// misuse the protocol must refuse is refused.
#include "crypto/keys.hpp"
#include "record/error.hpp"
#include "record/safetensors.hpp"
#include "secagg/protocol.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>

using namespace n3;
using namespace n3::secagg;

namespace {

struct Federation {
    crypto::AuthoritySecret authority = crypto::AuthoritySecret::generate();
    std::vector<crypto::MemberKey> keys;
    Round round;
    explicit Federation(uint32_t n, uint32_t t, uint64_t round_no = 7) {
        for (uint32_t i = 0; i < n; ++i) {
            auto sec = crypto::MemberSecret::create("m" + std::to_string(i + 1), 0, 0);
            auto part = crypto::issue(authority, sec.request, "request");
            keys.push_back(crypto::complete(sec, part, "partial"));
        }
        round.authority = authority.public_key();
        for (auto& k : keys) round.members.push_back(k.record);
        round.round = round_no;
        round.threshold = t;
        round.clip = 1.0;
        round.max_samples = 1000;
    }
};

Record make_update(uint32_t member, size_t dim, uint64_t samples, std::vector<double>& values) {
    std::mt19937 g(member);
    std::uniform_real_distribution<float> d(-0.5f, 0.5f);
    std::vector<float> a(dim), b(3);
    for (auto& v : a) v = d(g);
    for (auto& v : b) v = d(g);
    values.assign(a.begin(), a.end());
    values.insert(values.end(), b.begin(), b.end());
    SafetensorsBuilder sb;
    sb.set_meta("samples", std::to_string(samples));
    sb.set_meta("base", std::string(64, 'a'));
    Bytes ab(a.size() * 4), bb(12);
    std::memcpy(ab.data(), a.data(), ab.size());
    std::memcpy(bb.data(), b.data(), 12);
    sb.add_owned("w", DType::F32, {static_cast<int64_t>(dim)}, ab);
    sb.add_owned("b", DType::F32, {3}, bb);
    return Record(RecordType::update, sb.bytes());
}

std::vector<float> floats_of(const Record& rec) {
    TensorSet s = TensorSet::parse(rec.payload());
    std::vector<float> out;
    for (auto& t : s.tensors()) {
        auto d = s.data(t);
        size_t n = t.numel();
        size_t old = out.size();
        out.resize(old + n);
        std::memcpy(out.data() + old, d.data(), n * 4);
    }
    return out;
}

struct RoundRun {
    std::vector<MemberState> states;
    std::vector<Advert> adverts;
    std::vector<Record> inputs;
    std::vector<std::vector<double>> values;
    std::vector<uint64_t> samples;
};

RoundRun run_to_inputs(Federation& f, size_t dim) {
    RoundRun run;
    uint32_t n = f.round.n();
    run.states.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
        Record adv = make_advert(f.keys[i], f.round, run.states[i]);
        run.adverts.push_back(read_advert(adv, f.round, "advert"));
    }
    run.values.resize(n);
    for (uint32_t i = 0; i < n; ++i) {
        run.samples.push_back(100 + 37 * i);
        Record u = make_update(i + 1, dim, run.samples.back(), run.values[i]);
        run.inputs.push_back(mask_update(f.keys[i], f.round, run.states[i], run.adverts, u));
    }
    return run;
}

} // namespace

TEST_CASE("secure sum equals the weighted mean for every dropout set", "[protocol]") {
    const uint32_t n = 5, t = 3;
    Federation f(n, t);
    const size_t dim = 2000;
    RoundRun run = run_to_inputs(f, dim);
    int sets = 0;
    for (uint32_t dropped = 0; dropped < (1u << n); ++dropped) {
        if (__builtin_popcount(dropped) > static_cast<int>(n - t)) continue;
        std::set<uint32_t> survivors;
        std::vector<Record> inputs;
        for (uint32_t i = 0; i < n; ++i)
            if (!(dropped & (1u << i))) {
                survivors.insert(i + 1);
                inputs.push_back(run.inputs[i]);
            }
        std::vector<Record> reveals;
        for (auto u : survivors) {
            MemberState st = run.states[u - 1]; // each dropout set is its own round here
            st.revealed_for.reset();
            reveals.push_back(reveal(f.keys[u - 1], f.round, st, survivors));
        }
        SumResult res = secure_sum(f.round, run.adverts, inputs, reveals);
        REQUIRE(res.survivors == survivors);
        // The plain weighted mean of the survivors, in double.
        std::vector<double> want(dim + 3, 0);
        double wsum = 0;
        for (auto u : survivors) {
            double p = double(run.samples[u - 1]) / double(f.round.max_samples);
            for (size_t k = 0; k < want.size(); ++k) want[k] += p * run.values[u - 1][k];
            wsum += p;
        }
        std::vector<float> got = floats_of(res.update);
        REQUIRE(got.size() == want.size());
        // Documented bound: each input's rounding error is below one step, so the weighted
        // mean's error is below |U| * step / sum(p) = res.step * |U|.
        double bound = res.step * double(survivors.size()) + 1e-7;
        for (size_t k = 0; k < want.size(); ++k) REQUIRE(std::abs(got[k] - want[k] / wsum) <= bound);
        auto m = TensorSet::parse(res.update.payload());
        uint64_t total = 0;
        for (auto u : survivors) total += run.samples[u - 1];
        REQUIRE(m.meta("samples") == std::to_string(total));
        ++sets;
    }
    REQUIRE(sets == 16); // 1 + 5 + 10 dropout sets of size 0, 1, 2
}

TEST_CASE("no share is revealed twice, and never both for one member", "[protocol]") {
    Federation f(4, 3);
    RoundRun run = run_to_inputs(f, 50);
    std::set<uint32_t> all{1, 2, 3, 4}, three{1, 2, 3};
    Record r1 = reveal(f.keys[0], f.round, run.states[0], all);
    // The same list again is harmless (same shares); another list is refused.
    REQUIRE_NOTHROW(reveal(f.keys[0], f.round, run.states[0], all));
    REQUIRE_THROWS_WITH(reveal(f.keys[0], f.round, run.states[0], three),
                        Catch::Contains("already revealed for another survivor list"));
    // The reveal holds, for every member, exactly one kind of share.
    TensorSet s = TensorSet::parse(r1.payload());
    REQUIRE(s.find("index")->numel() == 4);
    for (auto k : s.data(*s.find("kind"))) REQUIRE(k == 0);
    MemberState st = run.states[1];
    Record r2 = reveal(f.keys[1], f.round, st, three);
    TensorSet s2 = TensorSet::parse(r2.payload());
    auto kinds = s2.data(*s2.find("kind"));
    REQUIRE(std::count(kinds.begin(), kinds.end(), 1) == 1); // member 4 dropped: its s share
    // The state survives a round trip through its file form with the reveal remembered.
    MemberState back = MemberState::parse(st.text(), "state");
    REQUIRE_THROWS_WITH(reveal(f.keys[1], f.round, back, all), Catch::Contains("already revealed"));
}

TEST_CASE("fewer than t survivors: nothing is revealed", "[protocol]") {
    Federation f(5, 3);
    RoundRun run = run_to_inputs(f, 10);
    std::set<uint32_t> two{1, 2};
    REQUIRE_THROWS_AS(reveal(f.keys[0], f.round, run.states[0], two), IncompleteError);
    REQUIRE_FALSE(run.states[0].revealed_for);
    std::vector<Record> inputs{run.inputs[0], run.inputs[1], run.inputs[2]};
    std::set<uint32_t> three{1, 2, 3};
    std::vector<Record> reveals{reveal(f.keys[0], f.round, run.states[0], three),
                                reveal(f.keys[1], f.round, run.states[1], three)};
    REQUIRE_THROWS_AS(secure_sum(f.round, run.adverts, inputs, reveals), IncompleteError);
}

TEST_CASE("replays, forgeries and inconsistencies are refused", "[protocol]") {
    Federation f(4, 2);
    RoundRun run = run_to_inputs(f, 20);
    // An advert or input from another round.
    Round next = f.round;
    next.round = 8;
    MemberState st;
    Record adv8 = make_advert(f.keys[0], next, st);
    REQUIRE_THROWS_WITH(read_advert(adv8, f.round, "advert"), Catch::Contains("from round 8"));
    // A member of another federation cannot pose as a roster member.
    Federation other(4, 2);
    MemberState st2;
    REQUIRE_THROWS_WITH(make_advert(other.keys[0], f.round, st2), Catch::Contains("not in the roster"));
    // A tampered input does not verify.
    Bytes bad(run.inputs[1].payload().begin(), run.inputs[1].payload().end());
    bad[bad.size() - 100] ^= 1;
    std::vector<Record> inputs{run.inputs[0], Record(RecordType::masked, bad), run.inputs[2]};
    std::set<uint32_t> s123{1, 2, 3};
    std::vector<Record> reveals{reveal(f.keys[0], f.round, run.states[0], s123),
                                reveal(f.keys[2], f.round, run.states[2], s123)};
    REQUIRE_THROWS_WITH(secure_sum(f.round, run.adverts, inputs, reveals), Catch::Contains("does not verify"));
    // A reveal for another survivor list than the inputs that arrived.
    std::vector<Record> good{run.inputs[0], run.inputs[1], run.inputs[2], run.inputs[3]};
    REQUIRE_THROWS_WITH(secure_sum(f.round, run.adverts, good, reveals),
                        Catch::Contains("another survivor list"));
    // Two inputs from one member.
    std::vector<Record> twice{run.inputs[0], run.inputs[0]};
    REQUIRE_THROWS_AS(secure_sum(f.round, run.adverts, twice, reveals), DataError);
    // Masking twice in one round is refused (it would reuse the masks).
    std::vector<double> v;
    REQUIRE_THROWS_WITH(mask_update(f.keys[0], f.round, run.states[0], run.adverts, make_update(1, 20, 5, v)),
                        Catch::Contains("already masked"));
}

TEST_CASE("a masked input hides its update", "[protocol]") {
    Federation f(3, 2);
    RoundRun run = run_to_inputs(f, 1 << 16);
    // The masked values are uniform over Z_2^32: every bit set about half the time.
    TensorSet s = TensorSet::parse(run.inputs[0].payload());
    auto d = s.data(*s.find("w"));
    size_t n = d.size() / 4;
    for (int bit = 0; bit < 32; ++bit) {
        size_t ones = 0;
        for (size_t i = 0; i < n; ++i) {
            uint32_t x;
            std::memcpy(&x, d.data() + 4 * i, 4);
            ones += (x >> bit) & 1;
        }
        REQUIRE(std::abs((double(ones) - double(n) / 2.0) / std::sqrt(double(n) / 4.0)) < 6);
    }
}
