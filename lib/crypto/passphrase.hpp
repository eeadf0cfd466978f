// n3/crypto/passphrase.hpp — secret key files encrypted under a passphrase.
//
// An encrypted key file is one line like every key file (n3-record(5), KEY FILES):
//   N3-ENCRYPTED-KEY- base64(body || 4-byte check), body = version u8 (1) | kdf u8 (1: Argon2id
//   v1.3) | opslimit u32 | memlimit u64 | salt (16) | nonce (24) | XChaCha20-Poly1305 under
//   crypto_pwhash(passphrase, salt, opslimit, memlimit) with the prefix and the fields before
//   as associated data, of: inner key kind u8 || inner key body.
// read_key_file() decrypts such a file wherever a key is read, so every tool that takes a
// secret key takes an encrypted one.
//
//   std::string line = encrypt_key_text(kt, pass);      // kt: a decoded secret key
//   KeyText kt = decrypt_key_text(encrypted, pass, "alice.key");
//   Secret pass = passphrase("alice.key", false);       // from the sources below
//
// Where a passphrase comes from, first that applies: set_passphrase_file(path) (a tool's
// --passphrase-file), the file named by $N3_PASSPHRASE_FILE (its first line; /dev/fd/N reads a
// descriptor), the terminal (/dev/tty, echo off; the only place this module writes to, for
// the prompt). None available: EnvError with a hint. A wrong passphrase or a damaged file:
// DataError naming the file. A file asking for more than kMaxMemlimit / kMaxOpslimit is
// refused before any work (DataError).
#pragma once

#include "crypto/keys.hpp"

#include <string>

namespace n3::crypto {

struct KdfLimits {
    uint32_t opslimit = 3;           // Argon2id passes
    uint64_t memlimit = 64ull << 20; // bytes: about 0.2 s on one core of this class of machine
};
constexpr uint32_t kMaxOpslimit = 64;
constexpr uint64_t kMaxMemlimit = 4ull << 30;

// The key line (no newline) of `inner` (a secret key, not itself encrypted) under `pass`.
std::string encrypt_key_text(const KeyText& inner, const Secret& pass,
                             const KdfLimits& limits = {});
// `encrypted` is a decoded N3-ENCRYPTED-KEY- line; returns the key inside.
KeyText decrypt_key_text(const KeyText& encrypted, const Secret& pass, const std::string& where);

// Passphrase sources (see above). `what` names the key in prompts and messages; confirm asks a
// terminal twice (a new passphrase); terminal_only skips the file sources.
void set_passphrase_file(const std::string& path);
Secret passphrase(const std::string& what, bool confirm, bool terminal_only = false);
// The first line of `path` (without the newline); UsageError if it is empty.
Secret read_passphrase_file(const std::string& path);

} // namespace n3::crypto
