// The envelope outside the chunk stream: stanzas that wrap the file key for each recipient
// (dummies indistinguishable from real ones), the inner header that names the sender only
// inside the ciphertext, and the Padmé bucket that hides the exact length.
#include "crypto/envelope.hpp"

#include "record/error.hpp"

#include <cstring>

namespace n3::crypto {

uint64_t padme(uint64_t L) {
    if (L < 2) return L;
    int E = 63 - __builtin_clzll(L);
    int S = 32 - __builtin_clz(static_cast<unsigned>(E)); // floor(log2 E) + 1
    int last_bits = E - S;
    uint64_t mask = (uint64_t(1) << last_bits) - 1;
    return (L + mask) & ~mask;
}

namespace envelope {

namespace {

Hash32 stanza_key(const Point& K, const Point& E, const Point& Ykem, const Fingerprint& fp,
                  const AuthorityPublic& fed) {
    return Hasher("n3/v1/kem", K, 32).part(E).part(Ykem).part(fp).part(fed.id).part(fed.P).hash32();
}

// A stanza's AEAD binds the header's fixed part and its own ephemeral point, so a stanza
// cannot be moved into another header.
void stanza_ad(uint8_t ad[kClearFixed + 32], const uint8_t* clear, const Point& E) {
    std::memcpy(ad, clear, kClearFixed);
    std::memcpy(ad + kClearFixed, E.data(), 32);
}

void append_stanza(Bytes& clear, const PublicRecord& r, const Fingerprint& fp,
                   const AuthorityPublic& fed, const Secret& file_key) {
    Point Ykem = r.Y_kem(fed.P);
    Secret e(32);
    scalar_random({e.data(), 32});
    Point E = base_mul(e.view());
    Point K;
    if (!mul(K, e.view(), Ykem)) throw DataError("recipient '" + r.id + "' has a degenerate key");
    Hash32 k = stanza_key(K, E, Ykem, fp, fed);
    sodium_memzero(K.data(), 32);
    uint8_t ad[kClearFixed + 32];
    stanza_ad(ad, clear.data(), E);
    uint8_t wrapped[32 + kTag];
    uint8_t nonce[24] = {};
    crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped, nullptr, file_key.data(), 32, ad, sizeof ad,
                                               nullptr, nonce, k.data());
    sodium_memzero(k.data(), 32);
    put(clear, E);
    put(clear, wrapped);
}

// The federation's context, as encode_context wrote it.
void parse_context(ByteView bytes, const AuthorityPublic& authority, Inner& inner,
                   const std::string& where) {
    Cursor cc(bytes, where + ": context");
    if (cc.u8() != 1) cc.fail("unsupported context version");
    AuthorityId id = cc.array<16>();
    Point P = cc.array<32>();
    if (!equal(id, authority.id) || !equal(P, authority.P)) cc.fail("sealed in another federation");
    uint8_t flags = cc.u8();
    if (flags & ~3) cc.fail("unknown context flags");
    uint64_t round = cc.u64();
    Hash32 base = cc.array<32>();
    if (flags & 1) inner.context.round = round;
    if (flags & 2) inner.context.base = base;
    uint8_t t = cc.u8();
    if (t < 1 || t > 6) cc.fail("unknown inner record type " + std::to_string(t));
    inner.type = static_cast<RecordType>(t);
}

} // namespace

void read_exact(PayloadSource& in, std::span<uint8_t> out) {
    size_t got = 0;
    while (got < out.size()) {
        size_t n = in.read(out.subspan(got));
        if (n == 0) throw DataError(in.where + ": payload ends early");
        got += n;
    }
}

Bytes encode_context(const AuthorityPublic& fed, const SealContext& c, RecordType type) {
    Bytes b;
    b.push_back(1);
    put(b, fed.id);
    put(b, fed.P);
    b.push_back(static_cast<uint8_t>((c.round ? 1 : 0) | (c.base ? 2 : 0)));
    put_u64(b, c.round.value_or(0));
    put(b, c.base.value_or(Hash32{}));
    b.push_back(static_cast<uint8_t>(type));
    return b;
}

Bytes make_clear(std::span<const PublicRecord> recipients, const AuthorityPublic& fed,
                 const Secret& file_key, std::vector<Fingerprint>& fps, size_t stanzas,
                 Suite suite) {
    Bytes clear;
    clear.push_back(kVersion);
    clear.push_back(static_cast<uint8_t>(suite));
    put_u16(clear, static_cast<uint16_t>(std::max(recipients.size(), stanzas)));
    put_u32(clear, 0);
    for (auto& r : recipients) {
        Fingerprint fp = r.fingerprint();
        fps.push_back(fp);
        append_stanza(clear, r, fp, fed, file_key);
    }
    // Dummies look like real stanzas: a random valid point and random bytes. They hide how
    // many recipients there are; the recipients' fingerprints inside are the real list.
    for (size_t j = recipients.size(); j < stanzas; ++j) {
        Point E;
        crypto_core_ristretto255_random(E.data());
        uint8_t wrapped[32 + kTag];
        random_bytes(wrapped);
        put(clear, E);
        put(clear, wrapped);
    }
    return clear;
}

size_t stanza_count(ByteView clear) {
    return static_cast<size_t>(clear[2] | (clear[3] << 8));
}

Suite clear_suite(ByteView clear) {
    return *suite_from_id(clear[1]);
}

Bytes read_clear(PayloadSource& in) {
    const std::string& where = in.where;
    if (in.length < kClearFixed) throw DataError(where + ": sealed payload too short (truncated)");
    Bytes clear(kClearFixed);
    read_exact(in, clear);
    const uint8_t version = clear[0];
    if (version != kVersion && version != kVersion1)
        throw DataError(where + ": unsupported envelope version " + std::to_string(version));
    // Version 1 had suite 1 only.
    if (!suite_from_id(clear[1]) || (version == kVersion1 && clear[1] != 1))
        throw DataError(where + ": unsupported suite " + std::to_string(clear[1]),
                        "sealed by a newer n3-seal?");
    size_t nstanzas = stanza_count(clear);
    if (nstanzas == 0 || nstanzas > kMaxRecipients || clear[4] | clear[5] | clear[6] | clear[7])
        throw DataError(where + ": corrupted envelope header");
    if (in.length < kClearFixed + nstanzas * kStanza)
        throw DataError(where + ": sealed payload too short (truncated)");
    clear.resize(kClearFixed + nstanzas * kStanza);
    read_exact(in, {clear.data() + kClearFixed, nstanzas * kStanza});
    return clear;
}

bool open_stanza(ByteView clear, const MemberKey& me, const Fingerprint& my_fp,
                 const AuthorityPublic& authority, Secret& file_key) {
    const size_t nstanzas = stanza_count(clear);
    bool found = false;
    for (size_t j = 0; j < nstanzas && !found; ++j) {
        const uint8_t* s = clear.data() + kClearFixed + j * kStanza;
        Point E;
        std::memcpy(E.data(), s, 32);
        if (!point_valid(E)) continue; // an identity or non-canonical E opens nothing
        Point K;
        if (!mul(K, me.y_kem.view(), E)) continue;
        Hash32 k = stanza_key(K, E, me.Y_kem, my_fp, authority);
        sodium_memzero(K.data(), 32);
        uint8_t ad[kClearFixed + 32];
        stanza_ad(ad, clear.data(), E);
        uint8_t nonce[24] = {};
        found = crypto_aead_xchacha20poly1305_ietf_decrypt(file_key.data(), nullptr, nullptr,
                                                           s + 32, 32 + kTag, ad, sizeof ad, nonce,
                                                           k.data()) == 0;
        sodium_memzero(k.data(), 32);
    }
    return found;
}

Secret payload_key(const Secret& file_key, ByteView clear) {
    Secret pk(32);
    Hasher("n3/v1/payload", file_key.view(), 32).part(clear).final({pk.data(), 32});
    return pk;
}

Hash32 key_commitment(const Secret& file_key, ByteView clear) {
    return Hasher("n3/v1/commit", file_key.view(), 32).part(clear).hash32();
}

Bytes encode_inner(const PublicRecord& sender, ByteView context, std::span<const Fingerprint> fps,
                   size_t nstanzas, uint64_t length) {
    Bytes inner;
    inner.push_back(kVersion);
    Bytes rec = sender.encode();
    if (rec.size() > kSenderSlot)
        throw UsageError("the sender's public record is " + std::to_string(rec.size()) +
                         " bytes, more than an envelope holds");
    put_u16(inner, static_cast<uint16_t>(rec.size()));
    put(inner, rec);
    inner.resize(inner.size() + kSenderSlot - rec.size(), 0);
    put(inner, context);
    put_u16(inner, static_cast<uint16_t>(fps.size()));
    for (auto& fp : fps) put(inner, fp);
    inner.resize(inner.size() + 32 * (nstanzas - fps.size()), 0);
    put_u64(inner, length);
    return inner;
}

Inner parse_inner(ByteView chunk0, uint8_t version, size_t nstanzas, const Fingerprint& my_fp,
                  const AuthorityPublic& authority, const std::string& where) {
    Cursor c(chunk0, where + ": sealed header");
    if (c.u8() != version) c.fail("inner version differs from the envelope's");
    uint16_t reclen = c.u16();
    if (version != kVersion1 && reclen > kSenderSlot) c.fail("sender record longer than its slot");
    Inner inner;
    inner.sender = PublicRecord::decode(c.take(reclen), where + ": sender record");
    if (version != kVersion1) {
        ByteView pad = c.take(kSenderSlot - reclen);
        if (!sodium_is_zero(pad.data(), pad.size())) c.fail("sender record padding is not zero");
    }
    parse_context(c.take(kContextSize), authority, inner, where);
    uint16_t nfp = c.u16(); // the real recipients, whose fingerprints come first
    if (nfp == 0 || nfp > nstanzas)
        throw DataError(where + ": recipient count does not match the header (corrupted)");
    for (uint16_t i = 0; i < nfp; ++i) inner.for_me |= equal(c.array<32>(), my_fp);
    if (version != kVersion1) {
        ByteView unused = c.take(32 * (nstanzas - nfp));
        if (!sodium_is_zero(unused.data(), unused.size()))
            c.fail("dummy recipient slots are not zero");
    }
    inner.recipients = nfp;
    inner.length = c.u64();
    inner.before_sig = c.pos();
    inner.s1 = c.array<64>();
    inner.size = c.pos();
    return inner;
}

} // namespace envelope

} // namespace n3::crypto
