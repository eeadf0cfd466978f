#include "merge/merge.hpp"

#include "merge/kernels.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <sodium.h>
#include <sstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace n3::merge {

// Rules ---------------------------------------------------------------------------------------

namespace {

struct RuleName {
    const char* name;
    RuleKind kind;
};
constexpr RuleName kRules[] = {
    {"fedavg", RuleKind::fedavg},
    {"fedavgm", RuleKind::fedavgm},
    {"fedadam", RuleKind::fedadam},
    {"fedyogi", RuleKind::fedyogi},
    {"fedadagrad", RuleKind::fedadagrad},
    {"median", RuleKind::median},
    {"trimmed-mean", RuleKind::trimmed_mean},
    {"krum", RuleKind::krum},
    {"multi-krum", RuleKind::multi_krum},
    {"mix", RuleKind::mix},
};

double parse_number(const std::string& s, const std::string& what) {
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v))
        throw UsageError(what + " must be a number, not '" + s + "'");
    return v;
}

size_t parse_count(const std::string& s, const std::string& what) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
        throw UsageError(what + " must be a non-negative integer, not '" + s + "'");
    return std::stoul(s);
}

} // namespace

std::vector<std::string> rule_names() {
    std::vector<std::string> v;
    for (auto& r : kRules)
        v.emplace_back(r.name);
    return v;
}

Rule Rule::parse(const std::string& text) {
    auto colon = text.find(':');
    std::string name = text.substr(0, colon);
    std::optional<std::string> arg;
    if (colon != std::string::npos) arg = text.substr(colon + 1);
    Rule r;
    bool found = false;
    for (auto& k : kRules)
        if (name == k.name) r.kind = k.kind, found = true;
    if (!found) {
        std::string all;
        for (auto& k : kRules)
            all += std::string(all.empty() ? "" : ", ") + k.name;
        throw UsageError("unknown rule '" + name + "'", "rules: " + all);
    }
    if (!arg) return r;
    switch (r.kind) {
    case RuleKind::trimmed_mean:
        r.trim = parse_number(*arg, "trimmed-mean:BETA");
        if (r.trim < 0 || r.trim >= 0.5)
            throw UsageError("trimmed-mean:BETA must be in [0, 0.5), not " + *arg);
        break;
    case RuleKind::krum:
        r.f = parse_count(*arg, "krum:F");
        break;
    case RuleKind::multi_krum: {
        auto comma = arg->find(',');
        r.f = parse_count(arg->substr(0, comma), "multi-krum:F");
        if (comma != std::string::npos) {
            r.m = parse_count(arg->substr(comma + 1), "multi-krum:F,M");
            if (*r.m == 0) throw UsageError("multi-krum:F,M needs M >= 1");
        }
        break;
    }
    default:
        throw UsageError("rule " + name + " takes no parameter (':" + *arg + "')");
    }
    return r;
}

std::string Rule::name() const {
    for (auto& k : kRules)
        if (k.kind == kind) return k.name;
    return "?";
}

bool Rule::stateful() const {
    return kind == RuleKind::fedavgm || adaptive();
}
bool Rule::adaptive() const {
    return kind == RuleKind::fedadam || kind == RuleKind::fedyogi || kind == RuleKind::fedadagrad;
}
bool Rule::robust() const {
    return kind == RuleKind::median || kind == RuleKind::trimmed_mean || kind == RuleKind::krum ||
           kind == RuleKind::multi_krum;
}

void parse_weights(const std::string& text, Options& opts) {
    if (text == "samples") {
        opts.weights = WeightMode::samples;
        return;
    }
    if (text == "uniform") {
        opts.weights = WeightMode::uniform;
        return;
    }
    opts.weights = WeightMode::list;
    opts.weight_list.clear();
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        double w = parse_number(item, "--weights");
        if (w < 0) throw UsageError("--weights must not be negative, not " + item);
        opts.weight_list.push_back(w);
    }
    if (opts.weight_list.empty())
        throw UsageError("--weights takes samples, uniform or a list W1,W2,...");
}

// Merging -------------------------------------------------------------------------------------

namespace {

constexpr uint64_t kChunk = 65536; // elements per chunk of the averaging rules

struct TensorLayout {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t numel;
};
using Layout = std::vector<TensorLayout>;

Layout layout_of(const TensorSet& set) {
    Layout l;
    for (auto& t : set.tensors())
        l.push_back({t.name, t.dtype, t.shape, t.numel()});
    return l;
}

std::string shape_text(const std::vector<int64_t>& shape) {
    if (shape.empty()) return "scalar";
    std::string s;
    for (size_t i = 0; i < shape.size(); ++i)
        s += (i ? "x" : "") + std::to_string(shape[i]);
    return s;
}

std::string layout_key(const Layout& l) {
    std::string k;
    for (auto& t : l)
        k += t.name + '\0' + std::string(dtype_name(t.dtype)) + shape_text(t.shape) + '\n';
    return k;
}

// The first difference between a layout and the reference, or "" when they match.
std::string layout_difference(const Layout& got, const Layout& want) {
    std::map<std::string, const TensorLayout*> by_name;
    for (auto& t : got)
        by_name[t.name] = &t;
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

std::string article(std::string_view word) {
    return std::string(word.find_first_of("aeiou") == 0 ? "an " : "a ") + std::string(word);
}

bool mergeable(DType d) {
    return d == DType::F32 || d == DType::F16 || d == DType::BF16;
}

std::optional<uint64_t> parse_uint(const std::optional<std::string>& s) {
    if (!s || s->empty() || s->size() > 19 ||
        s->find_first_not_of("0123456789") != std::string::npos)
        return std::nullopt;
    return std::stoull(*s);
}

// One tensor's bytes in one input: element i of tensor t is at data[t] + i * size(dtype) in
// the mapping, and, when the input is a file, at file_off[t] + i * size(dtype) in fd.
struct Source {
    std::vector<const uint8_t*> data;
    std::vector<DType> dtype;
    std::vector<uint64_t> file_off;
    int fd = -1;
};

Source source_of(const TensorSet& set, const Layout& layout, const LoadedRecord* rec = nullptr) {
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

// Elements [b, b+n) of tensor t as floats: in place when the bytes are mapped, aligned F32;
// else read and/or converted into `scratch` (room for n floats). With `crc`, also the CRC-64
// of the raw bytes.
const float* floats(const Source& s, size_t t, uint64_t b, size_t n, float* scratch,
                    uint64_t* crc = nullptr) {
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

struct Chunk {
    size_t tensor;
    uint64_t begin, size;
};

std::vector<Chunk> chunks_of(const Layout& layout, uint64_t chunk) {
    std::vector<Chunk> v;
    for (size_t t = 0; t < layout.size(); ++t)
        for (uint64_t b = 0; b < layout[t].numel; b += chunk)
            v.push_back({t, b, std::min(chunk, layout[t].numel - b)});
    return v;
}

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
        for (unsigned t = 0; t < threads; ++t)
            pool.emplace_back(work, t);
    }
    if (failure) std::rethrow_exception(failure);
}

// Thrown inside a pass when an input turns out bad (NaN or Inf, a norm above --max-norm, a
// checksum mismatch); the pass is redone without it under --skip-bad, else it becomes a
// DataError.
struct NonFinite {
    size_t item;
    std::string message;
};

// An input taking part in the merge.
struct Item {
    LoadedRecord* rec = nullptr;
    std::optional<TensorSet> set;
    Layout layout;
    Source src;
    bool is_self = false;
    bool bad = false;
    std::optional<uint64_t> samples;
    double raw_weight = 1;
    double norm = 0, clip = 1;
    double weight = 0; // normalised
    bool selected = true;
};

// Output buffers: anonymous mappings, with transparent huge pages when large, so that a model
// of 64 MiB costs 32 page faults instead of 16384.
struct Unmap {
    size_t size;
    void operator()(uint8_t* p) const { ::munmap(p, size); }
};
using Buffer = std::unique_ptr<uint8_t[], Unmap>;

Buffer make_buffer(uint64_t n) {
    size_t size = static_cast<size_t>(std::max<uint64_t>(n, 1));
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw_errno("cannot allocate " + std::to_string(size) + " bytes");
    if (size >= (size_t(2) << 20)) ::madvise(p, size, MADV_HUGEPAGE);
    return Buffer(static_cast<uint8_t*>(p), Unmap{size});
}

struct Tensors {
    std::vector<Buffer> data;
    std::vector<uint64_t> bytes;
};

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

struct Scratch {
    std::vector<double> acc;
    std::vector<float> in, base, out, m, v, gathered;
    std::vector<double> column, rows;
};

constexpr size_t kSub = 512; // coordinates per block of the sorting network

} // namespace

struct Result::Impl {
    RecordType type = RecordType::update;
    Metadata metadata;
    Layout layout;
    std::vector<DType> dtypes;
    Tensors out;
    // Server state (stateful rules only).
    std::optional<std::string> state_path;
    Metadata state_meta;
    Tensors state_m, state_v;
    bool has_v = false;
    std::vector<std::string> warnings;
    std::vector<InputReport> reports;

    SafetensorsBuilder builder() const {
        SafetensorsBuilder b;
        b.set_metadata(metadata);
        for (size_t i = 0; i < layout.size(); ++i)
            b.add(layout[i].name, dtypes[i], layout[i].shape,
                  ByteView(out.data[i].get(), out.bytes[i]));
        return b;
    }
};

Result::Result() : impl_(std::make_unique<Impl>()) {}
Result::~Result() = default;
Result::Result(Result&&) noexcept = default;
Result& Result::operator=(Result&&) noexcept = default;
RecordType Result::type() const {
    return impl_->type;
}
const Metadata& Result::metadata() const {
    return impl_->metadata;
}
uint64_t Result::payload_size() const {
    return impl_->builder().size();
}
const std::vector<std::string>& Result::warnings() const {
    return impl_->warnings;
}
const std::vector<InputReport>& Result::inputs() const {
    return impl_->reports;
}

void Result::write(Sink& out) const {
    SafetensorsBuilder b = impl_->builder();
    write_tensor_record(out, impl_->type, b);
}

Bytes Result::payload() const {
    return impl_->builder().bytes();
}

void Result::save_state() const {
    const Impl& s = *impl_;
    if (!s.state_path) return;
    SafetensorsBuilder b;
    b.set_metadata(s.state_meta);
    for (size_t i = 0; i < s.layout.size(); ++i) {
        b.add("m." + s.layout[i].name, DType::F32, s.layout[i].shape,
              ByteView(s.state_m.data[i].get(), s.state_m.bytes[i]));
        if (s.has_v)
            b.add("v." + s.layout[i].name, DType::F32, s.layout[i].shape,
                  ByteView(s.state_v.data[i].get(), s.state_v.bytes[i]));
    }
    Output out(*s.state_path);
    b.write(out);
    out.commit();
}

namespace {

class Merger {
  public:
    explicit Merger(const Request& req) : req_(req), opt_(req.options), rule_(req.options.rule) {
        threads_ = opt_.threads ? opt_.threads : default_threads();
    }

    std::unique_ptr<Result::Impl> run();

  private:
    void check_request() const;
    void load();
    void check_inputs();
    void reject(Item& it, const std::string& msg, const std::string& hint = {});
    std::vector<Item*> usable();
    void load_state();
    void compute_norms(const std::vector<Item*>& items);
    void set_weights(const std::vector<Item*>& items);
    void select_krum(const std::vector<Item*>& items);
    void average(const std::vector<Item*>& items);
    void robust_average(const std::vector<Item*>& items);
    bool finish_chunk(const Chunk& c, const double* acc, Scratch& s);
    [[noreturn]] void diagnose(const std::vector<Item*>& items, const Chunk& c, Scratch& s);
    void build_metadata(const std::vector<Item*>& items);
    // Fused checksum verification of mapped records during a pass over chunks.
    void crc_begin(const std::vector<Item*>& items, const std::vector<Chunk>& chunks);
    uint64_t* crc_slot(size_t i, size_t c) {
        if (crc_pending_.empty() || !crc_pending_[i]) return nullptr;
        return &crc_table_[c * crc_pending_.size() + i];
    }
    void crc_end(const std::vector<Item*>& items);
    size_t index_of(const Item* it) const { return static_cast<size_t>(it - items_.data()); }

    const Request& req_;
    const Options& opt_;
    const Rule& rule_;
    unsigned threads_;
    LoadResult loaded_;
    std::optional<LoadedRecord> base_rec_;
    std::optional<TensorSet> base_set_;
    std::string base_hash_;
    Source base_src_;
    std::vector<Item> items_; // canonical order
    RecordType kind_ = RecordType::update;
    Layout layout_;
    std::string base_of_updates_; // the base model hash the updates share
    // State read from --state (mapped), when it exists.
    std::shared_ptr<Mapping> state_map_;
    std::optional<TensorSet> state_set_;
    Source state_m_src_, state_v_src_;
    std::vector<char> crc_pending_;
    std::vector<uint64_t> crc_table_;
    const std::vector<Chunk>* crc_chunks_ = nullptr;
    uint64_t state_round_ = 0;
    std::unique_ptr<Result::Impl> out_ = std::make_unique<Result::Impl>();
};

void Merger::check_request() const {
    if (rule_.stateful() && !req_.state)
        throw UsageError("rule " + rule_.name() + " keeps server state between rounds",
                         "give --state FILE (created on the first round)");
    if (!rule_.stateful() && req_.state)
        throw UsageError("--state is for fedavgm, fedadam, fedyogi and fedadagrad, not " +
                         rule_.name());
    if (rule_.kind == RuleKind::mix && req_.base)
        throw UsageError("mix averages models; --base applies updates",
                         "drop --base, or use --rule fedavg for updates");
    if ((req_.self || opt_.self_weight) && rule_.kind != RuleKind::mix)
        throw UsageError("--self and --self-weight are for --rule mix");
    if (opt_.self_weight && !req_.self) throw UsageError("--self-weight needs --self FILE");
    if (opt_.self_weight && (*opt_.self_weight < 0 || *opt_.self_weight > 1))
        throw UsageError("--self-weight must be in [0, 1]");
    if (opt_.self_weight && opt_.weights == WeightMode::list)
        throw UsageError("--self-weight and a --weights list both set the weights", "give one");
    if (rule_.robust() && opt_.weights == WeightMode::list)
        throw UsageError("rule " + rule_.name() + " does not weight its inputs");
    if (opt_.clip_norm && !(*opt_.clip_norm > 0)) throw UsageError("--clip-norm must be positive");
    if (opt_.max_norm && !(*opt_.max_norm > 0)) throw UsageError("--max-norm must be positive");
    if (opt_.server_lr && !(*opt_.server_lr > 0)) throw UsageError("--server-lr must be positive");
    if (opt_.beta1 < 0 || opt_.beta1 >= 1) throw UsageError("--beta1 must be in [0, 1)");
    if (opt_.beta2 < 0 || opt_.beta2 >= 1) throw UsageError("--beta2 must be in [0, 1)");
    if (!(opt_.tau > 0)) throw UsageError("--tau must be positive");
}

void Merger::reject(Item& it, const std::string& msg_in, const std::string& hint_in) {
    // A corrupted record shows up as whatever its damage looks like; name the real cause.
    std::string msg = msg_in, hint = hint_in;
    if (!it.rec->verified) {
        if (!verify(*it.rec)) msg = "corrupted record (checksum mismatch)", hint.clear();
        it.rec->verified = true;
    }
    if (!opt_.skip_bad) throw DataError(it.rec->name + ": " + msg, hint);
    it.bad = true;
    out_->warnings.push_back(it.rec->name + ": " + msg + " (skipped)");
}

std::vector<Item*> Merger::usable() {
    std::vector<Item*> v;
    for (auto& it : items_)
        if (!it.bad) v.push_back(&it);
    return v;
}

void Merger::load() {
    LoadOptions lo{opt_.skip_bad, threads_, opt_.spool_dir};
    std::exception_ptr base_error;
    // The base model loads and hashes while the inputs load.
    std::jthread base_loader;
    if (req_.base)
        base_loader = std::jthread([&] {
            try {
                base_rec_ = load_single(*req_.base, "--base", lo);
                base_hash_ = model_hash(base_rec_->record.payload());
                release_pages(base_rec_->record.payload());
            } catch (...) {
                base_error = std::current_exception();
            }
        });
    std::vector<std::string> paths = req_.inputs;
    if (req_.self) paths.push_back(*req_.self);
    LoadOptions li = lo;
    li.threads = req_.base ? std::max(1u, threads_ - 1) : threads_;
    loaded_ = load_records(paths, li);
    if (base_loader.joinable()) base_loader.join();
    if (base_error) std::rethrow_exception(base_error);
    out_->warnings = loaded_.warnings;

    if (req_.base) {
        const std::string where = "--base " + base_rec_->name;
        if (base_rec_->record.type() != RecordType::model)
            throw DataError(where + " is " + article(type_name(base_rec_->record.type())) +
                            " record, not a model");
        base_set_ = TensorSet::parse(base_rec_->record.payload(), where);
        layout_ = layout_of(*base_set_);
        for (auto& t : layout_)
            if (!mergeable(t.dtype))
                throw DataError(where + ": tensor '" + t.name + "' has dtype " +
                                std::string(dtype_name(t.dtype)) +
                                "; n3-merge merges F32, F16 and BF16 tensors");
        base_src_ = source_of(*base_set_, layout_, &*base_rec_);
    }

    size_t self_pos = SIZE_MAX;
    if (req_.self) {
        // The self model was loaded last, and must be one record on its own.
        if (loaded_.records.empty() || loaded_.records.back().name != *req_.self)
            throw DataError("--self " + *req_.self + " must hold exactly one model record");
        self_pos = loaded_.records.size() - 1;
    }
    if (opt_.weights == WeightMode::list && opt_.weight_list.size() != loaded_.records.size())
        throw UsageError("--weights lists " + std::to_string(opt_.weight_list.size()) +
                         " weights for " + std::to_string(loaded_.records.size()) + " inputs");
    items_.resize(loaded_.records.size());
    for (size_t i = 0; i < items_.size(); ++i) {
        items_[i].rec = &loaded_.records[i];
        items_[i].is_self = i == self_pos;
    }
    std::sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) {
        int c = canonical_compare(*a.rec, *b.rec);
        return c != 0 ? c < 0 : a.rec->position < b.rec->position;
    });
}

void Merger::check_inputs() {
    // Checks run in command-line order so the first complaint is about the first bad input.
    std::vector<Item*> by_pos;
    for (auto& it : items_)
        by_pos.push_back(&it);
    std::sort(by_pos.begin(), by_pos.end(),
              [](Item* a, Item* b) { return a->rec->position < b->rec->position; });

    // Record type and payload.
    for (Item* it : by_pos) {
        RecordType t = it->rec->record.type();
        if (t != RecordType::model && t != RecordType::update) {
            std::string hint = t == RecordType::packed || t == RecordType::shard
                                   ? "decode it first: n3-encode -d"
                               : t == RecordType::sealed ? "open it first: n3-seal --open"
                                                         : "";
            reject(*it, "is " + article(type_name(t)) + " record, not an update or model", hint);
            continue;
        }
        try {
            it->set = TensorSet::parse(it->rec->record.payload(), it->rec->name);
            it->layout = layout_of(*it->set);
        } catch (const DataError& e) {
            if (!it->rec->verified && !verify(*it->rec)) {
                reject(*it, "corrupted record (checksum mismatch)");
                continue;
            }
            if (!opt_.skip_bad) throw;
            it->bad = true;
            out_->warnings.push_back(std::string(e.what()) + " (skipped)");
        }
    }

    // Updates or models, not both.
    size_t models = 0, updates = 0;
    for (Item* it : by_pos)
        if (!it->bad) (it->rec->record.type() == RecordType::model ? models : updates)++;
    if (req_.base || rule_.stateful())
        kind_ = RecordType::update;
    else if (rule_.kind == RuleKind::mix)
        kind_ = RecordType::model;
    else
        kind_ = models > updates ? RecordType::model : RecordType::update;
    for (Item* it : by_pos) {
        if (it->bad || it->is_self || it->rec->record.type() == kind_) continue;
        bool is_model = it->rec->record.type() == RecordType::model;
        std::string msg = std::string(is_model ? "is a model" : "is an update") + " record, ";
        std::string hint;
        if (req_.base)
            msg += "but --base applies updates", hint = "models are averaged without --base";
        else if (rule_.stateful())
            msg += "but " + rule_.name() + " steps with updates";
        else if (rule_.kind == RuleKind::mix)
            msg += "but mix averages models", hint = "merge updates with --rule fedavg";
        else
            msg += std::string("and the other inputs are ") + (is_model ? "updates" : "models"),
                hint = "n3-merge does not mix models and updates";
        reject(*it, msg, hint);
    }
    if (req_.self) {
        for (auto& it : items_)
            if (it.is_self && !it.bad && it.rec->record.type() != RecordType::model)
                throw DataError("--self " + it.rec->name + " is not a model record");
    }

    // Duplicates: equal payloads sit next to each other in canonical order.
    for (size_t i = 1; i < items_.size(); ++i) {
        Item& a = items_[i - 1];
        Item& b = items_[i];
        if (canonical_compare(*a.rec, *b.rec) == 0) {
            Item& later = a.rec->position > b.rec->position ? a : b;
            Item& earlier = &later == &a ? b : a;
            if (!later.bad)
                reject(later, "is a duplicate of " + earlier.rec->name + " (same payload)",
                       "each update may count once");
        }
    }

    // Tensor names, shapes and dtypes: the base model's, else the layout most inputs share.
    if (!req_.base) {
        std::map<std::string, size_t> votes;
        for (auto& it : items_)
            if (!it.bad) votes[layout_key(it.layout)]++;
        size_t best = 0;
        for (auto& it : items_) {
            if (it.bad) continue;
            size_t v = votes[layout_key(it.layout)];
            if (v > best) best = v, layout_ = it.layout;
        }
        for (auto& it : items_) {
            if (it.bad || layout_key(it.layout) != layout_key(layout_)) continue;
            for (auto& t : layout_)
                if (!mergeable(t.dtype))
                    throw DataError(it.rec->name + ": tensor '" + t.name + "' has dtype " +
                                    std::string(dtype_name(t.dtype)) +
                                    "; n3-merge merges F32, F16 and BF16 tensors");
            break;
        }
    }
    for (Item* it : by_pos) {
        if (it->bad) continue;
        std::string diff = layout_difference(it->layout, layout_);
        if (!diff.empty())
            reject(*it, diff + (req_.base ? " (as in --base " + *req_.base + ")" : ""),
                   req_.base ? "" : "every input must have the same tensors");
        else
            it->src = source_of(*it->set, layout_, it->rec);
    }

    // Metadata of updates: sample counts, base model, model spec.
    bool need_samples =
        opt_.weights == WeightMode::samples && !rule_.robust() && rule_.kind != RuleKind::mix;
    for (Item* it : by_pos) {
        if (it->bad) continue;
        it->samples = parse_uint(it->set->meta(meta::samples));
        if (need_samples && kind_ == RecordType::update && !it->samples)
            reject(*it, "has no sample count (metadata 'samples')",
                   "--weights uniform ignores sample counts");
    }
    if (kind_ == RecordType::update) {
        std::string want;
        if (req_.base) {
            want = base_hash_;
        } else {
            std::map<std::string, size_t> votes;
            size_t best = 0;
            for (auto& it : items_)
                if (!it.bad) votes[it.set->meta(meta::base).value_or("")]++;
            for (auto& it : items_) {
                if (it.bad) continue;
                std::string b = it.set->meta(meta::base).value_or("");
                if (votes[b] > best) best = votes[b], want = b;
            }
        }
        for (Item* it : by_pos) {
            if (it->bad) continue;
            auto b = it->set->meta(meta::base);
            if (req_.base && !b)
                reject(*it, "names no base model (metadata 'base')",
                       "updates from n3-train carry it; n3-inspect --from-safetensors --meta "
                       "base=HASH adds it");
            else if (b.value_or("") != want)
                reject(*it,
                       "was trained from model " + b.value_or("(none)").substr(0, 16) + "…, " +
                           (req_.base
                                ? "not --base " + *req_.base + " (" + want.substr(0, 16) + "…)"
                                : "the other updates from " +
                                      (want.empty() ? "(none)" : want.substr(0, 16) + "…")),
                       "an update applies only to the model it was trained from");
        }
        base_of_updates_ = want;
    }
    {
        std::optional<std::string> want =
            base_set_ ? base_set_->meta(meta::spec_hash) : std::nullopt;
        if (!want) {
            std::map<std::string, size_t> votes;
            size_t best = 0;
            for (auto& it : items_)
                if (!it.bad)
                    if (auto s = it.set->meta(meta::spec_hash)) votes[*s]++;
            for (auto& it : items_) {
                if (it.bad) continue;
                auto s = it.set->meta(meta::spec_hash);
                if (s && votes[*s] > best) best = votes[*s], want = s;
            }
        }
        for (Item* it : by_pos) {
            if (it->bad) continue;
            auto s = it->set->meta(meta::spec_hash);
            if (s && want && *s != *want)
                reject(*it, "was built from model spec " + s->substr(0, 16) + "…, not " +
                                want->substr(0, 16) + "…" +
                                (base_set_ ? " (--base's)" : " (the other inputs')"));
        }
    }
}

void Merger::load_state() {
    const std::string& path = *req_.state;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno != ENOENT) throw_errno(path);
        return; // first round: m = 0, v = tau^2
    }
    Input in(path);
    if (!in.is_regular()) throw EnvError("--state " + path + " is not a regular file");
    state_map_ = in.map();
    std::string where = "--state " + path;
    state_set_ = TensorSet::parse(state_map_->bytes(), where);
    auto r = state_set_->meta("n3_state");
    if (!r) throw DataError(where + " is not an n3-merge server state (no 'n3_state' metadata)");
    if (*r != rule_.name())
        throw DataError(where + " holds " + *r + " state, not " + rule_.name(),
                        "each rule keeps its own state file");
    if (auto model = state_set_->meta("model"); model && req_.base && *model != base_hash_)
        throw DataError(
            where + " was written for model " + model->substr(0, 16) + "…, not --base " +
                *req_.base + " (" + base_hash_.substr(0, 16) + "…)",
            "pass the model the previous round produced, or start over with a new state file");
    state_round_ = parse_uint(state_set_->meta("round")).value_or(0);
    auto load = [&](const std::string& prefix, Source& src) {
        for (auto& t : layout_) {
            const TensorInfo* ti = state_set_->find(prefix + t.name);
            if (!ti)
                throw DataError(where + " has no tensor '" + prefix + t.name + "'",
                                "the model changed: start over with a new state file");
            if (ti->dtype != DType::F32 || ti->shape != t.shape)
                throw DataError(where + ": tensor '" + prefix + t.name + "' is " +
                                std::string(dtype_name(ti->dtype)) + " " + shape_text(ti->shape) +
                                ", expected F32 " + shape_text(t.shape));
            src.data.push_back(state_set_->data(*ti).data());
            src.dtype.push_back(DType::F32);
        }
    };
    load("m.", state_m_src_);
    if (rule_.adaptive()) load("v.", state_v_src_);
}

void Merger::crc_begin(const std::vector<Item*>& items, const std::vector<Chunk>& chunks) {
    crc_pending_.assign(items.size(), 0);
    bool any = false;
    for (size_t i = 0; i < items.size(); ++i)
        any |= (crc_pending_[i] = !items[i]->rec->verified);
    if (!any) {
        crc_pending_.clear();
        return;
    }
    crc_table_.assign(items.size() * chunks.size(), 0);
    crc_chunks_ = &chunks;
}

void Merger::crc_end(const std::vector<Item*>& items) {
    if (crc_pending_.empty()) return;
    const std::vector<Chunk>& chunks = *crc_chunks_;
    std::map<std::string, size_t> index;
    for (size_t t = 0; t < layout_.size(); ++t)
        index[layout_[t].name] = t;
    std::vector<size_t> first(layout_.size() + 1, chunks.size());
    for (size_t c = chunks.size(); c-- > 0;)
        first[chunks[c].tensor] = c;
    size_t n = items.size();
    for (size_t i = 0; i < n; ++i) {
        if (!crc_pending_[i]) continue;
        Item& it = *items[i];
        ByteView payload = it.rec->record.payload();
        uint64_t crc = crc_prefix(
            *it.rec, static_cast<uint64_t>(it.set->data_section().data() - payload.data()));
        for (auto& ti : it.set->tensors()) { // data order
            size_t t = index.at(ti.name);
            size_t es = dtype_size(ti.dtype);
            for (size_t c = first[t]; c < chunks.size() && chunks[c].tensor == t; ++c)
                crc = crc64_combine(crc, crc_table_[c * n + i], chunks[c].size * es);
        }
        if (crc != it.rec->key) {
            crc_pending_.clear();
            throw NonFinite{index_of(&it), "corrupted record (checksum mismatch)"};
        }
        it.rec->verified = true;
    }
    crc_pending_.clear();
}

void Merger::compute_norms(const std::vector<Item*>& items) {
    std::vector<Chunk> chunks = chunks_of(layout_, kChunk);
    size_t n = items.size();
    std::vector<double> partial(chunks.size() * n);
    std::vector<std::vector<float>> scratch(threads_, std::vector<float>(kChunk));
    crc_begin(items, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        for (size_t i = 0; i < n; ++i) {
            const float* x = floats(items[i]->src, ch.tensor, ch.begin, ch.size,
                                    scratch[tid].data(), crc_slot(i, c));
            double s = kernel::sum_squares(x, 1.0, ch.size);
            if (!std::isfinite(s))
                throw NonFinite{static_cast<size_t>(items[i] - items_.data()),
                                "tensor '" + layout_[ch.tensor].name + "' holds NaN or Inf"};
            partial[c * n + i] = s;
            release(items[i]->src, ch.tensor, ch.begin, ch.size);
        }
    });
    crc_end(items);
    for (size_t i = 0; i < n; ++i) {
        double s = 0;
        for (size_t c = 0; c < chunks.size(); ++c)
            s += partial[c * n + i];
        items[i]->norm = std::sqrt(s);
        if (opt_.max_norm && items[i]->norm > *opt_.max_norm) {
            char msg[128];
            std::snprintf(msg, sizeof msg, "has L2 norm %.6g, above --max-norm %.6g",
                          items[i]->norm, *opt_.max_norm);
            throw NonFinite{index_of(items[i]), msg};
        }
        if (opt_.clip_norm && items[i]->norm > *opt_.clip_norm)
            items[i]->clip = *opt_.clip_norm / items[i]->norm;
    }
}

void Merger::set_weights(const std::vector<Item*>& items) {
    size_t others = 0;
    for (Item* it : items)
        others += !it->is_self;
    for (Item* it : items) {
        if (rule_.robust() || opt_.weights == WeightMode::uniform ||
            (rule_.kind == RuleKind::mix && opt_.weights == WeightMode::samples))
            it->raw_weight = 1;
        else if (opt_.weights == WeightMode::list)
            it->raw_weight = opt_.weight_list[it->rec->position];
        else
            it->raw_weight = kind_ == RecordType::update ? double(*it->samples)
                                                         : double(it->samples.value_or(1));
        if (rule_.kind == RuleKind::mix && opt_.self_weight)
            it->raw_weight = it->is_self ? *opt_.self_weight
                                         : (others ? (1 - *opt_.self_weight) / double(others) : 0);
        if (!it->selected) it->raw_weight = 0;
    }
    double total = 0;
    for (Item* it : items)
        total += it->raw_weight;
    if (!(total > 0))
        throw DataError("the total weight of the " + std::to_string(items.size()) +
                            " inputs is zero",
                        opt_.weights == WeightMode::samples ? "every update has samples=0" : "");
    for (Item* it : items)
        it->weight = it->raw_weight / total;
}

void Merger::select_krum(const std::vector<Item*>& items) {
    size_t n = items.size();
    size_t f = rule_.f.value_or(n >= 3 ? (n - 3) / 2 : 0);
    if (n < 2 * f + 3)
        throw IncompleteError(rule_.name() + " with f=" + std::to_string(f) + " needs at least " +
                              std::to_string(2 * f + 3) + " inputs (n >= 2f+3), got " +
                              std::to_string(n));
    size_t m = rule_.kind == RuleKind::krum ? 1 : rule_.m.value_or(n - f);
    if (m > n)
        throw UsageError("multi-krum:" + std::to_string(f) + "," + std::to_string(m) +
                         " averages more inputs than there are (" + std::to_string(n) + ")");
    uint64_t chunk = std::clamp<uint64_t>((uint64_t(1) << 22) / n, 1024, kChunk);
    std::vector<Chunk> chunks = chunks_of(layout_, chunk);
    size_t pairs = n * (n - 1) / 2;
    std::vector<double> partial(chunks.size() * pairs);
    std::vector<std::vector<float>> scratch(threads_, std::vector<float>(n * chunk));
    crc_begin(items, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        std::vector<const float*> x(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = floats(items[i]->src, ch.tensor, ch.begin, ch.size,
                          scratch[tid].data() + i * chunk, crc_slot(i, c));
            if (!kernel::all_finite(x[i], ch.size))
                throw NonFinite{static_cast<size_t>(items[i] - items_.data()),
                                "tensor '" + layout_[ch.tensor].name + "' holds NaN or Inf"};
        }
        double* out = partial.data() + c * pairs;
        for (size_t i = 0, p = 0; i < n; ++i)
            for (size_t j = i + 1; j < n; ++j, ++p)
                out[p] =
                    kernel::squared_distance(x[i], items[i]->clip, x[j], items[j]->clip, ch.size);
        for (size_t i = 0; i < n; ++i)
            release(items[i]->src, ch.tensor, ch.begin, ch.size);
    });
    crc_end(items);
    std::vector<double> dist(n * n, 0.0);
    for (size_t i = 0, p = 0; i < n; ++i)
        for (size_t j = i + 1; j < n; ++j, ++p) {
            double s = 0;
            for (size_t c = 0; c < chunks.size(); ++c)
                s += partial[c * pairs + p];
            dist[i * n + j] = dist[j * n + i] = s;
        }
    // score(i) = sum of the n-f-2 smallest squared distances from i to the others.
    std::vector<double> score(n);
    for (size_t i = 0; i < n; ++i) {
        std::vector<double> d;
        for (size_t j = 0; j < n; ++j)
            if (j != i) d.push_back(dist[i * n + j]);
        std::sort(d.begin(), d.end());
        score[i] = std::accumulate(d.begin(), d.begin() + static_cast<long>(n - f - 2), 0.0);
    }
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return score[a] < score[b]; });
    for (Item* it : items)
        it->selected = false;
    for (size_t k = 0; k < m; ++k)
        items[order[k]]->selected = true;
}

// Output element = base + step, where step comes from the weighted average `acc` and the
// rule's server optimiser.
bool Merger::finish_chunk(const Chunk& c, const double* acc, Scratch& s) {
    Result::Impl& r = *out_;
    size_t t = c.tensor;
    size_t n = c.size;
    const float* base = base_set_ ? floats(base_src_, t, c.begin, n, s.base.data()) : nullptr;
    float* out = out_floats(r.out.data[t].get(), r.dtypes[t], c.begin, s.out.data());
    bool ok = true;
    double lr = opt_.server_lr.value_or(rule_.adaptive() ? 0.01 : 1.0);
    if (!rule_.stateful()) {
        ok = kernel::store(out, acc, kind_ == RecordType::update ? lr : 1.0, base, n);
    } else {
        float* m = out_floats(r.state_m.data[t].get(), DType::F32, c.begin, nullptr);
        float* v =
            r.has_v ? out_floats(r.state_v.data[t].get(), DType::F32, c.begin, nullptr) : nullptr;
        const float* m0 = state_set_ ? floats(state_m_src_, t, c.begin, n, s.m.data()) : nullptr;
        const float* v0 =
            state_set_ && r.has_v ? floats(state_v_src_, t, c.begin, n, s.v.data()) : nullptr;
        double b1 = opt_.beta1, b2 = opt_.beta2, tau = opt_.tau;
        double v_init = tau * tau;
        std::vector<double>& step = s.column;
        for (size_t j = 0; j < n; ++j) {
            double d = acc[j];
            double mo = m0 ? double(m0[j]) : 0.0;
            double mn;
            if (rule_.kind == RuleKind::fedavgm) {
                mn = b1 * mo + d;
                m[j] = float(mn);
                step[j] = double(m[j]);
                continue;
            }
            mn = b1 * mo + (1 - b1) * d;
            double vo = v0 ? double(v0[j]) : v_init;
            double d2 = d * d, vn;
            if (rule_.kind == RuleKind::fedadam)
                vn = b2 * vo + (1 - b2) * d2;
            else if (rule_.kind == RuleKind::fedyogi)
                vn = vo - (1 - b2) * d2 * (vo - d2 > 0 ? 1.0 : vo - d2 < 0 ? -1.0 : 0.0);
            else
                vn = vo + d2;
            m[j] = float(mn);
            v[j] = float(vn);
            step[j] = double(m[j]) / (std::sqrt(double(v[j])) + tau);
        }
        ok = kernel::store(out, step.data(), lr, base, n);
        if (m0) release(state_m_src_, t, c.begin, n);
        if (v0) release(state_v_src_, t, c.begin, n);
    }
    if (!ok) return false;
    if (r.dtypes[t] != DType::F32) put(r.out.data[t].get(), r.dtypes[t], c.begin, out, n);
    if (base) release(base_src_, t, c.begin, n);
    return true;
}

// A chunk's result is not finite: blame an input, the base, the state, or overflow.
void Merger::diagnose(const std::vector<Item*>& items, const Chunk& c, Scratch& s) {
    Result::Impl& r = *out_;
    size_t t = c.tensor, n = c.size;
    for (Item* it : items) {
        if (!kernel::all_finite(floats(it->src, t, c.begin, n, s.in.data()), n))
            throw NonFinite{static_cast<size_t>(it - items_.data()),
                            "tensor '" + layout_[t].name + "' holds NaN or Inf"};
    }
    if (base_set_ && !kernel::all_finite(floats(base_src_, t, c.begin, n, s.base.data()), n))
        throw DataError("--base " + *req_.base + ": tensor '" + layout_[t].name +
                        "' holds NaN or Inf");
    if (state_set_) {
        bool bad = !kernel::all_finite(floats(state_m_src_, t, c.begin, n, s.in.data()), n);
        if (r.has_v)
            bad = bad || !kernel::all_finite(floats(state_v_src_, t, c.begin, n, s.in.data()), n);
        if (bad)
            throw DataError("--state " + *req_.state + ": tensor '" + layout_[t].name +
                            "' holds NaN or Inf");
    }
    throw DataError("the merged tensor '" + layout_[t].name + "' overflows " +
                    std::string(dtype_name(r.dtypes[t])));
}

void Merger::average(const std::vector<Item*>& items) {
    std::vector<Chunk> chunks = chunks_of(layout_, kChunk);
    std::vector<Scratch> scratch(threads_);
    for (auto& s : scratch) {
        s.acc.resize(kChunk);
        s.in.resize(kChunk);
        s.base.resize(kChunk);
        s.out.resize(kChunk);
        s.m.resize(kChunk);
        s.v.resize(kChunk);
        s.column.resize(kChunk);
    }
    std::vector<Item*> active;
    for (Item* it : items)
        if (it->weight > 0) active.push_back(it);
    crc_begin(active, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        Scratch& s = scratch[tid];
        for (size_t i = 0; i < active.size(); ++i) {
            const float* x =
                floats(active[i]->src, ch.tensor, ch.begin, ch.size, s.in.data(), crc_slot(i, c));
            double w = active[i]->weight * active[i]->clip;
            if (i == 0)
                kernel::scale(s.acc.data(), x, w, ch.size);
            else
                kernel::axpy(s.acc.data(), x, w, ch.size);
        }
        // A non-finite input makes the sum, and so the output, non-finite: the check on the
        // output covers every input without another pass over them.
        if (!finish_chunk(ch, s.acc.data(), s)) diagnose(active, ch, s);
        for (Item* it : active)
            release(it->src, ch.tensor, ch.begin, ch.size);
    });
    crc_end(active);
}

void Merger::robust_average(const std::vector<Item*>& items) {
    size_t n = items.size();
    size_t trim =
        rule_.kind == RuleKind::trimmed_mean ? size_t(std::floor(rule_.trim * double(n))) : 0;
    if (rule_.kind == RuleKind::trimmed_mean && 2 * trim >= n)
        throw IncompleteError("trimmed-mean cuts " + std::to_string(trim) + " of " +
                              std::to_string(n) + " inputs at each end, leaving none");
    uint64_t chunk = std::clamp<uint64_t>((uint64_t(1) << 22) / n, 1024, kChunk);
    std::vector<Chunk> chunks = chunks_of(layout_, chunk);
    std::vector<Scratch> scratch(threads_);
    for (auto& s : scratch) {
        s.acc.resize(chunk);
        s.in.resize(chunk);
        s.base.resize(chunk);
        s.out.resize(chunk);
        s.gathered.resize(n * chunk);
        s.column.resize(n);
        s.rows.resize(n * kSub);
    }
    crc_begin(items, chunks);
    for_chunks(chunks.size(), threads_, [&](size_t c, unsigned tid) {
        const Chunk& ch = chunks[c];
        Scratch& s = scratch[tid];
        std::vector<const float*> x(n);
        for (size_t i = 0; i < n; ++i) {
            x[i] = floats(items[i]->src, ch.tensor, ch.begin, ch.size,
                          s.gathered.data() + i * chunk, crc_slot(i, c));
            if (!kernel::all_finite(x[i], ch.size))
                throw NonFinite{static_cast<size_t>(items[i] - items_.data()),
                                "tensor '" + layout_[ch.tensor].name + "' holds NaN or Inf"};
        }
        // Blocks of kSub coordinates: the n rows stay in cache while a sorting network orders
        // every column at once; then the median or trimmed mean reads the sorted rows.
        double* rows = s.rows.data();
        for (size_t j0 = 0; j0 < ch.size; j0 += kSub) {
            size_t m = std::min<size_t>(kSub, ch.size - j0);
            for (size_t i = 0; i < n; ++i)
                for (size_t j = 0; j < m; ++j)
                    rows[i * kSub + j] = items[i]->clip * double(x[i][j0 + j]);
            if (n <= 32) {
                kernel::sort_columns(rows, n, kSub, m);
            } else {
                double* col = s.column.data();
                for (size_t j = 0; j < m; ++j) {
                    for (size_t i = 0; i < n; ++i)
                        col[i] = rows[i * kSub + j];
                    std::sort(col, col + n);
                    for (size_t i = 0; i < n; ++i)
                        rows[i * kSub + j] = col[i];
                }
            }
            double* out = s.acc.data() + j0;
            if (rule_.kind == RuleKind::median) {
                const double* lo = rows + (n - 1) / 2 * kSub;
                const double* hi = rows + n / 2 * kSub;
                for (size_t j = 0; j < m; ++j)
                    out[j] = n % 2 ? hi[j] : (lo[j] + hi[j]) / 2;
            } else {
                for (size_t j = 0; j < m; ++j)
                    out[j] = 0;
                for (size_t i = trim; i < n - trim; ++i)
                    for (size_t j = 0; j < m; ++j)
                        out[j] += rows[i * kSub + j];
                for (size_t j = 0; j < m; ++j)
                    out[j] /= double(n - 2 * trim);
            }
        }
        if (!finish_chunk(ch, s.acc.data(), s)) diagnose(items, ch, s);
        for (size_t i = 0; i < n; ++i)
            release(items[i]->src, ch.tensor, ch.begin, ch.size);
    });
    crc_end(items);
}

void Merger::build_metadata(const std::vector<Item*>& items) {
    Result::Impl& r = *out_;
    Metadata md;
    if (base_set_) {
        md = base_set_->metadata();
        md.erase(meta::codec);
        md.erase(meta::loss);
        md[meta::round] = std::to_string(parse_uint(base_set_->meta(meta::round)).value_or(0) + 1);
        r.type = RecordType::model;
    } else {
        // Keys every used input agrees on.
        md = items.front()->set->metadata();
        for (Item* it : items)
            for (auto k = md.begin(); k != md.end();) {
                auto v = it->set->meta(k->first);
                k = v && *v == k->second ? std::next(k) : md.erase(k);
            }
        md.erase(meta::codec);
        md.erase(meta::loss);
        md.erase(meta::samples);
        r.type = kind_;
        if (kind_ == RecordType::update) {
            uint64_t total = 0;
            bool all = true;
            for (Item* it : items) {
                if (!it->selected) continue;
                all = all && it->samples;
                total += it->samples.value_or(0);
            }
            if (all) md[meta::samples] = std::to_string(total);
        }
    }
    r.metadata = md;
    if (rule_.stateful()) {
        r.state_meta["n3_state"] = rule_.name();
        r.state_meta["round"] = std::to_string(state_round_ + 1);
    }
}

std::unique_ptr<Result::Impl> Merger::run() {
    check_request();
    load();
    check_inputs();
    Result::Impl& r = *out_;
    if (req_.state) load_state();

    for (;;) {
        std::vector<Item*> items = usable();
        if (items.size() < std::max<size_t>(opt_.min_inputs, 1))
            throw IncompleteError(std::to_string(items.size()) + " usable input" +
                                  (items.size() == 1 ? "" : "s") + ", fewer than --min-inputs " +
                                  std::to_string(std::max<size_t>(opt_.min_inputs, 1)));
        try {
            r.layout = layout_;
            r.dtypes.clear();
            for (auto& t : layout_)
                r.dtypes.push_back(t.dtype);
            if (r.out.data.empty()) r.out = allocate(layout_, r.dtypes);
            if (rule_.stateful() && r.state_m.data.empty()) {
                std::vector<DType> f32(layout_.size(), DType::F32);
                r.state_m = allocate(layout_, f32);
                r.has_v = rule_.adaptive();
                if (r.has_v) r.state_v = allocate(layout_, f32);
                r.state_path = req_.state;
            }
            for (Item* it : items)
                it->clip = 1, it->selected = true;
            if (opt_.clip_norm || opt_.max_norm) compute_norms(items);
            if (rule_.kind == RuleKind::krum || rule_.kind == RuleKind::multi_krum)
                select_krum(items);
            set_weights(items);
            if (rule_.kind == RuleKind::median || rule_.kind == RuleKind::trimmed_mean)
                robust_average(items);
            else
                average(items);
            for (Item* it : items)
                if (!it->rec->verified) {
                    if (!verify(*it->rec))
                        throw NonFinite{index_of(it), "corrupted record (checksum mismatch)"};
                    it->rec->verified = true;
                }
            build_metadata(items);
            for (Item* it : items)
                r.reports.push_back({it->rec->name, it->weight, it->norm, it->clip, it->selected});
            break;
        } catch (const NonFinite& nf) {
            crc_pending_.clear();
            reject(items_[nf.item], nf.message); // names corruption first when the CRC fails
        }
    }
    if (rule_.stateful() && base_set_) {
        // The state remembers the model it produced, so a later round refuses another base.
        struct HashSink final : Sink {
            crypto_generichash_state st;
            HashSink() { crypto_generichash_init(&st, nullptr, 0, 32); }
            void write(ByteView b) override { crypto_generichash_update(&st, b.data(), b.size()); }
        } hs;
        r.builder().write(hs);
        uint8_t h[32];
        crypto_generichash_final(&hs.st, h, sizeof h);
        r.state_meta["model"] = to_hex(ByteView(h, sizeof h));
    }
    return std::move(out_);
}

} // namespace

Result run(const Request& req) {
    Merger m(req);
    Result r;
    r.impl_ = m.run();
    return r;
}

} // namespace n3::merge
