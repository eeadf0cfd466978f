// n3/crypto/envelope.hpp — internal to seal.cpp: the parts of the sealed envelope that are not
// the chunk stream (byte layout in n3-record(5)).
//
// The clear header carries one stanza per recipient, real or dummy, each wrapping the file key
// for one member; the inner header (first bytes of the encrypted stream) names the sender, the
// context and the real recipients in a size set by the stanza count alone; the stream's layout
// pads inner header, content and signature 2 to a Padmé bucket. Parsers throw DataError naming
// `where`; nothing here reads or writes a chunk.
#pragma once

#include "crypto/seal.hpp"
#include "crypto/suite.hpp"

#include <algorithm>
#include <utility>
#include <vector>

namespace n3::crypto::envelope {

// Version 2 makes the inner header's size depend on the stanza count alone. Version 1, whose
// header grew with the sender's id and the real recipient count, is still opened.
constexpr uint8_t kVersion = 2;
constexpr uint8_t kVersion1 = 1;
// The sender's record travels in a slot this large: what a record with the longest id
// (128 characters, the limit keys.cpp enforces at request, issuance and decoding) encodes to.
constexpr size_t kSenderSlot = 256;
constexpr size_t kCtChunk = kChunkSize + kTag;
constexpr size_t kClearFixed = 8;
constexpr size_t kStanza = 32 + 32 + kTag;
constexpr size_t kContextSize = 1 + 16 + 32 + 1 + 8 + 32 + 1;
constexpr size_t kSig = 64;

// Reads exactly out.size() bytes or throws.
void read_exact(PayloadSource& in, std::span<uint8_t> out);

// The context as bound into the signatures and carried inside the ciphertext.
Bytes encode_context(const AuthorityPublic& fed, const SealContext& c, RecordType type);

// The clear header: version, suite, stanza count, and per recipient E_j || wrap_j(file_key),
// then random dummies up to `stanzas`. Appends the real recipients' fingerprints to `fps`.
Bytes make_clear(std::span<const PublicRecord> recipients, const AuthorityPublic& fed,
                 const Secret& file_key, std::vector<Fingerprint>& fps, size_t stanzas,
                 Suite suite);
// Reads and checks the clear header's fixed part and its stanzas from `in`.
Bytes read_clear(PayloadSource& in);
size_t stanza_count(ByteView clear);
Suite clear_suite(ByteView clear); // of a header read_clear or make_clear checked
// Tries every stanza of `clear` with my key; true (and file_key set) when one opens.
bool open_stanza(ByteView clear, const MemberKey& me, const Fingerprint& my_fp,
                 const AuthorityPublic& authority, Secret& file_key);

// The keys both sides derive from the file key and the whole clear header.
Secret payload_key(const Secret& file_key, ByteView clear);
Hash32 key_commitment(const Secret& file_key, ByteView clear);

// The inner header up to signature 1 (which the caller appends): the sender's record in its
// slot, the context, a fingerprint slot per stanza (real ones first), the content length.
Bytes encode_inner(const PublicRecord& sender, ByteView context, std::span<const Fingerprint> fps,
                   size_t nstanzas, uint64_t length);
struct Inner {
    PublicRecord sender;
    SealContext context;
    RecordType type = RecordType::model;
    uint16_t recipients = 0; // real ones
    bool for_me = false;     // my fingerprint is among them
    uint64_t length = 0;
    size_t before_sig = 0; // what signature 1 signs of the inner header, with the clear header
    Signature s1{};
    size_t size = 0; // the whole inner header, signature 1 included
};
// Parses the inner header at the start of chunk 0's plaintext and checks its federation.
Inner parse_inner(ByteView chunk0, uint8_t version, size_t nstanzas, const Fingerprint& my_fp,
                  const AuthorityPublic& authority, const std::string& where);

// The chunked layout shared by both sides: the plaintext stream is inner header (H bytes),
// content (L bytes), signature 2, zero padding up to padme(H + L + 64).
struct Layout {
    uint64_t header = 0, content = 0, padded = 0, chunks = 0;
    uint64_t content_end() const { return header + content; }
    uint64_t ct_length() const { return padded + chunks * kTag; }
    static Layout make(uint64_t header, uint64_t content) {
        Layout l;
        l.header = header;
        l.content = content;
        l.padded = padme(header + content + kSig);
        l.chunks = (l.padded + kChunkSize - 1) / kChunkSize;
        return l;
    }
    // The content bytes that fall in stream chunk i, as stream offsets [lo, hi) (empty if none).
    std::pair<uint64_t, uint64_t> content_in_chunk(uint64_t chunk) const {
        uint64_t lo = std::max<uint64_t>(chunk * kChunkSize, header);
        uint64_t hi = std::min<uint64_t>((chunk + 1) * kChunkSize, content_end());
        return {lo, std::max(lo, hi)};
    }
};

} // namespace n3::crypto::envelope
