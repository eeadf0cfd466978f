// n3/train/scaffold.cpp — control variates in model records and member state files.
#include "train/scaffold.hpp"

#include "record/error.hpp"
#include "record/io.hpp"
#include "record/safetensors.hpp"

#include <cerrno>
#include <cstring>
#include <sys/stat.h>

namespace n3::train {

namespace {

constexpr const char* kStateKey = "n3_state";
constexpr const char* kStateKind = "scaffold-member";

NamedTensor read_f32(const TensorSet& set, const std::string& name, const NamedTensor& like,
                     const std::string& where) {
    const TensorInfo* t = set.find(name);
    if (!t) throw DataError(where + ": no tensor '" + name + "'");
    if (t->shape != like.shape || t->dtype != DType::F32)
        throw DataError(where + ": tensor '" + name + "' is not F32 of the model tensor's shape");
    NamedTensor nt{like.name, like.shape, std::vector<float>(t->numel())};
    auto data = set.data(*t);
    std::memcpy(nt.values.data(), data.data(), data.size());
    return nt;
}

} // namespace

Model with_zero_control(const Model& m) {
    auto params = model_tensors(m);
    TensorSet set = TensorSet::parse(m.payload, "model");
    std::vector<NamedTensor> all = params;
    for (auto& p : params)
        all.push_back(
            {meta::control_prefix + p.name, p.shape, std::vector<float>(p.values.size(), 0.0f)});
    Model out = m;
    out.payload = make_payload(all, set.metadata());
    out.hash = model_hash(out.payload);
    return out;
}

std::vector<NamedTensor> control_tensors(const Model& m) {
    TensorSet set = TensorSet::parse(m.payload, "model");
    const std::string prefix = meta::control_prefix;
    size_t count = 0;
    for (auto& t : set.tensors()) count += t.name.rfind(prefix, 0) == 0;
    std::vector<NamedTensor> out;
    if (count == 0) return out;
    auto params = model_tensors(m);
    if (count != params.size())
        throw DataError("model: " + std::to_string(count) + " '" + prefix + "' tensors for " +
                        std::to_string(params.size()) + " model tensors");
    for (auto& p : params) out.push_back(read_f32(set, prefix + p.name, p, "model"));
    return out;
}

std::optional<std::vector<NamedTensor>> read_member_state(const std::string& path, const Model& m) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        if (errno != ENOENT) throw_errno(path);
        return std::nullopt; // first use: c_i = 0
    }
    const std::string where = "--scaffold " + path;
    Bytes bytes = read_file(path);
    TensorSet set = TensorSet::parse(bytes, where);
    auto kind = set.meta(kStateKey);
    if (!kind || *kind != kStateKind)
        throw DataError(where + " is not a SCAFFOLD member state (no n3_state=" + kStateKind + ")");
    if (set.meta(meta::spec_hash) != m.spec.hash())
        throw DataError(where + " belongs to another model spec",
                        "each model keeps its own member state");
    auto params = model_tensors(m);
    if (set.tensors().size() != params.size())
        throw DataError(where + " holds " + std::to_string(set.tensors().size()) +
                        " tensors, the model " + std::to_string(params.size()));
    std::vector<NamedTensor> out;
    for (auto& p : params) out.push_back(read_f32(set, p.name, p, where));
    return out;
}

void write_member_state(const std::string& path, const std::vector<NamedTensor>& ci,
                        const Model& m) {
    Metadata md;
    md[kStateKey] = kStateKind;
    md[meta::spec_hash] = m.spec.hash();
    Bytes payload = make_payload(ci, md);
    Output out(path, OutputOptions{.force = true, .binary = false});
    out.write(ByteView(payload.data(), payload.size()));
    out.commit();
}

} // namespace n3::train
