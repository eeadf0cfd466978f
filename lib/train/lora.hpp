// n3/train/lora.hpp — LoRA adapters (Hu et al., "LoRA: Low-Rank Adaptation of Large Language
// Models", ICLR 2022) on the member's side, without libtorch: flags, adapter records, checks.
//
//   LoraConfig c = parse_lora("8:16", "attn,mlp");        // n3-train --lora, --lora-targets
//   Adapter a = init_adapter(base, c, seed);              // A Kaiming-uniform, B zero (engine.cpp)
//   Adapter a = load_adapter("a.n3", base);               // refuses another base's adapter
//   TrainOptions o; o.adapter = &a;                        // train_model trains a's tensors only
//
// An adapter record is a model record holding only the tensors "lora/WEIGHT.A" ([r, in], F32)
// and "lora/WEIGHT.B" ([out, r]) for every targeted weight WEIGHT ([out, in]) of the base model,
// in the spec's order, with metadata lora_base (the base record's hash, model_hash), lora_rank,
// lora_alpha, lora_targets, spec_hash (the base's spec) and round. The adapted weight is
// WEIGHT + (alpha / r) B A; forward() adds it at run time as x A^T B^T (alpha / r). Targets:
// attn = every transformer block's attn.qkv.weight and attn.proj.weight, mlp = mlp.fc1.weight
// and mlp.fc2.weight.
//
// Failures: UsageError (exit 2) for a bad --lora or --lora-targets value and for a spec with no
// transformer block; DataError (exit 1) for a record that is not an adapter, an adapter of
// another model (the message names both hashes), or tensors that do not fit the base.
#pragma once

#include "record/safetensors.hpp"
#include "train/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace n3::train {

struct LoraConfig {
    uint64_t rank = 0;
    double alpha = 0;                 // defaults to rank
    std::string targets = "attn,mlp"; // canonical: "attn,mlp", "attn" or "mlp"
};

// "RANK[:ALPHA]" (RANK a positive integer, ALPHA a positive number) and "attn,mlp", "mlp,attn",
// "attn" or "mlp"; UsageError naming the flag otherwise.
LoraConfig parse_lora(const std::string& value, const std::string& targets = "attn,mlp");
std::string canonical_targets(const std::string& targets); // UsageError for a bad list

// The weights that `targets` adapts in a spec, in spec order, with their [out, in] shapes.
std::vector<ModelSpec::TensorShape> lora_weights(const ModelSpec& spec, const std::string& targets);

struct Adapter {
    LoraMeta meta;
    std::vector<NamedTensor> tensors; // lora/W.A then lora/W.B for every weight W, spec order
    Bytes payload;                    // the adapter record's payload
    std::string hash;                 // model_hash(payload): the base of its updates
    uint64_t round = 0;
};

// The metadata of an adapter (or, with its own additions, of an adapter update) of `base`.
Metadata adapter_metadata(const LoraMeta& lm, const Model& base, uint64_t round);
// An adapter from its tensors: payload and hash filled in.
Adapter make_adapter(const LoraMeta& lm, const Model& base, std::vector<NamedTensor> tensors,
                     uint64_t round);
// A fresh adapter: every A drawn from U(-1/sqrt(in), 1/sqrt(in)) (PEFT's Kaiming-uniform with
// a = sqrt(5)) from `seed`, every B zero, so base + adapter starts as the base. In engine.cpp.
Adapter init_adapter(const Model& base, const LoraConfig& c, uint64_t seed);
// Reads an adapter record (path or "-") and checks it against `base`, which messages call
// `base_name` ("--init base.n3").
Adapter load_adapter(const std::string& path, const Model& base, const std::string& base_name);
// The tensors an adapter of `lm` must hold for `base`'s spec, names and shapes, in order.
std::vector<ModelSpec::TensorShape> adapter_shapes(const ModelSpec& spec, const LoraMeta& lm);

// "1234abcd5678ef90…": the short form of a hash in messages.
std::string short_hash(const std::string& hash);

} // namespace n3::train
