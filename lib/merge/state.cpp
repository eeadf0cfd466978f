// n3/merge/state.cpp — the server state file of fedavgm, fedadam, fedyogi and fedadagrad.
//
// A plain safetensors file (see n3-merge(1)) holding, for every tensor T of the model, the F32
// momentum "m.T" and, for the adaptive rules, the F32 second moment "v.T"; metadata
// 'n3_state' (the rule), 'round' (steps taken) and, when the round had --base, 'model' (the
// hash of the model it produced). A missing file is the first round: m = 0, v = tau^2.
// Result::save_state replaces the file atomically.
#include "merge/merger.hpp"

#include "record/error.hpp"
#include "record/io.hpp"

#include <cerrno>
#include <sodium.h>
#include <sys/stat.h>

namespace n3::merge {

namespace {

constexpr const char* kRuleKey = "n3_state";
constexpr const char* kRoundKey = "round";
constexpr const char* kModelKey = "model";
const std::string kMomentum = "m.";
const std::string kSecondMoment = "v.";

// BLAKE2b-256 of everything written to it.
struct HashSink final : Sink {
    crypto_generichash_state st;
    HashSink() { crypto_generichash_init(&st, nullptr, 0, 32); }
    void write(ByteView b) override { crypto_generichash_update(&st, b.data(), b.size()); }
    std::string hex() {
        uint8_t h[32];
        crypto_generichash_final(&st, h, sizeof h);
        return to_hex(ByteView(h, sizeof h));
    }
};

} // namespace

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
    auto r = state_set_->meta(kRuleKey);
    if (!r) throw DataError(where + " is not an n3-merge server state (no 'n3_state' metadata)");
    if (*r != rule_.name())
        throw DataError(where + " holds " + *r + " state, not " + rule_.name(),
                        "each rule keeps its own state file");
    if (auto model = state_set_->meta(kModelKey); model && req_.base && *model != base_hash_)
        throw DataError(
            where + " was written for model " + model->substr(0, 16) + "…, not --base " +
                *req_.base + " (" + base_hash_.substr(0, 16) + "…)",
            "pass the model the previous round produced, or start over with a new state file");
    state_round_ = state_set_->meta_uint(kRoundKey).value_or(0);
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
    load(kMomentum, state_m_src_);
    if (rule_.adaptive()) load(kSecondMoment, state_v_src_);
}

// Once per merge, however many times the passes start over.
void Merger::allocate_state() {
    Result::Impl& r = *out_;
    if (!rule_.stateful() || !r.state_m.data.empty()) return;
    std::vector<DType> f32(layout_.size(), DType::F32);
    r.state_m = allocate(layout_, f32);
    r.has_v = rule_.adaptive();
    if (r.has_v) r.state_v = allocate(layout_, f32);
    r.state_path = req_.state;
}

void Merger::finish_state() {
    Result::Impl& r = *out_;
    if (!rule_.stateful()) return;
    r.state_meta[kRuleKey] = rule_.name();
    r.state_meta[kRoundKey] = std::to_string(state_round_ + 1);
    if (base_set_) {
        // The state remembers the model it produced, so a later round refuses another base.
        HashSink hs;
        r.builder().write(hs);
        r.state_meta[kModelKey] = hs.hex();
    }
}

void Result::save_state() const {
    const Impl& s = *impl_;
    if (!s.state_path) return;
    SafetensorsBuilder b;
    b.set_metadata(s.state_meta);
    for (size_t i = 0; i < s.layout.size(); ++i) {
        b.add(kMomentum + s.layout[i].name, DType::F32, s.layout[i].shape,
              ByteView(s.state_m.data[i].data(), s.state_m.bytes[i]));
        if (s.has_v)
            b.add(kSecondMoment + s.layout[i].name, DType::F32, s.layout[i].shape,
                  ByteView(s.state_v.data[i].data(), s.state_v.bytes[i]));
    }
    Output out(*s.state_path);
    b.write(out);
    out.commit();
}

} // namespace n3::merge
