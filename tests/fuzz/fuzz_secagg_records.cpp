// Fuzzes secure aggregation's parsers: arbitrary bytes as an advert (complete graph and
// SecAgg+), as a member's state file, as a survivor list record (and an input it is made from), and
// as a reveal or input given to the aggregator, must be rejected with n3::Error, never crash, hang
// or read out of bounds. Genuine records of a fixed round are spliced with the input, so mutations
// reach past the first checks. Each splice costs a whole genuine record's parse and signature
// checks (the last two a secure sum over six inputs), so the input's first byte picks the one
// genuine record it is spliced into, and the rest of the input is what is spliced; the raw-byte
// parses, which stop at the first checks, see the whole input every time.
#include "record/error.hpp"
#include "record/safetensors.hpp"
#include "secagg/protocol.hpp"

#include <cstring>

using namespace n3;
using namespace n3::secagg;

namespace {
struct Fixture {
    crypto::AuthoritySecret auth = crypto::AuthoritySecret::generate();
    std::vector<crypto::MemberKey> keys;
    Round complete, sparse;
    std::vector<Advert> adverts;
    std::vector<Record> inputs;
    Record advert, reveal_rec, survivors;
    std::string state;
    Fixture() {
        for (int i = 0; i < 6; ++i) {
            auto sec = crypto::MemberSecret::create("m" + std::to_string(i + 1), 0, 0);
            keys.push_back(crypto::complete(sec, crypto::issue(auth, sec.request, "r"), "p"));
        }
        complete.authority = auth.public_key();
        for (auto& k : keys) complete.members.push_back(k.record);
        // The roster's index, as load_round builds it from a roster file: a member is found by
        // one look-up instead of hashing every public record of the roster.
        for (uint32_t i = 0; i < complete.n(); ++i)
            complete.positions.emplace(complete.members[i].fingerprint(), i + 1);
        complete.round = 1;
        sparse = complete;
        sparse.neighbours = 2;
        std::vector<MemberState> st(6);
        for (size_t i = 0; i < 6; ++i) {
            Record a = make_advert(keys[i], sparse, st[i]);
            if (i == 0) advert = a;
            adverts.push_back(read_advert(a, sparse, "advert"));
        }
        for (size_t i = 0; i < 6; ++i) {
            SafetensorsBuilder sb;
            sb.set_meta("samples", "10");
            sb.add_owned("w", DType::F32, {4}, Bytes(16, 0));
            inputs.push_back(mask_update(keys[i], sparse, st[i], adverts,
                                         Record(RecordType::update, sb.bytes())));
        }
        survivors = list_survivors(inputs, sparse);
        reveal_rec = reveal(keys[0], sparse, st[0], read_survivors(survivors, sparse, "survivors"));
        state = st[0].text();
    }
};
Fixture& fx() {
    static Fixture f;
    return f;
}
template <class F> void refused(F&& f) {
    try {
        f();
    } catch (const Error&) {
    }
}
Bytes splice(ByteView genuine, const uint8_t* data, size_t size) {
    Bytes b(genuine.begin(), genuine.end());
    if (size < 4 || b.empty()) return b;
    size_t at = (size_t(data[0]) << 16 | size_t(data[1]) << 8 | data[2]) % b.size();
    for (size_t i = 3; i < size && at < b.size(); ++i, ++at) b[at] = data[i];
    return b;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Fixture& f = fx();
    Bytes raw(data, data + size);
    std::string text(reinterpret_cast<const char*>(data), size);
    refused([&] { read_advert(Record(RecordType::masked, raw), f.complete, "advert"); });
    refused([&] { read_advert(Record(RecordType::masked, raw), f.sparse, "advert"); });
    refused([&] { MemberState::parse(text, "state"); });
    refused([&] { MemberState::parse(f.state.substr(0, f.state.size() / 2) + text, "state"); });
    refused([&] { read_survivors(Record(RecordType::masked, raw), f.sparse, "survivors"); });
    refused([&] { list_survivors({Record(RecordType::masked, raw)}, f.sparse); });
    if (size < 1) return 0;
    const uint8_t* rest = data + 1;
    const size_t n = size - 1;
    switch (data[0] % 5) {
    case 0:
        refused([&] {
            read_advert(Record(RecordType::masked, splice(f.advert.payload(), rest, n)), f.sparse,
                        "advert");
        });
        break;
    case 1:
        refused([&] {
            read_survivors(Record(RecordType::masked, splice(f.survivors.payload(), rest, n)),
                           f.sparse, "survivors");
        });
        break;
    case 2:
        refused([&] {
            list_survivors({Record(RecordType::masked, splice(f.inputs[2].payload(), rest, n))},
                           f.sparse);
        });
        break;
    case 3: {
        // A damaged reveal among genuine inputs.
        std::vector<Record> reveals{
            Record(RecordType::masked, splice(f.reveal_rec.payload(), rest, n))};
        refused([&] { secure_sum(f.sparse, f.adverts, f.inputs, reveals, 1); });
        break;
    }
    default: {
        // A damaged input among genuine ones (member 2's, first: the sum takes inputs in any
        // order, and one that fails is then refused before the others are checked).
        std::vector<Record> inputs{
            Record(RecordType::masked, splice(f.inputs[1].payload(), rest, n))};
        for (size_t i = 0; i < f.inputs.size(); ++i)
            if (i != 1) inputs.push_back(f.inputs[i]);
        refused([&] { secure_sum(f.sparse, f.adverts, inputs, {}, 1); });
        break;
    }
    }
    return 0;
}
