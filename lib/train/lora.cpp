// LoRA adapters without libtorch: the flags, the targeted weights, adapter records and their
// checks against the base model (init_adapter, which draws random numbers, is in engine.cpp).
#include "train/lora.hpp"

#include "record/error.hpp"
#include "record/number.hpp"

#include <cmath>
#include <cstdlib>
#include <cstring>

namespace n3::train {

std::string short_hash(const std::string& hash) {
    return hash.size() > 16 ? hash.substr(0, 16) + "…" : hash;
}

std::string canonical_targets(const std::string& targets) {
    bool attn = false, mlp = false;
    size_t start = 0;
    for (;;) {
        size_t comma = targets.find(',', start);
        std::string t = targets.substr(start, comma == std::string::npos ? comma : comma - start);
        bool& seen = t == "attn" ? attn : mlp;
        if ((t != "attn" && t != "mlp") || seen)
            throw UsageError("--lora-targets takes attn, mlp or attn,mlp, not '" + targets + "'");
        seen = true;
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return attn && mlp ? "attn,mlp" : attn ? "attn" : "mlp";
}

LoraConfig parse_lora(const std::string& value, const std::string& targets) {
    LoraConfig c;
    const size_t colon = value.find(':');
    const std::string rank = value.substr(0, colon);
    // A rank above 2^20 is no low-rank adapter; the bound keeps shapes far from overflow.
    auto r = parse_uint(rank, 1u << 20);
    if (!r || *r == 0)
        throw UsageError("--lora takes RANK[:ALPHA] with RANK a positive integer, not '" + value +
                             "'",
                         "e.g. --lora 8 or --lora 8:16");
    c.rank = *r;
    c.alpha = double(c.rank);
    if (colon != std::string::npos) {
        const std::string alpha = value.substr(colon + 1);
        char* end = nullptr;
        double a = std::strtod(alpha.c_str(), &end);
        if (alpha.empty() || end != alpha.c_str() + alpha.size() || !std::isfinite(a) || !(a > 0))
            throw UsageError("--lora " + value + ": ALPHA must be a positive number, not '" +
                             alpha + "'");
        c.alpha = a;
    }
    c.targets = canonical_targets(targets);
    return c;
}

std::vector<ModelSpec::TensorShape> lora_weights(const ModelSpec& spec,
                                                 const std::string& targets) {
    const bool attn = targets.find("attn") != std::string::npos;
    const bool mlp = targets.find("mlp") != std::string::npos;
    std::vector<ModelSpec::TensorShape> out;
    for (auto& t : spec.tensors()) {
        for (const char* leaf : {".attn.qkv.weight", ".attn.proj.weight"})
            if (attn && t.name.ends_with(leaf)) out.push_back(t);
        for (const char* leaf : {".mlp.fc1.weight", ".mlp.fc2.weight"})
            if (mlp && t.name.ends_with(leaf)) out.push_back(t);
    }
    bool has_block = false;
    for (auto& l : spec.layers) has_block = has_block || l.type == LayerType::transformer;
    if (!has_block)
        throw UsageError("only transformer blocks take LoRA adapters, and the model has none");
    return out;
}

std::vector<ModelSpec::TensorShape> adapter_shapes(const ModelSpec& spec, const LoraMeta& lm) {
    std::vector<ModelSpec::TensorShape> out;
    const int64_t r = int64_t(lm.rank);
    for (auto& w : lora_weights(spec, lm.targets)) {
        out.push_back({meta::lora_prefix + w.name + ".A", {r, w.shape[1]}});
        out.push_back({meta::lora_prefix + w.name + ".B", {w.shape[0], r}});
    }
    return out;
}

Metadata adapter_metadata(const LoraMeta& lm, const Model& base, uint64_t round) {
    Metadata md;
    md[meta::lora_base] = lm.base;
    md[meta::lora_rank] = std::to_string(lm.rank);
    md[meta::lora_alpha] = LoraMeta::alpha_text(lm.alpha);
    md[meta::lora_targets] = lm.targets;
    md[meta::spec_hash] = base.spec.hash();
    md[meta::round] = std::to_string(round);
    return md;
}

Adapter make_adapter(const LoraMeta& lm, const Model& base, std::vector<NamedTensor> tensors,
                     uint64_t round) {
    Adapter a;
    a.meta = lm;
    a.tensors = std::move(tensors);
    a.round = round;
    a.payload = make_payload(a.tensors, adapter_metadata(lm, base, round));
    a.hash = model_hash(a.payload);
    return a;
}

Adapter load_adapter(const std::string& path, const Model& base, const std::string& base_name) {
    Input in(path);
    const std::string where = "--adapter " + in.name();
    RecordReader reader(in);
    auto rec = reader.next();
    if (!rec) throw DataError(where + ": no records (empty input)");
    if (rec->type() != RecordType::model)
        throw DataError(where + ": record 1 is " +
                        std::string(rec->type() == RecordType::update ? "an " : "a ") +
                        std::string(type_name(rec->type())) + " record, not an adapter");
    Adapter a;
    a.payload.assign(rec->payload().begin(), rec->payload().end());
    if (reader.next()) throw DataError(where + ": holds more than one record, expected one");
    TensorSet set = TensorSet::parse(a.payload, where);
    auto lm = lora_meta(set, where);
    if (!lm)
        throw DataError(where + " is not a LoRA adapter (no lora_base)",
                        "write one with n3-train --init BASE --lora RANK --init-only");
    a.meta = *lm;
    a.hash = model_hash(a.payload);
    if (lm->base != base.hash)
        throw DataError(where + " adapts model " + short_hash(lm->base) + ", not " + base_name +
                        " (" + short_hash(base.hash) + ")");
    if (auto h = set.meta(meta::spec_hash); h && *h != base.spec.hash())
        throw DataError(where + ": spec_hash " + short_hash(*h) + " is not the base's (" +
                        short_hash(base.spec.hash()) + ")");
    if (auto r = set.meta(meta::round)) {
        auto v = parse_uint(*r);
        if (!v) throw DataError(where + ": metadata round '" + *r + "' is not a number");
        a.round = *v;
    }
    std::vector<ModelSpec::TensorShape> want;
    try {
        want = adapter_shapes(base.spec, *lm);
    } catch (const UsageError& e) {
        throw DataError(where + ": " + e.what());
    }
    if (set.tensors().size() != want.size())
        throw DataError(where + " holds " + std::to_string(set.tensors().size()) +
                        " tensors; an adapter of " + lm->describe() + " for this model has " +
                        std::to_string(want.size()));
    for (auto& w : want) {
        const TensorInfo* t = set.find(w.name);
        if (!t) throw DataError(where + ": no tensor '" + w.name + "'");
        if (t->shape != w.shape || t->dtype != DType::F32)
            throw DataError(where + ": tensor '" + w.name +
                            "' is not F32 of the shape the base and lora_rank give");
        NamedTensor nt{w.name, w.shape, std::vector<float>(t->numel())};
        auto data = set.data(*t);
        std::memcpy(nt.values.data(), data.data(), data.size());
        a.tensors.push_back(std::move(nt));
    }
    return a;
}

} // namespace n3::train
