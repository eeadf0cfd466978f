// libFuzzer target: the YAML model spec parser (lib/train/spec.cpp, which needs no libtorch).
// Any input must either parse into a spec whose tensors and canonical form are computable,
// or throw n3::UsageError; nothing else may escape, crash or hang.
#include "record/error.hpp"
#include "train/spec.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string text(reinterpret_cast<const char*>(data), size);
    try {
        n3::train::ModelSpec s = n3::train::parse_spec(text, "fuzz.yaml");
        (void)s.tensors();
        (void)s.parameter_count();
        (void)s.hash();
    } catch (const n3::UsageError&) {
    }
    return 0;
}
