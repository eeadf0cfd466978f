// Fuzzes the key-file parsers: any text must decode to a valid key of its kind or throw
// n3::Error; never crash or read out of bounds. Rosters go through the same decoder per line.
#include "crypto/keys.hpp"
#include "crypto/passphrase.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <cstdint>
#include <string>

using namespace n3::crypto;

namespace {
// An encrypted key body, decrypted under a fixed passphrase. Argon2id at the limits a body
// asks for is too slow to fuzz, so only bodies at the cheapest limits (or out of range, which
// is refused before any work) reach the key derivation and the failing decryption.
void decrypt_body(n3::ByteView body) {
    if (body.size() >= 14) {
        uint32_t ops = 0;
        uint64_t mem = 0;
        for (int i = 3; i >= 0; --i) ops = ops << 8 | body[2 + static_cast<size_t>(i)];
        for (int i = 7; i >= 0; --i) mem = mem << 8 | body[6 + static_cast<size_t>(i)];
        bool in_range = ops >= 1 && ops <= kMaxOpslimit && mem >= 8192 && mem <= kMaxMemlimit;
        if (in_range && (ops > 1 || mem > 65536)) return;
    }
    static const Secret pass = [] {
        Secret p(4);
        std::copy_n("fuzz", 4, p.data());
        return p;
    }();
    try {
        decrypt_key_text(KeyText(KeyKind::encrypted_key, n3::Bytes(body.begin(), body.end())), pass,
                         "fuzz");
    } catch (const n3::Error&) {
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        KeyText kt = decode_key_text(text, "fuzz");
        switch (kt.kind) {
        case KeyKind::authority_secret: AuthoritySecret::decode(kt.body, "fuzz"); break;
        case KeyKind::authority_public: AuthorityPublic::decode(kt.body, "fuzz"); break;
        case KeyKind::member_secret: MemberSecret::decode(kt.body, "fuzz"); break;
        case KeyKind::request: Request::decode(kt.body, "fuzz").verify("fuzz"); break;
        case KeyKind::partial: Partial::decode(kt.body, "fuzz"); break;
        case KeyKind::member_key: MemberKey::decode(kt.body, "fuzz"); break;
        case KeyKind::member_public:
            PublicRecord::decode(kt.body, "fuzz").Y_sig(PublicRecord{}.X_sig);
            break;
        case KeyKind::curve_secret: CurveKey::parse(text, "fuzz"); break;
        case KeyKind::curve_public: break;
        case KeyKind::encrypted_key: decrypt_body(kt.body); break;
        case KeyKind::receipt_secret: ReceiptKey::decode(kt.body, "fuzz"); break;
        case KeyKind::receipt_public: decode_receipt_public(text, "fuzz"); break;
        }
    } catch (const n3::Error&) {
    }
    // The body decoders on raw bytes, without the text layer's checksum in the way.
    n3::ByteView raw(data, size);
    try {
        PublicRecord::decode(raw, "fuzz");
    } catch (const n3::Error&) {
    }
    try {
        Request::decode(raw, "fuzz");
    } catch (const n3::Error&) {
    }
    try {
        MemberKey::decode(raw, "fuzz");
    } catch (const n3::Error&) {
    }
    try {
        Partial::decode(raw, "fuzz");
    } catch (const n3::Error&) {
    }
    try {
        ReceiptKey::decode(raw, "fuzz");
    } catch (const n3::Error&) {
    }
    try {
        Roster::parse(text, "fuzz");
    } catch (const n3::Error&) {
    }
    decrypt_body(raw);
    try {
        z85_decode(text);
    } catch (const n3::Error&) {
    }
    return 0;
}
