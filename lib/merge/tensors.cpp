// n3/merge/tensors.cpp — reading chunks of input tensors and writing chunks of output tensors
// (see tensors.hpp): layouts, sources, chunking and the output buffers.
#include "merge/tensors.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <unistd.h>

namespace n3::merge {

Layout layout_of(const TensorSet& set) {
    Layout l;
    for (auto& t : set.tensors()) l.push_back({t.name, t.dtype, t.shape, t.numel()});
    return l;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    if (shape.empty()) return "scalar";
    std::string s;
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
    return s;
}

std::string layout_key(const Layout& l) {
    std::string k;
    for (auto& t : l)
        k += t.name + '\0' + std::string(dtype_name(t.dtype)) + shape_text(t.shape) + '\n';
    return k;
}

std::string layout_difference(const Layout& got, const Layout& want) {
    std::map<std::string, const TensorLayout*> by_name;
    for (auto& t : got) by_name[t.name] = &t;
    for (auto& w : want) {
        auto it = by_name.find(w.name);
        if (it == by_name.end()) return "has no tensor '" + w.name + "'";
        const TensorLayout& g = *it->second;
        if (g.shape != w.shape)
            return "tensor '" + w.name + "' has shape " + shape_text(g.shape) + ", expected " +
                   shape_text(w.shape);
        if (g.dtype != w.dtype)
            return "tensor '" + w.name + "' has dtype " + std::string(dtype_name(g.dtype)) +
                   ", expected " + std::string(dtype_name(w.dtype));
    }
    if (got.size() != want.size())
        for (auto& g : got)
            if (std::none_of(want.begin(), want.end(), [&](auto& w) { return w.name == g.name; }))
                return "has an extra tensor '" + g.name + "'";
    return {};
}

bool mergeable(DType d) {
    return d == DType::F32 || d == DType::F16 || d == DType::BF16;
}

void require_mergeable(const Layout& layout, const std::string& where) {
    for (auto& t : layout)
        if (!mergeable(t.dtype))
            throw DataError(where + ": tensor '" + t.name + "' has dtype " +
                            std::string(dtype_name(t.dtype)) +
                            "; n3-merge merges F32, F16 and BF16 tensors");
}

Source source_of(const TensorSet& set, const Layout& layout, const LoadedRecord* rec) {
    Source s;
    if (rec && rec->file) s.fd = rec->file->fd;
    for (auto& t : layout) {
        const TensorInfo* ti = set.find(t.name);
        s.data.push_back(set.data(*ti).data());
        s.dtype.push_back(ti->dtype);
        if (s.fd >= 0)
            s.file_off.push_back(
                rec->file_offset +
                static_cast<uint64_t>(s.data.back() - rec->record.payload().data()));
    }
    return s;
}

const float* floats(const Source& s, size_t t, uint64_t b, size_t n, float* scratch,
                    uint64_t* crc) {
    DType d = s.dtype[t];
    size_t es = dtype_size(d);
    const uint8_t* p;
    void* sv = scratch;
    auto* buf = static_cast<uint8_t*>(sv);
    if (s.fd >= 0) {
        size_t len = n * es, got = 0;
        uint64_t off = s.file_off[t] + b * es;
        while (got < len) {
            ssize_t r = ::pread(s.fd, buf + got, len - got, static_cast<off_t>(off + got));
            if (r < 0) {
                if (errno == EINTR) continue;
                throw_errno("cannot read an input");
            }
            if (r == 0) throw DataError("an input file shrank while it was being merged");
            got += static_cast<size_t>(r);
        }
        p = buf;
    } else {
        p = s.data[t] + b * es;
    }
    if (crc) *crc = crc64(0, ByteView(p, n * es));
    if (d == DType::F32) {
        if (reinterpret_cast<uintptr_t>(p) % alignof(float) == 0) {
            const void* v = p;
            return static_cast<const float*>(v);
        }
        std::memcpy(scratch, p, n * sizeof(float));
        return scratch;
    }
    // Backwards, so that converting in place (p == scratch) never overwrites unread input.
    for (size_t j = n; j-- > 0;) {
        uint16_t h;
        std::memcpy(&h, p + 2 * j, 2);
        scratch[j] = d == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
    return scratch;
}

void release(const Source& s, size_t t, uint64_t b, uint64_t n) {
    if (s.fd >= 0) return; // read with pread: nothing mapped
    size_t es = dtype_size(s.dtype[t]);
    release_pages(ByteView(s.data[t] + b * es, n * es));
}

std::vector<Chunk> chunks_of(const Layout& layout, uint64_t chunk) {
    std::vector<Chunk> v;
    for (size_t t = 0; t < layout.size(); ++t)
        for (uint64_t b = 0; b < layout[t].numel; b += chunk)
            v.push_back({t, b, std::min(chunk, layout[t].numel - b)});
    return v;
}

PageBuffer make_buffer(uint64_t n) {
    return PageBuffer(static_cast<size_t>(std::max<uint64_t>(n, 1)), Commit::up_front);
}

Tensors allocate(const Layout& layout, const std::vector<DType>& dtypes) {
    Tensors t;
    for (size_t i = 0; i < layout.size(); ++i) {
        uint64_t n = layout[i].numel * dtype_size(dtypes[i]);
        t.data.push_back(make_buffer(n));
        t.bytes.push_back(n);
    }
    return t;
}

// Writes n floats as dtype d at element b of an output tensor.
void put(uint8_t* dst, DType d, uint64_t b, const float* v, size_t n) {
    if (d == DType::F32) {
        std::memcpy(dst + 4 * b, v, n * 4);
        return;
    }
    for (size_t j = 0; j < n; ++j) {
        uint16_t h = d == DType::F16 ? f32_to_f16(v[j]) : f32_to_bf16(v[j]);
        std::memcpy(dst + 2 * (b + j), &h, 2);
    }
}

float* out_floats(uint8_t* dst, DType d, uint64_t b, float* scratch) {
    if (d == DType::F32) {
        void* p = dst + 4 * b;
        return static_cast<float*>(p); // allocations are suitably aligned
    }
    return scratch;
}

} // namespace n3::merge
