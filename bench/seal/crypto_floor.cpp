// bench/seal/crypto_floor.cpp — the physical limit of n3-seal's construction on this machine,
// per suite: the work every byte needs (the chunk AEAD per 64 KiB chunk and the chunk's leaf of
// the payload digest), on buffers already in memory, no I/O, no checksums, on 1 and 2 threads.
//   suite 1: XChaCha20-Poly1305 and BLAKE2b-256 (libsodium)
//   suite 2: AES-256-GCM and SHA-256 (OpenSSL's libcrypto EVP, as lib/crypto/suite.cpp), its
//            leaves one chunk at a time (SHA instructions) and sixteen at a time
//            (lib/crypto/sha256x16.cpp, AVX-512), as n3-seal hashes them where the CPU can
//
//   c++ -O2 -std=c++20 -I lib -o crypto_floor crypto_floor.cpp lib/crypto/sha256x16.cpp \
//       -lsodium -lcrypto -pthread
//   ./crypto_floor MIB   prints "suite1 T1 T2 suite2 T1 T2 suite2x16 T1 T2" (seconds, best of 3
//                        each; "-" for the sixteen-lane one where the CPU has no AVX-512)
#include "crypto/sha256x16.hpp"

#include <openssl/evp.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {
constexpr size_t kChunk = 64 * 1024;
constexpr size_t kTag = 16;

void chunks_suite1(const unsigned char* in, unsigned char* out, size_t chunks,
                   std::atomic<size_t>& next, const unsigned char* key) {
    unsigned char personal[16] = "n3/v1/leaf";
    for (size_t i; (i = next.fetch_add(1)) < chunks;) {
        const unsigned char* p = in + i * kChunk;
        unsigned char leaf[32], nonce[24] = {};
        std::memcpy(nonce, &i, sizeof i);
        crypto_generichash_blake2b_salt_personal(leaf, sizeof leaf, p, kChunk, nullptr, 0, nullptr,
                                                 personal);
        crypto_aead_xchacha20poly1305_ietf_encrypt(out + i * (kChunk + kTag), nullptr, p, kChunk,
                                                   nullptr, 0, nullptr, nonce, key);
    }
}

void chunks_suite2(const unsigned char* in, unsigned char* out, size_t chunks,
                   std::atomic<size_t>& next, const unsigned char* key) {
    EVP_CIPHER* gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    EVP_MD* sha = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    for (size_t i; (i = next.fetch_add(1)) < chunks;) {
        const unsigned char* p = in + i * kChunk;
        unsigned char leaf[32], nonce[12] = {}, prefix[32] = "n3/v1/sha256leaf";
        std::memcpy(nonce, &i, sizeof i);
        std::memcpy(prefix + 16, &i, sizeof i);
        unsigned n;
        EVP_DigestInit_ex2(md, sha, nullptr);
        EVP_DigestUpdate(md, prefix, 32);
        EVP_DigestUpdate(md, p, kChunk);
        EVP_DigestFinal_ex(md, leaf, &n);
        unsigned char* o = out + i * (kChunk + kTag);
        int len;
        EVP_EncryptInit_ex2(c, gcm, key, nonce, nullptr);
        EVP_EncryptUpdate(c, o, &len, p, int(kChunk));
        EVP_EncryptFinal_ex(c, o + kChunk, &len);
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, int(kTag), o + kChunk);
    }
    EVP_CIPHER_CTX_free(c);
    EVP_MD_CTX_free(md);
    EVP_CIPHER_free(gcm);
    EVP_MD_free(sha);
}

// Suite 2 as n3-seal runs it: a thread takes sixteen chunks, hashes their leaves together,
// then encrypts each.
void chunks_suite2x16(const unsigned char* in, unsigned char* out, size_t chunks,
                      std::atomic<size_t>& next, const unsigned char* key) {
    EVP_CIPHER* gcm = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    for (size_t g; (g = next.fetch_add(1)) < chunks / 16;) {
        uint8_t heads[16][32];
        std::array<uint8_t, 32> leaves[16];
        for (size_t j = 0; j < 16; ++j) {
            size_t i = 16 * g + j, len = kChunk;
            std::memcpy(heads[j], "n3/v1/sha256leaf", 16);
            std::memcpy(heads[j] + 16, &i, 8);
            std::memcpy(heads[j] + 24, &len, 8);
        }
        n3::crypto::sha256x16::hash(heads, in + 16 * g * kChunk, kChunk, kChunk, leaves);
        for (size_t j = 0; j < 16; ++j) {
            size_t i = 16 * g + j;
            unsigned char nonce[12] = {};
            std::memcpy(nonce, &i, sizeof i);
            unsigned char* o = out + i * (kChunk + kTag);
            int len;
            EVP_EncryptInit_ex2(c, gcm, key, nonce, nullptr);
            EVP_EncryptUpdate(c, o, &len, in + i * kChunk, int(kChunk));
            EVP_EncryptFinal_ex(c, o + kChunk, &len);
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, int(kTag), o + kChunk);
        }
    }
    EVP_CIPHER_CTX_free(c);
    EVP_CIPHER_free(gcm);
}

using Work = void (*)(const unsigned char*, unsigned char*, size_t, std::atomic<size_t>&,
                      const unsigned char*);

double run(Work work, const unsigned char* in, unsigned char* out, size_t chunks, unsigned threads,
           const unsigned char* key) {
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
        std::atomic<size_t> next{0};
        auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        for (unsigned t = 1; t < threads; ++t)
            pool.emplace_back(work, in, out, chunks, std::ref(next), key);
        work(in, out, chunks, next, key);
        for (auto& t : pool) t.join();
        best = std::min(
            best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}
} // namespace

int main(int argc, char** argv) {
    if (argc != 2 || sodium_init() < 0) {
        std::fprintf(stderr, "usage: crypto_floor MIB\n");
        return 2;
    }
    const size_t chunks = std::strtoul(argv[1], nullptr, 10) * 1024 * 1024 / kChunk;
    std::vector<unsigned char> in(chunks * kChunk), out(chunks * (kChunk + kTag));
    randombytes_buf(in.data(), in.size());
    unsigned char key[32];
    randombytes_buf(key, sizeof key);
    const unsigned char* i = in.data();
    unsigned char* o = out.data();
    std::printf("suite1 %.3f %.3f suite2 %.3f %.3f", run(chunks_suite1, i, o, chunks, 1, key),
                run(chunks_suite1, i, o, chunks, 2, key), run(chunks_suite2, i, o, chunks, 1, key),
                run(chunks_suite2, i, o, chunks, 2, key));
    if (n3::crypto::sha256x16::available())
        std::printf(" suite2x16 %.3f %.3f\n", run(chunks_suite2x16, i, o, chunks, 1, key),
                    run(chunks_suite2x16, i, o, chunks, 2, key));
    else
        std::printf(" suite2x16 - -\n");
    return 0;
}
