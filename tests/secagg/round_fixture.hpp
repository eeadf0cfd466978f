// A federation of real member keys and the updates its members mask, shared by the secure
// aggregation tests.
#pragma once

#include "crypto/keys.hpp"
#include "record/safetensors.hpp"
#include "secagg/protocol.hpp"

#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace n3::secagg::testing {

struct Federation {
    crypto::AuthoritySecret authority = crypto::AuthoritySecret::generate();
    std::vector<crypto::MemberKey> keys;
    Round round;
    explicit Federation(uint32_t n, uint32_t t, uint64_t round_no = 7, uint32_t neighbours = 0) {
        for (uint32_t i = 0; i < n; ++i) {
            auto sec = crypto::MemberSecret::create("m" + std::to_string(i + 1), 0, 0);
            auto part = crypto::issue(authority, sec.request, "request");
            keys.push_back(crypto::complete(sec, part, "partial"));
        }
        round.authority = authority.public_key();
        for (auto& k : keys) round.members.push_back(k.record);
        round.round = round_no;
        round.threshold = t;
        round.neighbours = neighbours;
        round.clip = 1.0;
        round.max_samples = 1000;
    }
};

inline Record make_update(uint32_t member, size_t dim, uint64_t samples,
                          std::vector<double>& values) {
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

inline std::vector<float> floats_of(const Record& rec) {
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

} // namespace n3::secagg::testing
