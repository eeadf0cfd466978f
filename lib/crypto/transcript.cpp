// The sealed envelope's signature transcripts and the content's tree hash. Their
// personalisation strings and field order are frozen (tests/crypto/golden): the signatures of
// every record already sealed depend on them.
#include "crypto/transcript.hpp"

namespace n3::crypto::transcript {

Digest head(ByteView clear, const Hash32& commit, ByteView inner_before_sig) {
    return Hasher("n3/v1/sig-head").part(clear).part(commit).part(inner_before_sig).digest();
}

Digest body(const Digest& head, const Signature& s1, ByteView content) {
    return Hasher("n3/v1/sig-body").part(head).part(s1).part(content).digest();
}

bool leaf(Suite s, const envelope::Layout& l, uint64_t chunk, const uint8_t* chunk_data,
          Hash32& out, uint64_t* crc) {
    auto [lo, hi] = l.content_in_chunk(chunk);
    if (lo >= hi) return false;
    ByteView bytes{chunk_data + (lo - chunk * kChunkSize), static_cast<size_t>(hi - lo)};
    out = suite::leaf(s, chunk, bytes);
    if (crc) *crc = crc64(0, bytes);
    return true;
}

} // namespace n3::crypto::transcript
