// n3/train/model.hpp — model records, local training, evaluation and sampling.
//
//   Model m = load_model_record("global.n3", &spec_from_flag);  // or init_model(spec, text, seed)
//   configure_threads(2);                                        // OpenBLAS at 1, torch at 2
//   TrainResult r = train_model(m, examples, opts);              // r.payload: update or model
//   EvalResult e = evaluate_model(m, examples, threads);
//   std::string s = generate_text(m, "In the beginning", 200, 0.8, seed);
//
// A Model is a model record's payload (safetensors, F32 tensors named as the spec says) with
// its spec, hash and round. Training starts from it; the result is an update record (trained
// minus initial weights, metadata samples, base = hash of the initial model, spec_hash, round,
// loss, local_steps, momentum for FedNova) or a model record (the trained weights, carrying the
// spec YAML so that `--init` alone continues training). With one thread and the same seed the bytes
// are identical run to run.
//
// This header does not include libtorch; only engine.cpp does (the one heavy TU of lib/train).
// Errors: DataError (exit 1) for a record that is not a model (a LoRA adapter is refused with a
// hint: lora.hpp), a spec/record mismatch, labels out
// of range, data that does not fit the model, a NaN or infinite loss (no result is returned);
// UsageError/EnvError (exit 2) for bad options and an unavailable device.
#pragma once

#include "record/format.hpp"
#include "record/io.hpp"
#include "record/safetensors.hpp"
#include "train/data.hpp"
#include "train/spec.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace n3::train {

struct Model {
    ModelSpec spec;
    std::string spec_text; // the YAML, as written
    Bytes payload;         // safetensors bytes of the model record
    std::string hash;      // model_hash(payload)
    uint64_t round = 0;
    std::string tokenizer; // the SentencePiece model's bytes (metadata `tokenizer`), or empty
};

// A parameter's values, in spec order.
struct NamedTensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> values;
};

// Builds a model from a record file (path or "-"). `spec` (from --model, with its source text)
// is required when the record carries none, and must match the record's when it does.
Model load_model_record(const std::string& path, const std::optional<Model>& spec);
// The model's tensors as F32, checked against the spec (names, shapes, no extras).
std::vector<NamedTensor> model_tensors(const Model& m);
// Serialises tensors with metadata (sorted keys, spec order) into a safetensors payload.
Bytes make_payload(const std::vector<NamedTensor>& tensors, const Metadata& meta);
// A Model from a spec only (no weights yet): for load_model_record's `spec` argument.
Model spec_only(const std::string& yaml, const std::string& where);

// Freshly initialised weights (PyTorch's default initialisers, seeded), round 0. A
// `tokenizer: sentencepiece` spec needs the tokenizer's bytes (tokenizer.hpp), which the record
// then carries; UsageError without them, DataError when their vocabulary is not the spec's.
Model init_model(const ModelSpec& spec, const std::string& spec_text, uint64_t seed,
                 const std::string& tokenizer = {});

struct Adapter; // lora.hpp

struct TrainOptions {
    int epochs = 1;
    int64_t steps = 0; // when > 0, stop after this many steps (epochs is then a maximum too)
    int64_t batch = 64;
    double lr = 0.01;
    double momentum = 0;
    double weight_decay = 0;
    std::string optimizer = "sgd"; // sgd | adam
    double prox_mu = 0;
    uint64_t seed = 0;
    bool emit_model = false;
    // SCAFFOLD, option II (scaffold.hpp): the server's control variate c (spec order) turns the
    // training into SCAFFOLD's; the member's c_i may be empty (first round: zero). The update
    // then carries the control-variate delta as "scaffold/NAME" tensors and TrainResult the new
    // c_i, which the caller stores.
    const std::vector<NamedTensor>* scaffold_c = nullptr;
    const std::vector<NamedTensor>* scaffold_ci = nullptr;
    // DP-SGD (Abadi et al. 2016): each example's gradient clipped to L2 norm dp_clip, Gaussian
    // noise of std dp_noise * dp_clip (from the CSPRNG) added to the batch's sum; 0: off.
    double dp_clip = 0, dp_noise = 0, dp_delta = 1e-5;
    // LoRA (lora.hpp): the model's weights stay frozen and only the adapter's tensors train;
    // the update then holds the adapter's deltas (base = the adapter's hash, its lora_* keys),
    // emit_model the trained adapter.
    const Adapter* adapter = nullptr;
    Metadata metadata; // extra keys for the result (n3-train --receipt-key: receipt_key)
    // Called after every step (epoch from 1, step from 1, steps planned, running mean loss).
    std::function<void(int, int64_t, int64_t, double)> progress;
};

struct TrainResult {
    RecordType type = RecordType::update;
    Bytes payload;
    uint64_t samples = 0;   // training samples of this client (the update's weight)
    uint64_t processed = 0; // samples (LM: sequences) seen, counting repeats across epochs
    int64_t steps = 0;
    double seconds = 0;
    double loss = 0; // mean training loss over the last epoch (or the last steps)
    std::vector<NamedTensor> scaffold_ci; // SCAFFOLD: the member's new control variate
    double dp_epsilon = 0;                // DP-SGD: this update's epsilon at dp_delta
    uint64_t trainable = 0;               // elements the optimizer stepped
    uint64_t frozen_with_grad = 0;        // LoRA: model tensors that required a gradient (0)
};

TrainResult train_model(const Model& init, const Examples& data, const TrainOptions& opts);

struct EvalResult {
    bool lm = false;
    uint64_t samples = 0;     // classify: examples; lm: predicted tokens (bytes or pieces)
    uint64_t characters = 0;  // lm: bytes of text the tokens cover
    double loss = 0;          // mean cross-entropy (nats)
    double accuracy = 0;      // classify: top-1; lm: next-character
    double bits_per_char = 0; // lm: the tokens' loss in bits over the text's bytes
    double perplexity = 0;    // lm: exp(loss), per token
    std::vector<uint64_t> class_total, class_correct; // classify, per class
    double seconds = 0;
};

// With an adapter (lora.hpp, checked against m), the model's weights plus the adapter's.
EvalResult evaluate_model(const Model& m, const Examples& data, const Adapter* adapter = nullptr);

struct GenerateOptions {
    int64_t tokens = 200;
    double temperature = 0.8; // 0: greedy
    int64_t top_k = 0;        // 0: every token
    double top_p = 1;         // nucleus sampling; 1: off
    uint64_t seed = 0;
    // With the cache, the prompt runs once and every new token attends to the cached keys and
    // values of the positions before it; without, each token reruns the whole window. Both give
    // the same tokens while the sequence fits the context; past it, the cached run starts again
    // from the last half of the context, the uncached one slides its window by one.
    bool cache = true;
    std::function<void(const std::string&)> on_text; // text as it becomes final (streaming)
};

struct GenerateResult {
    std::string text;         // the continuation (decoded)
    std::vector<int64_t> ids; // its tokens
    int64_t prompt_tokens = 0, generated = 0;
    double prompt_seconds = 0, seconds = 0; // the prompt's pass (cache only); the tokens after
};

// A language model ready to sample from (its tensors and tokenizer loaded once, so that
// n3-eval --interactive answers many prompts). UsageError for a classifier or bad options.
class Generator {
public:
    explicit Generator(const Model& m, const Adapter* adapter = nullptr);
    ~Generator();
    GenerateResult run(const std::string& prompt, const GenerateOptions& opts);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Samples `tokens` tokens after `prompt` (temperature 0 = greedy). Returns the continuation.
std::string generate_text(const Model& m, const std::string& prompt, int64_t tokens,
                          double temperature, uint64_t seed);

// OpenBLAS to one thread (found with dlsym, so nothing links it; an explicit
// OPENBLAS_NUM_THREADS in the environment is left alone) and libtorch to `threads` (0 = every
// core). Returns the BLAS in use as a short note ("openblas", "other").
std::string configure_threads(int threads);
// Throws EnvError when `device` is not "cpu" and not available ("cuda" without a GPU build).
void check_device(const std::string& device);

} // namespace n3::train
