// n3/train/spec.hpp — model specs: a small YAML layer list that describes a network.
//
//   ModelSpec spec = parse_spec(read_text_file("cnn.yaml"), "cnn.yaml");
//   spec.hash();   // BLAKE2b-256 hex of the canonical form (formatting and comments ignored)
//
// A spec names a task (classify: inputs of a fixed shape to `classes` logits; lm: a sequence
// of tokens to next-token logits over `vocab`: bytes, or the pieces of a SentencePiece
// tokenizer with `tokenizer: sentencepiece`), the input shape or context length, and an
// ordered list of layers. Each layer gets a stable name (its `name`, or <type><index>), and its
// tensors are called <name>.<tensor> (conv1.weight, block0.attn.qkv.bias, ...), so names in a
// record match the spec. Shapes are inferred while parsing: a layer that does not fit the one
// before it is a spec error, reported before any tensor exists.
//
// This part of lib/train does not need libtorch (the fuzz build parses specs without it).
// Errors throw UsageError "<where>:<line>: <what is wrong>" (exit 2); callers reading a spec
// from a record rethrow it as DataError.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace n3::train {

enum class Task { classify, lm };
enum class TokenizerKind { bytes, sentencepiece };

enum class LayerType {
    linear,
    conv2d,
    maxpool2d,
    avgpool2d,
    flatten,
    relu,
    gelu,
    tanh,
    dropout,
    layernorm,
    embedding,
    position,    // learned positional embedding added to the sequence
    transformer, // pre-norm block: causal self-attention and an MLP, both residual
};

struct Layer {
    LayerType type = LayerType::relu;
    std::string name;
    int line = 0;        // 1-based line in the YAML source, for messages
    int64_t in = 0;      // linear/conv2d input features or channels
    int64_t out = 0;     // linear/conv2d output features or channels
    int64_t kernel = 0;  // conv2d/pool kernel size
    int64_t stride = 0;  // conv2d (default 1) / pool (default kernel)
    int64_t padding = 0; // conv2d
    bool bias = true;    // linear/conv2d
    double p = 0;        // dropout probability (also transformer dropout)
    int64_t dim = 0;     // layernorm/embedding/position/transformer width
    int64_t vocab = 0;   // embedding rows
    int64_t context = 0; // position rows
    int64_t heads = 0;   // transformer attention heads
    int64_t hidden = 0;  // transformer MLP width
    bool rotary = false; // transformer: rotary position embedding of queries and keys
    std::string tied;    // linear: the embedding layer whose table is the weight (no tensor)
};

struct ModelSpec {
    std::string name;
    Task task = Task::classify;
    std::vector<int64_t> input; // classify: per-sample shape, e.g. {1, 28, 28} or {784}
    int64_t classes = 0;        // classify
    TokenizerKind tokenizer = TokenizerKind::bytes; // lm
    int64_t vocab = 0;   // lm: bytes: at most 256; sentencepiece: the tokenizer's pieces
    int64_t context = 0; // lm: sequence length the model is trained on
    std::vector<Layer> layers;

    // Canonical text: every field, defaults filled in, no comments (what the hash covers).
    std::string canonical() const;
    std::string hash() const;
    // Names of the tensors the model has, in order, with their shapes.
    struct TensorShape {
        std::string name;
        std::vector<int64_t> shape;
    };
    std::vector<TensorShape> tensors() const;
    int64_t parameter_count() const;
};

std::string_view layer_type_name(LayerType t);

// Parses and checks a spec. `where` names the source in messages (a path, or "record spec").
ModelSpec parse_spec(const std::string& yaml, const std::string& where);

} // namespace n3::train
