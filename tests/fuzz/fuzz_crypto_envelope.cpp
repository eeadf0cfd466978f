// Fuzzes n3-seal's opener: arbitrary bytes as a sealed record payload (and as a whole record)
// must be rejected with n3::Error, never crash, hang or read out of bounds. The recipient key
// is fixed, so mutations of a real envelope (seeded by the first run) reach past the stanza;
// the genuine envelope spliced into is of either suite, chosen by a bit of the input.
#include "crypto/seal.hpp"
#include "record/error.hpp"

#include <cstring>

using namespace n3;
using namespace n3::crypto;

namespace {
struct Keys {
    AuthoritySecret auth = AuthoritySecret::generate();
    MemberKey alice, bob;
    Bytes sealed[2]; // suite 1 (XChaCha20-Poly1305), suite 2 (AES-256-GCM)
    Keys() {
        MemberSecret a = MemberSecret::create("alice", 0, 0), b = MemberSecret::create("bob", 0, 0);
        alice = complete(a, issue(auth, a.request, "a"), "a");
        bob = complete(b, issue(auth, b.request, "b"), "b");
        for (Suite s : {Suite::xchacha20_poly1305, Suite::aes256_gcm}) {
            SealOptions so;
            so.suite = s;
            sealed[static_cast<int>(s) - 1] = seal_record(alice, std::span(&bob.record, 1),
                                                          RecordType::packed, Bytes(100000, 7), so);
        }
    }
};
Keys& keys() {
    static Keys k;
    return k;
}
void open_payload(ByteView payload) {
    size_t pos = 0;
    PayloadSource src;
    src.type = RecordType::sealed;
    src.length = payload.size();
    src.read = [&](std::span<uint8_t> out) {
        size_t n = std::min(out.size(), payload.size() - pos);
        if (n) std::memcpy(out.data(), payload.data() + pos, n);
        pos += n;
        return n;
    };
    VectorSink sink;
    try {
        open(keys().bob, keys().auth.public_key(), src, sink);
    } catch (const Error&) {
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Keys& k = keys();
    open_payload({data, size});
    // Splice the fuzz input into a genuine envelope so the stanza opens and the chunk and
    // inner-header paths are reached.
    if (size >= 4) {
        const Bytes& genuine = k.sealed[(data[3] >> 1) & 1];
        Bytes p(genuine.begin() + 32, genuine.end() - 8);
        size_t at = (size_t(data[0]) << 16 | size_t(data[1]) << 8 | data[2]) % p.size();
        size_t n = std::min(size - 3, p.size() - at);
        if (data[3] & 1)
            std::memcpy(p.data() + at, data + 3, n);
        else
            p.resize(at);
        open_payload(p);
    }
    try {
        open_record(k.bob, k.auth.public_key(), {data, size});
    } catch (const Error&) {
    }
    return 0;
}
