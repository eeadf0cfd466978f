// n3/crypto/suite.hpp — the sealed envelope's cipher suites: how its chunks are encrypted and
// how its payload digest is computed (suite table in n3-record(5)).
//
//   1  xchacha20-poly1305   XChaCha20-Poly1305 chunks, BLAKE2b payload digest (libsodium)
//   2  aes-256-gcm          AES-256-GCM chunks, SHA-256 payload digest (OpenSSL's libcrypto,
//                           which uses the CPU's AES, carry-less multiply and SHA instructions)
//
// Everything else in the envelope (stanzas, key derivation, signature transcripts) is the same
// for both. A chunk's nonce is its index in the record's stream and a last-chunk flag; every
// record has its own payload key, so no nonce repeats under a key. The sender picks the suite
// (preferred_suite(): N3_SEAL_SUITE, else the fastest one this CPU accelerates); the opener
// reads it from the clear header, which the payload key and signature 1 bind.
//
//   Suite s = preferred_suite();
//   suite::seal_chunk(s, key, index, last, plain, n, sealed);        // n + kTag bytes out
//   bool ok = suite::open_chunk(s, key, index, last, sealed, n + kTag, plain);
//   Hash32 l = suite::leaf(s, chunk, bytes);  suite::ContentHash h(s, length); h.add(l);
//
// The chunk functions are safe to call from several threads at once (each thread keeps its
// own cipher context). parse_suite and preferred_suite throw UsageError for unknown names;
// nothing here throws on data (open_chunk returns false).
#pragma once

#include "crypto/primitives.hpp"

#include <optional>
#include <string_view>

namespace n3::crypto {

enum class Suite : uint8_t { xchacha20_poly1305 = 1, aes256_gcm = 2 };

constexpr size_t kTag = 16; // both suites' authentication tag

std::string_view suite_name(Suite s);
// The suite with this id byte, if it is one.
std::optional<Suite> suite_from_id(uint8_t id);
// "xchacha20-poly1305" or "aes-256-gcm" (also "xchacha" and "aes"); "auto" is preferred_suite().
// `what` names the source in the error ("--suite", "N3_SEAL_SUITE").
Suite parse_suite(std::string_view name, std::string_view what);
// Whether this CPU has the instructions that make the suite fast (AES-256-GCM: AES and
// carry-less multiply, and SHA-256 instructions for its digest; XChaCha20: always).
bool suite_accelerated(Suite s);
// N3_SEAL_SUITE when set (a name as parse_suite takes), else AES-256-GCM where
// suite_accelerated, else XChaCha20-Poly1305.
Suite preferred_suite();

namespace suite {

// Encrypts n bytes of `plain` (n <= 64 KiB) into `sealed` (n + kTag bytes).
void seal_chunk(Suite s, const Secret& key, uint64_t index, bool last, const uint8_t* plain,
                size_t n, uint8_t* sealed);
// Decrypts `sealed` (n >= kTag bytes) into `plain` (n - kTag bytes); false if it does not
// authenticate under this key, index and flag.
bool open_chunk(Suite s, const Secret& key, uint64_t index, bool last, const uint8_t* sealed,
                size_t n, uint8_t* plain);

// Leaf `chunk` of the payload digest over the content bytes that fall in that chunk.
Hash32 leaf(Suite s, uint64_t chunk, ByteView bytes);
// Sixteen leaves at once: out[j] = leaf(s, first_chunk + j, {base + j * stride, len}), with
// len >= 32 and stride * 15 < 2^31. False, with nothing written, where the suite or the CPU has
// no faster way than leaf() one at a time (suite 1; suite 2 without AVX-512: sha256x16.hpp).
bool leaves16(Suite s, uint64_t first_chunk, const uint8_t* base, size_t stride, size_t len,
              Hash32* out);

// The payload digest: the content length, then the leaves in stream order. 64 bytes
// (BLAKE2b-512) in suite 1, 32 bytes (SHA-256) in suite 2.
class ContentHash {
public:
    ContentHash(Suite s, uint64_t length);
    ~ContentHash();
    ContentHash(const ContentHash&) = delete;
    ContentHash& operator=(const ContentHash&) = delete;
    void add(const Hash32& leaf);
    Bytes digest();

private:
    std::optional<Hasher> blake_;
    void* sha_ = nullptr; // EVP_MD_CTX
};

// The primitives under suite 2, exposed for their published test vectors.
Hash32 sha256(ByteView bytes);
// AES-256-GCM with a 12-byte nonce: `sealed` gets plain.size() + kTag bytes.
void aes256gcm_encrypt(const uint8_t key[32], const uint8_t nonce[12], ByteView aad, ByteView plain,
                       uint8_t* sealed);
bool aes256gcm_decrypt(const uint8_t key[32], const uint8_t nonce[12], ByteView aad,
                       ByteView sealed, uint8_t* plain);

} // namespace suite

} // namespace n3::crypto
