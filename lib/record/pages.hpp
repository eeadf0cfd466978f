// n3/record/pages.hpp — large buffers in anonymous memory (RAII over mmap).
//
//   PageBuffer parity(m * S);                     // zeroed; pages cost nothing until touched
//   PageBuffer out(n, Commit::up_front);          // the whole size is accounted for now
//   PageBuffer grown;                             // empty; grow() maps it, then enlarges it
//   grown.grow(2 * grown.size()); grown.populate(from, len);
//
// Why mmap and not a vector: fresh pages arrive zeroed, so there is no zero-fill pass; buffers
// of 2 MiB and more ask for transparent huge pages at construction, which cuts the page-fault
// cost of first touch (about half the time of a Reed-Solomon pass over fresh parity with 4 KiB
// pages, 32 faults instead of 16384 for a 64 MiB merge output); grow() enlarges the mapping
// with mremap, which moves page tables, never bytes; populate() faults a range in with one
// kernel call (MADV_POPULATE_WRITE, Linux 5.14) before it is written.
//
// Commit::on_touch (MAP_NORESERVE) suits lengths a hostile input declares: they fail on the
// data rather than on the allocation. Commit::up_front suits memory that will all be written:
// a shortage fails here, as an error, rather than later as the OOM killer.
// The constructor throws EnvError ("cannot allocate N bytes") when the memory cannot be
// mapped; grow() throws std::bad_alloc, as a growing container does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace n3 {

enum class Commit { on_touch, up_front };

class PageBuffer {
public:
    PageBuffer() = default;
    explicit PageBuffer(size_t n, Commit commit = Commit::on_touch);
    explicit PageBuffer(Commit commit) : commit_(commit) {} // empty, for grow()
    ~PageBuffer();
    PageBuffer(PageBuffer&& o) noexcept;
    PageBuffer& operator=(PageBuffer&& o) noexcept;
    PageBuffer(const PageBuffer&) = delete;
    PageBuffer& operator=(const PageBuffer&) = delete;

    uint8_t* data() { return p_; }
    const uint8_t* data() const { return p_; }
    size_t size() const { return n_; }
    std::span<const uint8_t> view() const { return {p_, n_}; }
    std::span<uint8_t> span() { return {p_, n_}; }

    // Enlarges to n >= size() bytes, keeping the contents (data() may move); the new bytes are
    // zero.
    void grow(size_t n);
    // Faults in bytes [offset, offset + n) for writing; a hint, silently skipped on kernels
    // without MADV_POPULATE_WRITE.
    void populate(size_t offset, size_t n);

private:
    uint8_t* p_ = nullptr;
    size_t n_ = 0;
    Commit commit_ = Commit::on_touch;
};

} // namespace n3
