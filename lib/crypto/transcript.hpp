// n3/crypto/transcript.hpp — internal to seal.cpp: what the sender's two signatures sign.
//
// Signature 1 signs the clear header, the key commitment and the inner header before it, so
// the sender is known and checked before a byte of the payload is released. Signature 2 signs
// signature 1's transcript, signature 1 and the content hash: a tree hash whose leaves are the
// content bytes of each 64 KiB stream chunk, computed per chunk on either thread and absorbed
// in stream order. Pure functions; nothing here throws on data.
#pragma once

#include "crypto/envelope.hpp"
#include "crypto/suite.hpp"

namespace n3::crypto::transcript {

Digest head(ByteView clear, const Hash32& commit, ByteView inner_before_sig); // signature 1
Digest body(const Digest& head, const Signature& s1, ByteView content);       // signature 2

// Leaf `chunk` of the content hash: the content bytes that fall in that stream chunk, whose
// plaintext starts at chunk_data. False when the chunk holds no content. With `crc`, also
// their CRC-64 (opening: the checksum of the record written out, computed per chunk).
bool leaf(Suite s, const envelope::Layout& l, uint64_t chunk, const uint8_t* chunk_data,
          Hash32& out, uint64_t* crc = nullptr);

using suite::ContentHash;

} // namespace n3::crypto::transcript
