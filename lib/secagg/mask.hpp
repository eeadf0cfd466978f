// n3/secagg/mask.hpp — pairwise and self masks in Z_2^32 (Bonawitz et al., CCS 2017).
//
// Member u of a round holds a fresh key-agreement secret s_u (public S_u = s_u G) and a
// self-mask seed b_u. For each neighbour v it shares k_uv = H(s_u S_v | context | ids), which v
// computes as H(s_v S_u | ...). Its masked input is
//     y_u = x_u + PRG(H(b_u)) + sum_{v in N(u)} sign(u, v) PRG(k_uv)      (mod 2^32)
// with sign(u, v) = +1 when u < v and -1 otherwise, so pairwise masks cancel in the sum over
// all members. When v drops out, its s_v is rebuilt from shares and the survivors' pair masks
// with v are removed; each survivor's b_u is rebuilt and PRG(H(b_u)) removed.
//
// Keys are 32 bytes; PRG is the XChaCha20 keystream read as little-endian u32. The context
// binds federation, round and roster, so masks never repeat across rounds.
#pragma once

#include "secagg/shamir.hpp"

#include <array>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace n3::secagg {

using Key = std::array<uint8_t, 32>;

// k_uv; throws DataError for an invalid or identity point. Symmetric in (u, v).
Key pair_key(const Scalar& s_u, const Point& S_v, const std::string& context, uint32_t u,
             uint32_t v);
Key self_key(const Scalar& b_u, const std::string& context);

// v[i] += sign * PRG(key)[i]  (mod 2^32), sign = +1 or -1.
void apply_mask(std::span<uint32_t> v, const Key& key, int sign);

// Many masks at once: v[i] += sum_j sign_j PRG(key_j)[i]. The vector is cut into coordinate
// ranges expanded on `threads` threads (0: one per core); each range applies every mask to one
// cache-sized block before moving on. Same result as apply_mask per job, in any order.
struct MaskJob {
    Key key;
    int sign;
};
void apply_masks(std::span<uint32_t> v, const std::vector<MaskJob>& jobs, unsigned threads = 0);

// Runs fn(0), ..., fn(count - 1) on up to `threads` threads (0: one per core), each taking the
// next index when it is done; rethrows the first exception once all have stopped.
void parallel_for(size_t count, unsigned threads, const std::function<void(size_t)>& fn);

// +1 when u < v, else -1: the sign of k_uv's mask in u's input.
inline int pair_sign(uint32_t u, uint32_t v) {
    return u < v ? 1 : -1;
}

} // namespace n3::secagg
