#include "record/pages.hpp"

#include "record/error.hpp"

#include <new>
#include <string>
#include <sys/mman.h>
#include <utility>

namespace n3 {

namespace {

constexpr size_t kHugeFrom = size_t(2) << 20; // one transparent huge page

void* map_anonymous(size_t n, Commit commit) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (commit == Commit::on_touch ? MAP_NORESERVE : 0);
    return ::mmap(nullptr, n, PROT_READ | PROT_WRITE, flags, -1, 0);
}

} // namespace

PageBuffer::PageBuffer(size_t n, Commit commit) : n_(n), commit_(commit) {
    if (n == 0) return;
    void* p = map_anonymous(n, commit);
    if (p == MAP_FAILED) throw_errno("cannot allocate " + std::to_string(n) + " bytes");
    p_ = static_cast<uint8_t*>(p);
    if (n >= kHugeFrom) ::madvise(p, n, MADV_HUGEPAGE);
}

PageBuffer::~PageBuffer() {
    if (p_) ::munmap(p_, n_);
}

PageBuffer::PageBuffer(PageBuffer&& o) noexcept
    : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)), commit_(o.commit_) {}

PageBuffer& PageBuffer::operator=(PageBuffer&& o) noexcept {
    if (this != &o) {
        if (p_) ::munmap(p_, n_);
        p_ = std::exchange(o.p_, nullptr);
        n_ = std::exchange(o.n_, 0);
        commit_ = o.commit_;
    }
    return *this;
}

void PageBuffer::grow(size_t n) {
    if (n <= n_) return;
    void* p = p_ ? ::mremap(p_, n_, n, MREMAP_MAYMOVE) : map_anonymous(n, commit_);
    if (p == MAP_FAILED) throw std::bad_alloc();
    p_ = static_cast<uint8_t*>(p);
    n_ = n;
}

void PageBuffer::populate(size_t offset, size_t n) {
#ifdef MADV_POPULATE_WRITE
    if (n > 0) ::madvise(p_ + offset, n, MADV_POPULATE_WRITE); // a hint: faults if refused
#else
    (void)offset, (void)n;
#endif
}

} // namespace n3
