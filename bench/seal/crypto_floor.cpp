// bench/seal/crypto_floor.cpp — the physical limit of n3-seal's construction on this machine:
// the libsodium work every byte needs (XChaCha20-Poly1305 per 64 KiB chunk, and the chunk's
// BLAKE2b-256 leaf of the payload digest), on buffers already in memory, no I/O, no
// checksums, on 1 and on 2 threads.
//
//   c++ -O2 -std=c++17 -o crypto_floor crypto_floor.cpp -lsodium -pthread
//   ./crypto_floor MIB        prints "threads1 SECONDS threads2 SECONDS" (best of 3 each)
#include <sodium.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {
constexpr size_t kChunk = 64 * 1024;
constexpr size_t kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;

void seal_chunks(const unsigned char* in, unsigned char* out, size_t chunks,
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

double run(const unsigned char* in, unsigned char* out, size_t chunks, unsigned threads,
           const unsigned char* key) {
    double best = 1e9;
    for (int rep = 0; rep < 3; ++rep) {
        std::atomic<size_t> next{0};
        auto t0 = std::chrono::steady_clock::now();
        std::vector<std::thread> pool;
        for (unsigned t = 1; t < threads; ++t)
            pool.emplace_back(seal_chunks, in, out, chunks, std::ref(next), key);
        seal_chunks(in, out, chunks, next, key);
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
    std::printf("threads1 %.3f threads2 %.3f\n", run(in.data(), out.data(), chunks, 1, key),
                run(in.data(), out.data(), chunks, 2, key));
    return 0;
}
