#include "record/format.hpp"

#include "record/bytes.hpp"
#include "record/error.hpp"
#include "record/pages.hpp"

#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <isa-l/crc.h>
#include <isa-l/crc64.h>
#include <memory>
#include <stdexcept>
#include <unistd.h>

namespace n3 {

namespace {

// Explains a bad magic as precisely as the bytes allow.
[[noreturn]] void bad_magic(const uint8_t* in, const std::string& where) {
    if (in[0] == 0x89 && in[1] == 'N' && in[2] == '3' && in[3] == 'R')
        throw DataError(where + ": damaged record magic (the file went through a text-mode "
                                "transfer or was edited)");
    uint64_t st_len = get_le(in, 8);
    if (in[8] == '{' && st_len > 0 && st_len < (uint64_t(1) << 32))
        throw DataError(where + ": not an n3 record (this looks like a .safetensors file)",
                        "import it with: n3-inspect --from-safetensors FILE --kind model");
    throw DataError(where + ": not an n3 record (bad magic)");
}

// Payload storage for a record read from a stream, grown as its bytes arrive: the preamble's
// length is only a claim, so a hostile or truncated record costs memory in proportion to the
// bytes actually received, not to the length it declares. Large payloads live in a PageBuffer
// that mremap() grows without copying; each extent is populated in one kernel call
// (MADV_POPULATE_WRITE, Linux 5.14) just before it is filled, instead of a page fault per
// 4 KiB and a zero-fill pass as std::vector would do; both matter at pipe speed.
class PayloadBuffer {
public:
    explicit PayloadBuffer(size_t declared) : declared_(declared) {
        if (declared < kMapThreshold) {
            small_.reset(declared ? new uint8_t[declared] : nullptr);
            ready_ = declared;
        }
    }
    uint8_t* data() { return small_ ? small_.get() : pages_.data(); }

    // Room to write from `filled` on: at most kExtent bytes, at least one unless the payload
    // is complete. The mapping at least doubles when it grows, so a payload of n bytes takes
    // O(log n) mremap calls.
    std::span<uint8_t> room(size_t filled) {
        if (filled == ready_ && ready_ < declared_) {
            size_t want = std::min(declared_, ready_ + kExtent);
            if (want > pages_.size())
                pages_.grow(std::min(declared_, std::max(want, 2 * pages_.size())));
            pages_.populate(ready_, want - ready_);
            ready_ = want;
        }
        return {data() + filled, ready_ - filled};
    }

private:
    static constexpr size_t kMapThreshold = size_t(1) << 20;
    static constexpr size_t kExtent = size_t(8) << 20;
    std::unique_ptr<uint8_t[]> small_; // below kMapThreshold: not worth a mapping
    PageBuffer pages_{Commit::up_front};
    size_t declared_, ready_ = 0; // ready_: populated bytes, <= pages_.size() when mapped
};

} // namespace

std::string_view type_name(RecordType t) {
    switch (t) {
    case RecordType::model: return "model";
    case RecordType::update: return "update";
    case RecordType::packed: return "packed";
    case RecordType::shard: return "shard";
    case RecordType::sealed: return "sealed";
    case RecordType::masked: return "masked";
    }
    return "unknown";
}

std::optional<RecordType> parse_type(std::string_view name) {
    for (uint8_t t = 1; t <= 6; ++t)
        if (type_name(static_cast<RecordType>(t)) == name) return static_cast<RecordType>(t);
    return std::nullopt;
}

bool is_tensor_type(RecordType t) {
    return t == RecordType::model || t == RecordType::update || t == RecordType::masked;
}

namespace {
constexpr uint64_t kPoly = 0xC96C5795D7870F42ull; // CRC-64/XZ, reflected

// a * b modulo the polynomial, in the reflected bit order (bit 63 is x^0).
uint64_t multmodp(uint64_t a, uint64_t b) {
    uint64_t m = uint64_t(1) << 63, p = 0;
    for (;;) {
        if (a & m) {
            p ^= b;
            if ((a & (m - 1)) == 0) break;
        }
        m >>= 1;
        b = b & 1 ? (b >> 1) ^ kPoly : b >> 1;
    }
    return p;
}

// x^(n * 2^k) modulo the polynomial.
uint64_t x2nmodp(uint64_t n, unsigned k) {
    static const auto table = [] {
        std::array<uint64_t, 64> t{};
        uint64_t p = uint64_t(1) << 62; // x^1
        for (auto& e : t) {
            e = p;
            p = multmodp(p, p);
        }
        return t;
    }();
    uint64_t p = uint64_t(1) << 63; // x^0
    while (n) {
        if (n & 1) p = multmodp(table[k & 63], p);
        n >>= 1;
        ++k;
    }
    return p;
}
} // namespace

uint64_t crc64_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b) {
    return multmodp(x2nmodp(len_b, 3), crc_a) ^ crc_b;
}

uint64_t crc64(uint64_t crc, ByteView bytes) {
    return crc64_ecma_refl(crc, bytes.data(), bytes.size());
}

uint32_t crc32(uint32_t crc, ByteView bytes) {
    return crc32_gzip_refl(crc, bytes.data(), bytes.size());
}

void encode_preamble(const Preamble& p, uint8_t out[kPreambleSize]) {
    std::memset(out, 0, kPreambleSize);
    std::memcpy(out, kMagic, 8);
    out[8] = p.version;
    out[9] = static_cast<uint8_t>(p.type);
    put_le(out + 10, 0, 2);
    put_le(out + 12, 0, 4);
    put_le(out + 16, p.payload_len, 8);
    put_le(out + 24, crc32(0, ByteView(out, 24)), 4);
    put_le(out + 28, 0, 4);
}

Preamble decode_preamble(const uint8_t in[kPreambleSize], const std::string& where,
                         uint64_t max_payload) {
    if (std::memcmp(in, kMagic, 8) != 0) bad_magic(in, where);
    if (get_le(in + 24, 4) != crc32(0, ByteView(in, 24)))
        throw DataError(where + ": corrupted record header (checksum mismatch)");
    Preamble p;
    p.version = in[8];
    if (p.version != kFormatVersion)
        throw DataError(where + ": unsupported record format version " + std::to_string(p.version) +
                            " (this n3 reads version " + std::to_string(kFormatVersion) + ")",
                        "a newer n3 wrote this record; upgrade n3 to read it");
    uint8_t type = in[9];
    if (type < 1 || type > 6)
        throw DataError(where + ": unknown record type " + std::to_string(type));
    p.type = static_cast<RecordType>(type);
    if (get_le(in + 10, 2) != 0 || get_le(in + 12, 4) != 0 || get_le(in + 28, 4) != 0)
        throw DataError(where + ": unsupported record flags");
    p.payload_len = get_le(in + 16, 8);
    if (p.payload_len > max_payload)
        throw DataError(where + ": record too large (" + std::to_string(p.payload_len) +
                        " bytes, limit " + std::to_string(max_payload) + ")");
    return p;
}

// Record --------------------------------------------------------------------------------------

Record::Record(RecordType type, Bytes payload) : type_(type) {
    auto owned = std::make_shared<Bytes>(std::move(payload));
    view_ = ByteView(owned->data(), owned->size());
    owner_ = std::move(owned);
}

Record::Record(RecordType type, ByteView payload, std::shared_ptr<const void> owner)
    : type_(type), view_(payload), owner_(std::move(owner)) {}

void write_record(Sink& out, RecordType type, ByteView payload) {
    RecordWriter w(out, type, payload.size());
    w.write(payload);
    w.end();
}

Bytes encode_record(RecordType type, ByteView payload) {
    VectorSink sink;
    sink.data.reserve(kPreambleSize + payload.size() + kTrailerSize);
    write_record(sink, type, payload);
    return std::move(sink.data);
}

Record decode_record(ByteView bytes, const std::string& where) {
    if (bytes.size() < kPreambleSize + kTrailerSize)
        throw DataError(where + ": truncated record (" + std::to_string(bytes.size()) + " bytes)");
    Preamble p = decode_preamble(bytes.data(), where);
    if (p.record_size() != bytes.size())
        throw DataError(where + ": record length " + std::to_string(p.record_size()) +
                        " does not match its " + std::to_string(bytes.size()) + " bytes");
    size_t body = kPreambleSize + p.payload_len;
    uint64_t want = get_le(bytes.data() + body, 8);
    if (crc64(0, bytes.first(body)) != want)
        throw DataError(where + ": corrupted record (checksum mismatch)");
    Bytes payload(bytes.begin() + kPreambleSize, bytes.begin() + static_cast<long>(body));
    return Record(p.type, std::move(payload));
}

// RecordReader --------------------------------------------------------------------------------

RecordReader::RecordReader(Input& in, uint64_t max_payload, bool map)
    : in_(in), max_payload_(max_payload) {
    if (in.is_regular() && map) {
        map_ = in.map();
    } else if (in.is_regular()) {
        off_t pos = ::lseek(in.fd(), 0, SEEK_CUR);
        file_base_ = pos > 0 ? static_cast<uint64_t>(pos) : 0;
    } else {
        // A larger pipe buffer means fewer context switches between writer and reader.
        ::fcntl(in.fd(), F_SETPIPE_SZ, 1 << 20);
    }
}

std::string RecordReader::where() const {
    return in_.name() + ": record " + std::to_string(index_ + 1) + " at byte " +
           std::to_string(rec_start_);
}

size_t RecordReader::fill(std::span<uint8_t> out) {
    if (map_) {
        ByteView all = map_->bytes();
        size_t n = offset_ >= all.size() ? 0 : std::min<uint64_t>(out.size(), all.size() - offset_);
        if (n) std::memcpy(out.data(), all.data() + offset_, n);
        offset_ += n;
        return n;
    }
    size_t n = in_.read(out);
    offset_ += n;
    return n;
}

std::optional<Preamble> RecordReader::begin() {
    if (in_record_) throw DataError(where() + ": begin() before end()");
    rec_start_ = offset_;
    uint8_t pre[kPreambleSize];
    size_t n = fill(pre);
    if (n == 0) return std::nullopt;
    if (n < kPreambleSize)
        throw DataError(where() + ": truncated record header (" + std::to_string(n) + " of " +
                        std::to_string(kPreambleSize) + " bytes)");
    cur_ = decode_preamble(pre, where(), max_payload_);
    uint64_t have = map_               ? map_->bytes().size() - rec_start_
                    : in_.is_regular() ? in_.file_size() - file_base_ - rec_start_
                                       : cur_.record_size();
    if (have < cur_.record_size())
        throw DataError(where() + ": truncated record (" + std::to_string(have) + " of " +
                        std::to_string(cur_.record_size()) + " bytes)");
    crc_ = crc64(0, ByteView(pre, kPreambleSize));
    remaining_ = cur_.payload_len;
    in_record_ = true;
    return cur_;
}

size_t RecordReader::read_payload(std::span<uint8_t> out) {
    if (!in_record_) return 0;
    size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), remaining_));
    if (want == 0) return 0;
    size_t n = fill(out.first(want));
    crc_ = crc64(crc_, ByteView(out.data(), n));
    remaining_ -= n;
    if (n < want)
        throw DataError(where() + ": truncated record (payload ends " + std::to_string(remaining_) +
                        " bytes early)");
    return n;
}

std::optional<ByteView> RecordReader::take_payload() {
    if (!map_ || !in_record_) return std::nullopt;
    ByteView v =
        map_->bytes().subspan(static_cast<size_t>(offset_), static_cast<size_t>(remaining_));
    offset_ += remaining_;
    taken_ += remaining_;
    remaining_ = 0;
    return v;
}

bool RecordReader::copy_taken(const uint8_t* p, std::span<uint8_t> out) const {
    if (!map_) throw std::logic_error("RecordReader::copy_taken() on a stream");
    uint64_t off = map_->file_offset(p);
    for (size_t got = 0; got < out.size();) {
        ssize_t r =
            ::pread(in_.fd(), out.data() + got, out.size() - got, static_cast<off_t>(off + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += static_cast<size_t>(r);
    }
    return true;
}

void RecordReader::skip_rest() {
    if (map_ || !in_.is_regular() || !in_record_)
        throw std::logic_error("RecordReader::skip_rest() outside a record of an unmapped file");
    offset_ += remaining_ + kTrailerSize;
    if (::lseek(in_.fd(), static_cast<off_t>(file_base_ + offset_), SEEK_SET) < 0)
        throw_errno("cannot seek in " + in_.name());
    remaining_ = 0;
    in_record_ = false;
    ++index_;
}

void RecordReader::end(uint64_t taken_crc) {
    if (in_record_) crc_ = crc64_combine(crc_, taken_crc, taken_);
    taken_ = 0;
    end();
}

void RecordReader::end() {
    if (!in_record_) return;
    if (taken_ != 0)
        throw std::logic_error("RecordReader::end() without the CRC of the taken payload");
    uint8_t buf[65536];
    while (remaining_ > 0) read_payload(buf);
    uint8_t trailer[kTrailerSize];
    size_t n = fill(trailer);
    in_record_ = false;
    if (n < kTrailerSize) throw DataError(where() + ": truncated record (checksum missing)");
    uint64_t want = get_le(trailer, 8);
    if (want != crc_) throw DataError(where() + ": corrupted record (checksum mismatch)");
    ++index_;
}

Record RecordReader::read_rest() {
    if (!in_record_ || taken_ != 0)
        throw std::logic_error("RecordReader::read_rest() outside a record");
    if (map_) {
        // The payload stays in the mapping, checksummed in place.
        ByteView payload =
            map_->bytes().subspan(static_cast<size_t>(offset_), static_cast<size_t>(remaining_));
        crc_ = crc64(crc_, payload);
        offset_ += remaining_;
        remaining_ = 0;
        return Record(cur_.type, payload, map_);
    }
    size_t len = static_cast<size_t>(remaining_);
    auto buf = std::make_shared<PayloadBuffer>(len);
    size_t got = 0;
    while (got < len) {
        size_t n = read_payload(buf->room(got));
        if (n == 0) break;
        got += n;
    }
    return Record(cur_.type, ByteView(buf->data(), len), buf);
}

std::optional<Record> RecordReader::next() {
    auto pre = begin();
    if (!pre) return std::nullopt;
    uint64_t idx = index_, start = rec_start_;
    Record rec = read_rest();
    end();
    rec.index = idx;
    rec.offset = start;
    return rec;
}

// RecordWriter --------------------------------------------------------------------------------

RecordWriter::RecordWriter(Sink& out, RecordType type, uint64_t payload_len)
    : out_(out), remaining_(payload_len) {
    uint8_t pre[kPreambleSize];
    encode_preamble(Preamble{kFormatVersion, type, payload_len}, pre);
    crc_ = crc64(0, ByteView(pre, kPreambleSize));
    out_.write(ByteView(pre, kPreambleSize));
}

void RecordWriter::write(ByteView bytes) {
    if (bytes.size() > remaining_) throw DataError("record payload longer than declared");
    crc_ = crc64(crc_, bytes);
    remaining_ -= bytes.size();
    out_.write(bytes);
}

void RecordWriter::write(ByteView bytes, uint64_t bytes_crc) {
    if (bytes.size() > remaining_) throw DataError("record payload longer than declared");
    crc_ = crc64_combine(crc_, bytes_crc, bytes.size());
    remaining_ -= bytes.size();
    out_.write(bytes);
}

void RecordWriter::end() {
    if (ended_) return;
    if (remaining_ != 0) throw DataError("record payload shorter than declared");
    uint8_t trailer[kTrailerSize];
    put_le(trailer, crc_, 8);
    out_.write(ByteView(trailer, kTrailerSize));
    ended_ = true;
}

} // namespace n3
