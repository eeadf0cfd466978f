// n3/codec/packed.hpp — packed records: a model, update or masked record made smaller.
//
// pack() turns the safetensors payload of a plain record into the payload of a packed record
// (type 3; byte layout in man/n3-record.5, PACKED RECORDS): the original safetensors header
// is kept verbatim, and each tensor is stored as up to three segments (indices, values,
// scales) after its lossy stages (top-k, fp16/bf16/int8/int4) and the lossless one (byte-plane
// shuffle + zstd, multithreaded for large segments). Every stage is written into the record,
// so unpack() needs no options: it writes back a record of the original type with the
// original metadata, bit-exact when only lossless stages ran, and with the metadata key
// "codec" naming the lossy stages otherwise.
//
//   PackOptions o; o.quantize = Encoding::int8; o.zstd = true;
//   Bytes p = pack(RecordType::update, payload, o, nullptr, "stdin: record 1");
//   write_record(out, RecordType::packed, p);   ...   unpack(p, out, "where");
//
// Error feedback (Residual): what a lossy stage did not send is kept and added to the next
// round's update before packing, so the sum of everything sent plus the residual equals the
// sum of the updates.
//
// Streaming (n3-encode): pack_stream() reads the payload in order from a PayloadReader and
// appends the packed payload to a PackedOut (a temporary file), patching each zstd segment's
// length once it is known; unpack_stream() reads a packed payload from any ByteSource and
// writes the record. Both work in windows of kWindow elements (4 MiB of float32; at least one
// quantization block), so memory does not grow with the record: top-k keeps each tensor in a
// temporary file (it needs three passes), and error feedback reads and writes the residual
// through files (Residual). pack() and unpack() are the same code over memory.
//
// Failures throw DataError naming `where` and the tensor: NaN or Inf under a lossy stage, a
// residual that does not match, and in unpack every malformed or inconsistent field.
#pragma once

#include "record/error.hpp"
#include "record/format.hpp"
#include "record/io.hpp"
#include "record/spill.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace n3::codec {

// How a tensor's values are stored. raw: the tensor's own dtype.
enum class Encoding : uint8_t { raw = 0, f16 = 1, bf16 = 2, int8 = 3, int4 = 4 };

std::string_view encoding_name(Encoding e); // "raw", "fp16", "bf16", "int8", "int4"
std::optional<Encoding> parse_quantize(std::string_view name); // fp16 bf16 int8 int4

struct PackOptions {
    Encoding quantize = Encoding::raw; // raw: no quantization
    uint32_t block = 128;              // elements per scale (int8, int4)
    bool stochastic = false;           // unbiased stochastic rounding (int8, int4)
    double topk = 0;                   // keep this fraction of each tensor; 0: keep all
    bool zstd = false;                 // byte-plane shuffle + zstd
    int level = 1;                     // zstd level
    unsigned threads = 0;              // zstd workers for segments >= 8 MiB; 0: one per core
    bool lossy() const { return quantize != Encoding::raw || topk > 0; }
};

constexpr uint32_t kMaxBlock = uint32_t(1) << 24;

// The chain recorded in a packed record, stages in the order applied, e.g.
// "topk=0.01,int8/128,feedback,shuffle,zstd=1".
std::string chain_text(const PackOptions& o, bool feedback);

// Error-feedback state between rounds: per tensor, the float32 part not yet sent. It is as
// large as the model, so it is never held: the state read is a file (the residual file, or the
// temporary file the last pack wrote), read back window by window through pread, and the state
// a pack writes goes to a temporary file tensor by tensor, in the update's order.
class Residual {
public:
    struct Tensor {
        std::string name;
        std::vector<int64_t> shape;
        uint64_t numel = 0;
        uint64_t offset = 0; // of its first float in the state's file
    };
    Residual();
    ~Residual();
    Residual(Residual&&) noexcept;
    Residual& operator=(Residual&&) noexcept;

    // A missing file is an empty residual (the first round); a bad file throws DataError. The
    // file is checked whole (CRC-64) here and kept open.
    static Residual load(const std::string& path);
    // Written atomically as an update record of F32 tensors.
    void save(const std::string& path) const;

    bool empty() const { return cur_.empty(); }
    const std::vector<Tensor>& tensors() const { return cur_; }
    const Tensor* find(std::string_view name) const;
    // Floats [first, first + out.size()) of a tensor of the current state.
    void read(const Tensor& t, uint64_t first, std::span<float> out) const;
    std::vector<float> values(std::string_view name) const; // a whole tensor (small ones)

    // The next state, written while packing: start(), then per tensor begin() and its values
    // in order with append(), then done(), which carries over the current state's tensors
    // that were not written and makes the new state current.
    void start();
    void begin(const std::string& name, std::vector<int64_t> shape);
    void append(std::span<const float> v);
    void done();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    std::vector<Tensor> cur_, next_;
};

Bytes pack(RecordType type, ByteView payload, const PackOptions& o, Residual* feedback,
           const std::string& where);

// Writes the plain record that a packed payload stands for (nothing is written on error).
void unpack(ByteView packed, Sink& out, const std::string& where);

// Elements per window of a streamed tensor.
constexpr size_t kWindow = size_t(1) << 20;

// The payload being packed, in order.
class PayloadReader {
public:
    virtual ~PayloadReader() = default;
    // Fills out exactly; throws DataError when the payload ends first.
    virtual void read(std::span<uint8_t> out) = 0;
};

// A record's payload as pack_stream reads it, from a RecordReader after begin() (checksummed
// as it goes; end() still has to verify it).
class ReaderPayload final : public PayloadReader {
public:
    explicit ReaderPayload(RecordReader& r) : r_(r) {}
    void read(std::span<uint8_t> out) override {
        for (size_t got = 0; got < out.size();) {
            size_t n = r_.read_payload(out.subspan(got));
            if (n == 0) throw DataError(r_.where() + ": truncated record");
            got += n;
        }
    }

private:
    RecordReader& r_;
};

// Where a packed payload goes while its length is unknown.
class PackedOut {
public:
    virtual ~PackedOut() = default;
    virtual void append(ByteView bytes) = 0;
    virtual void patch(uint64_t offset, ByteView bytes) = 0; // offset < size()
    virtual uint64_t size() const = 0;
};

// pack() over a payload of payload_len bytes that `in` delivers; the same bytes as pack().
void pack_stream(RecordType type, uint64_t payload_len, PayloadReader& in, const PackOptions& o,
                 Residual* feedback, const std::string& where, PackedOut& out);

// unpack() of the packed payload `packed`; writes the record to out as it is decoded, so a
// caller that must not show a partial record passes a TempFile and copies it on success.
void unpack_stream(const ByteSource& packed, Sink& out, const std::string& where);

struct PackedInfo {
    RecordType type = RecordType::update; // of the original record
    std::string chain;
    uint64_t payload_len = 0; // of the original record's payload
    uint32_t tensors = 0;
};
// Reads and checks the fixed header only.
PackedInfo packed_info(ByteView packed, const std::string& where);

} // namespace n3::codec
