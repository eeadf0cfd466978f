// n3/codec/buffer.hpp — large scratch memory for the codec.
//
// Scratch<T> is zero-filled room for n elements: a vector when small, a PageBuffer
// (record/pages.hpp: anonymous memory, NORESERVE, huge pages) when large, so that a hostile
// length fails on the data rather than on the allocation and fresh pages fault in fast.
// Throws EnvError when the memory cannot be mapped.
#pragma once

#include "record/io.hpp"
#include "record/pages.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace n3::codec {

using n3::PageBuffer;

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
