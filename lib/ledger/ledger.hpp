// n3/ledger/ledger.hpp — the merger's receipt ledger: one signed, hash-chained line per
// accepted update, naming the one-time receipt key the member put into the update (never the
// member), and the claim proof with which the holder of that key shows a receipt is its own.
//
//   append_receipts("rewards.ledger", merger_key, receipts);   // n3-merge --receipts
//   Ledger l = read_ledger("rewards.ledger", merger_record, authority);  // n3-keys ledger
//   Signature p = sign_claim(receipt_key, "challenge");          // n3-keys claim
//   auto mine = verify_claim(l, Y, "challenge", p, "LEDGER");    // n3-keys verify-claim
//
// The file mirrors the issuance log of lib/crypto/keys.hpp: '#' comments, a header
//   n3-receipt-ledger 1 <N3-MEMBER-... the merger> <N3-AUTHORITY-... its federation>
// and one entry per line (14 fields, numbers as "%.17g" text, holdout "-" when not measured):
//   <index> <round> <base> <model> <record> <N3-RECEIPT-...> <weight> <cosine> <krum>
//   <norm_ratio> <holdout> <score> <head> <signature>
// head_i = BLAKE2b-256("n3/v1/rcpt-chain"; head_{i-1}, i, fields 2..12 as written), head_0 =
// BLAKE2b-256("n3/v1/rcpt-gen"; authority, merger), and the signature is the merger's Schnorr
// signature (its member signing key) over BLAKE2b("n3/v1/rcpt-entry"; merger, head_i). So an
// edited, reordered, dropped or inserted entry breaks the chain, and only the merger can sign
// a chain that verifies. Entries of one round share its base and model hashes, rounds never go
// back, the base of round r+1 is the model of round r, and no input is receipted twice: a
// ledger that breaks these describes two histories (a fork) and is refused.
//
// A claim is a Schnorr signature with the receipt key over BLAKE2b("n3/v1/rcpt-claim"; the
// receipt key, the verifier's challenge).
//
// Failures: DataError (exit 1) naming the file and line for every check that fails, for a
// ledger of another merger, and for a claim that does not verify or names no receipt;
// EnvError (exit 2) for a file that cannot be read, locked or written.
#pragma once

#include "crypto/keys.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace n3::ledger {

struct Receipt {
    uint64_t round = 0;
    std::string base, model, record; // 64 hex digits each: model_hash of the payloads
    std::string receipt_key;         // N3-RECEIPT-...
    double weight = 0;
    double cosine = 0, krum = 0, norm_ratio = 0, score = 0;
    std::optional<double> holdout;
};

struct Entry {
    uint64_t index = 0; // 1-based
    Receipt receipt;
    crypto::Point key{}; // the receipt key's point
    crypto::Hash32 head{};
};

struct Ledger {
    std::vector<Entry> entries;
    std::vector<crypto::Hash32> heads; // heads[0] is the genesis, heads[i] after entry i
    const crypto::Hash32& head() const { return heads.back(); }
};

// Verifies every entry of the ledger at `path` against the merger (its public record and
// federation). A missing file is an EnvError; a file with a header and no entries is valid.
Ledger read_ledger(const std::string& path, const crypto::PublicRecord& merger,
                   const crypto::AuthorityPublic& authority);

// Verifies the ledger so far (a missing file is a new, empty ledger), then adds one signed
// entry per receipt under an exclusive lock on the ledger's folder, rewriting the file
// atomically (temporary file, fsync, rename). Returns the new head.
crypto::Hash32 append_receipts(const std::string& path, const crypto::MemberKey& merger,
                               const std::vector<Receipt>& receipts);

// DataError unless `head` (64 hex digits, as `head` in n3-keys ledger) is one of the ledger's
// heads: the ledger extends the one that head was taken from.
void check_extends(const Ledger& ledger, const std::string& head, const std::string& where);

crypto::Digest claim_message(const crypto::Point& receipt_key, std::string_view challenge);
crypto::Signature sign_claim(const crypto::ReceiptKey& key, std::string_view challenge);
// The entries of `receipt_key` in the ledger, after checking that `proof` is its signature of
// the challenge. DataError when the proof fails or the ledger holds no receipt for the key.
std::vector<const Entry*> verify_claim(const Ledger& ledger, const crypto::Point& receipt_key,
                                       std::string_view challenge, const crypto::Signature& proof,
                                       const std::string& where);

} // namespace n3::ledger
