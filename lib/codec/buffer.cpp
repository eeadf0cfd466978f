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

} // namespace n3::codec
