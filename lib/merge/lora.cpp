// n3/merge/lora.cpp — LoRA in n3-merge: an adapter applied to its model (lora.hpp), and the
// checks that adapter updates merge only with updates of the same adapter.
#include "merge/lora.hpp"

#include "merge/kernels.hpp"
#include "merge/merger.hpp"
#include "record/error.hpp"
#include "record/io.hpp"
#include "record/safetensors.hpp"

#include <cstring>
#include <map>
#include <set>

namespace n3::merge {

namespace {

std::string short_hash(const std::string& h) {
    return h.substr(0, 16) + "…";
}

Bytes read_model(const std::string& path, const std::string& flag) {
    Input in(path);
    RecordReader reader(in);
    auto rec = reader.next();
    const std::string where = flag + " " + in.name();
    if (!rec) throw DataError(where + ": no records (empty input)");
    if (rec->type() != RecordType::model)
        throw DataError(where + " is " + article(type_name(rec->type())) + " record, not a model");
    Bytes payload(rec->payload().begin(), rec->payload().end());
    if (reader.next()) throw DataError(where + ": holds more than one record, expected one");
    return payload;
}

std::vector<float> f32_values(const TensorSet& set, const TensorInfo& t) {
    std::vector<float> v(t.numel());
    auto data = set.data(t);
    std::memcpy(v.data(), data.data(), data.size());
    return v;
}

} // namespace

AppliedAdapter apply_adapter(const std::string& base_path, const std::string& adapter_path) {
    const std::string bw = "--base " + base_path, aw = "--adapter " + adapter_path;
    Bytes base_bytes = read_model(base_path, "--base");
    Bytes adapter_bytes = read_model(adapter_path, "--adapter");
    TensorSet base = TensorSet::parse(base_bytes, bw);
    TensorSet adapter = TensorSet::parse(adapter_bytes, aw);
    if (lora_meta(base, bw))
        throw DataError(bw + " is itself a LoRA adapter",
                        "--base names the model the adapter adapts");
    auto lm = lora_meta(adapter, aw);
    if (!lm) throw DataError(aw + " is not a LoRA adapter (no lora_base)");
    AppliedAdapter out;
    out.base_hash = model_hash(base_bytes);
    out.adapter_hash = model_hash(adapter_bytes);
    if (lm->base != out.base_hash)
        throw DataError(aw + " adapts model " + short_hash(lm->base) + ", not " + bw + " (" +
                        short_hash(out.base_hash) + ")");

    const std::string prefix = meta::lora_prefix;
    std::map<std::string, std::pair<const TensorInfo*, const TensorInfo*>> pairs; // W -> A, B
    for (auto& t : adapter.tensors()) {
        const bool a = t.name.ends_with(".A"), b = t.name.ends_with(".B");
        if (t.name.rfind(prefix, 0) != 0 || (!a && !b) || t.name.size() <= prefix.size() + 2)
            throw DataError(aw + ": tensor '" + t.name + "' is not lora/WEIGHT.A or .B");
        auto& slot = pairs[t.name.substr(prefix.size(), t.name.size() - prefix.size() - 2)];
        (a ? slot.first : slot.second) = &t;
    }
    for (auto& [w, ab] : pairs) {
        if (!ab.first || !ab.second)
            throw DataError(aw + ": '" + prefix + w + (ab.first ? ".A" : ".B") +
                            "' has no matching '" + (ab.first ? ".B" : ".A") + "'");
        if (!base.find(w)) throw DataError(aw + " adapts '" + w + "', which " + bw + " lacks");
    }

    const double s = lm->scale();
    const int64_t r = int64_t(lm->rank);
    SafetensorsBuilder b;
    b.set_metadata(base.metadata());
    for (auto& t : base.tensors()) {
        auto p = pairs.find(t.name);
        if (p == pairs.end()) {
            b.add(t.name, t.dtype, t.shape, base.data(t));
            continue;
        }
        const TensorInfo& A = *p->second.first;
        const TensorInfo& B = *p->second.second;
        if (t.dtype != DType::F32 || t.shape.size() != 2)
            throw DataError(bw + ": tensor '" + t.name + "' is not a 2-D F32 weight to adapt");
        const int64_t rows = t.shape[0], cols = t.shape[1];
        if (A.dtype != DType::F32 || A.shape != std::vector<int64_t>{r, cols})
            throw DataError(aw + ": '" + A.name + "' is not F32 " + std::to_string(r) + "x" +
                            std::to_string(cols) + " (lora_rank x the weight's inputs)");
        if (B.dtype != DType::F32 || B.shape != std::vector<int64_t>{rows, r})
            throw DataError(aw + ": '" + B.name + "' is not F32 " + std::to_string(rows) + "x" +
                            std::to_string(r) + " (the weight's outputs x lora_rank)");
        std::vector<float> w = f32_values(base, t), av = f32_values(adapter, A),
                           bv = f32_values(adapter, B);
        std::vector<float> result(w.size());
        std::vector<double> acc(static_cast<size_t>(cols));
        for (int64_t o = 0; o < rows; ++o) {
            // acc = (B A)[o, :] = sum_k B[o, k] A[k, :], in double
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int64_t k = 0; k < r; ++k)
                kernel::axpy(acc.data(), av.data() + k * cols, double(bv[size_t(o * r + k)]),
                             size_t(cols));
            if (!kernel::store(result.data() + o * cols, acc.data(), s, w.data() + o * cols,
                               size_t(cols)))
                throw DataError("the adapted '" + t.name + "' is not finite");
        }
        Bytes bytes(result.size() * sizeof(float));
        std::memcpy(bytes.data(), result.data(), bytes.size());
        b.add_owned(t.name, t.dtype, t.shape, std::move(bytes));
        ++out.weights;
    }
    out.payload = b.bytes();
    return out;
}

// Every input must be an update of the same adapter as --base (or as most inputs): the same
// lora_base, rank, alpha and targets, or no adapter at all. Caught here, before the layouts
// are compared, so that a mixture is named for what it is.
void Merger::check_adapters(const std::vector<Item*>& by_pos) {
    auto key = [](const std::optional<LoraMeta>& m) {
        return m ? m->base + " " + m->describe() : std::string();
    };
    for (Item* it : by_pos) {
        if (it->bad) continue;
        try {
            it->lora = lora_meta(*it->set, "metadata");
        } catch (const DataError& e) {
            reject(*it, e.what());
        }
    }
    std::optional<LoraMeta> want;
    std::string against;
    if (base_set_) {
        want = lora_meta(*base_set_, "--base " + *req_.base);
        against = "--base " + *req_.base;
    } else {
        std::map<std::string, size_t> votes;
        for (auto& it : items_)
            if (!it.bad) votes[key(it.lora)]++;
        size_t best = 0;
        for (auto& it : items_) // ties: canonical order
            if (!it.bad && votes[key(it.lora)] > best) best = votes[key(it.lora)], want = it.lora;
        against = "the other inputs";
    }
    auto what = [](const std::optional<LoraMeta>& m, bool update) {
        return m ? std::string("a LoRA adapter") + (update ? " update" : "") + " of model " +
                       short_hash(m->base) + " (" + m->describe() + ")"
                 : std::string("not a LoRA adapter") + (update ? " update" : "");
    };
    for (Item* it : by_pos) {
        if (it->bad || key(it->lora) == key(want)) continue;
        std::string hint;
        if (it->lora && !want && base_set_)
            hint = "adapter updates merge onto their adapter: --base ADAPTER.n3";
        else if (it->lora && want)
            hint = "every update must come from the same adapter";
        const bool update = it->rec->record.type() == RecordType::update;
        reject(*it,
               "is " + what(it->lora, update) + "; " + against + ": " +
                   what(want, !base_set_ && update),
               hint);
    }
}

} // namespace n3::merge
