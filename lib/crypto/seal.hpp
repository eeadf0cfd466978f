// n3/crypto/seal.hpp — n3-seal's anonymous signcryption envelope (byte layout in n3-record(5)).
//
// seal() wraps one record for one or more recipients of the sender's federation:
//   file_key random; per recipient j: E_j = e_j G, K_j = e_j Y_kem(j),
//   k_j = BLAKE2b(key K_j; E_j, Y_kem(j), fp(j), federation) wraps file_key (XChaCha20-Poly1305);
//   payload key and a key commitment from BLAKE2b(key file_key; clear header);
//   plaintext = inner header (sender record, context, recipients' fingerprints, length,
//   signature 1 over a transcript that commits to the header and the payload key; of a size
//   set by the stanza count alone, so it reveals neither the sender's id length nor how many
//   stanzas are dummies) || record
//   payload || signature 2 (over signature 1 and a tree hash of the payload) || zero padding to
//   the Padmé bucket, cut into 64 KiB chunks, each sealed with the suite's AEAD under a nonce
//   made of its index and a last-chunk flag (age's STREAM), so dropped, reordered and
//   truncated chunks fail. Nothing outside the ciphertext names the sender or the recipients.
//   The suite (suite.hpp: XChaCha20-Poly1305 with a BLAKE2b tree hash, or AES-256-GCM with a
//   SHA-256 one) is the sender's choice, named in the clear header; open() takes either.
//
// open() finds its stanza, checks the sender (federation, expiry, roster, round, one record per
// sender) and signature 1 before it writes a byte, streams the payload out as it decrypts, and
// checks signature 2, the padding and the input's own checksum before it writes the output
// record's trailer: a consumer (or n3::Output's atomic file) never sees a complete record that
// did not verify. An envelope with several recipients is held back whole until everything
// verified (in memory up to OpenOptions::hold_in_memory, then in an unlinked file in TMPDIR): a
// co-recipient knows the file key and could re-encrypt the chunks after the first. It opens
// versions 1 and 2 and seals version 2. Both run on two threads (tree hash and AEAD per chunk).
//
// Failures throw DataError naming `where` (wrong recipient, forged, tampered, truncated,
// replayed, expired, not in the roster) and never leave a completed output record.
//
// The parts live in envelope.hpp (clear header, stanzas, inner header, padding), chunks.hpp
// (the chunk stream on two threads) and transcript.hpp (what the signatures sign), internal
// to n3_crypto; seal.cpp puts them in order.
#pragma once

#include "crypto/keys.hpp"
#include "crypto/suite.hpp"
#include "record/format.hpp"

#include <functional>
#include <optional>
#include <set>
#include <string>

namespace n3::crypto {

constexpr size_t kChunkSize = 64 * 1024;
constexpr size_t kMaxRecipients = 1024;
// Chunks of one envelope, at most: each chunk's index is its nonce, and AES-GCM allows 2^32
// invocations under one key.
constexpr uint64_t kMaxChunks = uint64_t(1) << 32;

// What a sealed record is bound to besides its recipients: the federation (from the keys),
// the round and the base-model hash (from the record's metadata or the caller), the inner type.
struct SealContext {
    std::optional<uint64_t> round;
    std::optional<Hash32> base;
};

// A record payload read in pieces (RecordReader::read_payload, a buffer, ...). finish() runs
// once every byte was read and must throw if the input's own checksum fails.
struct PayloadSource {
    RecordType type = RecordType::model;
    uint64_t length = 0;
    std::function<size_t(std::span<uint8_t>)> read;
    std::function<void()> finish;
    // Optional, for a mapped input: the rest of the payload in place (nullopt when the input
    // is a pipe). Whoever takes it computes the CRC-64 of those bytes and passes it to
    // finish_taken instead of calling finish (RecordReader::take_payload / end(crc)).
    std::function<std::optional<ByteView>()> take;
    std::function<void(uint64_t)> finish_taken;
    // Optional, with take: copies taken bytes from p on into out through the file, a private
    // copy (RecordReader::copy_taken); false if the file no longer holds them. Safe to call
    // from several threads. Without it, taken bytes are copied from the mapping.
    std::function<bool(const uint8_t* p, std::span<uint8_t> out)> copy_taken;
    std::string where = "input";
};

struct SealOptions {
    SealContext context;        // round/base not in the record's metadata (e.g. packed records)
    uint64_t now = 0;           // 0: the clock
    size_t stanzas = 0;         // pad the header with random dummy stanzas up to this many
    std::optional<Suite> suite; // none: preferred_suite()
};

// Writes one complete sealed record (preamble, payload, trailer) to `out`. The round and base
// are read from a tensor record's metadata; options.context fills what the record lacks and
// must agree with what it has (DataError otherwise).
void seal(const MemberKey& sender, std::span<const PublicRecord> recipients, PayloadSource& in,
          Sink& out, const SealOptions& opts = {});

struct OpenOptions {
    std::optional<uint64_t> round;  // reject records sealed for another round
    const Roster* roster = nullptr; // the sender must be listed (exact public record)
    uint64_t now = 0;
    // Refuse a sender already in the set, and add each sender whose record opened: one record
    // per member over a stream, so nobody's update counts twice.
    std::set<Fingerprint>* senders_seen = nullptr;
    size_t hold_in_memory = size_t(64) << 20; // a held-back record spills to TMPDIR beyond this
};
struct Opened {
    PublicRecord sender;
    Fingerprint sender_fingerprint{};
    SealContext context;
    RecordType type = RecordType::model;
    uint64_t length = 0;
    size_t recipients = 0; // real ones, without dummy stanzas
    Suite suite = Suite::xchacha20_poly1305;
};
// `in` is a sealed record's payload; writes the inner record (preamble, payload, trailer).
Opened open(const MemberKey& me, const AuthorityPublic& authority, PayloadSource& in, Sink& out,
            const OpenOptions& opts = {});

// What a sealed record's clear header shows anyone: envelope version, suite, stanza count
// (recipients and dummies). DataError for a payload that does not start with a valid header.
struct SealedHeader {
    uint8_t version = 0;
    Suite suite = Suite::xchacha20_poly1305;
    size_t stanzas = 0;
};
SealedHeader sealed_header(ByteView payload, const std::string& where);

// A record being read by `reader` (begin() returned `p`) as a payload source: mapped inputs
// are taken in place, and the record's checksum is checked when the payload was read.
PayloadSource payload_source(RecordReader& reader, const Preamble& p);

// Whole streams, for n3-seal: every record of `inputs` (paths, "-" for stdin; opened one
// after another, as they are reached) sealed or opened into `out`. Return how many records;
// DataError when the inputs hold none, or (opening) a record that is not sealed.
uint64_t seal_stream(const MemberKey& sender, std::span<const PublicRecord> recipients,
                     std::span<const std::string> inputs, Sink& out, const SealOptions& opts = {});
// Called after each record opened, with its input's name and its number in that input.
using OpenedCallback =
    std::function<void(const std::string& input, uint64_t record, const Opened& opened)>;
uint64_t open_stream(const MemberKey& me, const AuthorityPublic& authority,
                     std::span<const std::string> inputs, Sink& out, const OpenOptions& opts = {},
                     const OpenedCallback& opened = {});

// In-memory forms, for secure aggregation and tests: whole records in and out.
Bytes seal_record(const MemberKey& sender, std::span<const PublicRecord> recipients,
                  RecordType type, ByteView payload, const SealOptions& opts = {});
struct OpenedRecord {
    Opened info;
    Record record;
};
OpenedRecord open_record(const MemberKey& me, const AuthorityPublic& authority, ByteView sealed,
                         const OpenOptions& opts = {});

// What any recipient (or anyone holding a recipient's key) can do with an envelope, exposed
// so tests can mount forwarding and payload-replacement attacks: the clear header, the file key
// and the decrypted plaintext stream; and re-encryption of a (changed) stream.
namespace detail {
struct RawEnvelope {
    Bytes clear;
    Secret file_key{32};
    Bytes stream; // inner header || payload || signature 2 || padding
};
RawEnvelope raw_decrypt(const MemberKey& me, const AuthorityPublic& authority,
                        ByteView sealed_record);
RawEnvelope raw_wrap(std::span<const PublicRecord> recipients, const AuthorityPublic& fed,
                     Suite suite = Suite::xchacha20_poly1305); // new header
Bytes raw_encrypt(const RawEnvelope& env); // a sealed record of env.stream under env's header
} // namespace detail

// Padmé bucket (Nikitin et al., PETS 2019): at most 12% larger, leaks O(log log L) bits.
uint64_t padme(uint64_t length);

} // namespace n3::crypto
