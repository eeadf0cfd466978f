#include "codec/packed.hpp"
#include "record/bytes.hpp"

#include "codec/buffer.hpp"
#include "codec/transform.hpp"
#include "record/error.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <memory>
#include <sys/mman.h>
#include <sys/random.h>
#include <thread>
#include <unistd.h>
#include <zstd.h>

namespace n3::codec {

namespace {

constexpr uint8_t kPackedMagic[4] = {'N', '3', 'P', 'K'};
constexpr uint8_t kPackedVersion = 1;
constexpr size_t kHeaderSize = 32, kEntrySize = 16, kSegmentSize = 24;
constexpr size_t kMaxChain = 1024;
constexpr size_t kShuffleBlock = size_t(1) << 20; // byte planes are formed per 1 MiB block
constexpr size_t kParallelSegment = size_t(8) << 20;
constexpr uint8_t kFlagSparse = 1, kFlagStochastic = 2;
constexpr uint8_t kStored = 0, kZstd = 1;

ByteView as_bytes(const void* p, size_t n) {
    return {static_cast<const uint8_t*>(p), n};
}

bool is_lossy_dtype(DType d) {
    return d == DType::F32 || d == DType::F16 || d == DType::BF16;
}

// Reads F32, F16 or BF16 elements as floats into out (data.size() / dtype_size(d) of them).
void load_floats(DType d, ByteView data, float* out) {
    size_t n = data.size() / dtype_size(d);
    if (d == DType::F32) {
        std::memcpy(out, data.data(), data.size());
        return;
    }
    for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, data.data() + 2 * i, 2);
        out[i] = d == DType::F16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
}

// Writes float values as dtype d (F32, F16 or BF16) at dst.
void store_floats(DType d, std::span<const float> x, uint8_t* dst) {
    if (d == DType::F32) {
        std::memcpy(dst, x.data(), x.size() * 4);
        return;
    }
    for (size_t i = 0; i < x.size(); ++i) {
        uint16_t h = d == DType::F16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
        std::memcpy(dst + 2 * i, &h, 2);
    }
}

struct CCtxFree {
    void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
    void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// Appends segments to the packed payload: stored as is, or shuffled per 1 MiB block and
// compressed as one zstd frame with its content size.
class SegmentWriter {
public:
    SegmentWriter(Bytes& out, const PackOptions& o) : buf_(out), o_(o) {
        if (o.zstd) {
            cctx_.reset(ZSTD_createCCtx());
            if (!cctx_) throw std::bad_alloc();
        }
        threads_ = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
    }

    void put(ByteView raw, size_t width) {
        if (!o_.zstd) {
            header(kStored, 1, raw.size(), raw.size());
            buf_.insert(buf_.end(), raw.begin(), raw.end());
            return;
        }
        size_t head = buf_.size();
        header(kZstd, static_cast<uint8_t>(width), raw.size(), 0);
        size_t start = buf_.size();
        ZSTD_CCtx* c = cctx_.get();
        ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
        check(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, o_.level));
        check(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1));
        if (raw.size() >= kParallelSegment && threads_ > 1)
            ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, static_cast<int>(threads_));
        check(ZSTD_CCtx_setPledgedSrcSize(c, raw.size()));
        if (width > 1 && shuffled_.size() < kShuffleBlock) shuffled_.resize(kShuffleBlock);
        size_t off = 0;
        do {
            size_t len = std::min(kShuffleBlock, raw.size() - off);
            ByteView piece = raw.subspan(off, len);
            if (width > 1) {
                shuffle_bytes(piece, width, shuffled_.data());
                piece = ByteView(shuffled_.data(), len);
            }
            off += len;
            bool last = off == raw.size();
            ZSTD_inBuffer in{piece.data(), piece.size(), 0};
            for (;;) {
                size_t room = ZSTD_CStreamOutSize() + piece.size() / 8;
                size_t pos = buf_.size();
                buf_.resize(pos + room);
                ZSTD_outBuffer ob{buf_.data() + pos, room, 0};
                size_t r = ZSTD_compressStream2(c, &ob, &in, last ? ZSTD_e_end : ZSTD_e_continue);
                check(r);
                buf_.resize(pos + ob.pos);
                if (last ? r == 0 : in.pos == in.size) break;
            }
        } while (off < raw.size());
        uint64_t stored = buf_.size() - start;
        for (int i = 0; i < 8; ++i) buf_[head + 16 + i] = static_cast<uint8_t>(stored >> (8 * i));
    }

private:
    void header(uint8_t method, uint8_t width, uint64_t raw, uint64_t stored) {
        buf_.push_back(method);
        buf_.push_back(width);
        put_u16(buf_, 0);
        put_u32(buf_, 0);
        put_u64(buf_, raw);
        put_u64(buf_, stored);
    }
    static void check(size_t r) {
        if (ZSTD_isError(r)) throw EnvError(std::string("zstd: ") + ZSTD_getErrorName(r));
    }
    Bytes& buf_;
    const PackOptions& o_;
    unsigned threads_ = 1;
    std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx_;
    Bytes shuffled_;
};

uint32_t random_seed() {
    uint32_t s = 0;
    if (getrandom(&s, sizeof s, 0) != sizeof s) throw_errno("getrandom");
    return s;
}

struct Segment {
    uint8_t method = 0, width = 1;
    uint64_t raw = 0, stored = 0;
    const uint8_t* data = nullptr;
};

struct Entry {
    Encoding enc = Encoding::raw;
    uint8_t flags = 0;
    uint32_t block = 0;
    uint64_t count = 0;
    bool sparse() const { return flags & kFlagSparse; }
    Segment indices, values, scales;
};

class Cursor {
public:
    Cursor(ByteView b, const std::string& where) : b_(b), where_(where) {}
    const uint8_t* take(size_t n, const char* what) {
        if (b_.size() - pos_ < n)
            throw DataError(where_ + ": truncated packed data (" + what + " at byte " +
                            std::to_string(pos_) + ")");
        const uint8_t* p = b_.data() + pos_;
        pos_ += n;
        return p;
    }
    size_t pos() const { return pos_; }
    size_t left() const { return b_.size() - pos_; }

private:
    ByteView b_;
    size_t pos_ = 0;
    const std::string& where_;
};

size_t value_bytes(Encoding e, uint64_t n, DType d) {
    switch (e) {
    case Encoding::raw: return n * dtype_size(d);
    case Encoding::f16:
    case Encoding::bf16: return n * 2;
    case Encoding::int8: return n;
    case Encoding::int4: return (n + 1) / 2;
    }
    return 0;
}

void decode_segment(const Segment& s, uint8_t* dst, ZSTD_DCtx* d, Bytes& scratch,
                    const std::string& what) {
    if (s.method == kStored) {
        if (s.raw) std::memcpy(dst, s.data, s.raw);
        return;
    }
    auto bad = [&](const std::string& why) {
        return DataError(what + ": corrupted packed data (" + why + ")");
    };
    unsigned long long size = ZSTD_getFrameContentSize(s.data, s.stored);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
        throw bad("not a zstd frame with its content size");
    if (size != s.raw)
        throw bad("zstd frame holds " + std::to_string(size) + " bytes, not " +
                  std::to_string(s.raw));
    ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
    ZSTD_inBuffer in{s.data, s.stored, 0};
    size_t off = 0;
    size_t last = 1;
    if (s.width > 1 && scratch.size() < kShuffleBlock) scratch.resize(kShuffleBlock);
    while (off < s.raw) {
        size_t len = std::min<uint64_t>(kShuffleBlock, s.raw - off);
        uint8_t* target = s.width > 1 ? scratch.data() : dst + off;
        ZSTD_outBuffer ob{target, len, 0};
        while (ob.pos < len) {
            size_t before_in = in.pos, before_out = ob.pos;
            last = ZSTD_decompressStream(d, &ob, &in);
            if (ZSTD_isError(last)) throw bad(std::string("zstd: ") + ZSTD_getErrorName(last));
            if (in.pos == before_in && ob.pos == before_out) throw bad("zstd frame ends early");
        }
        if (s.width > 1) unshuffle_bytes(ByteView(scratch.data(), len), s.width, dst + off);
        off += len;
    }
    if (last != 0) {
        // The frame may still owe its epilogue (e.g. a checksum) after the last byte.
        uint8_t spare;
        ZSTD_outBuffer ob{&spare, 0, 0};
        last = ZSTD_decompressStream(d, &ob, &in);
        if (ZSTD_isError(last)) throw bad(std::string("zstd: ") + ZSTD_getErrorName(last));
    }
    if (last != 0) throw bad("zstd frame is incomplete");
    if (in.pos != in.size) throw bad("bytes after the zstd frame");
}

} // namespace

std::string_view encoding_name(Encoding e) {
    switch (e) {
    case Encoding::raw: return "raw";
    case Encoding::f16: return "fp16";
    case Encoding::bf16: return "bf16";
    case Encoding::int8: return "int8";
    case Encoding::int4: return "int4";
    }
    return "unknown";
}

std::optional<Encoding> parse_quantize(std::string_view name) {
    for (Encoding e : {Encoding::f16, Encoding::bf16, Encoding::int8, Encoding::int4})
        if (encoding_name(e) == name) return e;
    return std::nullopt;
}

std::string chain_text(const PackOptions& o, bool feedback) {
    std::vector<std::string> stages;
    if (o.topk > 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "topk=%g", o.topk);
        stages.emplace_back(buf);
    }
    if (o.quantize == Encoding::f16 || o.quantize == Encoding::bf16)
        stages.emplace_back(encoding_name(o.quantize));
    if (o.quantize == Encoding::int8 || o.quantize == Encoding::int4)
        stages.push_back(std::string(encoding_name(o.quantize)) + "/" + std::to_string(o.block) +
                         (o.stochastic ? "/stochastic" : ""));
    if (feedback) stages.emplace_back("feedback");
    if (o.zstd) {
        stages.emplace_back("shuffle");
        stages.push_back("zstd=" + std::to_string(o.level));
    }
    if (stages.empty()) stages.emplace_back("stored");
    std::string s;
    for (auto& st : stages) s += (s.empty() ? "" : ",") + st;
    return s;
}

// Residual ----------------------------------------------------------------------------------

Residual Residual::load(const std::string& path) {
    Residual r;
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return r;
    Input in(path);
    RecordReader reader(in);
    auto rec = reader.next();
    if (!rec) throw DataError(path + ": empty residual file");
    if (rec->type() != RecordType::update)
        throw DataError(path + ": not a residual file (a " + std::string(type_name(rec->type())) +
                        " record)");
    TensorSet set = TensorSet::parse(rec->payload(), path);
    if (set.meta("n3-encode") != "residual")
        throw DataError(path + ": not a residual file written by n3-encode --residual");
    for (auto& t : set.tensors()) {
        if (t.dtype != DType::F32)
            throw DataError(path + ": residual tensor '" + t.name + "' is not F32");
        auto& v = r.values[t.name];
        v.resize(t.numel());
        load_floats(DType::F32, set.data(t), v.data());
        r.shapes[t.name] = t.shape;
    }
    if (reader.next()) throw DataError(path + ": holds more than one record");
    return r;
}

void Residual::save(const std::string& path) const {
    SafetensorsBuilder b;
    b.set_meta("n3-encode", "residual");
    for (auto& [name, v] : values)
        b.add(name, DType::F32, shapes.at(name), as_bytes(v.data(), v.size() * 4));
    Output out(path);
    write_tensor_record(out, RecordType::update, b);
    out.commit();
}

// pack ---------------------------------------------------------------------------------------

Bytes pack(RecordType type, ByteView payload, const PackOptions& o, Residual* feedback,
           const std::string& where) {
    if (type != RecordType::model && type != RecordType::update && type != RecordType::masked)
        throw DataError(where + ": a " + std::string(type_name(type)) +
                            " record cannot be packed (n3-encode packs model, update and masked "
                            "records)",
                        type == RecordType::packed ? "it is packed already" : "");
    if (type == RecordType::masked && o.lossy())
        throw DataError(where + ": a masked record must stay exact; pack it with --zstd only");
    if (o.quantize != Encoding::raw && (o.block == 0 || o.block > kMaxBlock))
        throw UsageError("--block must be between 1 and " + std::to_string(kMaxBlock));
    TensorSet set = TensorSet::parse(payload, where);
    size_t hlen = static_cast<size_t>(set.data_section().data() - payload.data());
    std::string chain = chain_text(o, feedback != nullptr);
    if (feedback && !feedback->values.empty()) {
        for (auto& [name, v] : feedback->values) {
            const TensorInfo* t = set.find(name);
            if (!t || t->numel() != v.size() || !is_lossy_dtype(t->dtype))
                throw DataError(where + ": the residual does not match this update (tensor '" +
                                    name + "')",
                                "a residual belongs to one model; remove the file to start over");
        }
    }

    Bytes out;
    out.reserve(ZSTD_compressBound(payload.size()) + kHeaderSize + chain.size() +
                (kEntrySize + 3 * kSegmentSize) * set.tensors().size() + 4096);
    out.insert(out.end(), kPackedMagic, kPackedMagic + 4);
    out.push_back(kPackedVersion);
    out.push_back(static_cast<uint8_t>(type));
    put_u16(out, static_cast<uint16_t>(chain.size()));
    put_u64(out, payload.size());
    put_u64(out, hlen);
    put_u32(out, static_cast<uint32_t>(set.tensors().size()));
    put_u32(out, 0);
    out.insert(out.end(), chain.begin(), chain.end());
    out.insert(out.end(), payload.begin(), payload.begin() + static_cast<std::ptrdiff_t>(hlen));

    SegmentWriter seg(out, o);
    Rounding rounding{o.stochastic, o.stochastic ? random_seed() : 0};
    for (auto& t : set.tensors()) {
        uint64_t numel = t.numel();
        bool lossy = o.lossy() && is_lossy_dtype(t.dtype) && numel > 0;
        if (lossy && o.topk > 0 && numel > UINT32_MAX) lossy = false; // u32 indices
        if (!lossy) {
            out.push_back(static_cast<uint8_t>(Encoding::raw));
            out.push_back(0);
            put_u16(out, 0);
            put_u32(out, 0);
            put_u64(out, numel);
            seg.put(set.data(t), dtype_size(t.dtype));
            continue;
        }
        Scratch<float> x(static_cast<size_t>(numel));
        load_floats(t.dtype, set.data(t), x.data());
        size_t bad = find_non_finite(x.cspan());
        if (bad != x.size())
            throw DataError(where + ": tensor '" + t.name + "' has " +
                                (std::isnan(x[bad]) ? "NaN" : "Inf") + " at element " +
                                std::to_string(bad) + "; lossy packing refuses it",
                            "pack it losslessly (--zstd only) or fix the update");
        std::vector<float>* r = nullptr;
        if (feedback) {
            auto it = feedback->values.find(t.name);
            if (it != feedback->values.end()) {
                r = &it->second;
                for (size_t i = 0; i < x.size(); ++i) x[i] += (*r)[i];
            }
        }
        std::vector<uint32_t> idx;
        std::vector<float> vals;
        bool sparse = o.topk > 0;
        if (sparse) {
            double want = std::ceil(o.topk * static_cast<double>(numel));
            size_t k = static_cast<size_t>(std::clamp(want, 1.0, static_cast<double>(numel)));
            idx = topk_indices(x.cspan(), k);
            vals.resize(idx.size());
            for (size_t i = 0; i < idx.size(); ++i) vals[i] = x[idx[i]];
        }
        std::span<const float> v = sparse ? std::span<const float>(vals) : x.cspan();
        size_t n = v.size();
        Encoding enc = o.quantize;
        bool scaled = enc == Encoding::int8 || enc == Encoding::int4;
        out.push_back(static_cast<uint8_t>(enc));
        out.push_back(static_cast<uint8_t>((sparse ? kFlagSparse : 0) |
                                           (scaled && o.stochastic ? kFlagStochastic : 0)));
        put_u16(out, 0);
        put_u32(out, scaled ? o.block : 0);
        put_u64(out, n);
        if (sparse) {
            std::vector<uint32_t> delta(idx.size());
            for (size_t i = 0; i < idx.size(); ++i) delta[i] = i ? idx[i] - idx[i - 1] : idx[i];
            seg.put(as_bytes(delta.data(), delta.size() * 4), 4);
        }
        std::vector<float> sent; // what the receiver will decode, for the residual
        if (feedback) sent.resize(n);
        switch (enc) {
        case Encoding::raw: {
            Scratch<uint8_t> b(n * dtype_size(t.dtype));
            store_floats(t.dtype, v, b.data());
            seg.put(b.cspan(), dtype_size(t.dtype));
            if (feedback) load_floats(t.dtype, b.cspan(), sent.data());
            break;
        }
        case Encoding::f16:
        case Encoding::bf16: {
            Scratch<uint16_t> h(n);
            if (enc == Encoding::f16)
                to_f16(v, h.span());
            else
                to_bf16(v, h.span());
            seg.put(as_bytes(h.data(), n * 2), 2);
            if (feedback) {
                if (enc == Encoding::f16)
                    from_f16(h.cspan(), sent);
                else
                    from_bf16(h.cspan(), sent);
            }
            break;
        }
        case Encoding::int8:
        case Encoding::int4: {
            std::vector<float> scales(block_count(n, o.block));
            if (enc == Encoding::int8) {
                Scratch<int8_t> q(n);
                quantize_int8(v, o.block, rounding, q.span(), scales);
                seg.put(as_bytes(q.data(), n), 1);
                if (feedback) dequantize_int8(q.cspan(), scales, o.block, sent);
            } else {
                Scratch<uint8_t> q((n + 1) / 2);
                quantize_int4(v, o.block, rounding, q.span(), scales);
                seg.put(q.cspan(), 1);
                if (feedback) dequantize_int4(q.cspan(), scales, o.block, sent);
            }
            seg.put(as_bytes(scales.data(), scales.size() * 4), 4);
            break;
        }
        }
        if (feedback) {
            // residual = (update + old residual) - what was sent
            if (sparse) {
                for (size_t i = 0; i < idx.size(); ++i) x[idx[i]] -= sent[i];
            } else {
                for (size_t i = 0; i < n; ++i) x[i] -= sent[i];
            }
            feedback->values[t.name].assign(x.data(), x.data() + x.size());
            feedback->shapes[t.name] = t.shape;
        }
    }
    return out;
}

// unpack -------------------------------------------------------------------------------------

namespace {

struct Header {
    RecordType type;
    std::string chain;
    uint64_t payload_len, header_len;
    uint32_t tensors;
    ByteView st_header;
};

Header read_header(Cursor& c, const std::string& where) {
    const uint8_t* h = c.take(kHeaderSize, "header");
    if (std::memcmp(h, kPackedMagic, 4) != 0)
        throw DataError(where + ": not a packed record payload (bad magic)");
    if (h[4] != kPackedVersion)
        throw DataError(where + ": unsupported packed format version " + std::to_string(h[4]) +
                            " (this n3 reads version 1)",
                        "a newer n3 wrote this record; upgrade n3 to read it");
    Header r{};
    uint8_t type = h[5];
    if (type != 1 && type != 2 && type != 6)
        throw DataError(where + ": packed record claims original type " + std::to_string(type) +
                        " (only model, update and masked records are packed)");
    r.type = static_cast<RecordType>(type);
    size_t clen = static_cast<size_t>(get_le(h + 6, 2));
    r.payload_len = get_le(h + 8, 8);
    r.header_len = get_le(h + 16, 8);
    r.tensors = static_cast<uint32_t>(get_le(h + 24, 4));
    if (get_le(h + 28, 4) != 0) throw DataError(where + ": packed header reserved bytes are set");
    if (clen == 0 || clen > kMaxChain)
        throw DataError(where + ": packed codec chain length " + std::to_string(clen) +
                        " is out of range");
    if (r.payload_len > kDefaultMaxPayload)
        throw DataError(where + ": packed record claims a " + std::to_string(r.payload_len) +
                        "-byte payload (limit " + std::to_string(kDefaultMaxPayload) + ")");
    if (r.header_len < 8 || r.header_len > r.payload_len)
        throw DataError(where + ": packed safetensors header length " +
                        std::to_string(r.header_len) + " is out of range");
    const uint8_t* cp = c.take(clen, "codec chain");
    r.chain.assign(reinterpret_cast<const char*>(cp), clen);
    for (char ch : r.chain)
        if (ch < 0x21 || ch > 0x7e)
            throw DataError(where + ": packed codec chain is not printable ASCII");
    if (r.header_len > c.left())
        throw DataError(where + ": truncated packed data (safetensors header)");
    r.st_header = ByteView(c.take(static_cast<size_t>(r.header_len), "safetensors header"),
                           static_cast<size_t>(r.header_len));
    return r;
}

Segment read_segment(Cursor& c, uint64_t want, const std::string& what) {
    const uint8_t* p = c.take(kSegmentSize, "segment header");
    Segment s;
    s.method = p[0];
    s.width = p[1];
    s.raw = get_le(p + 8, 8);
    s.stored = get_le(p + 16, 8);
    if (get_le(p + 2, 2) != 0 || get_le(p + 4, 4) != 0)
        throw DataError(what + ": segment reserved bytes are set");
    if (s.method != kStored && s.method != kZstd)
        throw DataError(what + ": unknown codec stage (lossless method " +
                        std::to_string(s.method) + ")");
    if (s.width != 1 && s.width != 2 && s.width != 4 && s.width != 8)
        throw DataError(what + ": bad shuffle width " + std::to_string(s.width));
    if (s.method == kStored && (s.width != 1 || s.stored != s.raw))
        throw DataError(what + ": stored segment with shuffle or length mismatch");
    if (s.raw != want)
        throw DataError(what + ": segment holds " + std::to_string(s.raw) + " bytes, expected " +
                        std::to_string(want));
    if (s.raw % s.width != 0)
        throw DataError(what + ": segment length is not a multiple of its width");
    if (s.stored > c.left()) throw DataError(what + ": truncated packed data (segment)");
    s.data = c.take(static_cast<size_t>(s.stored), "segment");
    return s;
}

} // namespace

PackedInfo packed_info(ByteView packed, const std::string& where) {
    Cursor c(packed, where);
    Header h = read_header(c, where);
    return {h.type, h.chain, h.payload_len, h.tensors};
}

void unpack(ByteView packed, Sink& out, const std::string& where) {
    Cursor c(packed, where);
    Header h = read_header(c, where);
    PageBuffer buf(static_cast<size_t>(h.payload_len));
    std::memcpy(buf.data(), h.st_header.data(), h.st_header.size());
    TensorSet set = TensorSet::parse(buf.view(), where + ": packed safetensors header");
    if (set.data_section().data() != buf.view().data() + h.header_len)
        throw DataError(where + ": packed safetensors header length does not match the header");
    if (set.tensors().size() != h.tensors)
        throw DataError(where + ": packed record lists " + std::to_string(h.tensors) +
                        " tensors, its header " + std::to_string(set.tensors().size()));

    // Check every entry and segment before decoding anything.
    std::vector<Entry> entries;
    entries.reserve(set.tensors().size());
    bool any_lossy = false;
    for (auto& t : set.tensors()) {
        std::string what = where + ": tensor '" + t.name + "'";
        const uint8_t* p = c.take(kEntrySize, "tensor entry");
        Entry e;
        if (p[0] > static_cast<uint8_t>(Encoding::int4))
            throw DataError(what + ": unknown codec stage (encoding " + std::to_string(p[0]) + ")");
        e.enc = static_cast<Encoding>(p[0]);
        e.flags = p[1];
        e.block = static_cast<uint32_t>(get_le(p + 4, 4));
        e.count = get_le(p + 8, 8);
        if (get_le(p + 2, 2) != 0) throw DataError(what + ": entry reserved bytes are set");
        if (e.flags & ~(kFlagSparse | kFlagStochastic))
            throw DataError(what + ": unknown codec stage (flags " + std::to_string(e.flags) + ")");
        bool scaled = e.enc == Encoding::int8 || e.enc == Encoding::int4;
        bool lossy = e.enc != Encoding::raw || e.sparse();
        if ((e.flags & kFlagStochastic) && !scaled)
            throw DataError(what + ": stochastic flag without int8 or int4");
        if (lossy && (!is_lossy_dtype(t.dtype) || h.type == RecordType::masked))
            throw DataError(what + ": lossy encoding of a " + std::string(dtype_name(t.dtype)) +
                            " tensor" +
                            (h.type == RecordType::masked ? " in a masked record" : ""));
        if (scaled ? (e.block == 0 || e.block > kMaxBlock) : e.block != 0)
            throw DataError(what + ": bad block size " + std::to_string(e.block));
        uint64_t numel = t.numel();
        if (e.sparse()) {
            if (numel > UINT32_MAX || e.count == 0 || e.count > numel)
                throw DataError(what + ": sparse count " + std::to_string(e.count) +
                                " does not fit " + std::to_string(numel) + " elements");
            e.indices = read_segment(c, e.count * 4, what + " indices");
        } else if (e.count != numel) {
            throw DataError(what + ": holds " + std::to_string(e.count) + " values, shape says " +
                            std::to_string(numel));
        }
        e.values = read_segment(c, value_bytes(e.enc, e.count, t.dtype), what + " values");
        if (scaled)
            e.scales = read_segment(c, block_count(static_cast<size_t>(e.count), e.block) * 4,
                                    what + " scales");
        any_lossy = any_lossy || lossy;
        entries.push_back(e);
    }
    if (c.left() != 0)
        throw DataError(where + ": " + std::to_string(c.left()) + " bytes after the last tensor");

    std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
    if (!dctx) throw std::bad_alloc();
    Bytes scratch;
    uint8_t* base = buf.data();
    for (size_t ti = 0; ti < entries.size(); ++ti) {
        const TensorInfo& t = set.tensors()[ti];
        const Entry& e = entries[ti];
        std::string what = where + ": tensor '" + t.name + "'";
        uint8_t* dst = base + (set.data(t).data() - buf.view().data());
        size_t n = static_cast<size_t>(e.count);
        if (e.enc == Encoding::raw && !e.sparse()) {
            decode_segment(e.values, dst, dctx.get(), scratch, what);
            continue;
        }
        Scratch<uint8_t> vb(static_cast<size_t>(e.values.raw));
        decode_segment(e.values, vb.data(), dctx.get(), scratch, what);
        Scratch<float> v(n);
        switch (e.enc) {
        case Encoding::raw: load_floats(t.dtype, vb.cspan(), v.data()); break;
        case Encoding::f16:
        case Encoding::bf16: {
            for (size_t i = 0; i < n; ++i) {
                uint16_t half;
                std::memcpy(&half, vb.data() + 2 * i, 2);
                v[i] = e.enc == Encoding::f16 ? f16_to_f32(half) : bf16_to_f32(half);
            }
            break;
        }
        case Encoding::int8:
        case Encoding::int4: {
            std::vector<float> scales(static_cast<size_t>(e.scales.raw / 4));
            decode_segment(e.scales, reinterpret_cast<uint8_t*>(scales.data()), dctx.get(), scratch,
                           what);
            for (float s : scales)
                if (!(s >= 0.0f) || !std::isfinite(s))
                    throw DataError(what + ": corrupted packed data (bad scale)");
            if (e.enc == Encoding::int8)
                dequantize_int8(
                    std::span<const int8_t>(reinterpret_cast<const int8_t*>(vb.data()), n), scales,
                    e.block, v.span());
            else
                dequantize_int4(vb.cspan(), scales, e.block, v.span());
            break;
        }
        }
        if (!e.sparse()) {
            store_floats(t.dtype, v.cspan(), dst);
            continue;
        }
        std::vector<uint32_t> delta(n);
        decode_segment(e.indices, reinterpret_cast<uint8_t*>(delta.data()), dctx.get(), scratch,
                       what);
        uint64_t numel = t.numel(), at = 0;
        Scratch<float> dense(static_cast<size_t>(numel)); // zero-filled
        for (size_t i = 0; i < n; ++i) {
            if (i > 0 && delta[i] == 0)
                throw DataError(what + ": corrupted packed data (repeated index)");
            at = i ? at + delta[i] : delta[i];
            if (at >= numel) throw DataError(what + ": corrupted packed data (index out of range)");
            dense[static_cast<size_t>(at)] = v[i];
        }
        store_floats(t.dtype, dense.cspan(), dst);
    }

    if (!any_lossy) {
        write_record(out, h.type, buf.view());
        return;
    }
    SafetensorsBuilder b;
    Metadata meta = set.metadata();
    std::string lossy;
    for (size_t pos = 0; pos <= h.chain.size();) {
        size_t end = h.chain.find(',', pos);
        if (end == std::string::npos) end = h.chain.size();
        std::string stage = h.chain.substr(pos, end - pos);
        if (stage != "shuffle" && stage.rfind("zstd", 0) != 0 && stage != "stored")
            lossy += (lossy.empty() ? "" : ",") + stage;
        pos = end + 1;
    }
    auto prior = meta.find(meta::codec);
    meta[meta::codec] =
        prior != meta.end() && !prior->second.empty() ? prior->second + "," + lossy : lossy;
    b.set_metadata(meta);
    for (auto& t : set.tensors()) b.add(t.name, t.dtype, t.shape, set.data(t));
    write_tensor_record(out, h.type, b);
}

} // namespace n3::codec
