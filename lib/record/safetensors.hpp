// n3/record/safetensors.hpp — tensor payloads in the safetensors layout, and n3's metadata.
//
// Model, update and masked records carry safetensors bytes: u64 LE header length N, N bytes
// of JSON (padded with spaces), then the tensor data. n3 pads the header so that tensor data
// starts 64-byte aligned within a record (a mapped file is read in place), writes JSON keys
// sorted and tensors in the order added, so equal inputs give equal bytes. n3's metadata lives
// in "__metadata__" (string to string; keys in n3::meta below).
//
// TensorSet::parse validates everything a hostile file could get wrong (JSON, dtypes, shapes,
// overflow, offsets out of range, overlapping or gapped data) and throws DataError.
// SafetensorsBuilder references the data it is given (add) or owns it (add_owned) and writes
// the payload to any Sink without copying tensor data twice.
#pragma once

#include "record/format.hpp"
#include "record/hex.hpp" // to_hex, which model hashes and group ids are written in
#include "record/io.hpp"

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace n3 {

enum class DType : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U64, U32, U16, U8, BOOL };

size_t dtype_size(DType d);
std::string_view dtype_name(DType d); // safetensors spelling: "F32", "BF16", ...
std::optional<DType> parse_dtype(std::string_view name);
bool is_float(DType d);

struct TensorInfo {
    std::string name;
    DType dtype = DType::F32;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0; // byte offsets into the data section
    uint64_t numel() const;
    uint64_t nbytes() const { return end - begin; }
};

using Metadata = std::map<std::string, std::string>;

class TensorSet {
public:
    // Parses safetensors bytes; the returned set views `bytes` (keep them alive).
    static TensorSet parse(ByteView bytes, const std::string& where = "tensors");

    const Metadata& metadata() const { return meta_; }
    std::optional<std::string> meta(const std::string& key) const;
    // A count in the metadata (decimal digits, at most 2^64 - 1): nullopt when the key is
    // absent or its value is not such a number. require_count() below throws instead.
    std::optional<uint64_t> meta_uint(const std::string& key) const;
    std::optional<uint64_t> round() const;                              // meta::round
    std::optional<uint64_t> samples() const;                            // meta::samples
    const std::vector<TensorInfo>& tensors() const { return tensors_; } // in data order
    const TensorInfo* find(std::string_view name) const;
    ByteView data(const TensorInfo& t) const { return data_.subspan(t.begin, t.nbytes()); }
    ByteView data_section() const { return data_; }
    uint64_t total_elements() const;

private:
    Metadata meta_;
    std::vector<TensorInfo> tensors_;
    ByteView data_;
};

class SafetensorsBuilder {
public:
    void set_meta(const std::string& key, const std::string& value) { meta_[key] = value; }
    void set_metadata(const Metadata& m) { meta_ = m; }
    const Metadata& metadata() const { return meta_; }
    // References `data`, which must stay alive until write(); its size must match the shape.
    void add(const std::string& name, DType dtype, std::vector<int64_t> shape, ByteView data);
    void add_owned(const std::string& name, DType dtype, std::vector<int64_t> shape, Bytes data);

    uint64_t size() const; // bytes write() produces
    // The payload's bytes before the tensor data (length and JSON header), for a writer that
    // sends the data itself; the data follows in the order added.
    Bytes head() const;
    void write(Sink& out) const;
    Bytes bytes() const;

private:
    struct Entry {
        std::string name;
        DType dtype;
        std::vector<int64_t> shape;
        ByteView data;
    };
    std::string header() const;
    Metadata meta_;
    std::vector<Entry> entries_;
    std::set<std::string> names_;
    std::deque<Bytes> owned_; // a deque: adding never moves the bytes earlier entries view
};

// Writes a whole record of `type` whose payload is the builder's safetensors bytes, streamed
// (tensor data is not copied into a buffer first).
void write_tensor_record(Sink& out, RecordType type, const SafetensorsBuilder& b);

// The payload's offset within a record: data is aligned to this many bytes from record start.
constexpr size_t kTensorAlign = 64;

// Element conversions shared by every module that reads tensors.
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f); // round to nearest even
float bf16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f); // round to nearest even
// Reads element i of a tensor of any numeric dtype as double.
double element_as_double(DType d, const uint8_t* data, uint64_t i);
// L2 norm of a tensor (accumulated in double); NaN if any element is NaN.
double tensor_l2(DType d, ByteView data);

// n3 metadata keys (all values are strings; numbers in decimal).
namespace meta {
inline constexpr const char* round = "round";         // the round a model is for / came from
inline constexpr const char* samples = "samples";     // training samples behind an update
inline constexpr const char* base = "base";           // hash of the model an update starts from
inline constexpr const char* spec = "spec";           // model spec (YAML) a model was built from
inline constexpr const char* spec_hash = "spec_hash"; // hash of that spec
inline constexpr const char* tokenizer = "tokenizer"; // SentencePiece model of an LM (hex)
inline constexpr const char* loss = "loss";           // final training loss
inline constexpr const char* codec = "codec";         // n3-encode's stages, in order applied
// FedNova (n3-train writes them, n3-merge --rule fednova reads them)
inline constexpr const char* local_steps = "local_steps"; // optimizer steps of an update
inline constexpr const char* momentum = "momentum";       // SGD momentum factor used
// DP-FedAvg's accountant, cumulative over rounds (n3-merge --dp-noise)
inline constexpr const char* dp_epsilon = "dp_epsilon";
inline constexpr const char* dp_delta = "dp_delta";
inline constexpr const char* dp_rounds = "dp_rounds";
inline constexpr const char* dp_rdp = "dp_rdp";             // RDP at each order of privacy::kOrders
inline constexpr const char* dp_clip_norm = "dp_clip_norm"; // the next round's adaptive clip norm
// SCAFFOLD: tensor "scaffold/NAME" of a model is the server control variate of tensor NAME,
// of an update the member's control-variate delta (man/n3-record.5).
inline constexpr const char* control_prefix = "scaffold/";
inline constexpr const char* receipt_key = "receipt_key"; // N3-RECEIPT-...: who may claim it
// LoRA: an adapter record (a model record) holds only tensors "lora/WEIGHT.A" ([rank, in]) and
// "lora/WEIGHT.B" ([out, rank]) for the targeted weights WEIGHT of the model whose hash is
// lora_base; the adapted weight is WEIGHT + (lora_alpha / lora_rank) B A. Updates trained from
// an adapter carry the same four keys (man/n3-record.5).
inline constexpr const char* lora_prefix = "lora/";
inline constexpr const char* lora_base = "lora_base";       // hash of the adapted model
inline constexpr const char* lora_rank = "lora_rank";       // r, a positive integer
inline constexpr const char* lora_alpha = "lora_alpha";     // alpha, a positive number
inline constexpr const char* lora_targets = "lora_targets"; // "attn,mlp", "attn" or "mlp"
} // namespace meta

// A LoRA adapter's or adapter update's metadata (meta::lora_*).
struct LoraMeta {
    std::string base;    // lora_base
    uint64_t rank = 0;   // lora_rank
    double alpha = 0;    // lora_alpha
    std::string targets; // lora_targets, as written
    double scale() const { return alpha / double(rank); }
    // "rank 8, alpha 16, attn,mlp": for messages
    std::string describe() const;
    // The metadata text of alpha: the shortest that reads back as the same double.
    static std::string alpha_text(double alpha);
};
// nullopt when the payload carries no lora_* key; DataError "WHERE: ..." when it carries some
// but not all, or a value is malformed (base not 64 hex digits, rank not a positive integer,
// alpha not a positive finite number, targets not a list of attn and mlp).
std::optional<LoraMeta> lora_meta(const TensorSet& set, const std::string& where);

// The count under `key` (meta::round, meta::samples); throws DataError "WHERE: missing or bad
// 'KEY'" when it is absent or not a decimal number of at most 2^64 - 1.
uint64_t require_count(const TensorSet& set, const std::string& key, const std::string& where);

// A model's identity: BLAKE2b-256 of its record payload, lower-case hex (b2sum -l 256 of the
// exported .safetensors file gives the same digest).
std::string model_hash(ByteView payload);

} // namespace n3
