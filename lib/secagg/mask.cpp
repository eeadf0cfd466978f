#include "secagg/mask.hpp"

#include "record/bytes.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>
#include <mutex>
#include <sodium.h>
#include <thread>
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

void parallel_for(size_t count, unsigned threads, const std::function<void(size_t)>& fn) {
    size_t want = threads ? threads : std::max(1u, std::thread::hardware_concurrency());
    want = std::min(want, count);
    if (want <= 1) {
        for (size_t i = 0; i < count; ++i) fn(i);
        return;
    }
    std::atomic<size_t> next{0};
    std::exception_ptr failed;
    std::mutex m;
    auto work = [&] {
        for (size_t i; (i = next.fetch_add(1)) < count;) {
            try {
                fn(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(m);
                if (!failed) failed = std::current_exception();
                next = count; // stop handing out work
            }
        }
    };
    std::vector<std::thread> pool;
    for (size_t t = 1; t < want; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
    if (failed) std::rethrow_exception(failed);
}

void apply_masks(std::span<uint32_t> v, const std::vector<MaskJob>& jobs, unsigned threads) {
    if (v.empty() || jobs.empty()) return;
    // Each 64 KiB block gets every mask before the next block: the block stays in cache. The
    // block start is a multiple of 16 elements, so the keystream counter is exact.
    constexpr size_t kBlock = 16384;
    const size_t blocks = (v.size() + kBlock - 1) / kBlock;
    parallel_for(blocks, threads, [&](size_t blk) {
        static const uint8_t nonce[crypto_stream_xchacha20_NONCEBYTES] = {};
        thread_local std::vector<uint32_t> ks;
        ks.resize(kBlock);
        const size_t base = blk * kBlock, n = std::min(kBlock, v.size() - base);
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
        sodium_memzero(ks.data(), n * 4); // a member's own masks are secret
    });
}

} // namespace n3::secagg
