#include "record/safetensors.hpp"

#include "record/error.hpp"
#include "record/format.hpp"
#include "record/number.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <sodium.h>

namespace n3 {

namespace {

struct DTypeInfo {
    DType d;
    const char* name;
    size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8},   {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},   {DType::U64, "U64", 8},
    {DType::U32, "U32", 4},   {DType::U16, "U16", 2}, {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

// Multiplies with overflow detection.
bool mul_overflows(uint64_t a, uint64_t b, uint64_t& out) {
    return __builtin_mul_overflow(a, b, &out);
}

constexpr uint64_t kMaxHeader = 100u << 20; // as the reference implementation

} // namespace

size_t dtype_size(DType d) {
    for (auto& i : kDTypes)
        if (i.d == d) return i.size;
    return 0;
}

std::string_view dtype_name(DType d) {
    for (auto& i : kDTypes)
        if (i.d == d) return i.name;
    return "?";
}

std::optional<DType> parse_dtype(std::string_view name) {
    for (auto& i : kDTypes)
        if (name == i.name) return i.d;
    return std::nullopt;
}

bool is_float(DType d) {
    return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16;
}

uint64_t TensorInfo::numel() const {
    uint64_t n = 1;
    for (auto s : shape) n *= static_cast<uint64_t>(s);
    return n;
}

// TensorSet -----------------------------------------------------------------------------------

TensorSet TensorSet::parse(ByteView bytes, const std::string& where) {
    if (bytes.size() < 8) throw DataError(where + ": tensor payload too short for a header");
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    if (n > kMaxHeader || n > bytes.size() - 8)
        throw DataError(where + ": tensor header length " + std::to_string(n) +
                        " exceeds the payload");
    std::string_view text(reinterpret_cast<const char*>(bytes.data() + 8), n);
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw DataError(where + ": tensor header is not valid JSON");
    }
    if (!j.is_object()) throw DataError(where + ": tensor header is not a JSON object");

    TensorSet set;
    set.data_ = bytes.subspan(8 + n);
    const uint64_t data_len = set.data_.size();
    for (auto& [key, val] : j.items()) {
        if (key == "__metadata__") {
            if (!val.is_object()) throw DataError(where + ": __metadata__ is not an object");
            for (auto& [mk, mv] : val.items()) {
                if (!mv.is_string())
                    throw DataError(where + ": metadata value for '" + mk + "' is not a string");
                set.meta_[mk] = mv.get<std::string>();
            }
            continue;
        }
        const std::string tw = where + ": tensor '" + key + "'";
        if (!val.is_object() || !val.contains("dtype") || !val.contains("shape") ||
            !val.contains("data_offsets"))
            throw DataError(tw + ": needs dtype, shape and data_offsets");
        auto& jd = val["dtype"];
        auto& js = val["shape"];
        auto& jo = val["data_offsets"];
        if (!jd.is_string()) throw DataError(tw + ": dtype is not a string");
        auto dt = parse_dtype(jd.get<std::string>());
        if (!dt) throw DataError(tw + ": unsupported dtype " + jd.get<std::string>());
        TensorInfo t;
        t.name = key;
        t.dtype = *dt;
        if (!js.is_array()) throw DataError(tw + ": shape is not an array");
        uint64_t numel = 1;
        for (auto& d : js) {
            if (!d.is_number_unsigned()) throw DataError(tw + ": shape has a bad dimension");
            uint64_t dim = d.get<uint64_t>();
            if (dim > uint64_t(std::numeric_limits<int64_t>::max()) ||
                mul_overflows(numel, dim, numel))
                throw DataError(tw + ": shape overflows");
            t.shape.push_back(static_cast<int64_t>(dim));
        }
        if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() ||
            !jo[1].is_number_unsigned())
            throw DataError(tw + ": data_offsets must be two unsigned integers");
        t.begin = jo[0].get<uint64_t>();
        t.end = jo[1].get<uint64_t>();
        uint64_t nbytes = 0;
        if (mul_overflows(numel, dtype_size(t.dtype), nbytes))
            throw DataError(tw + ": shape overflows");
        if (t.begin > t.end || t.end > data_len)
            throw DataError(tw + ": data_offsets out of range");
        if (t.end - t.begin != nbytes)
            throw DataError(tw + ": " + std::to_string(t.end - t.begin) +
                            " bytes do not match shape and dtype (" + std::to_string(nbytes) + ")");
        set.tensors_.push_back(std::move(t));
    }
    std::sort(set.tensors_.begin(), set.tensors_.end(), [](auto& a, auto& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t pos = 0;
    for (auto& t : set.tensors_) {
        if (t.begin != pos)
            throw DataError(
                where + ": tensor '" + t.name +
                (t.begin < pos ? "' overlaps another tensor" : "' leaves a gap in the data"));
        pos = t.end;
    }
    if (pos != data_len)
        throw DataError(where + ": " + std::to_string(data_len - pos) +
                        " bytes after the last tensor");
    return set;
}

std::optional<std::string> TensorSet::meta(const std::string& key) const {
    auto it = meta_.find(key);
    if (it == meta_.end()) return std::nullopt;
    return it->second;
}

std::optional<uint64_t> TensorSet::meta_uint(const std::string& key) const {
    auto it = meta_.find(key);
    if (it == meta_.end()) return std::nullopt;
    return parse_uint(it->second);
}

std::optional<uint64_t> TensorSet::round() const {
    return meta_uint(meta::round);
}
std::optional<uint64_t> TensorSet::samples() const {
    return meta_uint(meta::samples);
}

uint64_t require_count(const TensorSet& set, const std::string& key, const std::string& where) {
    auto v = set.meta_uint(key);
    if (!v) throw DataError(where + ": missing or bad '" + key + "'");
    return *v;
}

std::string LoraMeta::describe() const {
    return "rank " + std::to_string(rank) + ", alpha " + alpha_text(alpha) + ", " + targets;
}

std::string LoraMeta::alpha_text(double alpha) {
    char b[32];
    std::snprintf(b, sizeof b, "%.15g", alpha);
    if (std::strtod(b, nullptr) != alpha) std::snprintf(b, sizeof b, "%.17g", alpha);
    return b;
}

std::optional<LoraMeta> lora_meta(const TensorSet& set, const std::string& where) {
    const char* keys[] = {meta::lora_base, meta::lora_rank, meta::lora_alpha, meta::lora_targets};
    size_t present = 0;
    for (const char* k : keys) present += set.meta(k).has_value();
    if (present == 0) return std::nullopt;
    for (const char* k : keys)
        if (!set.meta(k))
            throw DataError(where + ": LoRA metadata without '" + std::string(k) + "'");
    LoraMeta m;
    m.base = *set.meta(meta::lora_base);
    auto hex = from_hex(m.base);
    if (m.base.size() != 64 || !hex)
        throw DataError(where + ": lora_base '" + m.base.substr(0, 70) + "' is not a model hash");
    auto rank = parse_uint(*set.meta(meta::lora_rank));
    if (!rank || *rank == 0)
        throw DataError(where + ": lora_rank '" + *set.meta(meta::lora_rank) +
                        "' is not a positive integer");
    m.rank = *rank;
    const std::string alpha = *set.meta(meta::lora_alpha);
    char* end = nullptr;
    m.alpha = std::strtod(alpha.c_str(), &end);
    if (alpha.empty() || end != alpha.c_str() + alpha.size() || !std::isfinite(m.alpha) ||
        !(m.alpha > 0))
        throw DataError(where + ": lora_alpha '" + alpha + "' is not a positive number");
    m.targets = *set.meta(meta::lora_targets);
    if (m.targets != "attn,mlp" && m.targets != "attn" && m.targets != "mlp")
        throw DataError(where + ": lora_targets '" + m.targets + "' is not attn,mlp, attn or mlp");
    return m;
}

const TensorInfo* TensorSet::find(std::string_view name) const {
    for (auto& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

uint64_t TensorSet::total_elements() const {
    uint64_t n = 0;
    for (auto& t : tensors_) n += t.numel();
    return n;
}

// SafetensorsBuilder --------------------------------------------------------------------------

void SafetensorsBuilder::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                             ByteView data) {
    if (name.empty() || name == "__metadata__") throw DataError("bad tensor name '" + name + "'");
    if (names_.count(name)) throw DataError("duplicate tensor name '" + name + "'");
    uint64_t numel = 1;
    for (auto s : shape) {
        if (s < 0) throw DataError("tensor '" + name + "': negative dimension");
        numel *= static_cast<uint64_t>(s);
    }
    if (numel * dtype_size(dtype) != data.size())
        throw DataError("tensor '" + name + "': " + std::to_string(data.size()) +
                        " bytes do not match its shape");
    names_.insert(name);
    entries_.push_back(Entry{name, dtype, std::move(shape), data});
}

void SafetensorsBuilder::add_owned(const std::string& name, DType dtype, std::vector<int64_t> shape,
                                   Bytes data) {
    owned_.push_back(std::move(data));
    try {
        add(name, dtype, std::move(shape), ByteView(owned_.back().data(), owned_.back().size()));
    } catch (...) {
        owned_.pop_back();
        throw;
    }
}

std::string SafetensorsBuilder::header() const {
    nlohmann::json j = nlohmann::json::object();
    if (!meta_.empty()) j["__metadata__"] = meta_;
    uint64_t off = 0;
    for (auto& e : entries_) {
        nlohmann::json t;
        t["dtype"] = std::string(dtype_name(e.dtype));
        t["shape"] = e.shape;
        t["data_offsets"] = {off, off + e.data.size()};
        j[e.name] = std::move(t);
        off += e.data.size();
    }
    std::string h = j.dump();
    // Pad with spaces so the data starts kTensorAlign-aligned from the start of the record.
    size_t used = kPreambleSize + 8 + h.size();
    h.append((kTensorAlign - used % kTensorAlign) % kTensorAlign, ' ');
    return h;
}

uint64_t SafetensorsBuilder::size() const {
    uint64_t n = 8 + header().size();
    for (auto& e : entries_) n += e.data.size();
    return n;
}

void SafetensorsBuilder::write(Sink& out) const {
    std::string h = header();
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(uint64_t(h.size()) >> (8 * i));
    out.write(ByteView(len, 8));
    out.write(ByteView(reinterpret_cast<const uint8_t*>(h.data()), h.size()));
    for (auto& e : entries_) out.write(e.data);
}

Bytes SafetensorsBuilder::head() const {
    std::string h = header();
    Bytes b(8 + h.size());
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(uint64_t(h.size()) >> (8 * i));
    std::memcpy(b.data() + 8, h.data(), h.size());
    return b;
}

Bytes SafetensorsBuilder::bytes() const {
    VectorSink s;
    s.data.reserve(size());
    write(s);
    return std::move(s.data);
}

void write_tensor_record(Sink& out, RecordType type, const SafetensorsBuilder& b) {
    RecordWriter w(out, type, b.size());
    struct Forward final : Sink {
        RecordWriter& w;
        explicit Forward(RecordWriter& rw) : w(rw) {}
        void write(ByteView bytes) override { w.write(bytes); }
    } fwd(w);
    b.write(fwd);
    w.end();
}

// Element conversions -------------------------------------------------------------------------

float f16_to_f32(uint16_t h) {
    uint32_t sign = uint32_t(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { // subnormal: normalise
            int e = -1;
            do {
                ++e;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            bits = sign | (uint32_t(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    return std::bit_cast<float>(bits);
}

uint16_t f32_to_f16(float f) {
    uint32_t x = std::bit_cast<uint32_t>(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000) // Inf or NaN
        return static_cast<uint16_t>(sign | 0x7c00 | (absx > 0x7f800000 ? 0x200 : 0));
    if (absx >= 0x477ff000) return static_cast<uint16_t>(sign | 0x7c00); // overflow to Inf
    if (absx < 0x38800000) {                                             // subnormal or zero
        // In units of 2^-24 (the f16 subnormal step); scaling by 2^24 is exact and
        // nearbyint rounds to nearest even. 0x400 rounds up into the smallest normal.
        float scaled = std::bit_cast<float>(absx) * 16777216.0f; // 2^24: units of 2^-24
        uint32_t r = static_cast<uint32_t>(std::nearbyint(scaled));
        return static_cast<uint16_t>(sign | r);
    }
    uint32_t r = absx + 0xc8000fff + ((absx >> 13) & 1); // rebias and round to nearest even
    return static_cast<uint16_t>(sign | (r >> 13));
}

float bf16_to_f32(uint16_t h) {
    return std::bit_cast<float>(uint32_t(h) << 16);
}

uint16_t f32_to_bf16(float f) {
    uint32_t x = std::bit_cast<uint32_t>(f);
    if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40); // quiet NaN
    x += 0x7fff + ((x >> 16) & 1);
    return static_cast<uint16_t>(x >> 16);
}

double element_as_double(DType d, const uint8_t* p, uint64_t i) {
    auto load = [&](auto tag) {
        decltype(tag) v;
        std::memcpy(&v, p + i * sizeof(v), sizeof(v));
        return v;
    };
    switch (d) {
    case DType::F64: return load(double{});
    case DType::F32: return load(float{});
    case DType::F16: return f16_to_f32(load(uint16_t{}));
    case DType::BF16: return bf16_to_f32(load(uint16_t{}));
    case DType::I64: return static_cast<double>(load(int64_t{}));
    case DType::I32: return load(int32_t{});
    case DType::I16: return load(int16_t{});
    case DType::I8: return load(int8_t{});
    case DType::U64: return static_cast<double>(load(uint64_t{}));
    case DType::U32: return load(uint32_t{});
    case DType::U16: return load(uint16_t{});
    case DType::U8: return load(uint8_t{});
    case DType::BOOL: return load(uint8_t{}) ? 1.0 : 0.0;
    }
    return 0;
}

double tensor_l2(DType d, ByteView data) {
    uint64_t n = data.size() / dtype_size(d);
    double sum = 0;
    if (d == DType::F32) {
        const uint8_t* p = data.data();
        for (uint64_t i = 0; i < n; ++i) {
            float v;
            std::memcpy(&v, p + 4 * i, 4);
            sum += double(v) * double(v);
        }
    } else {
        for (uint64_t i = 0; i < n; ++i) {
            double v = element_as_double(d, data.data(), i);
            sum += v * v;
        }
    }
    return std::sqrt(sum);
}

// Hashes --------------------------------------------------------------------------------------

std::string model_hash(ByteView payload) {
    if (sodium_init() < 0) throw EnvError("libsodium failed to initialise");
    uint8_t h[32];
    crypto_generichash(h, sizeof h, payload.data(), payload.size(), nullptr, 0);
    return to_hex(ByteView(h, sizeof h));
}

} // namespace n3
