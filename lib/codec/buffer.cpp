#include "codec/buffer.hpp"

#include "record/error.hpp"

#include <sys/mman.h>
#include <utility>

namespace n3::codec {

PageBuffer::PageBuffer(size_t n) : n_(n) {
    if (n == 0) return;
    void* p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    if (p == MAP_FAILED) throw_errno("cannot allocate " + std::to_string(n) + " bytes");
    p_ = static_cast<uint8_t*>(p);
    if (n >= (size_t(4) << 20)) ::madvise(p, n, MADV_HUGEPAGE);
}

PageBuffer::~PageBuffer() {
    if (p_) ::munmap(p_, n_);
}

PageBuffer& PageBuffer::operator=(PageBuffer&& o) noexcept {
    if (this != &o) {
        if (p_) ::munmap(p_, n_);
        p_ = std::exchange(o.p_, nullptr);
        n_ = std::exchange(o.n_, 0);
    }
    return *this;
}

namespace {

constexpr uint64_t kPoly = 0xC96C5795D7870F42ULL; // CRC-64/XZ, reflected

uint64_t gf2_times(const uint64_t* mat, uint64_t vec) {
    uint64_t sum = 0;
    for (int i = 0; vec; vec >>= 1, ++i)
        if (vec & 1) sum ^= mat[i];
    return sum;
}

void gf2_square(uint64_t* square, const uint64_t* mat) {
    for (int n = 0; n < 64; ++n) square[n] = gf2_times(mat, mat[n]);
}

} // namespace

uint64_t crc64_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b) {
    // ops[n] shifts a CRC register over 2^n zero bytes; built once.
    struct Ops {
        uint64_t m[64][64];
        Ops() {
            uint64_t odd[64], even[64];
            odd[0] = kPoly; // one zero bit
            uint64_t row = 1;
            for (int n = 1; n < 64; ++n) {
                odd[n] = row;
                row <<= 1;
            }
            gf2_square(even, odd); // 2 bits
            gf2_square(odd, even); // 4 bits
            gf2_square(m[0], odd); // 8 bits: one byte
            for (int n = 1; n < 64; ++n) gf2_square(m[n], m[n - 1]);
        }
    };
    static const Ops ops;
    for (int n = 0; len_b; ++n, len_b >>= 1)
        if (len_b & 1) crc_a = gf2_times(ops.m[n], crc_a);
    return crc_a ^ crc_b;
}

} // namespace n3::codec
