// n3/crypto/keyfile.hpp — the key files n3-keys writes, and what any key file says about itself.
//
// A key file is '#' comment lines for the person who holds it (what the key is, when it was
// made, its public part, fingerprint and issuance-log position) and then its one key line
// (keys.hpp), a secret one perhaps under a passphrase (passphrase.hpp). Readers skip the
// comments, so they may change; the key line is the format.
//
//   AuthoritySecret a = AuthoritySecret::generate();
//   write_authority_file("fed.ask", a, {.encrypt = false, .force = false});
//   std::string pub = public_key_text(read_key_file("alice.key"), "alice.key");
//   write_roster_file("fed.roster", {"alice.pub", "bob.key"}, &authority, now_seconds());
//
// Secret files are created 0600 and never replace an existing file unless `force`; every file
// appears whole or not at all (record/io.hpp's Output), "-" is stdout. Failures: EnvError for
// a file that exists or cannot be written, DataError for a key that has no such answer (a
// fingerprint of a request) or a bad input, as keys.hpp.
#pragma once

#include "crypto/keys.hpp"

#include <optional>
#include <string>
#include <vector>

namespace n3::crypto {

// The public line of any key file: the authority's public key for its secret, the public
// record for a member key, partial key or public record, the request for a member secret, the
// N3CURVE-PUBLIC- line for a CURVE key. An encrypted key is decrypted by read_key_file first.
std::string public_key_text(const KeyText& kt, const std::string& where);
// The identity fingerprint of an authority or member key file; other kinds throw DataError
// "<where>: <kind> has no fingerprint (it is not an identity)".
Fingerprint key_fingerprint(const KeyText& kt, const std::string& where);

struct KeyFileOptions {
    bool encrypt = false; // a secret key line under a new passphrase (asked as for the path)
    bool force = false;   // replace an existing file
};

// Writes one key file: `text` is its comment lines and key line. `secret` files are created
// 0600 and refuse to replace an existing file unless force.
void write_key_file(const std::string& path, const std::string& text, bool secret, bool force);

void write_authority_file(const std::string& path, const AuthoritySecret& authority,
                          const KeyFileOptions& opts);
void write_member_secret_file(const std::string& path, const MemberSecret& secret,
                              const KeyFileOptions& opts);
// What n3-keys request prints: a comment naming the member, then the request line.
std::string request_text(const Request& request);

// Writes the partial key to `path` ("-" is stdout) and, with a `log_path`, first appends its
// record to that issuance log (log_append), setting partial.log. An existing `path` is refused
// (EnvError) before the log grows, unless force: an entry for a partial key never handed out
// would look like a second key for the name.
void write_partial_file(const std::string& path, Partial& partial, const AuthoritySecret& authority,
                        const std::string& log_path, uint64_t now, bool force,
                        const std::string& where);

// The member key, with the issuance-log head it was issued at (when known) in its comments.
void write_member_key_file(const std::string& path, const MemberKey& key,
                           const std::optional<LogHead>& head, const KeyFileOptions& opts);

void write_curve_file(const std::string& path, const CurveKey& key, bool force);

// A roster of the members in `files` (public records, member keys or partial keys), each
// after a comment line; with `authority`, only current members of that federation. DataError
// for a member listed twice.
void write_roster_file(const std::string& path, const std::vector<std::string>& files,
                       const AuthorityPublic* authority, uint64_t now);

// Rewrites a secret key file in place with its passphrase added, changed or removed (a new
// one from `new_passphrase_file` when given, else asked), keeping its comment lines. DataError
// for a file that is not a secret key, or has no passphrase to remove.
enum class PassphraseChange { added, changed, removed };
PassphraseChange change_passphrase(const std::string& path, bool remove,
                                   const std::string& new_passphrase_file);

} // namespace n3::crypto
