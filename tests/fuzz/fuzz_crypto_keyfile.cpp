// Fuzzes the key-file parsers: any text must decode to a valid key of its kind or throw
// n3::Error; never crash or read out of bounds. Rosters go through the same decoder per line.
#include "crypto/keys.hpp"
#include "record/error.hpp"

#include <cstdint>
#include <string>

using namespace n3::crypto;

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
        case KeyKind::member_public: PublicRecord::decode(kt.body, "fuzz").Y_sig(PublicRecord{}.X_sig); break;
        case KeyKind::curve_secret: CurveKey::parse(text, "fuzz"); break;
        case KeyKind::curve_public: break;
        }
    } catch (const n3::Error&) {
    }
    // The body decoders on raw bytes, without the text layer's checksum in the way.
    n3::ByteView raw(data, size);
    try { PublicRecord::decode(raw, "fuzz"); } catch (const n3::Error&) {}
    try { Request::decode(raw, "fuzz"); } catch (const n3::Error&) {}
    try { MemberKey::decode(raw, "fuzz"); } catch (const n3::Error&) {}
    try { Partial::decode(raw, "fuzz"); } catch (const n3::Error&) {}
    try { Roster::parse(text, "fuzz"); } catch (const n3::Error&) {}
    try { z85_decode(text); } catch (const n3::Error&) {}
    return 0;
}
