// A whole secure-aggregation round between real member keys: the result equals the plain
// weighted mean within the fixed-point error for every dropout set up to n - t, and every
// misuse the protocol must refuse is refused.
#include "record/error.hpp"
#include "record/safetensors.hpp"
#include "round_fixture.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>

using namespace n3;
using namespace n3::secagg;
using namespace n3::secagg::testing;

namespace {

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

// The survivor list the aggregator forwards for the inputs of `s`.
Survivors listed(const Federation& f, const RoundRun& run, const std::set<uint32_t>& s) {
    std::vector<Record> in;
    for (auto u : s) in.push_back(run.inputs[u - 1]);
    return read_survivors(list_survivors(in, f.round), f.round, "survivors");
}

// Runs steps 3 and 4 for the members in `survivors` and checks the result against the plain
// weighted mean within the documented bound.
SumResult check_sum(Federation& f, const RoundRun& run, const std::set<uint32_t>& survivors,
                    size_t dim) {
    std::vector<Record> inputs, reveals;
    for (auto u : survivors) inputs.push_back(run.inputs[u - 1]);
    for (auto u : survivors) {
        MemberState st = run.states[u - 1]; // each dropout set is its own round here
        st.revealed_for.reset();
        reveals.push_back(reveal(f.keys[u - 1], f.round, st, listed(f, run, survivors)));
    }
    SumResult res = secure_sum(f.round, run.adverts, inputs, reveals);
    REQUIRE(res.survivors == survivors);
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
    return res;
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
        for (uint32_t i = 0; i < n; ++i)
            if (!(dropped & (1u << i))) survivors.insert(i + 1);
        SumResult res = check_sum(f, run, survivors, dim);
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
    Record r1 = reveal(f.keys[0], f.round, run.states[0], listed(f, run, all));
    // The same list again is harmless (same shares); another list is refused.
    REQUIRE_NOTHROW(reveal(f.keys[0], f.round, run.states[0], listed(f, run, all)));
    REQUIRE_THROWS_WITH(reveal(f.keys[0], f.round, run.states[0], listed(f, run, three)),
                        Catch::Contains("already revealed for another survivor list"));
    // The reveal holds, for every member, exactly one kind of share.
    TensorSet s = TensorSet::parse(r1.payload());
    REQUIRE(s.find("index")->numel() == 4);
    for (auto k : s.data(*s.find("kind"))) REQUIRE(k == 0);
    MemberState st = run.states[1];
    Record r2 = reveal(f.keys[1], f.round, st, listed(f, run, three));
    TensorSet s2 = TensorSet::parse(r2.payload());
    auto kinds = s2.data(*s2.find("kind"));
    REQUIRE(std::count(kinds.begin(), kinds.end(), 1) == 1); // member 4 dropped: its s share
    // The state survives a round trip through its file form with the reveal remembered.
    MemberState back = MemberState::parse(st.text(), "state");
    REQUIRE_THROWS_WITH(reveal(f.keys[1], f.round, back, listed(f, run, all)),
                        Catch::Contains("already revealed"));
}

TEST_CASE("fewer than t survivors: nothing is revealed", "[protocol]") {
    Federation f(5, 3);
    RoundRun run = run_to_inputs(f, 10);
    std::set<uint32_t> two{1, 2};
    REQUIRE_THROWS_AS(reveal(f.keys[0], f.round, run.states[0], listed(f, run, two)),
                      IncompleteError);
    REQUIRE_FALSE(run.states[0].revealed_for);
    std::vector<Record> inputs{run.inputs[0], run.inputs[1], run.inputs[2]};
    std::set<uint32_t> three{1, 2, 3};
    std::vector<Record> reveals{reveal(f.keys[0], f.round, run.states[0], listed(f, run, three)),
                                reveal(f.keys[1], f.round, run.states[1], listed(f, run, three))};
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
    REQUIRE_THROWS_WITH(make_advert(other.keys[0], f.round, st2),
                        Catch::Contains("not in the roster"));
    // A tampered input does not verify.
    Bytes bad(run.inputs[1].payload().begin(), run.inputs[1].payload().end());
    bad[bad.size() - 100] ^= 1;
    std::vector<Record> inputs{run.inputs[0], Record(RecordType::masked, bad), run.inputs[2]};
    std::set<uint32_t> s123{1, 2, 3};
    std::vector<Record> reveals{reveal(f.keys[0], f.round, run.states[0], listed(f, run, s123)),
                                reveal(f.keys[2], f.round, run.states[2], listed(f, run, s123))};
    REQUIRE_THROWS_WITH(secure_sum(f.round, run.adverts, inputs, reveals),
                        Catch::Contains("does not verify"));
    // A reveal for another survivor list than the inputs that arrived.
    std::vector<Record> good{run.inputs[0], run.inputs[1], run.inputs[2], run.inputs[3]};
    REQUIRE_THROWS_WITH(secure_sum(f.round, run.adverts, good, reveals),
                        Catch::Contains("another survivor list"));
    // Two inputs from one member.
    std::vector<Record> twice{run.inputs[0], run.inputs[0]};
    REQUIRE_THROWS_AS(secure_sum(f.round, run.adverts, twice, reveals), DataError);
    // Masking twice in one round is refused (it would reuse the masks).
    std::vector<double> v;
    REQUIRE_THROWS_WITH(
        mask_update(f.keys[0], f.round, run.states[0], run.adverts, make_update(1, 20, 5, v)),
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

// SecAgg+ ------------------------------------------------------------------------------------

TEST_CASE("SecAgg+: every party derives the same k-regular graph from the round",
          "[protocol][secaggplus]") {
    Federation f(12, 0, 7, 4);
    Graph a = f.round.graph(), b = f.round.graph();
    Round copy = f.round;
    Graph c = copy.graph();
    bool other_round_differs = false;
    for (uint64_t rn = 8; rn < 12; ++rn) {
        Round next = f.round;
        next.round = rn;
        Graph d = next.graph();
        for (uint32_t u = 1; u <= 12; ++u)
            other_round_differs |= d.neighbours(u) != a.neighbours(u);
    }
    for (uint32_t u = 1; u <= 12; ++u) {
        REQUIRE(a.neighbours(u).size() == 4);
        REQUIRE(a.neighbours(u) == b.neighbours(u));
        REQUIRE(a.neighbours(u) == c.neighbours(u));
    }
    REQUIRE(other_round_differs); // placement follows the round, not the roster order alone
    REQUIRE(f.round.t() == 3);    // a majority of a member and its 4 neighbours
    REQUIRE(f.round.holders() == 5);
    Round bad = f.round;
    bad.threshold = 6;
    REQUIRE_THROWS_WITH(bad.validate(), Catch::Contains("out of range 2..5"));
    // t = 1: every share would be the secret itself.
    bad.threshold = 1;
    REQUIRE_THROWS_WITH(bad.validate(), Catch::Contains("out of range 2..5"));
    bad.threshold = 2;
    REQUIRE_NOTHROW(bad.validate());
    REQUIRE(bad.weak()); // 2 of 5 holders: at most half
    REQUIRE_FALSE(f.round.weak());
    bad.threshold = 0;
    bad.neighbours = 12;
    REQUIRE_THROWS_AS(bad.validate(), UsageError);
}

TEST_CASE("SecAgg+: adverts carry shares for the neighbours only", "[protocol][secaggplus]") {
    Federation f(10, 0, 7, 4);
    MemberState st;
    Record adv = make_advert(f.keys[0], f.round, st);
    TensorSet set = TensorSet::parse(adv.payload());
    REQUIRE(set.find("boxes")->shape[0] == 4);
    REQUIRE(set.meta("neighbours") == "4");
    Advert a = read_advert(adv, f.round, "advert");
    REQUIRE(a.boxes.size() == 4);
    REQUIRE(a.cs.size() == 3);
}

TEST_CASE("SecAgg+: secure sum equals the weighted mean for random dropout sets",
          "[protocol][secaggplus]") {
    const uint32_t n = 10, k = 4;
    Federation f(n, 0, 7, k);
    const size_t dim = 500;
    RoundRun run = run_to_inputs(f, dim);
    const Graph g = f.round.graph();
    // Every input holds pair masks with its 4 neighbours only.
    for (uint32_t u = 1; u <= n; ++u) REQUIRE(run.states[u - 1].included.size() == k + 1);
    std::mt19937 rng(11);
    int completed = 0, refused = 0;
    for (int trial = 0; trial < 40 && completed < 12; ++trial) {
        std::set<uint32_t> survivors;
        for (uint32_t u = 1; u <= n; ++u)
            if (rng() % 4 != 0) survivors.insert(u); // about a quarter drop
        // Feasible when every survivor, and every dropped member next to a survivor, keeps
        // t = 3 holders among the survivors.
        bool feasible = survivors.size() >= f.round.t();
        for (uint32_t w = 1; w <= n; ++w) {
            uint32_t c = survivors.count(w) ? 1 : 0, near = 0;
            for (auto v : g.neighbours(w))
                c += survivors.count(v) ? 1 : 0, near += survivors.count(v) ? 1 : 0;
            if ((survivors.count(w) || near) && c < f.round.t()) feasible = false;
        }
        if (feasible) {
            check_sum(f, run, survivors, dim);
            ++completed;
        } else {
            // Nothing is revealed: every survivor refuses with exit 3 before signing anything.
            for (auto u : survivors) {
                MemberState st = run.states[u - 1];
                REQUIRE_THROWS_AS(reveal(f.keys[u - 1], f.round, st, listed(f, run, survivors)),
                                  IncompleteError);
                REQUIRE_FALSE(st.revealed_for);
            }
            ++refused;
        }
    }
    REQUIRE(completed >= 8);
    // No dropouts, and a whole neighbourhood's worth of dropouts that still leaves t.
    std::set<uint32_t> all;
    for (uint32_t u = 1; u <= n; ++u) all.insert(u);
    check_sum(f, run, all, dim);
    INFO("refused " << refused);
}

TEST_CASE("SecAgg+: fewer than t surviving neighbours: nothing revealed, exit 3",
          "[protocol][secaggplus]") {
    const uint32_t n = 8, k = 4;
    Federation f(n, 0, 7, k);
    RoundRun run = run_to_inputs(f, 20);
    const Graph g = f.round.graph();
    // Member 1 survives but all four of its neighbours drop: its self mask has 1 holder left.
    std::set<uint32_t> survivors;
    auto nb = g.neighbours(1);
    for (uint32_t u = 1; u <= n; ++u)
        if (std::find(nb.begin(), nb.end(), u) == nb.end()) survivors.insert(u);
    REQUIRE(survivors.size() == 4);
    for (auto u : survivors) {
        MemberState st = run.states[u - 1];
        REQUIRE_THROWS_WITH(
            reveal(f.keys[u - 1], f.round, st, listed(f, run, survivors)),
            Catch::Contains("surviving share holders, the threshold is 3; nothing revealed"));
        REQUIRE_FALSE(st.revealed_for);
    }
    // Everyone survives but three of member 1's neighbours' reveals are lost: the aggregator
    // has 2 shares of member 1's self-mask seed and stops with exit 3.
    std::set<uint32_t> all;
    for (uint32_t u = 1; u <= n; ++u) all.insert(u);
    std::vector<Record> reveals;
    for (uint32_t u = 1; u <= n; ++u) {
        MemberState st = run.states[u - 1];
        Record rec = reveal(f.keys[u - 1], f.round, st, listed(f, run, all));
        if (u != nb[0] && u != nb[1] && u != nb[2]) reveals.push_back(rec);
    }
    REQUIRE(reveals.size() == 5);
    REQUIRE_THROWS_WITH(
        secure_sum(f.round, run.adverts, run.inputs, reveals),
        Catch::Contains("only 2 shares of its self-mask seed were revealed, the threshold is 3"));
}

TEST_CASE("SecAgg+: a different K is refused with a message", "[protocol][secaggplus]") {
    Federation f(8, 0, 7, 4);
    RoundRun run = run_to_inputs(f, 20);
    Round complete = f.round;
    complete.neighbours = 0;
    MemberState st;
    Record adv = make_advert(f.keys[0], f.round, st);
    REQUIRE_THROWS_WITH(
        read_advert(adv, complete, "advert"),
        Catch::Contains("advert made for --neighbours 4, this round uses the complete graph"));
    Round six = f.round;
    six.neighbours = 6;
    REQUIRE_THROWS_WITH(read_advert(adv, six, "advert"),
                        Catch::Contains("this round uses --neighbours 6"));
    MemberState st0;
    Record adv0 = make_advert(f.keys[0], complete, st0);
    REQUIRE_THROWS_WITH(
        read_advert(adv0, f.round, "advert"),
        Catch::Contains(
            "made for the complete graph (no --neighbours), this round uses --neighbours 4"));
    // The state file of a K = 4 round does not serve a K = 6 reveal.
    std::set<uint32_t> all{1, 2, 3, 4, 5, 6, 7, 8};
    REQUIRE_THROWS_WITH(reveal(f.keys[0], six, run.states[0], listed(f, run, all)),
                        Catch::Contains("--neighbours"));
    // An input masked for K = 4 does not sum in a complete-graph round, even with its adverts.
    std::vector<Record> reveals;
    for (uint32_t u = 1; u <= 8; ++u) {
        MemberState s = run.states[u - 1];
        reveals.push_back(reveal(f.keys[u - 1], f.round, s, listed(f, run, all)));
    }
    REQUIRE_THROWS_AS(secure_sum(complete, run.adverts, run.inputs, reveals), DataError);
}

TEST_CASE("SecAgg+: a reveal for a non-neighbour is refused", "[protocol][secaggplus]") {
    const uint32_t n = 8;
    Federation f(n, 0, 7, 4);
    RoundRun run = run_to_inputs(f, 20);
    const Graph g = f.round.graph();
    uint32_t stranger = 0;
    for (uint32_t v = 2; v <= n && !stranger; ++v)
        if (!g.adjacent(1, v)) stranger = v;
    REQUIRE(stranger);
    std::set<uint32_t> all;
    for (uint32_t u = 1; u <= n; ++u) all.insert(u);
    std::vector<Record> reveals;
    for (uint32_t u = 2; u <= n; ++u) {
        MemberState s = run.states[u - 1];
        reveals.push_back(reveal(f.keys[u - 1], f.round, s, listed(f, run, all)));
    }
    // Member 1's reveal, honest except for one extra share for a member it is not adjacent to.
    std::vector<RevealEntry> entries;
    for (auto v : run.states[0].included)
        entries.push_back({v, true, run.states[0].received.at(v).second});
    entries.push_back({stranger, true, run.states[0].received.at(1).second});
    reveals.push_back(sign_reveal(f.keys[0], f.round, 1, all, entries));
    REQUIRE_THROWS_WITH(secure_sum(f.round, run.adverts, run.inputs, reveals),
                        Catch::Contains("not its neighbour"));
    // The honest reveal instead completes the round.
    reveals.pop_back();
    MemberState s1 = run.states[0];
    reveals.push_back(reveal(f.keys[0], f.round, s1, listed(f, run, all)));
    REQUIRE_NOTHROW(secure_sum(f.round, run.adverts, run.inputs, reveals));
    // A state file that names a non-neighbour is refused before anything is revealed.
    MemberState bad = run.states[0];
    bad.included.insert(stranger);
    bad.received[stranger] = bad.received.at(1);
    bad.digests[stranger] = bad.digests.at(1);
    REQUIRE_THROWS_WITH(reveal(f.keys[0], f.round, bad, listed(f, run, all)),
                        Catch::Contains("not a neighbour"));
    REQUIRE_FALSE(bad.revealed_for);
}

TEST_CASE("SecAgg+: a member needs only its neighbours' adverts", "[protocol][secaggplus]") {
    const uint32_t n = 10;
    Federation f(n, 0, 7, 4);
    const Graph g = f.round.graph();
    std::vector<MemberState> states(n);
    std::vector<Advert> adverts;
    for (uint32_t i = 0; i < n; ++i)
        adverts.push_back(read_advert(make_advert(f.keys[i], f.round, states[i]), f.round, "a"));
    std::vector<Advert> mine;
    for (auto& a : adverts)
        if (a.index == 1 || g.adjacent(1, a.index)) mine.push_back(a);
    std::vector<double> v1, v2;
    MemberState s_all = states[0], s_mine = states[0];
    Record x_all = mask_update(f.keys[0], f.round, s_all, adverts, make_update(1, 30, 100, v1));
    Record x_mine = mask_update(f.keys[0], f.round, s_mine, mine, make_update(1, 30, 100, v2));
    REQUIRE(s_all.included == s_mine.included);
    auto a = TensorSet::parse(x_all.payload()), b = TensorSet::parse(x_mine.payload());
    REQUIRE(a.meta("adverts") == b.meta("adverts"));
    REQUIRE(a.meta("included") == b.meta("included"));
    // Too few of its own holders advertised: exit 3 at masking time.
    std::vector<Advert> few{mine[0], mine[1]};
    MemberState s_few = states[0];
    bool own_in_few = few[0].index == 1 || few[1].index == 1;
    if (own_in_few)
        REQUIRE_THROWS_AS(mask_update(f.keys[0], f.round, s_few, few, make_update(1, 30, 100, v1)),
                          IncompleteError);
}
