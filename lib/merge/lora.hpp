// n3/merge/lora.hpp — a LoRA adapter applied to the model it adapts (n3-merge --adapter).
//
//   AppliedAdapter a = apply_adapter("base.n3", "adapter.n3");
//   write_record(sink, RecordType::model, a.payload);      // an ordinary model record
//
// For every pair "lora/W.A" ([r, in]) and "lora/W.B" ([out, r]) of the adapter (meta::lora_*,
// man/n3-record.5), the model's tensor W ([out, in], F32) becomes W + (alpha / r) B A: each row's
// product is summed in double precision (kernel::axpy over the rows of A) and added to W in
// double before one rounding to float32 (kernel::store), so the result is the exactly rounded
// value up to the double-precision sum's own rounding. Every other tensor and the metadata are
// the model's, unchanged; the output holds no lora tensor and no lora_* key.
//
// Merging adapter updates onto an adapter is an ordinary merge (merge.hpp); its checks that
// every input belongs to the same adapter (lora_base, rank, alpha, targets) are in lora.cpp.
//
// Failures: DataError (exit 1) when --base is no model or is itself an adapter, --adapter is no
// adapter, the adapter's lora_base is not the model's hash (both hashes in the message), or its
// tensors do not fit the model (a missing A or B, another rank, shapes, a non-F32 weight, a
// result that is not finite); EnvError for files that cannot be read.
#pragma once

#include "record/format.hpp"

#include <cstddef>
#include <string>

namespace n3::merge {

struct AppliedAdapter {
    Bytes payload;            // the adapted model's safetensors payload
    size_t weights = 0;       // tensors the adapter changed
    std::string base_hash;    // the model's hash (= the adapter's lora_base)
    std::string adapter_hash; // the adapter record's hash
};

AppliedAdapter apply_adapter(const std::string& base_path, const std::string& adapter_path);

} // namespace n3::merge
