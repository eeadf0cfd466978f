// The envelope's two cipher suites. Suite 1 is libsodium's; suite 2 is OpenSSL's libcrypto
// (EVP), the only place n3 calls it: its AES-256-GCM and SHA-256 use the CPU's instructions
// where they exist and fall back to portable code where they do not, so a record of either
// suite opens on any machine.
#include "crypto/suite.hpp"

#include "crypto/sha256x16.hpp"
#include "record/error.hpp"

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace n3::crypto {

static_assert(kTag == crypto_aead_xchacha20poly1305_ietf_ABYTES);

std::string_view suite_name(Suite s) {
    return s == Suite::aes256_gcm ? "aes-256-gcm" : "xchacha20-poly1305";
}

std::optional<Suite> suite_from_id(uint8_t id) {
    if (id == 1) return Suite::xchacha20_poly1305;
    if (id == 2) return Suite::aes256_gcm;
    return std::nullopt;
}

Suite parse_suite(std::string_view name, std::string_view what) {
    if (name == "auto") return preferred_suite();
    if (name == "xchacha20-poly1305" || name == "xchacha") return Suite::xchacha20_poly1305;
    if (name == "aes-256-gcm" || name == "aes") return Suite::aes256_gcm;
    throw UsageError(std::string(what) + ": unknown suite '" + std::string(name) +
                     "' (auto, xchacha20-poly1305, aes-256-gcm)");
}

bool suite_accelerated(Suite s) {
    if (s == Suite::xchacha20_poly1305) return true;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool aes = c & bit_AES, clmul = c & bit_PCLMUL;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return aes && clmul && (b & bit_SHA);
#elif defined(__aarch64__) && defined(__linux__)
    const unsigned long caps = getauxval(AT_HWCAP);
    return (caps & HWCAP_AES) && (caps & HWCAP_PMULL) && (caps & HWCAP_SHA2);
#else
    return false;
#endif
}

Suite preferred_suite() {
    const char* env = std::getenv("N3_SEAL_SUITE");
    if (env && *env && std::string_view(env) != "auto")
        return parse_suite(env, "environment N3_SEAL_SUITE");
    return suite_accelerated(Suite::aes256_gcm) ? Suite::aes256_gcm : Suite::xchacha20_poly1305;
}

namespace suite {

namespace {

// The algorithms, fetched once (OpenSSL 3 looks them up by name in its provider).
const EVP_CIPHER* gcm() {
    static EVP_CIPHER* c = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    if (!c) throw EnvError("OpenSSL's libcrypto has no AES-256-GCM");
    return c;
}
const EVP_MD* sha() {
    static EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (!m) throw EnvError("OpenSSL's libcrypto has no SHA-256");
    return m;
}

// One cipher and one digest context per thread, reused for every chunk it handles.
struct Contexts {
    EVP_CIPHER_CTX* cipher = EVP_CIPHER_CTX_new();
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    Contexts() {
        if (!cipher || !md) throw std::bad_alloc();
    }
    ~Contexts() {
        EVP_CIPHER_CTX_free(cipher);
        EVP_MD_CTX_free(md);
    }
};
Contexts& contexts() {
    thread_local Contexts c;
    return c;
}

[[noreturn]] void openssl_failed(const char* what) {
    throw std::runtime_error(std::string("OpenSSL ") + what + " failed");
}

// The chunk nonce: the index (LE64), the last-chunk flag, zeros (24 bytes for XChaCha20, the
// first 12 for AES-GCM).
void chunk_nonce(uint8_t nonce[24], uint64_t index, bool last) {
    std::memset(nonce, 0, 24);
    for (int i = 0; i < 8; ++i) nonce[i] = static_cast<uint8_t>(index >> (8 * i));
    nonce[8] = last ? 1 : 0;
}

void le64(uint8_t out[8], uint64_t v) {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

// SHA-256 of a 16-byte domain string and then the given fields, on this thread's context.
template <class... Views> Hash32 sha256_of(const char (&domain)[17], Views... parts) {
    EVP_MD_CTX* md = contexts().md;
    if (EVP_DigestInit_ex2(md, sha(), nullptr) != 1) openssl_failed("SHA-256 init");
    EVP_DigestUpdate(md, domain, 16);
    (EVP_DigestUpdate(md, parts.data(), parts.size()), ...);
    Hash32 h;
    unsigned n = 0;
    if (EVP_DigestFinal_ex(md, h.data(), &n) != 1 || n != 32) openssl_failed("SHA-256");
    return h;
}

} // namespace

void aes256gcm_encrypt(const uint8_t key[32], const uint8_t nonce[12], ByteView aad, ByteView plain,
                       uint8_t* sealed) {
    EVP_CIPHER_CTX* c = contexts().cipher;
    int n = 0;
    if (EVP_EncryptInit_ex2(c, gcm(), key, nonce, nullptr) != 1) openssl_failed("AES-GCM init");
    if (!aad.empty() && EVP_EncryptUpdate(c, nullptr, &n, aad.data(), int(aad.size())) != 1)
        openssl_failed("AES-GCM");
    if (!plain.empty() && EVP_EncryptUpdate(c, sealed, &n, plain.data(), int(plain.size())) != 1)
        openssl_failed("AES-GCM");
    if (EVP_EncryptFinal_ex(c, sealed + plain.size(), &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, int(kTag), sealed + plain.size()) != 1)
        openssl_failed("AES-GCM");
}

bool aes256gcm_decrypt(const uint8_t key[32], const uint8_t nonce[12], ByteView aad,
                       ByteView sealed, uint8_t* plain) {
    if (sealed.size() < kTag) return false;
    const size_t len = sealed.size() - kTag;
    EVP_CIPHER_CTX* c = contexts().cipher;
    int n = 0;
    if (EVP_DecryptInit_ex2(c, gcm(), key, nonce, nullptr) != 1) openssl_failed("AES-GCM init");
    if (!aad.empty() && EVP_DecryptUpdate(c, nullptr, &n, aad.data(), int(aad.size())) != 1)
        return false;
    if (len && EVP_DecryptUpdate(c, plain, &n, sealed.data(), int(len)) != 1) return false;
    uint8_t tag[kTag];
    std::memcpy(tag, sealed.data() + len, kTag);
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, int(kTag), tag) != 1) return false;
    return EVP_DecryptFinal_ex(c, plain + len, &n) == 1;
}

Hash32 sha256(ByteView bytes) {
    EVP_MD_CTX* md = contexts().md;
    Hash32 h;
    unsigned n = 0;
    if (EVP_DigestInit_ex2(md, sha(), nullptr) != 1 ||
        EVP_DigestUpdate(md, bytes.data(), bytes.size()) != 1 ||
        EVP_DigestFinal_ex(md, h.data(), &n) != 1 || n != 32)
        openssl_failed("SHA-256");
    return h;
}

void seal_chunk(Suite s, const Secret& key, uint64_t index, bool last, const uint8_t* plain,
                size_t n, uint8_t* sealed) {
    uint8_t nonce[24];
    chunk_nonce(nonce, index, last);
    if (s == Suite::aes256_gcm)
        aes256gcm_encrypt(key.data(), nonce, {}, {plain, n}, sealed);
    else
        crypto_aead_xchacha20poly1305_ietf_encrypt(sealed, nullptr, plain, n, nullptr, 0, nullptr,
                                                   nonce, key.data());
}

bool open_chunk(Suite s, const Secret& key, uint64_t index, bool last, const uint8_t* sealed,
                size_t n, uint8_t* plain) {
    if (n < kTag) return false;
    uint8_t nonce[24];
    chunk_nonce(nonce, index, last);
    if (s == Suite::aes256_gcm) return aes256gcm_decrypt(key.data(), nonce, {}, {sealed, n}, plain);
    return crypto_aead_xchacha20poly1305_ietf_decrypt(plain, nullptr, nullptr, sealed, n, nullptr,
                                                      0, nonce, key.data()) == 0;
}

Hash32 leaf(Suite s, uint64_t chunk, ByteView bytes) {
    if (s == Suite::aes256_gcm) {
        uint8_t idx[8], len[8];
        le64(idx, chunk);
        le64(len, bytes.size());
        return sha256_of("n3/v1/sha256leaf", ByteView(idx, 8), ByteView(len, 8), bytes);
    }
    return Hasher("n3/v1/leaf", {}, 32).part_u64(chunk).part(bytes).hash32();
}

bool leaves16(Suite s, uint64_t first_chunk, const uint8_t* base, size_t stride, size_t len,
              Hash32* out) {
    if (s != Suite::aes256_gcm || len < 32 || !sha256x16::available()) return false;
    uint8_t heads[16][32];
    for (size_t j = 0; j < 16; ++j) {
        std::memcpy(heads[j], "n3/v1/sha256leaf", 16);
        le64(heads[j] + 16, first_chunk + j);
        le64(heads[j] + 24, len);
    }
    sha256x16::hash(heads, base, stride, len, out);
    return true;
}

ContentHash::ContentHash(Suite s, uint64_t length) {
    if (s == Suite::aes256_gcm) {
        EVP_MD_CTX* md = EVP_MD_CTX_new();
        if (!md) throw std::bad_alloc();
        sha_ = md;
        uint8_t len[8];
        le64(len, length);
        if (EVP_DigestInit_ex2(md, sha(), nullptr) != 1) openssl_failed("SHA-256 init");
        EVP_DigestUpdate(md, "n3/v1/sha256root", 16);
        EVP_DigestUpdate(md, len, 8);
    } else {
        blake_.emplace("n3/v1/content");
        blake_->part_u64(length);
    }
}

ContentHash::~ContentHash() {
    EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(sha_));
}

void ContentHash::add(const Hash32& l) {
    if (sha_)
        EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(sha_), l.data(), l.size());
    else
        blake_->raw(l);
}

Bytes ContentHash::digest() {
    if (sha_) {
        Bytes h(32);
        unsigned n = 0;
        if (EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(sha_), h.data(), &n) != 1 || n != 32)
            openssl_failed("SHA-256");
        return h;
    }
    Digest d = blake_->digest();
    return Bytes(d.begin(), d.end());
}

} // namespace suite

} // namespace n3::crypto
