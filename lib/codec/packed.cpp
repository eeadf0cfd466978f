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
// Appends segments to the packed payload: stored as is, or shuffled per 1 MiB block and
// compressed as one zstd frame with its content size. A segment's bytes arrive in any number
// of pieces (begin, write..., end); zstd always sees the same 1 MiB blocks, so the frame does
// not depend on how the pieces were cut.
class SegmentWriter final : public Sink {
public:
    SegmentWriter(PackedOut& out, const PackOptions& o) : out_(out), o_(o) {
        if (o.zstd) {
            cctx_.reset(ZSTD_createCCtx());
            if (!cctx_) throw std::bad_alloc();
        }
        threads_ = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
    }

    void begin(uint64_t raw, size_t width) {
        raw_ = raw;
        fed_ = 0;
        width_ = width;
        if (!o_.zstd) {
            header(kStored, 1, raw, raw);
            return;
        }
        head_ = out_.size();
        header(kZstd, static_cast<uint8_t>(width), raw, 0);
        start_ = out_.size();
        ZSTD_CCtx* c = cctx_.get();
        ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
        check(ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, o_.level));
        check(ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1));
        if (raw >= kParallelSegment && threads_ > 1)
            ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, static_cast<int>(threads_));
        check(ZSTD_CCtx_setPledgedSrcSize(c, raw));
        if (width > 1 && shuffled_.size() < kShuffleBlock) shuffled_.resize(kShuffleBlock);
        if (room_.size() < kRoom) room_.resize(kRoom);
        pending_.clear();
        if (raw == 0) compress(ByteView(), true);
    }

    void write(ByteView b) override {
        if (!o_.zstd) {
            out_.append(b);
            fed_ += b.size();
            return;
        }
        while (!b.empty()) {
            uint64_t block_start = fed_ - pending_.size();
            size_t len = static_cast<size_t>(std::min<uint64_t>(kShuffleBlock, raw_ - block_start));
            if (pending_.empty() && b.size() >= len) {
                block(b.first(len), block_start + len == raw_);
                b = b.subspan(len);
                fed_ += len;
                continue;
            }
            size_t take = std::min(b.size(), len - pending_.size());
            pending_.insert(pending_.end(), b.begin(),
                            b.begin() + static_cast<std::ptrdiff_t>(take));
            b = b.subspan(take);
            fed_ += take;
            if (pending_.size() == len) {
                block(pending_, block_start + len == raw_);
                pending_.clear();
            }
        }
    }

    void end() {
        if (!o_.zstd) return;
        uint64_t stored = out_.size() - start_;
        uint8_t b[8];
        for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(stored >> (8 * i));
        out_.patch(head_ + 16, ByteView(b, 8));
    }

    void put(ByteView raw, size_t width) {
        begin(raw.size(), width);
        write(raw);
        end();
    }

private:
    static constexpr size_t kRoom = size_t(256) << 10;
    void block(ByteView piece, bool last) {
        if (width_ > 1) {
            shuffle_bytes(piece, width_, shuffled_.data());
            piece = ByteView(shuffled_.data(), piece.size());
        }
        compress(piece, last);
    }
    void compress(ByteView piece, bool last) {
        ZSTD_CCtx* c = cctx_.get();
        ZSTD_inBuffer in{piece.data(), piece.size(), 0};
        for (;;) {
            ZSTD_outBuffer ob{room_.data(), room_.size(), 0};
            size_t r = ZSTD_compressStream2(c, &ob, &in, last ? ZSTD_e_end : ZSTD_e_continue);
            check(r);
            if (ob.pos) out_.append(ByteView(room_.data(), ob.pos));
            if (last ? r == 0 : in.pos == in.size) break;
        }
    }
    void header(uint8_t method, uint8_t width, uint64_t raw, uint64_t stored) {
        Bytes h;
        h.push_back(method);
        h.push_back(width);
        put_u16(h, 0);
        put_u32(h, 0);
        put_u64(h, raw);
        put_u64(h, stored);
        out_.append(h);
    }
    static void check(size_t r) {
        if (ZSTD_isError(r)) throw EnvError(std::string("zstd: ") + ZSTD_getErrorName(r));
    }
    PackedOut& out_;
    const PackOptions& o_;
    unsigned threads_ = 1;
    std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx_;
    Bytes shuffled_, pending_, room_;
    uint64_t raw_ = 0, fed_ = 0, head_ = 0, start_ = 0;
    size_t width_ = 1;
};

class BytesOut final : public PackedOut {
public:
    explicit BytesOut(Bytes& b) : b_(b) {}
    void append(ByteView bytes) override { b_.insert(b_.end(), bytes.begin(), bytes.end()); }
    void patch(uint64_t offset, ByteView bytes) override {
        std::memcpy(b_.data() + offset, bytes.data(), bytes.size());
    }
    uint64_t size() const override { return b_.size(); }

private:
    Bytes& b_;
};

class ViewReader final : public PayloadReader {
public:
    explicit ViewReader(ByteView v) : v_(v) {}
    void read(std::span<uint8_t> out) override {
        if (out.empty()) return;
        if (v_.size() - pos_ < out.size()) throw DataError("payload ends early");
        std::memcpy(out.data(), v_.data() + pos_, out.size());
        pos_ += out.size();
    }

private:
    ByteView v_;
    size_t pos_ = 0;
};

// Bytes to keep for a later pass: in memory when small, else in a temporary file.
class Spill {
public:
    Spill(uint64_t expected, const std::string& purpose) {
        if (expected > kInMemory) file_.emplace(purpose);
    }
    void write(ByteView b) {
        if (file_)
            file_->write(b);
        else
            mem_.insert(mem_.end(), b.begin(), b.end());
    }
    void read_at(uint64_t off, std::span<uint8_t> out) {
        if (file_)
            file_->read_at(off, out);
        else if (!out.empty())
            std::memcpy(out.data(), mem_.data() + off, out.size());
    }
    void copy_to(Sink& out) {
        if (file_)
            file_->copy_to(out, 0, file_->size());
        else
            out.write(mem_);
    }

private:
    static constexpr uint64_t kInMemory = uint64_t(2) << 20;
    Bytes mem_;
    std::optional<TempFile> file_;
};

// Elements per window: a multiple of the block, and even (int4 packs pairs).
size_t window_elements(uint32_t block) {
    size_t unit = block ? block : 1;
    if (unit % 2) unit *= 2;
    return unit * std::max<size_t>(1, kWindow / unit);
}

uint32_t random_seed() {
    uint32_t s = 0;
    if (getrandom(&s, sizeof s, 0) != sizeof s) throw_errno("getrandom");
    return s;
}

struct Segment {
    uint8_t method = 0, width = 1;
    uint64_t raw = 0, stored = 0;
    uint64_t at = 0; // offset of its bytes in the packed payload
};

struct Entry {
    Encoding enc = Encoding::raw;
    uint8_t flags = 0;
    uint32_t block = 0;
    uint64_t count = 0;
    bool sparse() const { return flags & kFlagSparse; }
    Segment indices, values, scales;
};

// Walks a packed payload's fixed fields without holding it.
class Cursor {
public:
    Cursor(const ByteSource& b, const std::string& where) : b_(b), where_(where) {}
    // Skips n bytes, returning their offset.
    uint64_t skip(uint64_t n, const char* what) {
        if (b_.size() - pos_ < n)
            throw DataError(where_ + ": truncated packed data (" + what + " at byte " +
                            std::to_string(pos_) + ")");
        uint64_t p = pos_;
        pos_ += n;
        return p;
    }
    // Reads n (small) bytes.
    const uint8_t* take(size_t n, const char* what) {
        uint64_t p = skip(n, what);
        small_.resize(n);
        b_.read_at(p, small_);
        return small_.data();
    }
    uint64_t pos() const { return pos_; }
    uint64_t left() const { return b_.size() - pos_; }

private:
    const ByteSource& b_;
    uint64_t pos_ = 0;
    const std::string& where_;
    Bytes small_;
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

// Reads a segment's raw bytes in order, from a packed payload it does not hold: a stored
// segment through the source, a zstd frame decoded 1 MiB block at a time (each block is
// unshuffled whole), its compressed bytes read 1 MiB at a time.
class SegmentReader {
public:
    SegmentReader(const ByteSource& src, const Segment& s, ZSTD_DCtx* d, const std::string& what)
        : src_(src), s_(s), d_(d), what_(what) {
        if (s.method == kStored) return;
        uint8_t head[18]; // the largest zstd frame header
        size_t hn = static_cast<size_t>(std::min<uint64_t>(sizeof head, s.stored));
        src.read_at(s.at, std::span<uint8_t>(head, hn));
        unsigned long long size = ZSTD_getFrameContentSize(head, hn);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
            throw bad("not a zstd frame with its content size");
        if (size != s.raw)
            throw bad("zstd frame holds " + std::to_string(size) + " bytes, not " +
                      std::to_string(s.raw));
        ZSTD_DCtx_reset(d, ZSTD_reset_session_and_parameters);
        in_buf_.resize(static_cast<size_t>(std::min<uint64_t>(kShuffleBlock, s.stored)));
        block_.resize(static_cast<size_t>(std::min<uint64_t>(kShuffleBlock, s.raw)));
        if (s.width > 1) planes_.resize(block_.size());
    }

    // The next n raw bytes.
    void read(uint8_t* dst, size_t n) {
        if (s_.method == kStored) {
            src_.read_at(s_.at + off_, std::span<uint8_t>(dst, n));
            off_ += n;
            return;
        }
        while (n > 0) {
            if (block_pos_ == block_len_) next_block();
            size_t k = std::min(n, block_len_ - block_pos_);
            std::memcpy(dst, block_.data() + block_pos_, k);
            block_pos_ += k;
            dst += k;
            n -= k;
        }
    }

    // After the last byte: the frame must end exactly where the segment does.
    void finish() {
        if (s_.method == kStored) return;
        while (last_ != 0) {
            // The frame may still owe its epilogue (e.g. a checksum) after the last byte.
            if (in_.pos == in_.size && !refill()) break;
            uint8_t spare;
            ZSTD_outBuffer ob{&spare, 0, 0};
            size_t before = in_.pos;
            last_ = ZSTD_decompressStream(d_, &ob, &in_);
            if (ZSTD_isError(last_)) throw bad(std::string("zstd: ") + ZSTD_getErrorName(last_));
            if (in_.pos == before && in_.pos < in_.size) break;
        }
        if (last_ != 0) throw bad("zstd frame is incomplete");
        if (in_.pos != in_.size || fed_ != s_.stored) throw bad("bytes after the zstd frame");
    }

private:
    DataError bad(const std::string& why) const {
        return DataError(what_ + ": corrupted packed data (" + why + ")");
    }
    bool refill() {
        if (fed_ == s_.stored) return false;
        size_t n = static_cast<size_t>(std::min<uint64_t>(in_buf_.size(), s_.stored - fed_));
        src_.read_at(s_.at + fed_, std::span<uint8_t>(in_buf_.data(), n));
        fed_ += n;
        in_ = ZSTD_inBuffer{in_buf_.data(), n, 0};
        return true;
    }
    void next_block() {
        size_t len = static_cast<size_t>(std::min<uint64_t>(kShuffleBlock, s_.raw - off_));
        uint8_t* target = s_.width > 1 ? planes_.data() : block_.data();
        ZSTD_outBuffer ob{target, len, 0};
        while (ob.pos < len) {
            if (in_.pos == in_.size) refill();
            size_t before_in = in_.pos, before_out = ob.pos;
            last_ = ZSTD_decompressStream(d_, &ob, &in_);
            if (ZSTD_isError(last_)) throw bad(std::string("zstd: ") + ZSTD_getErrorName(last_));
            if (in_.pos == before_in && ob.pos == before_out && fed_ == s_.stored)
                throw bad("zstd frame ends early");
        }
        if (s_.width > 1) unshuffle_bytes(ByteView(planes_.data(), len), s_.width, block_.data());
        off_ += len;
        block_len_ = len;
        block_pos_ = 0;
    }
    const ByteSource& src_;
    Segment s_;
    ZSTD_DCtx* d_;
    const std::string& what_;
    Bytes in_buf_, block_, planes_;
    ZSTD_inBuffer in_{nullptr, 0, 0};
    uint64_t fed_ = 0, off_ = 0; // compressed bytes read; raw bytes decoded
    size_t block_len_ = 0, block_pos_ = 0;
    size_t last_ = 1;
};

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

struct Residual::Impl {
    int fd = -1; // the residual file the current state was loaded from
    std::string name;
    std::unique_ptr<TempFile> cur, next; // the states packing wrote
    ~Impl() {
        if (fd >= 0) ::close(fd);
    }
};

Residual::Residual() : impl_(std::make_unique<Impl>()) {}
Residual::~Residual() = default;
Residual::Residual(Residual&&) noexcept = default;
Residual& Residual::operator=(Residual&&) noexcept = default;

namespace {

// Reads the safetensors header of a payload of `len` bytes into `head`, a buffer as long as the
// payload whose data pages are never touched: TensorSet checks every offset against the
// payload's length. A header length out of range reads nothing more (parsing then fails).
void read_tensor_head(PayloadReader& in, uint64_t len, PageBuffer& head) {
    if (len < 8) return;
    in.read(std::span<uint8_t>(head.data(), 8));
    uint64_t n = get_le(head.data(), 8);
    if (n <= len - 8 && n <= (uint64_t(100) << 20))
        in.read(std::span<uint8_t>(head.data() + 8, static_cast<size_t>(n)));
}

} // namespace

Residual Residual::load(const std::string& path) {
    Residual r;
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return r;
    Input in(path);
    RecordReader reader(in, kDefaultMaxPayload, false);
    auto pre = reader.begin();
    if (!pre) throw DataError(path + ": empty residual file");
    if (pre->type != RecordType::update)
        throw DataError(path + ": not a residual file (a " + std::string(type_name(pre->type)) +
                        " record)");
    uint64_t base = reader.record_start_in_file() + kPreambleSize;
    // The header, then the rest of the payload in pieces for its checksum: a truncated or
    // corrupt file is reported as such before its header is parsed.
    uint64_t len = pre->payload_len;
    PageBuffer head(static_cast<size_t>(std::max<uint64_t>(len, 1)));
    ReaderPayload payload(reader);
    read_tensor_head(payload, len, head);
    Bytes piece(size_t(1) << 20);
    while (reader.read_payload(piece) > 0) {
    }
    reader.end();
    TensorSet set = TensorSet::parse(ByteView(head.data(), static_cast<size_t>(len)), path);
    uint64_t hlen = static_cast<uint64_t>(set.data_section().data() - head.data());
    if (set.meta("n3-encode") != "residual")
        throw DataError(path + ": not a residual file written by n3-encode --residual");
    for (auto& t : set.tensors()) {
        if (t.dtype != DType::F32)
            throw DataError(path + ": residual tensor '" + t.name + "' is not F32");
        r.cur_.push_back(Tensor{t.name, t.shape, t.numel(), base + hlen + t.begin});
    }
    if (reader.begin()) throw DataError(path + ": holds more than one record");
    r.impl_->fd = ::dup(in.fd());
    if (r.impl_->fd < 0) throw_errno("cannot keep " + path + " open");
    r.impl_->name = path;
    return r;
}

const Residual::Tensor* Residual::find(std::string_view name) const {
    for (auto& t : cur_)
        if (t.name == name) return &t;
    return nullptr;
}

void Residual::read(const Tensor& t, uint64_t first, std::span<float> out) const {
    std::span<uint8_t> bytes(reinterpret_cast<uint8_t*>(out.data()), out.size() * 4);
    uint64_t at = t.offset + first * 4;
    if (impl_->cur)
        impl_->cur->read_at(at, bytes);
    else if (!pread_exact(impl_->fd, at, bytes))
        throw EnvError(impl_->name + ": the residual file changed while in use");
}

std::vector<float> Residual::values(std::string_view name) const {
    const Tensor* t = find(name);
    if (!t) return {};
    std::vector<float> v(static_cast<size_t>(t->numel));
    read(*t, 0, v);
    return v;
}

void Residual::start() {
    next_.clear();
    if (impl_->next)
        impl_->next->clear();
    else
        impl_->next = std::make_unique<TempFile>("the error-feedback residual");
}

void Residual::begin(const std::string& name, std::vector<int64_t> shape) {
    uint64_t numel = 1;
    for (auto d : shape) numel *= static_cast<uint64_t>(d);
    next_.push_back(Tensor{name, std::move(shape), numel, impl_->next->size()});
}

void Residual::append(std::span<const float> v) {
    impl_->next->write(as_bytes(v.data(), v.size() * 4));
}

void Residual::done() {
    // What the current state holds that this pack did not write goes on as it was.
    std::vector<float> w;
    for (auto& t : cur_) {
        bool written = false;
        for (auto& n : next_) written = written || n.name == t.name;
        if (written) continue;
        begin(t.name, t.shape);
        for (uint64_t a = 0; a < t.numel; a += kWindow) {
            w.resize(static_cast<size_t>(std::min<uint64_t>(kWindow, t.numel - a)));
            read(t, a, w);
            append(w);
        }
    }
    cur_ = std::move(next_);
    next_.clear();
    std::swap(impl_->cur, impl_->next);
    if (impl_->fd >= 0) ::close(impl_->fd);
    impl_->fd = -1;
}

void Residual::save(const std::string& path) const {
    uint64_t total = 0;
    for (auto& t : cur_) total += t.numel * 4;
    // The builder only makes the header: its data views point at pages never touched.
    PageBuffer none(static_cast<size_t>(std::max<uint64_t>(total, 1)));
    SafetensorsBuilder b;
    b.set_meta("n3-encode", "residual");
    uint64_t at = 0;
    for (auto& t : cur_) {
        b.add(t.name, DType::F32, t.shape,
              ByteView(none.data() + at, static_cast<size_t>(t.numel * 4)));
        at += t.numel * 4;
    }
    Output out(path);
    RecordWriter w(out, RecordType::update, b.size());
    w.write(b.head());
    std::vector<float> piece;
    for (auto& t : cur_)
        for (uint64_t a = 0; a < t.numel; a += kWindow) {
            piece.resize(static_cast<size_t>(std::min<uint64_t>(kWindow, t.numel - a)));
            read(t, a, piece);
            w.write(as_bytes(piece.data(), piece.size() * 4));
        }
    w.end();
    out.commit();
}

// pack ---------------------------------------------------------------------------------------

namespace {

// Stores n float values, delivered window by window by next(first, len, x), as encoding `enc`
// of dtype d: the values segment and, for int8 and int4, the scales segment. With sent, it is
// called after each window with what the receiver will decode (error feedback).
template <class Next, class Sent>
void put_values(SegmentWriter& seg, Encoding enc, DType d, uint64_t n, const PackOptions& o,
                Rounding rounding, bool want_sent, Next&& next, Sent&& sent,
                const std::string& what) {
    bool scaled = enc == Encoding::int8 || enc == Encoding::int4;
    size_t w = window_elements(scaled ? o.block : 2);
    size_t win = static_cast<size_t>(std::min<uint64_t>(w, n));
    Scratch<float> x(win), s(want_sent ? win : 0);
    Scratch<uint8_t> b(win * std::max<size_t>(dtype_size(d), 2));
    std::vector<float> scales(scaled ? block_count(win, o.block) : 0);
    uint64_t nscales = scaled ? block_count(static_cast<size_t>(n), o.block) : 0;
    Spill kept(nscales * 4, "the scales of " + what);
    size_t width = enc == Encoding::raw                            ? dtype_size(d)
                   : enc == Encoding::f16 || enc == Encoding::bf16 ? 2
                                                                   : 1;
    seg.begin(value_bytes(enc, n, d), width);
    for (uint64_t a = 0; a < n; a += w) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(w, n - a));
        std::span<float> xs = x.span().first(len);
        next(a, len, xs.data());
        std::span<float> ss = want_sent ? s.span().first(len) : std::span<float>();
        switch (enc) {
        case Encoding::raw: {
            store_floats(d, xs, b.data());
            seg.write(ByteView(b.data(), len * dtype_size(d)));
            if (want_sent) load_floats(d, ByteView(b.data(), len * dtype_size(d)), ss.data());
            break;
        }
        case Encoding::f16:
        case Encoding::bf16: {
            auto* h = reinterpret_cast<uint16_t*>(b.data());
            std::span<uint16_t> hs(h, len);
            if (enc == Encoding::f16)
                to_f16(xs, hs);
            else
                to_bf16(xs, hs);
            seg.write(ByteView(b.data(), len * 2));
            if (want_sent) {
                if (enc == Encoding::f16)
                    from_f16(hs, ss);
                else
                    from_bf16(hs, ss);
            }
            break;
        }
        case Encoding::int8:
        case Encoding::int4: {
            std::span<float> sc(scales.data(), block_count(len, o.block));
            if (enc == Encoding::int8) {
                std::span<int8_t> q(reinterpret_cast<int8_t*>(b.data()), len);
                quantize_int8(xs, o.block, rounding, q, sc, static_cast<size_t>(a));
                seg.write(ByteView(b.data(), len));
                if (want_sent) dequantize_int8(q, sc, o.block, ss);
            } else {
                std::span<uint8_t> q(b.data(), (len + 1) / 2);
                quantize_int4(xs, o.block, rounding, q, sc, static_cast<size_t>(a));
                seg.write(q);
                if (want_sent) dequantize_int4(q, sc, o.block, ss);
            }
            kept.write(as_bytes(sc.data(), sc.size() * 4));
            break;
        }
        }
        if (want_sent) sent(a, len, xs.data(), ss.data());
    }
    seg.end();
    if (scaled) {
        seg.begin(nscales * 4, 4);
        kept.copy_to(seg);
        seg.end();
    }
}

void put_entry(PackedOut& out, Encoding enc, uint8_t flags, uint32_t block, uint64_t n) {
    Bytes e;
    e.push_back(static_cast<uint8_t>(enc));
    e.push_back(flags);
    put_u16(e, 0);
    put_u32(e, block);
    put_u64(e, n);
    out.append(e);
}

// The k-th largest magnitude by radix selection on the magnitude bits (as topk_indices does),
// over a tensor kept in `xs`: a histogram of the high 16 bits (given), then of the low 16 bits
// within the bin that holds the k-th. Returns the threshold and how many elements equal to it
// to keep (those of lowest index).
std::pair<uint32_t, uint64_t> topk_threshold(Spill& xs, uint64_t numel, uint64_t k,
                                             std::vector<uint64_t>& hist) {
    uint32_t hi = 65535;
    uint64_t above = 0;
    while (above + hist[hi] < k) above += hist[hi--];
    std::fill(hist.begin(), hist.end(), 0);
    size_t win = static_cast<size_t>(std::min<uint64_t>(kWindow, numel));
    std::vector<uint32_t> m(win);
    for (uint64_t a = 0; a < numel; a += win) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(win, numel - a));
        xs.read_at(a * 4, std::span<uint8_t>(reinterpret_cast<uint8_t*>(m.data()), len * 4));
        for (size_t i = 0; i < len; ++i) {
            uint32_t v = m[i] & 0x7fffffffU;
            if ((v >> 16) == hi) ++hist[v & 0xffffU];
        }
    }
    uint32_t lo = 65535;
    while (above + hist[lo] < k) above += hist[lo--];
    return {(hi << 16) | lo, k - above};
}

} // namespace

void pack_stream(RecordType type, uint64_t payload_len, PayloadReader& in, const PackOptions& o,
                 Residual* feedback, const std::string& where, PackedOut& out) {
    if (type != RecordType::model && type != RecordType::update && type != RecordType::masked)
        throw DataError(where + ": a " + std::string(type_name(type)) +
                            " record cannot be packed (n3-encode packs model, update and masked "
                            "records)",
                        type == RecordType::packed ? "it is packed already" : "");
    if (type == RecordType::masked && o.lossy())
        throw DataError(where + ": a masked record must stay exact; pack it with --zstd only");
    if (o.quantize != Encoding::raw && (o.block == 0 || o.block > kMaxBlock))
        throw UsageError("--block must be between 1 and " + std::to_string(kMaxBlock));

    PageBuffer head(static_cast<size_t>(std::max<uint64_t>(payload_len, 1)));
    ByteView whole(head.data(), static_cast<size_t>(payload_len));
    read_tensor_head(in, payload_len, head);
    TensorSet set = TensorSet::parse(whole, where);
    size_t hlen = static_cast<size_t>(set.data_section().data() - whole.data());
    std::string chain = chain_text(o, feedback != nullptr);
    if (feedback) {
        for (auto& r : feedback->tensors()) {
            const TensorInfo* t = set.find(r.name);
            if (!t || t->numel() != r.numel || !is_lossy_dtype(t->dtype))
                throw DataError(where + ": the residual does not match this update (tensor '" +
                                    r.name + "')",
                                "a residual belongs to one model; remove the file to start over");
        }
        feedback->start();
    }

    Bytes h(kPackedMagic, kPackedMagic + 4);
    h.push_back(kPackedVersion);
    h.push_back(static_cast<uint8_t>(type));
    put_u16(h, static_cast<uint16_t>(chain.size()));
    put_u64(h, payload_len);
    put_u64(h, hlen);
    put_u32(h, static_cast<uint32_t>(set.tensors().size()));
    put_u32(h, 0);
    h.insert(h.end(), chain.begin(), chain.end());
    out.append(h);
    out.append(ByteView(head.data(), hlen));

    SegmentWriter seg(out, o);
    Rounding rounding{o.stochastic, o.stochastic ? random_seed() : 0};
    Bytes raw_in;
    for (auto& t : set.tensors()) {
        uint64_t numel = t.numel();
        size_t dsize = dtype_size(t.dtype);
        std::string what = where + ": tensor '" + t.name + "'";
        bool lossy = o.lossy() && is_lossy_dtype(t.dtype) && numel > 0;
        if (lossy && o.topk > 0 && numel > UINT32_MAX) lossy = false; // u32 indices
        if (!lossy) {
            put_entry(out, Encoding::raw, 0, 0, numel);
            seg.begin(t.nbytes(), dsize);
            raw_in.resize(static_cast<size_t>(std::min<uint64_t>(t.nbytes(), kWindow * 4)));
            for (uint64_t left = t.nbytes(); left > 0;) {
                size_t len = static_cast<size_t>(std::min<uint64_t>(left, raw_in.size()));
                in.read(std::span<uint8_t>(raw_in.data(), len));
                seg.write(ByteView(raw_in.data(), len));
                left -= len;
            }
            seg.end();
            continue;
        }
        // Reads the tensor's next len elements as floats, refusing NaN and Inf.
        raw_in.resize(static_cast<size_t>(std::min<uint64_t>(numel, kWindow)) * dsize);
        auto read_floats = [&](uint64_t a, size_t len, float* x) {
            in.read(std::span<uint8_t>(raw_in.data(), len * dsize));
            load_floats(t.dtype, ByteView(raw_in.data(), len * dsize), x);
            size_t bad = find_non_finite(std::span<const float>(x, len));
            if (bad != len)
                throw DataError(where + ": tensor '" + t.name + "' has " +
                                    (std::isnan(x[bad]) ? "NaN" : "Inf") + " at element " +
                                    std::to_string(a + bad) + "; lossy packing refuses it",
                                "pack it losslessly (--zstd only) or fix the update");
        };
        Encoding enc = o.quantize;
        bool scaled = enc == Encoding::int8 || enc == Encoding::int4;
        bool sparse = o.topk > 0;
        uint8_t flags = static_cast<uint8_t>((sparse ? kFlagSparse : 0) |
                                             (scaled && o.stochastic ? kFlagStochastic : 0));
        uint32_t block = scaled ? o.block : 0;
        auto no_sent = [](uint64_t, size_t, const float*, const float*) {};

        if (!sparse) {
            put_entry(out, enc, flags, block, numel);
            const Residual::Tensor* had = nullptr;
            std::vector<float> w;
            if (feedback) {
                had = feedback->find(t.name);
                feedback->begin(t.name, t.shape);
            }
            auto next = [&](uint64_t a, size_t len, float* x) {
                read_floats(a, len, x);
                if (had) {
                    w.resize(len);
                    feedback->read(*had, a, w);
                    for (size_t i = 0; i < len; ++i) x[i] += w[i];
                }
            };
            // residual = (update + old residual) - what was sent
            auto sent = [&](uint64_t, size_t len, const float* x, const float* s) {
                w.resize(len);
                for (size_t i = 0; i < len; ++i) w[i] = x[i] - s[i];
                feedback->append(w);
            };
            put_values(seg, enc, t.dtype, numel, o, rounding, feedback != nullptr, next, sent,
                       what);
            continue;
        }

        double want = std::ceil(o.topk * static_cast<double>(numel));
        uint64_t k = static_cast<uint64_t>(std::clamp(want, 1.0, static_cast<double>(numel)));
        put_entry(out, enc, flags, block, k);
        // With error feedback, x is the update plus the old residual, and the new residual is x
        // less what was sent at the kept indices (a fourth pass).
        const Residual::Tensor* had = feedback ? feedback->find(t.name) : nullptr;

        // Top-k in three passes over the tensor, kept as float32 for the second and third.
        Spill xs(numel * 4, "the top-k selection of " + what);
        std::vector<uint64_t> hist(65536, 0);
        {
            size_t win = static_cast<size_t>(std::min<uint64_t>(numel, kWindow));
            Scratch<float> x(win);
            std::vector<float> r(had ? win : 0);
            for (uint64_t a = 0; a < numel; a += win) {
                size_t len = static_cast<size_t>(std::min<uint64_t>(win, numel - a));
                read_floats(a, len, x.data());
                if (had) {
                    feedback->read(*had, a, std::span<float>(r.data(), len));
                    for (size_t i = 0; i < len; ++i) x[i] += r[i];
                }
                for (size_t i = 0; i < len; ++i)
                    ++hist[(std::bit_cast<uint32_t>(x[i]) & 0x7fffffffU) >> 16];
                xs.write(as_bytes(x.data(), len * 4));
            }
        }
        auto [thr, ties] = topk_threshold(xs, numel, k, hist);
        Spill vals(k * 4, "the top-k values of " + what);
        Spill kept(feedback ? k * 4 : 0, "the top-k indices of " + what);
        seg.begin(k * 4, 4);
        {
            size_t win = static_cast<size_t>(std::min<uint64_t>(numel, kWindow));
            std::vector<uint32_t> m(win), delta, at_;
            std::vector<float> v;
            delta.reserve(win);
            v.reserve(win);
            uint64_t prev = 0;
            bool first = true;
            for (uint64_t a = 0; a < numel; a += win) {
                size_t len = static_cast<size_t>(std::min<uint64_t>(win, numel - a));
                xs.read_at(a * 4,
                           std::span<uint8_t>(reinterpret_cast<uint8_t*>(m.data()), len * 4));
                delta.clear();
                v.clear();
                at_.clear();
                for (size_t i = 0; i < len; ++i) {
                    uint32_t mag = m[i] & 0x7fffffffU;
                    if (mag > thr || (mag == thr && ties > 0)) {
                        if (mag == thr) --ties;
                        uint64_t at = a + i;
                        delta.push_back(static_cast<uint32_t>(first ? at : at - prev));
                        first = false;
                        prev = at;
                        v.push_back(std::bit_cast<float>(m[i]));
                        if (feedback) at_.push_back(static_cast<uint32_t>(at));
                    }
                }
                seg.write(as_bytes(delta.data(), delta.size() * 4));
                vals.write(as_bytes(v.data(), v.size() * 4));
                if (feedback) kept.write(as_bytes(at_.data(), at_.size() * 4));
            }
        }
        seg.end();
        auto next = [&](uint64_t a, size_t len, float* x) {
            vals.read_at(a * 4, std::span<uint8_t>(reinterpret_cast<uint8_t*>(x), len * 4));
        };
        if (!feedback) {
            put_values(seg, enc, t.dtype, k, o, rounding, false, next, no_sent, what);
            continue;
        }
        // What the receiver will decode of each kept value, in index order.
        Spill sent_vals(k * 4, "the values sent of " + what);
        auto sent = [&](uint64_t, size_t len, const float*, const float* sv) {
            sent_vals.write(as_bytes(sv, len * 4));
        };
        put_values(seg, enc, t.dtype, k, o, rounding, true, next, sent, what);
        // The new residual: x, less what was sent where it was kept. Kept indices and their
        // sent values are in index order: both are read once, a window at a time.
        feedback->begin(t.name, t.shape);
        size_t win = static_cast<size_t>(std::min<uint64_t>(numel, kWindow));
        std::vector<float> x(win), sv;
        std::vector<uint32_t> ix;
        uint64_t j = 0; // kept values read into ix and sv
        size_t pos = 0; // of those, applied
        for (uint64_t a = 0; a < numel; a += win) {
            size_t len = static_cast<size_t>(std::min<uint64_t>(win, numel - a));
            xs.read_at(a * 4, std::span<uint8_t>(reinterpret_cast<uint8_t*>(x.data()), len * 4));
            for (;;) {
                if (pos == ix.size()) {
                    if (j == k) break;
                    size_t n = static_cast<size_t>(std::min<uint64_t>(win, k - j));
                    ix.resize(n);
                    sv.resize(n);
                    kept.read_at(j * 4,
                                 std::span<uint8_t>(reinterpret_cast<uint8_t*>(ix.data()), n * 4));
                    sent_vals.read_at(
                        j * 4, std::span<uint8_t>(reinterpret_cast<uint8_t*>(sv.data()), n * 4));
                    j += n;
                    pos = 0;
                }
                if (ix[pos] >= a + len) break;
                x[static_cast<size_t>(ix[pos] - a)] -= sv[pos];
                ++pos;
            }
            feedback->append(std::span<const float>(x.data(), len));
        }
    }
    if (feedback) feedback->done();
}

Bytes pack(RecordType type, ByteView payload, const PackOptions& o, Residual* feedback,
           const std::string& where) {
    Bytes out;
    if (type == RecordType::model || type == RecordType::update || type == RecordType::masked)
        out.reserve(ZSTD_compressBound(payload.size()) + 8192);
    BytesOut sink(out);
    ViewReader in(payload);
    pack_stream(type, payload.size(), in, o, feedback, where, sink);
    return out;
}

// unpack -------------------------------------------------------------------------------------

namespace {

struct Header {
    RecordType type;
    std::string chain;
    uint64_t payload_len, header_len;
    uint32_t tensors;
    uint64_t st_at; // offset of the original safetensors header
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
    r.st_at = c.skip(r.header_len, "safetensors header");
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
    s.at = c.skip(s.stored, "segment");
    return s;
}

// A lossy entry's values as floats, window by window (windows of whole blocks).
class ValueReader {
public:
    ValueReader(const ByteSource& src, const Entry& e, DType d, ZSTD_DCtx* dv, ZSTD_DCtx* ds,
                const std::string& what)
        : e_(e), d_(d), what_(what), values_(src, e.values, dv, what) {
        if (e.enc == Encoding::int8 || e.enc == Encoding::int4)
            scales_.emplace(src, e.scales, ds, what);
    }
    // The next len values (len a multiple of the block unless they are the last).
    void next(size_t len, float* out) {
        switch (e_.enc) {
        case Encoding::raw: {
            bytes_.resize(len * dtype_size(d_));
            values_.read(bytes_.data(), bytes_.size());
            load_floats(d_, bytes_, out);
            break;
        }
        case Encoding::f16:
        case Encoding::bf16: {
            bytes_.resize(len * 2);
            values_.read(bytes_.data(), bytes_.size());
            for (size_t i = 0; i < len; ++i) {
                uint16_t half;
                std::memcpy(&half, bytes_.data() + 2 * i, 2);
                out[i] = e_.enc == Encoding::f16 ? f16_to_f32(half) : bf16_to_f32(half);
            }
            break;
        }
        case Encoding::int8:
        case Encoding::int4: {
            size_t nb = e_.enc == Encoding::int8 ? len : (len + 1) / 2;
            bytes_.resize(nb);
            values_.read(bytes_.data(), nb);
            scale_.resize(block_count(len, e_.block));
            scales_->read(reinterpret_cast<uint8_t*>(scale_.data()), scale_.size() * 4);
            for (float s : scale_)
                if (!(s >= 0.0f) || !std::isfinite(s))
                    throw DataError(what_ + ": corrupted packed data (bad scale)");
            std::span<float> o(out, len);
            if (e_.enc == Encoding::int8)
                dequantize_int8(
                    std::span<const int8_t>(reinterpret_cast<const int8_t*>(bytes_.data()), len),
                    scale_, e_.block, o);
            else
                dequantize_int4(bytes_, scale_, e_.block, o);
            break;
        }
        }
    }
    void finish() {
        values_.finish();
        if (scales_) scales_->finish();
    }

private:
    const Entry& e_;
    DType d_;
    const std::string& what_;
    SegmentReader values_;
    std::optional<SegmentReader> scales_;
    Bytes bytes_;
    std::vector<float> scale_;
};

} // namespace

PackedInfo packed_info(ByteView packed, const std::string& where) {
    ViewSource src(packed);
    Cursor c(src, where);
    Header h = read_header(c, where);
    return {h.type, h.chain, h.payload_len, h.tensors};
}

void unpack_stream(const ByteSource& src, Sink& out, const std::string& where) {
    Cursor c(src, where);
    Header h = read_header(c, where);
    // Only the header's pages of this buffer are touched; the tensors' places in it are what
    // TensorSet checks and the builder below lays out.
    PageBuffer buf(static_cast<size_t>(h.payload_len));
    src.read_at(h.st_at, std::span<uint8_t>(buf.data(), static_cast<size_t>(h.header_len)));
    TensorSet set = TensorSet::parse(buf.view(), where + ": packed safetensors header");
    if (set.data_section().data() != buf.view().data() + h.header_len)
        throw DataError(where + ": packed safetensors header length does not match the header");
    if (set.tensors().size() != h.tensors)
        throw DataError(where + ": packed record lists " + std::to_string(h.tensors) +
                        " tensors, its header " + std::to_string(set.tensors().size()));

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

    // The record: the original header (every entry raw and dense: the original payload, byte
    // for byte), or one naming the lossy stages; the data section keeps its layout.
    Bytes head;
    uint64_t payload_len = h.payload_len;
    if (!any_lossy) {
        head.assign(buf.data(), buf.data() + h.header_len);
    } else {
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
        head = b.head();
        payload_len = b.size();
    }
    RecordWriter w(out, h.type, payload_len);
    w.write(head);

    std::unique_ptr<ZSTD_DCtx, DCtxFree> dv(ZSTD_createDCtx()), ds(ZSTD_createDCtx());
    if (!dv || !ds) throw std::bad_alloc();
    Bytes bytes;
    std::vector<float> v, dense;
    std::vector<uint32_t> delta;
    for (size_t ti = 0; ti < entries.size(); ++ti) {
        const TensorInfo& t = set.tensors()[ti];
        const Entry& e = entries[ti];
        std::string what = where + ": tensor '" + t.name + "'";
        size_t dsize = dtype_size(t.dtype);
        if (e.enc == Encoding::raw && !e.sparse()) {
            SegmentReader r(src, e.values, dv.get(), what);
            bytes.resize(static_cast<size_t>(std::min<uint64_t>(e.values.raw, kWindow * 4)));
            for (uint64_t left = e.values.raw; left > 0;) {
                size_t len = static_cast<size_t>(std::min<uint64_t>(left, bytes.size()));
                r.read(bytes.data(), len);
                w.write(ByteView(bytes.data(), len));
                left -= len;
            }
            r.finish();
            continue;
        }
        uint64_t numel = t.numel();
        ValueReader vr(src, e, t.dtype, dv.get(), ds.get(), what);
        size_t win = window_elements(e.block);
        size_t first_win = static_cast<size_t>(std::min<uint64_t>(win, e.count));
        v.resize(first_win);
        bytes.resize(static_cast<size_t>(std::min<uint64_t>(win, numel)) * dsize);
        if (!e.sparse()) {
            for (uint64_t a = 0; a < numel; a += win) {
                size_t len = static_cast<size_t>(std::min<uint64_t>(win, numel - a));
                vr.next(len, v.data());
                store_floats(t.dtype, std::span<const float>(v.data(), len), bytes.data());
                w.write(ByteView(bytes.data(), len * dsize));
            }
            vr.finish();
            continue;
        }
        // Sparse: the listed values in place, zeros between, a window of the tensor at a time.
        std::unique_ptr<ZSTD_DCtx, DCtxFree> di(ZSTD_createDCtx());
        if (!di) throw std::bad_alloc();
        SegmentReader idx(src, e.indices, di.get(), what);
        uint64_t n = e.count, i = 0, at = 0;
        size_t vpos = 0, vlen = 0, dpos = 0, dlen = 0;
        delta.resize(static_cast<size_t>(std::min<uint64_t>(n, kWindow)));
        bool have = false;
        auto advance = [&] {
            if (i == n) {
                have = false;
                return;
            }
            if (dpos == dlen) {
                dlen = static_cast<size_t>(std::min<uint64_t>(delta.size(), n - i));
                idx.read(reinterpret_cast<uint8_t*>(delta.data()), dlen * 4);
                dpos = 0;
            }
            uint32_t d = delta[dpos++];
            if (i > 0 && d == 0) throw DataError(what + ": corrupted packed data (repeated index)");
            at = i ? at + d : d;
            if (at >= numel) throw DataError(what + ": corrupted packed data (index out of range)");
            have = true;
        };
        size_t out_win = static_cast<size_t>(std::min<uint64_t>(numel, kWindow));
        dense.resize(out_win);
        bytes.resize(out_win * dsize);
        advance();
        uint64_t taken = 0; // values read from vr
        for (uint64_t a = 0; a < numel; a += out_win) {
            size_t len = static_cast<size_t>(std::min<uint64_t>(out_win, numel - a));
            std::fill(dense.begin(), dense.begin() + static_cast<std::ptrdiff_t>(len), 0.0f);
            while (have && at < a + len) {
                if (vpos == vlen) {
                    vlen = static_cast<size_t>(std::min<uint64_t>(win, n - taken));
                    vr.next(vlen, v.data());
                    taken += vlen;
                    vpos = 0;
                }
                dense[static_cast<size_t>(at - a)] = v[vpos++];
                ++i;
                advance();
            }
            store_floats(t.dtype, std::span<const float>(dense.data(), len), bytes.data());
            w.write(ByteView(bytes.data(), len * dsize));
        }
        idx.finish();
        vr.finish();
    }
    w.end();
}

void unpack(ByteView packed, Sink& out, const std::string& where) {
    VectorSink held; // nothing reaches out unless the whole record decoded
    unpack_stream(ViewSource(packed), held, where);
    out.write(held.data);
}

} // namespace n3::codec
