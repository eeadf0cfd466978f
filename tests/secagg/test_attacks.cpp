// Attacks by a malicious aggregator (alone, or with colluding members) on secure aggregation:
// each one is first run against members that do not check (signing what the attacker asks
// for), to show that the attack code really recovers an input, and then against the real
// member steps, which must refuse so that nothing is recovered.
#include "record/error.hpp"
#include "record/safetensors.hpp"
#include "round_fixture.hpp"
#include "secagg/fixed.hpp"
#include "secagg/mask.hpp"
#include "secagg/steps.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <unistd.h>

using namespace n3;
using namespace n3::secagg;
using namespace n3::secagg::testing;

namespace {

struct Member {
    MemberState state;
    Advert advert;
    Record input{RecordType::masked, Bytes{}};
    std::vector<double> values;
};

// Every member advertises; member i masks over the adverts `shown(i)` picks.
std::vector<Member> run_round(Federation& f, size_t dim,
                              const std::function<std::vector<uint32_t>(uint32_t)>& shown) {
    const uint32_t n = f.round.n();
    std::vector<Member> m(n);
    for (uint32_t i = 0; i < n; ++i)
        m[i].advert = read_advert(make_advert(f.keys[i], f.round, m[i].state), f.round, "a");
    for (uint32_t i = 0; i < n; ++i) {
        std::vector<Advert> given;
        for (auto v : shown(i + 1)) given.push_back(m[v - 1].advert);
        Record u = make_update(i + 1, dim, 1000, m[i].values); // p = 1: the input is x itself
        m[i].input = mask_update(f.keys[i], f.round, m[i].state, given, u);
    }
    return m;
}

// The shares a member's reveal record hands over, by dealer: (kind 0: b share, 1: s share).
struct Revealed {
    std::map<uint32_t, std::vector<shamir::Share>> b, s;
};
void collect(const Record& reveal_rec, Revealed& out) {
    TensorSet set = TensorSet::parse(reveal_rec.payload());
    const uint32_t holder = static_cast<uint32_t>(std::stoul(*set.meta("member")));
    auto idx = set.data(*set.find("index"));
    auto kinds = set.data(*set.find("kind"));
    auto shares = set.data(*set.find("share"));
    for (size_t j = 0; j < kinds.size(); ++j) {
        uint32_t v;
        std::memcpy(&v, idx.data() + 4 * j, 4);
        shamir::Share sh{holder, {}};
        std::memcpy(sh.y.data(), shares.data() + 32 * j, 32);
        (kinds[j] == 0 ? out.b : out.s)[v].push_back(sh);
    }
}

// A masked input's values, every tensor's in payload order.
std::vector<uint32_t> masked_values(const TensorSet& set) {
    std::vector<uint32_t> y;
    for (auto& ti : set.tensors()) {
        if (ti.name == "signature") continue;
        auto d = set.data(ti);
        size_t old = y.size();
        y.resize(old + d.size() / 4);
        std::memcpy(y.data() + old, d.data(), d.size());
    }
    return y;
}

// The attacker's last step: strip member `target`'s self mask and its pair masks with every
// member in `partners` from its masked input, given b_target and each partner's s. Returns
// nothing when the shares do not rebuild the secrets (fewer than t verify).
std::optional<std::vector<float>> unmask(const Federation& f, const std::vector<Member>& m,
                                         uint32_t target, const std::vector<uint32_t>& partners,
                                         Revealed& got,
                                         const std::map<uint32_t, Scalar>& known_s = {}) {
    const std::string ctx = f.round.context();
    const Member& t = m[target - 1];
    TensorSet set = TensorSet::parse(t.input.payload());
    std::vector<uint32_t> y = masked_values(set);
    try {
        Scalar b = shamir::combine(got.b[target], t.advert.cb);
        apply_mask(y, self_key(b, ctx), -1);
        for (auto v : partners) {
            Scalar s =
                known_s.count(v) ? known_s.at(v) : shamir::combine(got.s[v], m[v - 1].advert.cs);
            apply_mask(y, pair_key(s, t.advert.S, ctx, v, target), -pair_sign(target, v));
        }
    } catch (const DataError&) {
        return std::nullopt;
    }
    FixedPoint fp;
    fp.clip = f.round.clip;
    fp.frac_bits = std::stoi(*set.meta("frac_bits"));
    std::vector<float> x(y.size());
    fp.decode(y, 1.0, x);
    return x;
}

bool equals_update(const std::optional<std::vector<float>>& got, const std::vector<double>& want) {
    if (!got || got->size() != want.size()) return false;
    for (size_t k = 0; k < want.size(); ++k)
        if (std::abs((*got)[k] - want[k]) > 1e-4) return false;
    return true;
}

// What a member that checks nothing would reveal for `survivors`: b shares of the listed,
// s shares of everyone else it holds shares of.
Record naive_reveal(const Federation& f, const Member& me, uint32_t index,
                    const std::set<uint32_t>& survivors) {
    std::vector<RevealEntry> entries;
    for (auto v : me.state.included) {
        bool survived = survivors.count(v) > 0;
        auto& sh = me.state.received.at(v);
        entries.push_back({v, survived, survived ? sh.second : sh.first});
    }
    return sign_reveal(f.keys[index - 1], f.round, index, survivors, entries);
}

Survivors list_of(const Federation& f, const std::vector<Member>& m, const std::set<uint32_t>& s) {
    std::vector<Record> in;
    for (auto u : s) in.push_back(m[u - 1].input);
    return read_survivors(list_survivors(in, f.round), f.round, "survivors");
}

} // namespace

TEST_CASE("attack: member 1 shown only t adverts, then listed with members it did not mask over",
          "[protocol][attack]") {
    // t = 3 of 5. The aggregator gives member 1 the adverts {1, 2, 3} only, then names the
    // survivors 1, 4, 5: members 2 and 3 count as dropped, so the shares of s_2, s_3 and of b_1
    // together strip every mask from member 1's input.
    Federation f(5, 3);
    auto m = run_round(f, 64, [](uint32_t i) {
        return i == 1 ? std::vector<uint32_t>{1, 2, 3} : std::vector<uint32_t>{1, 2, 3, 4, 5};
    });
    const std::set<uint32_t> listed{1, 4, 5};

    // Members that reveal whatever the list asks give member 1 away.
    Revealed naive;
    for (uint32_t h = 1; h <= 5; ++h) collect(naive_reveal(f, m[h - 1], h, listed), naive);
    REQUIRE(equals_update(unmask(f, m, 1, {2, 3}, naive), m[0].values));

    // The real members refuse, every one of them, and the attacker recovers nothing.
    const Survivors list = list_of(f, m, listed);
    Revealed got;
    for (uint32_t h = 1; h <= 5; ++h) {
        MemberState st = m[h - 1].state;
        try {
            collect(reveal(f.keys[h - 1], f.round, st, list), got);
            FAIL("member " << h << " revealed");
        } catch (const DataError& e) {
            const std::string why = e.what();
            if (h == 2 || h == 3)
                REQUIRE(why.find("not on the survivor list") != std::string::npos);
            else
                REQUIRE(why.find("did not mask over the advert of member 'm4'") !=
                        std::string::npos);
        }
        REQUIRE_FALSE(st.revealed_for);
    }
    REQUIRE_FALSE(unmask(f, m, 1, {2, 3}, got));
}

TEST_CASE("attack: t - 1 colluding members and the aggregator with one consistent list",
          "[protocol][attack]") {
    // Members 2 and 3 collude: they know s_2 and s_3 and hand over their shares of b_1. Member 1
    // is shown only {1, 2, 3}; one honest share of b_1 is missing, and the list 1 2 3 4 asks
    // member 4 for it.
    Federation f(5, 3);
    auto m = run_round(f, 64, [](uint32_t i) {
        return i <= 3 ? std::vector<uint32_t>{1, 2, 3} : std::vector<uint32_t>{1, 2, 3, 4, 5};
    });
    const std::set<uint32_t> listed{1, 2, 3, 4};
    std::map<uint32_t, Scalar> colluders_s;
    for (uint32_t c : {2u, 3u}) {
        Scalar s;
        std::memcpy(s.data(), m[c - 1].state.s.data(), 32);
        colluders_s[c] = s;
    }
    auto colluders = [&](Revealed& r) {
        for (uint32_t c : {2u, 3u}) r.b[1].push_back({c, m[c - 1].state.received.at(1).second});
    };

    Revealed naive;
    colluders(naive);
    collect(naive_reveal(f, m[3], 4, listed), naive);
    REQUIRE(equals_update(unmask(f, m, 1, {2, 3}, naive, colluders_s), m[0].values));

    const Survivors list = list_of(f, m, listed);
    for (uint32_t h : {1u, 4u}) {
        MemberState st = m[h - 1].state;
        REQUIRE_THROWS_WITH(reveal(f.keys[h - 1], f.round, st, list),
                            Catch::Contains("did not mask over the advert of member 'm4'"));
    }
    Revealed got;
    colluders(got);
    REQUIRE_FALSE(unmask(f, m, 1, {2, 3}, got, colluders_s));
}

TEST_CASE("attack: a survivor list with statements swapped or forged is refused",
          "[protocol][attack]") {
    Federation f(4, 3);
    auto m = run_round(f, 16, [](uint32_t) { return std::vector<uint32_t>{1, 2, 3, 4}; });
    // The aggregator cannot put words in a member's mouth: a statement re-signed by another
    // member, or with a digest changed, does not verify.
    Record list = list_survivors({m[0].input, m[1].input, m[2].input}, f.round);
    Bytes bad(list.payload().begin(), list.payload().end());
    bad[bad.size() - 70] ^= 1; // inside the last statement's signature
    REQUIRE_THROWS_WITH(read_survivors(Record(RecordType::masked, bad), f.round, "survivors"),
                        Catch::Contains("does not verify"));
    // An input whose statement was made by someone else is not listed.
    TensorSet s1 = TensorSet::parse(m[1].input.payload());
    TensorSet s0 = TensorSet::parse(m[0].input.payload());
    SafetensorsBuilder sb;
    for (auto& [k, v] : s1.metadata()) sb.set_meta(k, v);
    sb.set_meta("statement", *s0.meta("statement"));
    for (auto& t : s1.tensors())
        if (t.name != "signature") {
            auto d = s1.data(t);
            sb.add_owned(t.name, t.dtype, t.shape, Bytes(d.begin(), d.end()));
        }
    Record swapped = resign(f.keys[1], f.round, Record(RecordType::masked, sb.bytes()));
    REQUIRE_THROWS_WITH(list_survivors({m[0].input, swapped}, f.round),
                        Catch::Contains("statement"));
    // A list from another round, or a plain text list, is not a survivor list.
    Round next = f.round;
    next.round = 8;
    REQUIRE_THROWS_WITH(read_survivors(list, next, "survivors"),
                        Catch::Contains("of round 7, this is round 8"));
    REQUIRE_THROWS_WITH(read_survivors(Record(RecordType::model, Bytes{}), f.round, "survivors"),
                        Catch::Contains("not a survivor list"));
}

TEST_CASE("attack: a repeated round reuses no share box key stream", "[protocol][attack]") {
    // The aggregator runs round 7 with member 1 listed as dropped, so its holders reveal their
    // shares of s_1 in the clear; then it asks for the round again. If the second advert's
    // boxes were sealed under the same key and nonce, those clear shares would give the key
    // stream, and the second advert's shares of s_1 would fall out of its boxes.
    Federation f(5, 3);
    auto all = [](uint32_t) { return std::vector<uint32_t>{1, 2, 3, 4, 5}; };
    auto first = run_round(f, 64, all);
    Revealed dropped_1;
    const Survivors without_1 = list_of(f, first, {2, 3, 4, 5});
    for (uint32_t h = 2; h <= 5; ++h)
        collect(reveal(f.keys[h - 1], f.round, first[h - 1].state, without_1), dropped_1);
    REQUIRE(dropped_1.s[1].size() == 4);

    auto second = run_round(f, 64, all);
    Revealed got; // the second round completes with everyone: b_1 comes out as it should
    const Survivors everyone = list_of(f, second, {1, 2, 3, 4, 5});
    for (uint32_t h = 1; h <= 5; ++h)
        collect(reveal(f.keys[h - 1], f.round, second[h - 1].state, everyone), got);

    // The attacker's guess at the second round's shares of s_1: box2 xor box1 xor share1.
    Revealed guessed = got;
    for (auto& sh1 : dropped_1.s[1]) {
        const uint32_t h = sh1.x;
        const Bytes& box1 = first[0].advert.boxes[h - 1];
        const Bytes& box2 = second[0].advert.boxes[h - 1];
        const size_t ct = box1.size() - 80; // the 64 share bytes and their 16-byte tag end the box
        shamir::Share guess{h, {}};
        for (size_t k = 0; k < 32; ++k) guess.y[k] = box2[ct + k] ^ box1[ct + k] ^ sh1.y[k];
        REQUIRE_FALSE(shamir::verify(guess, second[0].advert.cs));
        guessed.s[1].push_back(guess);
    }
    std::vector<uint32_t> partners{2, 3, 4, 5};
    // Control: with the true shares of s_1 the same code unmasks member 1's second input.
    Revealed control = got;
    for (uint32_t h = 2; h <= 5; ++h)
        control.s[1].push_back({h, second[h - 1].state.received.at(1).first});
    // With s_1 itself, member 1's pair masks come off from its own side: k_1v = s_1 S_v.
    auto strip_with_s1 = [&](Revealed& r) -> std::optional<std::vector<float>> {
        try {
            const std::string ctx = f.round.context();
            Scalar s1 = shamir::combine(r.s[1], second[0].advert.cs);
            TensorSet set = TensorSet::parse(second[0].input.payload());
            std::vector<uint32_t> y = masked_values(set);
            apply_mask(y, self_key(shamir::combine(r.b[1], second[0].advert.cb), ctx), -1);
            for (auto v : partners)
                apply_mask(y, pair_key(s1, second[v - 1].advert.S, ctx, 1, v), -pair_sign(1, v));
            FixedPoint fp;
            fp.frac_bits = std::stoi(*set.meta("frac_bits"));
            std::vector<float> x(y.size());
            fp.decode(y, 1.0, x);
            return x;
        } catch (const DataError&) {
            return std::nullopt;
        }
    };
    REQUIRE(equals_update(strip_with_s1(control), second[0].values));
    REQUIRE_FALSE(strip_with_s1(guessed)); // the guessed shares rebuild nothing
}

TEST_CASE("attack: a member advertises once per round, whatever --state path it is given",
          "[protocol][attack]") {
    Federation f(3, 2);
    const std::string dir =
        std::filesystem::temp_directory_path() / ("n3-advertised-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    REQUIRE_NOTHROW(record_advert(f.keys[0], f.round, dir));
    REQUIRE_THROWS_WITH(record_advert(f.keys[0], f.round, dir),
                        Catch::Contains("already advertised in round 7"));
    REQUIRE_NOTHROW(record_advert(f.keys[1], f.round, dir)); // another member
    Round next = f.round;
    next.round = 8;
    REQUIRE_NOTHROW(record_advert(f.keys[0], next, dir)); // another round
    for (auto& e : std::filesystem::directory_iterator(dir))
        REQUIRE((std::filesystem::status(e).permissions() & std::filesystem::perms::all) ==
                (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
    std::filesystem::remove_all(dir);
}

TEST_CASE("attack: masked inputs that declare U8 tensors are refused, not summed past their end",
          "[protocol][attack]") {
    Federation f(3, 2);
    auto m = run_round(f, 1 << 18, [](uint32_t) { return std::vector<uint32_t>{1, 2, 3}; });
    // Members 1 and 2 send their inputs' bytes as U8 tensors of the same byte length.
    auto as_u8 = [&](uint32_t i) {
        TensorSet s = TensorSet::parse(m[i - 1].input.payload());
        SafetensorsBuilder sb;
        for (auto& [k, v] : s.metadata()) sb.set_meta(k, v);
        for (auto& t : s.tensors())
            if (t.name != "signature") {
                auto d = s.data(t);
                sb.add_owned(t.name, DType::U8, {static_cast<int64_t>(d.size())},
                             Bytes(d.begin(), d.end()));
            }
        return resign(f.keys[i - 1], f.round, Record(RecordType::masked, sb.bytes()));
    };
    std::vector<Record> inputs{as_u8(1), as_u8(2)};
    const Survivors list = list_of(f, m, {1, 2});
    std::vector<Record> reveals;
    for (uint32_t h : {1u, 2u})
        reveals.push_back(reveal(f.keys[h - 1], f.round, m[h - 1].state, list));
    std::vector<Advert> adverts{m[0].advert, m[1].advert, m[2].advert};
    REQUIRE_THROWS_WITH(secure_sum(f.round, adverts, inputs, reveals),
                        Catch::Contains("masked inputs hold U32 values"));
    // The same round with the inputs as they were sums.
    REQUIRE_NOTHROW(secure_sum(f.round, adverts, {m[0].input, m[1].input}, reveals));
}

TEST_CASE("SecAgg+: a member verifies only its neighbours' adverts, of every member's") {
    Federation f(12, 0, 9, 4);
    std::vector<MemberState> states(12);
    Bytes all;
    for (uint32_t i = 0; i < 12; ++i) {
        Record adv = make_advert(f.keys[i], f.round, states[i]);
        Bytes b = encode_record(RecordType::masked, adv.payload());
        all.insert(all.end(), b.begin(), b.end());
    }
    char tmpl[] = "/tmp/n3-adverts-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, all.data(), all.size()) == static_cast<ssize_t>(all.size()));
    ::close(fd);
    const std::string path = tmpl;
    CHECK(read_adverts(path, f.round).size() == 12); // the aggregator's sum reads them all
    const Graph g = f.round.graph();
    for (uint32_t u : {1u, 7u, 12u}) {
        std::vector<Advert> mine = read_adverts(path, f.round, u);
        CHECK(mine.size() == 5); // itself and its 4 neighbours
        for (auto& a : mine) CHECK((a.index == u || g.adjacent(a.index, u)));
    }
    Round complete = f.round;
    complete.neighbours = 0;
    CHECK_THROWS(read_adverts(path, complete, 1)); // adverts of a SecAgg+ round, refused whole
    ::unlink(tmpl);
}
