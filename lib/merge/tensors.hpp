// n3/merge/tensors.hpp — internal to n3_merge: the tensor data a merge reads and writes, in
// chunks. Not part of the public API.
//
//   Layout l = layout_of(set);                      // names, dtypes, shapes, in the set's order
//   Source src = source_of(set, l, &rec);           // where each tensor's bytes are
//   for (Chunk c : chunks_of(l, 65536))
//       const float* x = floats(src, c.tensor, c.begin, c.size, scratch);
//   Tensors out = allocate(l, dtypes);              // output buffers; put() writes floats back
//
// Passes read a chunk of every input at a time, so memory follows the chunk size and the
// number of threads, never the model size times the number of inputs (see merge.hpp).
// floats() reads files with pread() and release() drops mapped pages once a pass is done with
// them. for_chunks() runs a pass on every core and keeps which error surfaces deterministic.
//
// Failures: require_mergeable() throws DataError for a dtype n3-merge does not merge; floats()
// throws EnvError when a read fails and DataError when a file shrank under it; make_buffer()
// and allocate() throw EnvError when memory runs out.
#pragma once

#include "merge/inputs.hpp"
#include "record/pages.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace n3::merge {

struct TensorLayout {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t numel;
};
using Layout = std::vector<TensorLayout>;

Layout layout_of(const TensorSet& set);
std::string shape_text(const std::vector<int64_t>& shape); // "3x4", or "scalar"
// Equal for two layouts exactly when they have the same tensors in the same order.
std::string layout_key(const Layout& l);
// The first difference between a layout and the reference, or "" when they match.
std::string layout_difference(const Layout& got, const Layout& want);

// The dtypes floats() can read and put() can write.
bool mergeable(DType d);
// Throws DataError, naming `where`, for the first tensor of another dtype.
void require_mergeable(const Layout& layout, const std::string& where);

// One tensor's bytes in one input: element i of tensor t is at data[t] + i * size(dtype) in
// the mapping, and, when the input is a file, at file_off[t] + i * size(dtype) in fd.
struct Source {
    std::vector<const uint8_t*> data;
    std::vector<DType> dtype;
    std::vector<uint64_t> file_off;
    int fd = -1;
};

// The tensors of `layout` in `set`, which must hold them all; with `rec`, read from its file.
Source source_of(const TensorSet& set, const Layout& layout, const LoadedRecord* rec = nullptr);

// Elements [b, b+n) of tensor t as floats: in place when the bytes are mapped, aligned F32;
// else read and/or converted into `scratch` (room for n floats). With `crc`, also the CRC-64
// of the raw bytes.
const float* floats(const Source& s, size_t t, uint64_t b, size_t n, float* scratch,
                    uint64_t* crc = nullptr);

// Done with elements [b, b+n) of tensor t: drops their mapped pages.
void release(const Source& s, size_t t, uint64_t b, uint64_t n);

struct Chunk {
    size_t tensor;
    uint64_t begin, size;
};

// Every tensor of the layout cut into chunks of at most `chunk` elements, in layout order.
std::vector<Chunk> chunks_of(const Layout& layout, uint64_t chunk);

// Runs fn(chunk index, thread index) over every chunk on `threads` threads. When chunks fail,
// the exception of the lowest failing chunk is rethrown: every chunk below it was processed,
// so which error surfaces does not depend on scheduling.
template <class Fn> void for_chunks(size_t count, unsigned threads, Fn&& fn) {
    std::atomic<size_t> next{0};
    std::atomic<bool> stop{false};
    std::mutex mu;
    size_t failed_at = SIZE_MAX;
    std::exception_ptr failure;
    auto work = [&](unsigned tid) {
        for (size_t c; !stop.load(std::memory_order_relaxed) && (c = next.fetch_add(1)) < count;) {
            try {
                fn(c, tid);
            } catch (...) {
                std::lock_guard lock(mu);
                if (c < failed_at) failed_at = c, failure = std::current_exception();
                stop = true;
            }
        }
    };
    threads = static_cast<unsigned>(std::min<size_t>(threads, std::max<size_t>(count, 1)));
    if (threads <= 1) {
        work(0);
    } else {
        std::vector<std::jthread> pool;
        for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work, t);
    }
    if (failure) std::rethrow_exception(failure);
}

// Output buffers: anonymous memory (record/pages.hpp), accounted for up front since every
// byte will be written, with transparent huge pages when large, so that a model of 64 MiB
// costs 32 page faults instead of 16384. Never empty: a tensor of no elements gets one byte.
PageBuffer make_buffer(uint64_t n);

struct Tensors {
    std::vector<PageBuffer> data;
    std::vector<uint64_t> bytes;
};

// One buffer per tensor of the layout, tensor i stored as dtypes[i].
Tensors allocate(const Layout& layout, const std::vector<DType>& dtypes);

// Writes n floats as dtype d at element b of an output tensor.
void put(uint8_t* dst, DType d, uint64_t b, const float* v, size_t n);

// Where to compute n floats bound for element b of an output tensor: the tensor itself when it
// is F32, else `scratch`, to be written with put().
float* out_floats(uint8_t* dst, DType d, uint64_t b, float* scratch);

} // namespace n3::merge
