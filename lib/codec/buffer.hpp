// n3/codec/buffer.hpp — large scratch memory for the codec.
//
// PageBuffer is anonymous memory (mmap, NORESERVE): pages cost nothing until touched, so a
// hostile length fails on the data rather than on the allocation, and large buffers ask for
// transparent huge pages, which cuts the page-fault cost of first touch (about half the time
// of a Reed-Solomon pass over freshly allocated parity with 4 KiB pages).
// Throws EnvError when the memory cannot be mapped.
#pragma once

#include "record/io.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace n3::codec {

class PageBuffer {
public:
    PageBuffer() = default;
    explicit PageBuffer(size_t n);
    ~PageBuffer();
    PageBuffer(PageBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
    PageBuffer& operator=(PageBuffer&& o) noexcept;
    PageBuffer(const PageBuffer&) = delete;
    PageBuffer& operator=(const PageBuffer&) = delete;
    uint8_t* data() { return p_; }
    const uint8_t* data() const { return p_; }
    size_t size() const { return n_; }
    ByteView view() const { return {p_, n_}; }

private:
    uint8_t* p_ = nullptr;
    size_t n_ = 0;
};

// Zero-filled scratch of n elements (T trivial): a vector when small, huge-page anonymous
// memory when large (fresh pages fault in far faster that way, and arrive zeroed).
template <class T> class Scratch {
public:
    explicit Scratch(size_t n) : n_(n) {
        if (n * sizeof(T) >= (size_t(1) << 20)) {
            big_ = PageBuffer(n * sizeof(T));
            p_ = reinterpret_cast<T*>(big_.data());
        } else {
            small_.resize(n);
            p_ = small_.data();
        }
    }
    T* data() { return p_; }
    size_t size() const { return n_; }
    std::span<T> span() { return {p_, n_}; }
    std::span<const T> cspan() const { return {p_, n_}; }
    T& operator[](size_t i) { return p_[i]; }

private:
    size_t n_;
    T* p_ = nullptr;
    std::vector<T> small_;
    PageBuffer big_;
};

} // namespace n3::codec
