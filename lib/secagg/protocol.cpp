#include "secagg/protocol.hpp"

#include "record/error.hpp"
#include "record/hex.hpp"
#include "record/number.hpp"
#include "record/safetensors.hpp"
#include "secagg/mask.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sodium.h>

namespace n3::secagg {

using crypto::Hasher;

namespace {

// A share box: a fresh random nonce, then the two 32-byte shares sealed with their tag.
constexpr size_t kBoxNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kBox = kBoxNonce + 64 + crypto_aead_xchacha20poly1305_ietf_ABYTES;

ByteView bytes_of(const std::string& s) {
    return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string fp_hex(const crypto::Fingerprint& fp) {
    return to_hex(ByteView(fp.data(), fp.size()));
}

Scalar to_scalar(const crypto::Secret& s) {
    Scalar out;
    std::memcpy(out.data(), s.data(), 32);
    return out;
}

// The key of the box `dealer` seals for `holder`: the members' long-term key agreement, bound
// to the dealer's fresh round point S, so two adverts of one member (a repeated round) never
// share a key even before the random nonce. The associated data binds dealer, holder, round
// and S, so a box cannot be moved to another slot or advert.
struct BoxKey {
    crypto::Hash32 key;
    crypto::Hash32 ad;
};
BoxKey box_key(const crypto::MemberKey& me, const Round& r, uint32_t peer, uint32_t dealer,
               uint32_t holder, const Point& S) {
    const std::string ctx = r.context();
    crypto::Hash32 agreed = crypto::kem_agree(me, r.members[peer - 1], bytes_of(ctx));
    BoxKey k;
    k.key = Hasher("n3/v1/sa-box", agreed).part(S).part_u64(dealer).part_u64(holder).hash32();
    k.ad = Hasher("n3/v1/sa-box-ad").part(ctx).part_u64(dealer).part_u64(holder).part(S).hash32();
    sodium_memzero(agreed.data(), agreed.size());
    return k;
}

// Reads a U8 tensor of exactly `bytes` bytes.
ByteView blob(const TensorSet& set, const std::string& name, size_t bytes,
              const std::string& where) {
    const TensorInfo* t = set.find(name);
    if (!t || t->dtype != DType::U8 || t->nbytes() != bytes)
        throw DataError(where + ": missing or malformed '" + name + "'");
    return set.data(*t);
}

Point point_at(ByteView b, size_t i, const std::string& where) {
    Point p;
    std::memcpy(p.data(), b.data() + 32 * i, 32);
    if (!crypto::point_valid(p)) throw DataError(where + ": invalid point");
    return p;
}

// A member's closed neighbourhood N[u]: the holders of its shares, sorted.
std::vector<uint32_t> closed_neighbourhood(const Graph& g, uint32_t u) {
    std::vector<uint32_t> out = g.neighbours(u);
    out.insert(std::upper_bound(out.begin(), out.end(), u), u);
    return out;
}

bool holds_share(const Graph& g, uint32_t holder, uint32_t dealer) {
    return holder == dealer || g.adjacent(dealer, holder);
}

size_t box_count(const Round& r) {
    return r.sparse() ? r.neighbours : r.n();
}

// Where the box for `holder` sits in `dealer`'s advert.
size_t box_slot(const Round& r, const Graph& g, uint32_t dealer, uint32_t holder) {
    return r.sparse() ? static_cast<size_t>(g.slot(dealer, holder)) : holder - 1;
}

std::string k_text(uint32_t k) {
    return k ? "--neighbours " + std::to_string(k) : "the complete graph (no --neighbours)";
}

// The neighbours meta of an advert or input: absent for the complete graph.
void check_neighbours(const TensorSet& set, const Round& r, const char* what,
                      const std::string& where) {
    auto v = set.meta("neighbours");
    uint64_t k = v ? require_count(set, "neighbours", where) : 0;
    if (k != r.neighbours)
        throw DataError(where + ": " + what + " made for " + k_text(static_cast<uint32_t>(k)) +
                        ", this round uses " + k_text(r.neighbours));
}

const char* kStateMismatch = "the state file belongs to another round, roster or round parameters "
                             "(--threshold, --clip, --max-samples, --neighbours)";

crypto::Hash32 survivors_hash(const Round& r, const std::set<uint32_t>& s) {
    return Hasher("n3/v1/sa-surv").part(r.context()).part(survivors_text(s)).hash32();
}

// Signs or checks `digest` as member `index`.
void check_sig(const Round& r, uint32_t index, const crypto::Digest& digest,
               const crypto::Signature& sig, const std::string& where) {
    const auto& rec = r.members[index - 1];
    crypto::check_member(rec, r.authority, crypto::now_seconds(), where);
    if (!crypto::schnorr_verify(rec.Y_sig(r.authority.P), digest, sig))
        throw DataError(where + ": signature of member '" + rec.id + "' does not verify");
}

struct Header {
    uint32_t index;
    uint64_t round;
};

// The common metadata checks: right kind, right round, a member whose fingerprint matches.
Header check_header(const TensorSet& set, const Round& r, const char* kind,
                    const std::string& where) {
    if (set.meta("secagg") != std::string(kind))
        throw DataError(where + ": not a secure-aggregation " + kind);
    uint64_t round = require_count(set, meta::round, where);
    if (round != r.round)
        throw DataError(where + ": " + kind + " from round " + std::to_string(round) +
                        ", this is round " + std::to_string(r.round));
    uint64_t index = require_count(set, "member", where);
    if (index < 1 || index > r.n()) throw DataError(where + ": member index out of range");
    if (set.meta("fingerprint") != fp_hex(r.members[index - 1].fingerprint()))
        throw DataError(where + ": not from a member of this roster");
    return {static_cast<uint32_t>(index), round};
}

Record make_record(SafetensorsBuilder& b) {
    return Record(RecordType::masked, b.bytes());
}

crypto::Digest payload_digest(const char* personal, const Round& r, uint32_t index,
                              const Metadata& meta, const TensorSet* tensors,
                              std::initializer_list<ByteView> parts) {
    Hasher h(personal);
    h.part(r.context()).part_u64(index);
    for (auto& [k, v] : meta) {
        if (k == "signature") continue;
        h.part(k).part(v);
    }
    if (tensors)
        for (auto& t : tensors->tensors()) {
            if (t.name == "signature") continue;
            h.part(t.name).part(dtype_name(t.dtype));
            for (auto d : t.shape) h.part_u64(static_cast<uint64_t>(d));
            h.part(tensors->data(t));
        }
    for (auto& p : parts) h.part(p);
    return h.digest();
}

// A masked input's payload, its checked header, and its name for messages ("masked input 3
// (member 'm3')"): what every reader of masked inputs starts with.
struct MaskedInput {
    TensorSet set;
    Header h;
    std::string where;
};
MaskedInput open_input(const Record& rec, size_t i, const Round& r) {
    std::string where = "masked input " + std::to_string(i + 1);
    if (rec.type() != RecordType::masked) throw DataError(where + ": not a masked record");
    TensorSet set = TensorSet::parse(rec.payload(), where);
    Header h = check_header(set, r, "input", where);
    where += " (member '" + r.members[h.index - 1].id + "')";
    check_neighbours(set, r, "input", where);
    return {std::move(set), h, std::move(where)};
}

crypto::Signature read_sig(const TensorSet& set, const std::string& where) {
    crypto::Signature s;
    auto b = blob(set, "signature", 64, where);
    std::memcpy(s.data(), b.data(), 64);
    return s;
}

// What a member's statement signs: the round, the member, and every advert it masked over.
crypto::Digest statement_digest(const Round& r, uint32_t member,
                                const std::map<uint32_t, crypto::Hash32>& adverts) {
    Hasher h("n3/v1/sa-consist");
    h.part(r.context()).part_u64(member).part_u64(adverts.size());
    for (auto& [v, d] : adverts) h.part_u64(v).part(d);
    return h.digest();
}

// Exactly `out.size()` bytes of lower-case hex.
void unhex(std::string_view text, std::span<uint8_t> out, const std::string& where,
           const char* what) {
    if (!from_hex(text, out)) throw DataError(where + ": malformed '" + what + "'");
}

// A list of member indices in survivors_text's form, each in the roster once.
std::set<uint32_t> parse_indices(std::string_view text, const Round& r, const std::string& where) {
    std::set<uint32_t> s;
    size_t pos = 0;
    while (pos < text.size()) {
        while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos]))) ++pos;
        if (pos >= text.size()) break;
        size_t end = pos;
        while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
        auto n = parse_uint(text.substr(pos, end - pos), 999999999);
        if (!n) throw DataError(where + ": not a list of member indices");
        uint32_t v = static_cast<uint32_t>(*n);
        if (v < 1 || v > r.n())
            throw DataError(where + ": member " + std::to_string(v) + " is not in the roster");
        if (!s.insert(v).second)
            throw DataError(where + ": member " + std::to_string(v) + " listed twice");
        pos = end;
    }
    return s;
}

const char* kRefuse = "; nothing revealed";

} // namespace

// Round ---------------------------------------------------------------------------------------

std::string Round::context() const {
    Hasher h("n3/v1/sa-round");
    h.part(authority.fingerprint()).part_u64(round).part_u64(t()).part_u64(max_samples);
    char clip_text[64];
    std::snprintf(clip_text, sizeof clip_text, "%.17g", clip);
    h.part(std::string_view(clip_text));
    if (sparse())
        h.part("secagg+").part_u64(neighbours); // the complete graph's context is unchanged
    for (auto& m : members) h.part(m.fingerprint());
    return "n3/v1/secagg/" + to_hex(h.hash32());
}

Graph Round::graph() const {
    if (!sparse()) return Graph::complete(n());
    // The ring order depends on the federation, round, roster and k only, so every party derives
    // the same graph from the flags it already shares.
    Hasher seed_h("n3/v1/sa-graph");
    seed_h.part(authority.fingerprint()).part_u64(round).part_u64(neighbours).part_u64(n());
    for (auto& m : members) seed_h.part(m.fingerprint());
    const crypto::Hash32 seed = seed_h.hash32();
    std::vector<std::pair<crypto::Hash32, uint32_t>> keyed;
    for (uint32_t i = 0; i < n(); ++i)
        keyed.emplace_back(
            Hasher("n3/v1/sa-ring").part(seed).part(members[i].fingerprint()).hash32(), i + 1);
    std::sort(keyed.begin(), keyed.end());
    std::vector<uint32_t> order;
    for (auto& [h, i] : keyed) order.push_back(i);
    return Graph::harary(neighbours, std::move(order));
}

uint32_t Round::index_of(const crypto::Fingerprint& fp) const {
    if (positions.size() == n()) {
        auto it = positions.find(fp);
        return it == positions.end() ? 0 : it->second;
    }
    for (uint32_t i = 0; i < n(); ++i)
        if (crypto::equal(members[i].fingerprint(), fp)) return i + 1;
    return 0;
}

void Round::validate() const {
    if (n() < 2) throw UsageError("secure aggregation needs a roster of at least 2 members");
    if (sparse()) graph(); // UsageError when no k-regular graph exists for this roster
    // t = 1 would make every share the secret itself: one holder could unmask a member.
    if (t() < 2 || t() > holders())
        throw UsageError(
            "threshold " + std::to_string(t()) + " out of range 2.." + std::to_string(holders()) +
            (sparse() ? " (a member and its " + std::to_string(neighbours) + " neighbours)" : ""));
    if (!(clip > 0) || !std::isfinite(clip)) throw UsageError("--clip must be positive");
    if (max_samples == 0) throw UsageError("--max-samples must be positive");
    std::set<std::string> seen;
    for (auto& m : members)
        if (!seen.insert(fp_hex(m.fingerprint())).second)
            throw UsageError("the roster lists member '" + m.id + "' twice");
}

// MemberState -----------------------------------------------------------------------------------

std::string MemberState::text() const {
    Bytes out_bytes;
    crypto::put_u32(out_bytes, index);
    crypto::put_u64(out_bytes, round);
    crypto::put(out_bytes, context);
    crypto::put(out_bytes, s.view());
    crypto::put(out_bytes, b.view());
    crypto::put_u32(out_bytes, static_cast<uint32_t>(received.size()));
    for (auto& [v, sh] : received) {
        crypto::put_u32(out_bytes, v);
        crypto::put(out_bytes, sh.first);
        crypto::put(out_bytes, sh.second);
    }
    crypto::put_u32(out_bytes, static_cast<uint32_t>(included.size()));
    for (auto v : included) crypto::put_u32(out_bytes, v);
    out_bytes.push_back(revealed_for ? 1 : 0);
    if (revealed_for) crypto::put(out_bytes, *revealed_for);
    // Trailing blocks, each optional when reading: older state files still parse.
    crypto::put_u32(out_bytes, static_cast<uint32_t>(advertised.size()));
    for (auto v : advertised) crypto::put_u32(out_bytes, v);
    crypto::put_u32(out_bytes, static_cast<uint32_t>(digests.size()));
    for (auto& [v, d] : digests) {
        crypto::put_u32(out_bytes, v);
        crypto::put(out_bytes, d);
    }
    std::string out(
        sodium_base64_encoded_len(out_bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
        '\0');
    sodium_bin2base64(out.data(), out.size(), out_bytes.data(), out_bytes.size(),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out.resize(std::strlen(out.c_str()));
    sodium_memzero(out_bytes.data(), out_bytes.size());
    return "N3-SECAGG-STATE-" + out + "\n";
}

MemberState MemberState::parse(std::string_view text, const std::string& where) {
    const std::string prefix = "N3-SECAGG-STATE-";
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back())))
        text.remove_suffix(1);
    if (text.substr(0, prefix.size()) != prefix)
        throw DataError(where + ": not a secure-aggregation state file");
    text.remove_prefix(prefix.size());
    Bytes b(text.size());
    size_t len = 0;
    if (sodium_base642bin(b.data(), b.size(), text.data(), text.size(), nullptr, &len, nullptr,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        throw DataError(where + ": corrupted state file");
    b.resize(len);
    crypto::Cursor c(b, where);
    MemberState st;
    st.index = c.u32();
    st.round = c.u64();
    st.context = c.array<32>();
    auto sv = c.take(32);
    std::memcpy(st.s.data(), sv.data(), 32);
    auto bv = c.take(32);
    std::memcpy(st.b.data(), bv.data(), 32);
    uint32_t nr = c.u32();
    for (uint32_t i = 0; i < nr; ++i) {
        uint32_t v = c.u32();
        Scalar a = c.array<32>(), d = c.array<32>();
        st.received[v] = {a, d};
    }
    uint32_t ni = c.u32();
    for (uint32_t i = 0; i < ni; ++i) st.included.insert(c.u32());
    if (c.u8()) st.revealed_for = c.array<32>();
    if (c.left()) {
        uint32_t na = c.u32();
        for (uint32_t i = 0; i < na; ++i) st.advertised.insert(c.u32());
    }
    if (c.left()) {
        uint32_t nd = c.u32();
        for (uint32_t i = 0; i < nd; ++i) {
            uint32_t v = c.u32();
            st.digests[v] = c.array<32>();
        }
    }
    c.expect_end();
    sodium_memzero(b.data(), b.size());
    return st;
}

MemberState MemberState::load(const std::string& path) {
    return parse(read_text_file(path), path);
}

// Step 1 --------------------------------------------------------------------------------------

Record make_advert(const crypto::MemberKey& me, const Round& r, MemberState& st) {
    crypto::init();
    r.validate();
    uint32_t u = r.index_of(me.record.fingerprint());
    if (!u) throw DataError("this member's key is not in the roster");
    const uint32_t t = r.t();
    const std::string ctx = r.context();
    const Graph g = r.graph();
    const std::vector<uint32_t> holders = closed_neighbourhood(g, u);
    st = MemberState{};
    st.index = u;
    st.round = r.round;
    st.context = Hasher("n3/v1/sa-ctx").part(ctx).hash32();
    crypto::scalar_random(std::span<uint8_t>(st.s.data(), 32));
    crypto::scalar_random(std::span<uint8_t>(st.b.data(), 32));
    Scalar s = to_scalar(st.s), b = to_scalar(st.b);
    // Shares go to the holders only, at their roster positions.
    auto ds = shamir::deal_at(s, t, holders), db = shamir::deal_at(b, t, holders);
    Point S = base_mul(s);

    Bytes cs, cb, boxes(box_count(r) * kBox, 0);
    for (auto& p : ds.commitments) crypto::put(cs, p);
    for (auto& p : db.commitments) crypto::put(cb, p);
    for (size_t i = 0; i < holders.size(); ++i) {
        const uint32_t v = holders[i];
        if (v == u) {
            st.received[u] = {ds.shares[i].y, db.shares[i].y};
            continue;
        }
        uint8_t plain[64];
        std::memcpy(plain, ds.shares[i].y.data(), 32);
        std::memcpy(plain + 32, db.shares[i].y.data(), 32);
        BoxKey k = box_key(me, r, v, u, v, S);
        uint8_t* box = boxes.data() + box_slot(r, g, u, v) * kBox;
        randombytes_buf(box, kBoxNonce);
        crypto_aead_xchacha20poly1305_ietf_encrypt(box + kBoxNonce, nullptr, plain, 64, k.ad.data(),
                                                   k.ad.size(), nullptr, box, k.key.data());
        sodium_memzero(plain, sizeof plain);
        sodium_memzero(k.key.data(), k.key.size());
    }
    SafetensorsBuilder sb;
    sb.set_meta("secagg", "advert");
    sb.set_meta(meta::round, std::to_string(r.round));
    sb.set_meta("member", std::to_string(u));
    sb.set_meta("fingerprint", fp_hex(me.record.fingerprint()));
    sb.set_meta("threshold", std::to_string(t));
    if (r.sparse()) sb.set_meta("neighbours", std::to_string(r.neighbours));
    sb.add_owned("S", DType::U8, {32}, Bytes(S.begin(), S.end()));
    sb.add_owned("commit_s", DType::U8, {t, 32}, cs);
    sb.add_owned("commit_b", DType::U8, {t, 32}, cb);
    sb.add_owned("boxes", DType::U8,
                 {static_cast<int64_t>(box_count(r)), static_cast<int64_t>(kBox)}, boxes);
    Bytes unsigned_payload = sb.bytes();
    TensorSet view = TensorSet::parse(unsigned_payload);
    auto digest = payload_digest("n3/v1/sa-advert", r, u, view.metadata(), &view, {});
    auto sig = crypto::schnorr_sign(me.y_sig, me.Y_sig, digest);
    sb.add_owned("signature", DType::U8, {64}, Bytes(sig.begin(), sig.end()));
    return make_record(sb);
}

uint32_t advert_member(const Record& rec, const Round& r, const std::string& where) {
    if (rec.type() != RecordType::masked)
        throw DataError(where + ": not a secure-aggregation advert");
    TensorSet set = TensorSet::parse(rec.payload(), where);
    return check_header(set, r, "advert", where).index;
}

Advert read_advert(const Record& rec, const Round& r, const std::string& where) {
    crypto::init();
    if (rec.type() != RecordType::masked)
        throw DataError(where + ": not a secure-aggregation advert");
    TensorSet set = TensorSet::parse(rec.payload(), where);
    Header h = check_header(set, r, "advert", where);
    const uint32_t t = r.t();
    const size_t nb = box_count(r);
    check_neighbours(set, r, "advert", where);
    if (set.meta("threshold") != std::to_string(t))
        throw DataError(where + ": advert made for threshold " +
                        set.meta("threshold").value_or("?") + ", this round uses " +
                        std::to_string(t));
    Advert a;
    a.index = h.index;
    a.S = point_at(blob(set, "S", 32, where), 0, where);
    auto cs = blob(set, "commit_s", size_t(t) * 32, where);
    auto cb = blob(set, "commit_b", size_t(t) * 32, where);
    for (uint32_t j = 0; j < t; ++j) {
        a.cs.push_back(point_at(cs, j, where));
        a.cb.push_back(point_at(cb, j, where));
    }
    if (!crypto::equal(a.cs[0], a.S)) throw DataError(where + ": commitments do not match S");
    auto boxes = blob(set, "boxes", nb * kBox, where);
    for (size_t v = 0; v < nb; ++v)
        a.boxes.emplace_back(boxes.begin() + v * kBox, boxes.begin() + (v + 1) * kBox);
    a.sig = read_sig(set, where);
    a.digest = Hasher("n3/v1/sa-adv-id").part(rec.payload()).hash32();
    auto digest = payload_digest("n3/v1/sa-advert", r, a.index, set.metadata(), &set, {});
    check_sig(r, a.index, digest, a.sig, where);
    return a;
}

// Step 2 --------------------------------------------------------------------------------------

Record mask_update(const crypto::MemberKey& me, const Round& r, MemberState& st,
                   const std::vector<Advert>& adverts, const Record& update) {
    crypto::init();
    r.validate();
    const std::string ctx = r.context();
    const uint32_t u = st.index;
    if (st.round != r.round ||
        !crypto::equal(st.context, Hasher("n3/v1/sa-ctx").part(ctx).hash32()))
        throw DataError(kStateMismatch);
    if (r.index_of(me.record.fingerprint()) != u)
        throw DataError("the state file belongs to another member");
    if (!st.included.empty())
        throw DataError("this member's input for the round was already masked");
    std::map<uint32_t, const Advert*> by_index;
    for (auto& a : adverts)
        if (!by_index.emplace(a.index, &a).second)
            throw DataError("two adverts from member '" + r.members[a.index - 1].id + "'");
    auto own = by_index.find(u);
    if (own == by_index.end() || !crypto::equal(own->second->S, base_mul(to_scalar(st.s))))
        throw DataError("the adverts do not hold this member's own advert for this state");
    // The members this input is masked with: every advertiser (complete graph) or the
    // advertising neighbours (SecAgg+); adverts of other members are not used.
    const Graph g = r.graph();
    std::map<uint32_t, const Advert*> mine;
    for (auto& [v, a] : by_index)
        if (holds_share(g, u, v)) mine.emplace(v, a);
    if (mine.size() < r.t()) {
        if (!r.sparse())
            throw IncompleteError("only " + std::to_string(mine.size()) +
                                  " adverts, the threshold is " + std::to_string(r.t()));
        throw IncompleteError("only " + std::to_string(mine.size()) + " of this member's " +
                              std::to_string(r.holders()) +
                              " share holders (itself and its neighbours) advertised, "
                              "the threshold is " +
                              std::to_string(r.t()));
    }
    // Keep the shares peers dealt to this member, each checked against its dealer's commitments.
    for (auto& [v, a] : mine) {
        if (v == u) continue;
        BoxKey k = box_key(me, r, v, v, u, a->S);
        const Bytes& box = a->boxes[box_slot(r, g, v, u)];
        uint8_t plain[64];
        int bad = crypto_aead_xchacha20poly1305_ietf_decrypt(
            plain, nullptr, nullptr, box.data() + kBoxNonce, kBox - kBoxNonce, k.ad.data(),
            k.ad.size(), box.data(), k.key.data());
        sodium_memzero(k.key.data(), k.key.size());
        const std::string who = "advert of member '" + r.members[v - 1].id + "'";
        if (bad) throw DataError(who + ": the share for this member does not decrypt");
        shamir::Share ss{u, {}}, sb{u, {}};
        std::memcpy(ss.y.data(), plain, 32);
        std::memcpy(sb.y.data(), plain + 32, 32);
        sodium_memzero(plain, sizeof plain);
        if (!shamir::verify(ss, a->cs) || !shamir::verify(sb, a->cb))
            throw DataError(who + ": a share does not verify against its commitments");
        st.received[v] = {ss.y, sb.y};
    }

    const std::string where = "update";
    TensorSet set = TensorSet::parse(update.payload(), where);
    if (update.type() != RecordType::update && update.type() != RecordType::model)
        throw DataError("secure aggregation masks update records, not " +
                        std::string(type_name(update.type())));
    uint64_t samples = require_count(set, meta::samples, where);
    if (samples == 0) throw DataError("update: zero samples");
    const double p = std::min(1.0, double(samples) / double(r.max_samples));
    size_t total = 0;
    for (auto& t : set.tensors()) {
        if (t.dtype != DType::F32)
            throw DataError("update: tensor '" + t.name + "' is " +
                                std::string(dtype_name(t.dtype)) + "; secure aggregation takes F32",
                            "decode packed updates first: n3-encode -d");
        total += t.numel();
    }
    std::vector<float> x(total);
    size_t off = 0;
    for (auto& t : set.tensors()) {
        auto d = set.data(t);
        std::memcpy(x.data() + off, d.data(), d.size());
        off += t.numel();
    }
    for (auto& v : x) v = static_cast<float>(v * p);
    // The scale must be the same in every input: SecAgg+ members see their neighbours only, so
    // they plan for the whole roster.
    FixedPoint fp =
        FixedPoint::choose(r.sparse() ? r.n() : static_cast<uint32_t>(mine.size()), r.clip);
    std::vector<uint32_t> y(total);
    uint8_t rkey[32];
    randombytes_buf(rkey, sizeof rkey);
    uint64_t clipped = fp.encode(x, y, ByteView(rkey, 32));
    sodium_memzero(rkey, sizeof rkey);
    std::vector<MaskJob> jobs{{self_key(to_scalar(st.b), ctx), +1}};
    for (auto& [v, a] : mine)
        if (v != u) jobs.push_back({pair_key(to_scalar(st.s), a->S, ctx, u, v), pair_sign(u, v)});
    apply_masks(y, jobs);
    for (auto& job : jobs) sodium_memzero(job.key.data(), job.key.size());
    for (auto& [v, a] : mine) {
        st.included.insert(v);
        st.digests[v] = a->digest;
    }
    for (auto& [v, a] : by_index) st.advertised.insert(v);

    // The advert set, so the aggregator can check that every input was masked over the same set,
    // and the statement of it that the other members check before they reveal anything.
    Hasher hs("n3/v1/sa-advset");
    std::string digests_hex;
    for (auto& [v, a] : mine) {
        hs.part(a->digest);
        digests_hex += to_hex(a->digest);
    }
    const crypto::Signature statement =
        crypto::schnorr_sign(me.y_sig, me.Y_sig, statement_digest(r, u, st.digests));

    SafetensorsBuilder sb;
    for (auto& [k, v] : set.metadata())
        if (k == meta::base || k == meta::spec_hash) sb.set_meta(k, v);
    sb.set_meta("secagg", "input");
    sb.set_meta(meta::round, std::to_string(r.round));
    sb.set_meta(meta::samples, std::to_string(samples));
    sb.set_meta("member", std::to_string(u));
    sb.set_meta("fingerprint", fp_hex(me.record.fingerprint()));
    sb.set_meta("frac_bits", std::to_string(fp.frac_bits));
    if (r.sparse()) sb.set_meta("neighbours", std::to_string(r.neighbours));
    sb.set_meta("clipped", std::to_string(clipped));
    sb.set_meta("included", survivors_text(st.included));
    sb.set_meta("adverts", to_hex(hs.hash32()));
    sb.set_meta("advert_digests", digests_hex);
    sb.set_meta("statement", to_hex(statement));
    off = 0;
    for (auto& t : set.tensors()) {
        Bytes d(t.numel() * 4);
        std::memcpy(d.data(), y.data() + off, d.size());
        off += t.numel();
        sb.add_owned(t.name, DType::U32, t.shape, std::move(d));
    }
    Bytes unsigned_payload = sb.bytes();
    TensorSet view = TensorSet::parse(unsigned_payload);
    auto digest = payload_digest("n3/v1/sa-input", r, u, view.metadata(), &view, {});
    auto sig = crypto::schnorr_sign(me.y_sig, me.Y_sig, digest);
    sb.add_owned("signature", DType::U8, {64}, Bytes(sig.begin(), sig.end()));
    return make_record(sb);
}

// Step 3 --------------------------------------------------------------------------------------

std::string survivors_text(const std::set<uint32_t>& s) {
    std::string out;
    for (auto v : s) out += (out.empty() ? "" : " ") + std::to_string(v);
    return out + "\n";
}

std::set<uint32_t> Survivors::members() const {
    std::set<uint32_t> out;
    for (auto& st : statements) out.insert(st.member);
    return out;
}

Record list_survivors(const std::vector<Record>& inputs, const Round& r) {
    crypto::init();
    std::map<uint32_t, Statement> by_member;
    for (size_t i = 0; i < inputs.size(); ++i) {
        auto [set, h, where] = open_input(inputs[i], i, r);
        Statement st;
        st.member = h.index;
        const auto included =
            parse_indices(set.meta("included").value_or(""), r, where + ": 'included'");
        const std::string hexes = set.meta("advert_digests").value_or("");
        if (included.empty() || hexes.size() != 64 * included.size())
            throw DataError(where + ": no statement of the adverts it was masked over",
                            "it was masked by an older n3");
        size_t k = 0;
        for (auto v : included)
            unhex(std::string_view(hexes).substr(64 * k++, 64), st.adverts[v], where,
                  "advert_digests");
        unhex(set.meta("statement").value_or(""), st.sig, where, "statement");
        check_sig(r, st.member, statement_digest(r, st.member, st.adverts), st.sig,
                  where + ": statement");
        if (!by_member.emplace(st.member, std::move(st)).second)
            throw DataError(where + ": a second input from this member");
    }
    if (by_member.empty()) throw IncompleteError("no masked inputs");
    Bytes members, counts, indices, digests, sigs;
    for (auto& [w, st] : by_member) {
        crypto::put_u32(members, w);
        crypto::put_u32(counts, static_cast<uint32_t>(st.adverts.size()));
        for (auto& [v, d] : st.adverts) {
            crypto::put_u32(indices, v);
            crypto::put(digests, d);
        }
        crypto::put(sigs, st.sig);
    }
    const auto s = static_cast<int64_t>(by_member.size()),
               total = static_cast<int64_t>(indices.size() / 4);
    SafetensorsBuilder sb;
    sb.set_meta("secagg", "survivors");
    sb.set_meta(meta::round, std::to_string(r.round));
    if (r.sparse()) sb.set_meta("neighbours", std::to_string(r.neighbours));
    sb.add_owned("member", DType::U32, {s}, members);
    sb.add_owned("count", DType::U32, {s}, counts);
    sb.add_owned("index", DType::U32, {total}, indices);
    sb.add_owned("digest", DType::U8, {total, 32}, digests);
    sb.add_owned("statement", DType::U8, {s, 64}, sigs);
    return make_record(sb);
}

Survivors read_survivors(const Record& rec, const Round& r, const std::string& where) {
    crypto::init();
    const char* hint = "the aggregator makes it with: n3-secagg survivors";
    if (rec.type() != RecordType::masked) throw DataError(where + ": not a survivor list", hint);
    TensorSet set = TensorSet::parse(rec.payload(), where);
    if (set.meta("secagg") != std::string("survivors"))
        throw DataError(where + ": not a survivor list", hint);
    uint64_t round = require_count(set, meta::round, where);
    if (round != r.round)
        throw DataError(where + ": survivor list of round " + std::to_string(round) +
                        ", this is round " + std::to_string(r.round));
    check_neighbours(set, r, "survivor list", where);
    auto u32s = [&](const char* name) {
        const TensorInfo* t = set.find(name);
        if (!t || t->dtype != DType::U32 || t->shape.size() != 1)
            throw DataError(where + ": malformed '" + std::string(name) + "'");
        auto d = set.data(*t);
        std::vector<uint32_t> out(d.size() / 4);
        std::memcpy(out.data(), d.data(), out.size() * 4);
        return out;
    };
    const auto members = u32s("member"), counts = u32s("count"), indices = u32s("index");
    if (members.empty() || counts.size() != members.size() || members.size() > r.n())
        throw DataError(where + ": malformed survivor list");
    uint64_t total = 0;
    for (auto c : counts) total += c;
    if (total != indices.size()) throw DataError(where + ": malformed survivor list");
    auto digests = blob(set, "digest", indices.size() * 32, where);
    auto sigs = blob(set, "statement", members.size() * 64, where);
    const Graph g = r.graph();
    Survivors out;
    size_t at = 0;
    for (size_t i = 0; i < members.size(); ++i) {
        Statement st;
        st.member = members[i];
        if (st.member < 1 || st.member > r.n() || (i && st.member <= members[i - 1]))
            throw DataError(where + ": malformed survivor list (member indices)");
        for (uint32_t j = 0; j < counts[i]; ++j, ++at) {
            const uint32_t v = indices[at];
            if (v < 1 || v > r.n() || !holds_share(g, v, st.member) || st.adverts.count(v))
                throw DataError(where + ": the statement of member '" +
                                r.members[st.member - 1].id + "' names member " +
                                std::to_string(v) + ", who holds none of its shares");
            std::memcpy(st.adverts[v].data(), digests.data() + 32 * at, 32);
        }
        if (!st.adverts.count(st.member))
            throw DataError(where + ": the statement of member '" + r.members[st.member - 1].id +
                            "' lacks its own advert");
        std::memcpy(st.sig.data(), sigs.data() + 64 * i, 64);
        check_sig(r, st.member, statement_digest(r, st.member, st.adverts), st.sig,
                  where + ": statement of member '" + r.members[st.member - 1].id + "'");
        out.statements.push_back(std::move(st));
    }
    return out;
}

Record reveal(const crypto::MemberKey& me, const Round& r, MemberState& st, const Survivors& list) {
    crypto::init();
    const std::string ctx = r.context();
    const uint32_t u = st.index;
    if (st.round != r.round ||
        !crypto::equal(st.context, Hasher("n3/v1/sa-ctx").part(ctx).hash32()))
        throw DataError(kStateMismatch);
    if (r.index_of(me.record.fingerprint()) != u)
        throw DataError("the state file belongs to another member");
    if (st.included.empty())
        throw DataError("this member has not masked an input for the round yet");
    if (st.digests.size() != st.included.size())
        throw DataError("the state file lacks the digests of the adverts it masked over (written "
                        "by an older n3)",
                        "start the round again under a new round number");
    const Graph g = r.graph();
    for (auto v : st.included)
        if (!holds_share(g, u, v))
            throw DataError("the state file names member " + std::to_string(v) +
                            ", not a neighbour");
    // The consistency round: an aggregator that lists this member as dropped after its input
    // arrived, or that showed some survivor fewer adverts than the others, could rebuild both
    // the self mask and the pair masks of one input from the shares the members reveal.
    const std::set<uint32_t> survivors = list.members();
    if (!survivors.count(u))
        throw DataError(
            "this member is not on the survivor list, although it masked an input" +
                std::string(kRefuse),
            "an aggregator that lists a member as dropped after its input arrived could unmask it");
    std::map<uint32_t, crypto::Hash32> shown; // every advert some survivor masked over
    for (auto& stmt : list.statements) {
        if (stmt.member == u && stmt.adverts != st.digests)
            throw DataError(
                "the survivor list holds another statement of this member's than its state file" +
                std::string(kRefuse));
        for (auto& [v, d] : stmt.adverts) {
            auto [it, fresh] = shown.emplace(v, d);
            if (!fresh && !crypto::equal(it->second, d))
                throw DataError("the survivors were shown different adverts of member '" +
                                r.members[v - 1].id + "'" + std::string(kRefuse));
        }
    }
    for (auto& stmt : list.statements)
        for (auto& [v, d] : shown)
            if (holds_share(g, v, stmt.member) && !stmt.adverts.count(v))
                throw DataError("survivor '" + r.members[stmt.member - 1].id +
                                    "' did not mask over the advert of member '" +
                                    r.members[v - 1].id + "' that other survivors masked over" +
                                    std::string(kRefuse),
                                "an aggregator that shows a member fewer adverts could unmask it");
    for (auto v : survivors)
        if (holds_share(g, u, v) && !st.included.count(v))
            throw DataError("survivor " + std::to_string(v) +
                            " was not among the adverts this input was masked with");
    if (survivors.size() < r.t())
        throw IncompleteError("only " + std::to_string(survivors.size()) +
                              " survivors, the threshold is " + std::to_string(r.t()) +
                              "; nothing revealed");
    if (r.sparse()) {
        // Every member whose masks the aggregator must remove needs t surviving holders: each
        // survivor (its self mask) and each dropped neighbour with a surviving neighbour (its
        // pair masks). Refuse before anything leaves, so no partial round reveals shares.
        auto holders_left = [&](uint32_t w) {
            uint32_t c = 0;
            for (auto x : closed_neighbourhood(g, w)) c += survivors.count(x) ? 1 : 0;
            return c;
        };
        std::set<uint32_t> must(survivors);
        for (auto v : st.included) must.insert(v);
        for (auto v : st.advertised) must.insert(v); // the dropped members this member knows of
        for (auto& [v, d] : shown) must.insert(v);
        for (auto w : must) {
            uint32_t c = holders_left(w);
            bool dropped = !survivors.count(w);
            if (dropped && c == 0) continue;
            if (c < r.t())
                throw IncompleteError("member '" + r.members[w - 1].id + "' (" +
                                      (dropped ? "dropped" : "survived") + ") has only " +
                                      std::to_string(c) +
                                      " surviving share holders, the threshold is " +
                                      std::to_string(r.t()) + "; nothing revealed");
        }
    }
    auto h = survivors_hash(r, survivors);
    if (st.revealed_for && !crypto::equal(*st.revealed_for, h))
        throw DataError("shares for this round were already revealed for another survivor list; "
                        "revealing again could unmask an input");
    std::vector<RevealEntry> entries;
    for (auto v : st.included) {
        auto it = st.received.find(v);
        if (it == st.received.end())
            throw DataError("the state file lacks the share of member " + std::to_string(v));
        bool survived = survivors.count(v) > 0;
        entries.push_back({v, survived, survived ? it->second.second : it->second.first});
    }
    st.revealed_for = h;
    return sign_reveal(me, r, u, survivors, entries);
}

Record sign_reveal(const crypto::MemberKey& me, const Round& r, uint32_t u,
                   const std::set<uint32_t>& survivors, const std::vector<RevealEntry>& entries) {
    crypto::init();
    Bytes idx, kinds, shares;
    for (auto& e : entries) {
        crypto::put_u32(idx, e.member);
        kinds.push_back(e.survived ? 0
                                   : 1); // 0: self-mask seed share, 1: key-agreement secret share
        crypto::put(shares, e.share);
    }
    const int64_t k = static_cast<int64_t>(entries.size());
    SafetensorsBuilder sb;
    sb.set_meta("secagg", "reveal");
    sb.set_meta(meta::round, std::to_string(r.round));
    sb.set_meta("member", std::to_string(u));
    sb.set_meta("fingerprint", fp_hex(me.record.fingerprint()));
    sb.set_meta("survivors", survivors_text(survivors));
    if (r.sparse()) sb.set_meta("neighbours", std::to_string(r.neighbours));
    sb.add_owned("index", DType::U32, {k}, idx);
    sb.add_owned("kind", DType::U8, {k}, kinds);
    sb.add_owned("share", DType::U8, {k, 32}, shares);
    Bytes unsigned_payload = sb.bytes();
    sodium_memzero(shares.data(), shares.size());
    TensorSet view = TensorSet::parse(unsigned_payload);
    auto digest = payload_digest("n3/v1/sa-reveal", r, u, view.metadata(), &view, {});
    auto sig = crypto::schnorr_sign(me.y_sig, me.Y_sig, digest);
    sb.add_owned("signature", DType::U8, {64}, Bytes(sig.begin(), sig.end()));
    return make_record(sb);
}

Record resign(const crypto::MemberKey& me, const Round& r, const Record& rec) {
    crypto::init();
    TensorSet set = TensorSet::parse(rec.payload(), "record");
    const auto kind = set.meta("secagg");
    const char* personal = kind == std::string("advert")   ? "n3/v1/sa-advert"
                           : kind == std::string("input")  ? "n3/v1/sa-input"
                           : kind == std::string("reveal") ? "n3/v1/sa-reveal"
                                                           : nullptr;
    if (!personal) throw DataError("record: not a signed secure-aggregation record");
    const uint32_t index = static_cast<uint32_t>(require_count(set, "member", "record"));
    SafetensorsBuilder sb;
    for (auto& [k, v] : set.metadata()) sb.set_meta(k, v);
    for (auto& t : set.tensors())
        if (t.name != "signature") {
            auto d = set.data(t);
            sb.add_owned(t.name, t.dtype, t.shape, Bytes(d.begin(), d.end()));
        }
    Bytes unsigned_payload = sb.bytes();
    TensorSet view = TensorSet::parse(unsigned_payload);
    auto sig = crypto::schnorr_sign(me.y_sig, me.Y_sig,
                                    payload_digest(personal, r, index, view.metadata(), &view, {}));
    sb.add_owned("signature", DType::U8, {64}, Bytes(sig.begin(), sig.end()));
    return make_record(sb);
}

// Step 4 --------------------------------------------------------------------------------------

Kind kind_of(const Record& rec) {
    if (rec.type() != RecordType::masked) return Kind::other;
    try {
        auto m = TensorSet::parse(rec.payload()).meta("secagg");
        if (m == "advert") return Kind::advert;
        if (m == "input") return Kind::input;
        if (m == "reveal") return Kind::reveal;
        if (m == "survivors") return Kind::survivors;
    } catch (const DataError&) {
    }
    return Kind::other;
}

SumResult secure_sum(const Round& r, const std::vector<Advert>& adverts,
                     const std::vector<Record>& inputs, const std::vector<Record>& reveals,
                     unsigned threads) {
    crypto::init();
    r.validate();
    const std::string ctx = r.context();
    const Graph g = r.graph();
    std::map<uint32_t, const Advert*> adv;
    for (auto& a : adverts)
        if (!adv.emplace(a.index, &a).second)
            throw DataError("two adverts from member '" + r.members[a.index - 1].id + "'");
    std::set<uint32_t> included;
    for (auto& [v, a] : adv) included.insert(v);
    // What member u's input must have been masked over: the advertisers it holds shares of.
    auto masked_over = [&](uint32_t u) {
        std::set<uint32_t> set;
        Hasher hs("n3/v1/sa-advset");
        for (auto& [v, a] : adv)
            if (holds_share(g, v, u)) {
                set.insert(v);
                hs.part(a->digest);
            }
        return std::make_pair(set, to_hex(hs.hash32()));
    };

    // Inputs: signed by their member, masked over exactly these adverts, one per member.
    SumResult res;
    std::vector<TensorSet> sets;
    std::vector<uint32_t> who;
    int frac_bits = -1;
    uint64_t samples_total = 0;
    double weight_total = 0;
    Metadata carried;
    // The signed digests hash every input whole: compute them on all threads first. An input
    // that fails here is examined again below, in order, for the error message.
    std::vector<std::optional<crypto::Digest>> digests(inputs.size());
    parallel_for(inputs.size(), threads, [&](size_t i) {
        try {
            if (inputs[i].type() != RecordType::masked) return;
            TensorSet set = TensorSet::parse(inputs[i].payload(), "input");
            Header h = check_header(set, r, "input", "input");
            digests[i] = payload_digest("n3/v1/sa-input", r, h.index, set.metadata(), &set, {});
        } catch (const Error&) {
        }
    });
    for (size_t i = 0; i < inputs.size(); ++i) {
        auto [set, h, where] = open_input(inputs[i], i, r);
        // Masked values are Z_2^32 elements; any other type would be summed as 4 bytes per
        // element it does not have.
        for (auto& t : set.tensors())
            if (t.name != "signature" &&
                (t.dtype != DType::U32 || set.data(t).size() != 4 * t.numel()))
                throw DataError(where + ": tensor '" + t.name + "' is " +
                                std::string(dtype_name(t.dtype)) +
                                "; masked inputs hold U32 values");
        auto digest = digests[i]
                          ? *digests[i]
                          : payload_digest("n3/v1/sa-input", r, h.index, set.metadata(), &set, {});
        check_sig(r, h.index, digest, read_sig(set, where), where);
        auto [over, advset] = masked_over(h.index);
        if (set.meta("adverts") != advset || set.meta("included") != survivors_text(over))
            throw DataError(where + ": masked with another set of adverts");
        if (!res.survivors.insert(h.index).second)
            throw DataError(where + ": a second input from this member");
        int fb = static_cast<int>(require_count(set, "frac_bits", where));
        if (frac_bits >= 0 && fb != frac_bits)
            throw DataError(where + ": another fixed-point scale");
        frac_bits = fb;
        uint64_t samples = require_count(set, meta::samples, where);
        samples_total += samples;
        weight_total += std::min(1.0, double(samples) / double(r.max_samples));
        for (auto key : {meta::base, meta::spec_hash}) {
            auto v = set.meta(key);
            if (!v) continue;
            auto [it, fresh] = carried.emplace(key, *v);
            if (!fresh && it->second != *v)
                throw DataError(where + ": trained from another base model");
        }
        if (!sets.empty()) {
            auto& a = sets[0].tensors();
            auto& b = set.tensors();
            bool same = a.size() == b.size();
            for (size_t k = 0; same && k < a.size(); ++k)
                same =
                    a[k].name == b[k].name && a[k].shape == b[k].shape && a[k].dtype == b[k].dtype;
            if (!same) throw DataError(where + ": tensors differ from the other inputs");
        }
        sets.push_back(std::move(set));
        who.push_back(h.index);
    }
    if (sets.empty()) throw IncompleteError("no masked inputs");
    for (auto v : included)
        if (!res.survivors.count(v)) res.dropped.insert(v);

    // Reveals: signed, for exactly this survivor list; gather the shares per member.
    std::map<uint32_t, std::vector<shamir::Share>> b_shares, s_shares;
    std::set<uint32_t> revealers;
    const std::string want = survivors_text(res.survivors);
    for (size_t i = 0; i < reveals.size(); ++i) {
        std::string where = "reveal " + std::to_string(i + 1);
        if (reveals[i].type() != RecordType::masked)
            throw DataError(where + ": not a reveal record");
        TensorSet set = TensorSet::parse(reveals[i].payload(), where);
        Header h = check_header(set, r, "reveal", where);
        where += " (member '" + r.members[h.index - 1].id + "')";
        check_neighbours(set, r, "reveal", where);
        auto digest = payload_digest("n3/v1/sa-reveal", r, h.index, set.metadata(), &set, {});
        check_sig(r, h.index, digest, read_sig(set, where), where);
        if (set.meta("survivors") != want)
            throw DataError(where + ": names another survivor list than the inputs that arrived");
        if (!included.count(h.index)) throw DataError(where + ": from a member without an advert");
        if (!revealers.insert(h.index).second)
            throw DataError(where + ": a second reveal from this member");
        const TensorInfo* ti = set.find("index");
        if (!ti || ti->dtype != DType::U32) throw DataError(where + ": malformed");
        size_t k = ti->numel();
        auto idx = set.data(*ti);
        auto kinds = blob(set, "kind", k, where);
        auto shares = blob(set, "share", k * 32, where);
        std::set<uint32_t> seen;
        for (size_t j = 0; j < k; ++j) {
            uint32_t v;
            std::memcpy(&v, idx.data() + 4 * j, 4);
            bool survived = res.survivors.count(v) > 0;
            if (!included.count(v) || !seen.insert(v).second || kinds[j] != (survived ? 0 : 1))
                throw DataError(where + ": reveals the wrong share for member " +
                                std::to_string(v));
            if (!holds_share(g, h.index, v))
                throw DataError(where + ": reveals a share for member " + std::to_string(v) +
                                ", who is not its neighbour");
            shamir::Share sh{h.index, {}};
            std::memcpy(sh.y.data(), shares.data() + 32 * j, 32);
            (survived ? b_shares : s_shares)[v].push_back(sh);
        }
    }
    if (revealers.size() < r.t())
        throw IncompleteError("only " + std::to_string(revealers.size()) +
                              " members revealed, the threshold is " + std::to_string(r.t()));
    // Dropped members whose pair masks are in some survivor's input (all of them, complete).
    std::set<uint32_t> unpair;
    for (auto v : res.dropped)
        for (auto u : res.survivors)
            if (g.adjacent(u, v)) {
                unpair.insert(v);
                break;
            }
    auto need = [&](std::map<uint32_t, std::vector<shamir::Share>>& shares, uint32_t v,
                    const char* what) {
        size_t got = shares[v].size();
        if (got < r.t())
            throw IncompleteError("member '" + r.members[v - 1].id + "': only " +
                                  std::to_string(got) + " shares of its " + what +
                                  " were revealed, the threshold is " + std::to_string(r.t()));
    };
    for (auto u : res.survivors) need(b_shares, u, "self-mask seed");
    for (auto v : unpair) need(s_shares, v, "key-agreement secret");

    // Sum, then remove the survivors' self masks and the dropped members' pair masks.
    size_t total = 0;
    for (auto& t : sets[0].tensors())
        if (t.name != "signature") total += sets[0].data(t).size() / 4;
    std::vector<uint32_t> sum(total, 0);
    // Where each input's values sit: (first coordinate, bytes, count) per tensor.
    struct Segment {
        size_t from;
        const uint8_t* data;
        size_t count;
    };
    std::vector<std::vector<Segment>> segments;
    for (auto& set : sets) {
        auto& segs = segments.emplace_back();
        size_t off = 0;
        for (auto& t : set.tensors()) {
            if (t.name == "signature") continue;
            const ByteView d = set.data(t);
            segs.push_back({off, d.data(), d.size() / 4});
            off += d.size() / 4;
        }
    }
    constexpr size_t kSumBlock = 1 << 16;
    parallel_for((total + kSumBlock - 1) / kSumBlock, threads, [&](size_t blk) {
        const size_t a = blk * kSumBlock, b = std::min(total, a + kSumBlock);
        for (auto& segs : segments)
            for (auto& sg : segs) {
                size_t lo = std::max(a, sg.from), hi = std::min(b, sg.from + sg.count);
                for (size_t k = lo; k < hi; ++k) {
                    uint32_t v;
                    std::memcpy(&v, sg.data + 4 * (k - sg.from), 4);
                    sum[k] += v;
                }
            }
    });
    std::vector<MaskJob> jobs;
    for (auto u : res.survivors) {
        Scalar b = shamir::combine(b_shares[u], adv[u]->cb);
        jobs.push_back({self_key(b, ctx), -1});
        sodium_memzero(b.data(), b.size());
    }
    for (auto v : unpair) {
        Scalar s = shamir::combine(s_shares[v], adv[v]->cs);
        for (auto u : res.survivors)
            if (g.adjacent(u, v))
                jobs.push_back({pair_key(s, adv[u]->S, ctx, v, u), -pair_sign(u, v)});
        sodium_memzero(s.data(), s.size());
    }
    apply_masks(sum, jobs, threads);
    FixedPoint fp;
    fp.clip = r.clip;
    fp.frac_bits = frac_bits;
    std::vector<float> mean(total);
    fp.decode(sum, weight_total, mean);
    res.step = fp.step() / weight_total;

    SafetensorsBuilder sb;
    for (auto& [k, v] : carried) sb.set_meta(k, v);
    sb.set_meta(meta::round, std::to_string(r.round));
    sb.set_meta(meta::samples, std::to_string(samples_total));
    sb.set_meta("secagg_members", std::to_string(res.survivors.size()));
    size_t off = 0;
    for (auto& t : sets[0].tensors()) {
        if (t.name == "signature") continue;
        Bytes d(t.numel() * 4);
        std::memcpy(d.data(), mean.data() + off, d.size());
        off += t.numel();
        sb.add_owned(t.name, DType::F32, t.shape, std::move(d));
    }
    res.update = Record(RecordType::update, sb.bytes());
    return res;
}

} // namespace n3::secagg
