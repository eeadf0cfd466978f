#include "crypto/passphrase.hpp"

#include "record/error.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <termios.h>
#include <unistd.h>

namespace n3::crypto {

namespace {

constexpr uint8_t kEncVersion = 1;
constexpr uint8_t kKdfArgon2id = 1;
constexpr size_t kSalt = crypto_pwhash_argon2id_SALTBYTES;
constexpr size_t kNonce = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
constexpr size_t kAeadTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kFixed = 1 + 1 + 4 + 8 + kSalt + kNonce;
constexpr size_t kMaxPassphrase = 1024;
static_assert(kSalt == 16 && kNonce == 24);

std::string explicit_file; // set_passphrase_file

Secret to_secret(std::string& s) {
    Secret out(s.size());
    if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
    sodium_memzero(s.data(), s.size());
    return out;
}

Secret derive(const Secret& pass, const uint8_t* salt, uint32_t ops, uint64_t mem) {
    Secret key(32);
    if (crypto_pwhash(key.data(), 32, reinterpret_cast<const char*>(pass.data()), pass.size(), salt,
                      ops, static_cast<size_t>(mem), crypto_pwhash_ALG_ARGON2ID13) != 0)
        throw EnvError("not enough memory for the passphrase key derivation (" +
                       std::to_string(mem >> 20) + " MiB)");
    return key;
}

Bytes associated(ByteView fixed) {
    std::string_view prefix = key_prefix(KeyKind::encrypted_key);
    Bytes ad(prefix.begin(), prefix.end());
    put(ad, fixed);
    return ad;
}

// Closes a descriptor and restores a terminal's settings, whatever happens in between.
struct Tty {
    int fd = -1;
    termios saved{};
    bool restore = false;
    ~Tty() {
        if (restore) ::tcsetattr(fd, TCSAFLUSH, &saved);
        if (fd >= 0) ::close(fd);
    }
    void say(const std::string& s) const {
        if (::write(fd, s.data(), s.size()) < 0) { /* a prompt that cannot be shown is not fatal */
        }
    }
};

// One line from the controlling terminal with echo off; nullopt when there is none.
std::optional<std::string> ask_tty(const std::string& prompt) {
    Tty t;
    t.fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (t.fd < 0 || ::tcgetattr(t.fd, &t.saved) != 0) return std::nullopt;
    termios quiet = t.saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    if (::tcsetattr(t.fd, TCSAFLUSH, &quiet) != 0) return std::nullopt;
    t.restore = true;
    t.say(prompt);
    std::string line;
    char ch;
    for (;;) {
        ssize_t n = ::read(t.fd, &ch, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || ch == '\n') break;
        if (line.size() < kMaxPassphrase) line.push_back(ch);
    }
    t.say("\n");
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

} // namespace

std::string encrypt_key_text(const KeyText& inner, const Secret& pass, const KdfLimits& limits) {
    init();
    if (inner.kind == KeyKind::encrypted_key || !is_secret(inner.kind))
        throw UsageError("only a secret key that is not already encrypted can be encrypted");
    if (inner.kind == KeyKind::curve_secret)
        throw UsageError("n3-send reads CURVE transport keys unencrypted only");
    if (pass.size() == 0) throw UsageError("empty passphrase");
    Bytes fixed;
    fixed.push_back(kEncVersion);
    fixed.push_back(kKdfArgon2id);
    put_u32(fixed, limits.opslimit);
    put_u64(fixed, limits.memlimit);
    uint8_t salt[kSalt], nonce[kNonce];
    random_bytes(salt);
    random_bytes(nonce);
    fixed.insert(fixed.end(), salt, salt + kSalt);
    fixed.insert(fixed.end(), nonce, nonce + kNonce);
    Secret key = derive(pass, salt, limits.opslimit, limits.memlimit);
    Bytes plain;
    plain.push_back(static_cast<uint8_t>(inner.kind));
    put(plain, inner.body);
    Bytes body = fixed;
    body.resize(fixed.size() + plain.size() + kAeadTag);
    Bytes ad = associated(fixed);
    crypto_aead_xchacha20poly1305_ietf_encrypt(body.data() + fixed.size(), nullptr, plain.data(),
                                               plain.size(), ad.data(), ad.size(), nullptr, nonce,
                                               key.data());
    sodium_memzero(plain.data(), plain.size());
    return encode_key_text(KeyKind::encrypted_key, body);
}

KeyText decrypt_key_text(const KeyText& encrypted, const Secret& pass, const std::string& where) {
    init();
    if (encrypted.kind != KeyKind::encrypted_key)
        throw std::logic_error("decrypt_key_text: not encrypted");
    Cursor c(encrypted.body, where + ": encrypted key");
    uint8_t v = c.u8();
    if (v != kEncVersion) c.fail("unsupported version " + std::to_string(v));
    uint8_t kdf = c.u8();
    if (kdf != kKdfArgon2id) c.fail("unknown key derivation " + std::to_string(kdf));
    uint32_t ops = c.u32();
    uint64_t mem = c.u64();
    if (ops < crypto_pwhash_argon2id_OPSLIMIT_MIN || ops > kMaxOpslimit ||
        mem < crypto_pwhash_argon2id_MEMLIMIT_MIN || mem > kMaxMemlimit)
        c.fail("key derivation limits out of range (" + std::to_string(ops) + " passes, " +
               std::to_string(mem) + " bytes)");
    ByteView salt = c.take(kSalt);
    ByteView nonce = c.take(kNonce);
    if (c.left() < kAeadTag + 2) c.fail("truncated");
    ByteView ct = c.take(c.left());
    Secret key = derive(pass, salt.data(), ops, mem);
    Bytes plain(ct.size() - kAeadTag);
    Bytes ad = associated(ByteView(encrypted.body).first(kFixed));
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain.data(), nullptr, nullptr, ct.data(),
                                                   ct.size(), ad.data(), ad.size(), nonce.data(),
                                                   key.data()) != 0)
        throw DataError(where + ": wrong passphrase (or a damaged encrypted key)");
    uint8_t k = plain[0];
    KeyText kt(KeyKind::encrypted_key, Bytes(plain.begin() + 1, plain.end()));
    sodium_memzero(plain.data(), plain.size());
    bool known = false;
    for (KeyKind kind :
         {KeyKind::authority_secret, KeyKind::member_secret, KeyKind::member_key, KeyKind::partial})
        if (static_cast<uint8_t>(kind) == k) {
            kt.kind = kind;
            known = true;
        }
    if (!known)
        throw DataError(where + ": encrypted key holds an unknown kind of key (" +
                        std::to_string(k) + ")");
    return kt;
}

void set_passphrase_file(const std::string& path) {
    explicit_file = path;
}

Secret read_passphrase_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw EnvError("cannot read passphrase file " + path + ": " + std::strerror(errno));
    std::string line;
    char buf[256];
    bool done = false;
    while (!done) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            ::close(fd);
            throw EnvError("cannot read passphrase file " + path + ": " + std::strerror(e));
        }
        if (n == 0) break;
        for (ssize_t i = 0; i < n && !done; ++i) {
            if (buf[i] == '\n')
                done = true;
            else if (line.size() < kMaxPassphrase)
                line.push_back(buf[i]);
        }
    }
    ::close(fd);
    sodium_memzero(buf, sizeof buf);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty())
        throw UsageError("passphrase file " + path +
                         " is empty (the passphrase is its first line)");
    return to_secret(line);
}

Secret passphrase(const std::string& what, bool confirm, bool terminal_only) {
    if (!terminal_only && !explicit_file.empty()) return read_passphrase_file(explicit_file);
    if (const char* env = std::getenv("N3_PASSPHRASE_FILE"); !terminal_only && env && *env)
        return read_passphrase_file(env);
    auto first =
        ask_tty(confirm ? "New passphrase for " + what + ": " : "Passphrase for " + what + ": ");
    if (!first)
        throw EnvError(what + ": needs a passphrase and there is no terminal to ask",
                       "give --passphrase-file FILE or set N3_PASSPHRASE_FILE (its first line is "
                       "the passphrase)");
    if (first->empty()) throw UsageError("empty passphrase for " + what);
    if (confirm) {
        auto again = ask_tty("Repeat the passphrase: ");
        bool same = again && *again == *first;
        if (again) sodium_memzero(again->data(), again->size());
        if (!same) {
            sodium_memzero(first->data(), first->size());
            throw UsageError("the passphrases do not match");
        }
    }
    return to_secret(*first);
}

} // namespace n3::crypto
