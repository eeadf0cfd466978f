// Model records without libtorch: reading, checking against the spec, writing payloads.
#include "train/model.hpp"

#include "record/error.hpp"
#include "record/hex.hpp"
#include "record/number.hpp"
#include "record/safetensors.hpp"

#include <cstring>

namespace n3::train {

Model spec_only(const std::string& yaml, const std::string& where) {
    Model m;
    m.spec = parse_spec(yaml, where);
    m.spec_text = yaml;
    return m;
}

Model load_model_record(const std::string& path, const std::optional<Model>& spec) {
    Input in(path);
    RecordReader reader(in);
    auto rec = reader.next();
    if (!rec) throw DataError(in.name() + ": no records (empty input)");
    if (rec->type() != RecordType::model)
        throw DataError(in.name() + ": record 1 is a " + std::string(type_name(rec->type())) +
                            " record, not a model",
                        rec->type() == RecordType::update
                            ? "merge updates into a model first: n3-merge"
                        : rec->type() == RecordType::packed || rec->type() == RecordType::shard
                            ? "decode it first: n3-encode -d"
                        : rec->type() == RecordType::sealed ? "open it first: n3-seal --open"
                                                            : "");
    Model m;
    m.payload.assign(rec->payload().begin(), rec->payload().end());
    if (reader.next())
        throw DataError(in.name() + ": holds more than one record, expected one model");
    TensorSet set = TensorSet::parse(m.payload, in.name());
    if (set.meta(meta::lora_base))
        throw DataError(in.name() + " is a LoRA adapter, not a model",
                        "give the model it adapts, and this file as --adapter");
    m.hash = model_hash(m.payload);
    if (auto r = set.meta(meta::round)) {
        auto v = parse_uint(*r);
        if (!v) throw DataError(in.name() + ": metadata round '" + *r + "' is not a number");
        m.round = *v;
    }
    if (auto tk = set.meta(meta::tokenizer)) {
        auto bytes = from_hex(*tk);
        if (!bytes || bytes->empty())
            throw DataError(in.name() + ": metadata tokenizer is not hex digits");
        m.tokenizer.assign(bytes->begin(), bytes->end());
    }
    auto text = set.meta(meta::spec);
    if (text) {
        try {
            m.spec = parse_spec(*text, in.name() + ": spec");
        } catch (const UsageError& e) {
            throw DataError(e.what());
        }
        m.spec_text = *text;
        if (spec && spec->spec.hash() != m.spec.hash())
            throw DataError(in.name() + ": the model was built from another spec than --model",
                            "the record's spec_hash is " + m.spec.hash().substr(0, 16) +
                                "..., --model gives " + spec->spec.hash().substr(0, 16) +
                                "...; drop --model to continue with the record's spec");
    } else if (spec) {
        m.spec = spec->spec;
        m.spec_text = spec->spec_text;
    } else {
        throw DataError(in.name() + ": the model record carries no spec", "add --model SPEC.yaml");
    }
    if (auto h = set.meta(meta::spec_hash); h && *h != m.spec.hash())
        throw DataError(in.name() + ": spec_hash " + h->substr(0, 16) +
                        "... does not match the spec (" + m.spec.hash().substr(0, 16) + "...)");
    if (m.spec.tokenizer == TokenizerKind::sentencepiece && m.tokenizer.empty())
        throw DataError(in.name() + ": the spec says tokenizer: sentencepiece but the record "
                                    "carries no tokenizer",
                        "build the model with n3-train --init-only --tokenizer-model FILE");
    model_tensors(m); // validates names and shapes
    return m;
}

std::vector<NamedTensor> model_tensors(const Model& m) {
    TensorSet set = TensorSet::parse(m.payload, "model");
    auto expected = m.spec.tensors();
    std::vector<NamedTensor> out;
    for (auto& e : expected) {
        const TensorInfo* t = set.find(e.name);
        if (!t) throw DataError("model: tensor '" + e.name + "' required by the spec is missing");
        if (t->shape != e.shape) {
            auto text = [](const std::vector<int64_t>& v) {
                std::string s;
                for (size_t i = 0; i < v.size(); ++i) s += (i ? "x" : "") + std::to_string(v[i]);
                return s;
            };
            throw DataError("model: tensor '" + e.name + "' has shape " + text(t->shape) +
                            ", the spec says " + text(e.shape));
        }
        if (!is_float(t->dtype))
            throw DataError("model: tensor '" + e.name + "' has dtype " +
                            std::string(dtype_name(t->dtype)) + ", expected a float type");
        NamedTensor nt{e.name, e.shape, {}};
        auto data = set.data(*t);
        nt.values.resize(t->numel());
        if (t->dtype == DType::F32) {
            std::memcpy(nt.values.data(), data.data(), data.size());
        } else {
            for (uint64_t i = 0; i < t->numel(); ++i)
                nt.values[i] = float(element_as_double(t->dtype, data.data(), i));
        }
        out.push_back(std::move(nt));
    }
    if (set.tensors().size() != expected.size()) { // extras: only control variates may be
        for (auto& t : set.tensors()) {
            bool known = false;
            for (auto& e : expected) known = known || e.name == t.name;
            // SCAFFOLD's server control variate travels with the model (scaffold.hpp).
            if (!known && t.name.rfind(meta::control_prefix, 0) == 0) continue;
            if (!known) throw DataError("model: tensor '" + t.name + "' is not in the spec");
        }
    }
    return out;
}

Bytes make_payload(const std::vector<NamedTensor>& tensors, const Metadata& meta) {
    SafetensorsBuilder b;
    b.set_metadata(meta);
    for (auto& t : tensors)
        b.add(t.name, DType::F32, t.shape,
              ByteView(reinterpret_cast<const uint8_t*>(t.values.data()),
                       t.values.size() * sizeof(float)));
    return b.bytes();
}

} // namespace n3::train
