#include "secagg/mask.hpp"

#include "record/bytes.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <sodium.h>
#include <vector>

namespace n3::secagg {

namespace {

Key keyed_hash(const uint8_t* key, const char* domain, const std::vector<uint8_t>& msg) {
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, 32, 32);
    uint8_t dlen = static_cast<uint8_t>(std::strlen(domain));
    crypto_generichash_update(&st, &dlen, 1);
    crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(domain), dlen);
    crypto_generichash_update(&st, msg.data(), msg.size());
    Key k;
    crypto_generichash_final(&st, k.data(), k.size());
    return k;
}

std::vector<uint8_t> context_bytes(const std::string& context) {
    std::vector<uint8_t> b;
    put_u32(b, static_cast<uint32_t>(context.size()));
    b.insert(b.end(), context.begin(), context.end());
    return b;
}

} // namespace

Key pair_key(const Scalar& s_u, const Point& S_v, const std::string& context, uint32_t u,
             uint32_t v) {
    if (sodium_init() < 0) throw EnvError("libsodium failed to initialise");
    if (crypto_core_ristretto255_is_valid_point(S_v.data()) != 1)
        throw DataError("a member's round key is not a valid point");
    uint8_t shared[32];
    if (crypto_scalarmult_ristretto255(shared, s_u.data(), S_v.data()) != 0)
        throw DataError("a member's round key gives the identity");
    std::vector<uint8_t> msg = context_bytes(context);
    put_u32(msg, std::min(u, v));
    put_u32(msg, std::max(u, v));
    Key k = keyed_hash(shared, "n3/v1/secagg-pair", msg);
    sodium_memzero(shared, sizeof shared);
    return k;
}

Key self_key(const Scalar& b_u, const std::string& context) {
    if (sodium_init() < 0) throw EnvError("libsodium failed to initialise");
    return keyed_hash(b_u.data(), "n3/v1/secagg-self", context_bytes(context));
}

void apply_mask(std::span<uint32_t> v, const Key& key, int sign) {
    apply_masks(v, {MaskJob{key, sign}}, 1);
}

void apply_masks(std::span<uint32_t> v, const std::vector<MaskJob>& jobs, unsigned threads) {
    if (v.empty() || jobs.empty()) return;
    constexpr size_t kBlock = 16384; // elements per keystream block (64 KiB): a multiple of 16
    // Elements [from, to) of v, `from` a multiple of kBlock so the keystream counter is exact.
    auto expand = [&](size_t from, size_t to) {
        static const uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {};
        std::vector<uint32_t> ks(kBlock);
        for (size_t base = from; base < to; base += kBlock) {
            size_t n = std::min(kBlock, to - base);
            uint32_t* out = v.data() + base;
            for (auto& job : jobs) {
                std::fill(ks.begin(), ks.begin() + static_cast<long>(n), 0u);
                // 16 u32 per 64-byte ChaCha block
                crypto_stream_xchacha20_xor_ic(reinterpret_cast<uint8_t*>(ks.data()),
                                               reinterpret_cast<const uint8_t*>(ks.data()), n * 4,
                                               nonce, base / 16, job.key.data());
                if (job.sign > 0)
                    for (size_t i = 0; i < n; ++i) out[i] += ks[i];
                else
                    for (size_t i = 0; i < n; ++i) out[i] -= ks[i];
            }
        }
    };
    const size_t blocks = (v.size() + kBlock - 1) / kBlock;
    size_t want = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
    want = std::min(want, blocks);
    if (want <= 1) {
        expand(0, v.size());
        return;
    }
    std::vector<std::thread> pool;
    std::exception_ptr failed;
    std::mutex m;
    for (size_t i = 0; i < want; ++i) {
        size_t from = blocks * i / want * kBlock, to = std::min(v.size(), blocks * (i + 1) / want * kBlock);
        pool.emplace_back([&, from, to] {
            try {
                expand(from, to);
            } catch (...) {
                std::lock_guard<std::mutex> lock(m);
                failed = std::current_exception();
            }
        });
    }
    for (auto& t : pool) t.join();
    if (failed) std::rethrow_exception(failed);
}

} // namespace n3::secagg
