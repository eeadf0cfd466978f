// n3/train/tokenizer.hpp — SentencePiece tokenizers: training one on text, tokenizing with one.
//
//   std::string proto = train_tokenizer(text, 4096, "unigram");   // the model's bytes
//   Tokenizer tok = Tokenizer::load(proto, "tok.model");
//   std::vector<int32_t> ids = tok.encode("In the beginning\nGod");
//   std::string back = tok.decode(ids);                           // == the text
//
// A tokenizer is a SentencePiece model (Debian's libsentencepiece), trained with identity
// normalisation, whitespace kept as written and byte fallback, so every text encodes (unknown
// characters as their UTF-8 bytes) and decodes back to the same bytes. Lines are encoded one by
// one and joined by the end-of-sentence id, which decodes as '\n'. The model's bytes travel in
// a model record's `tokenizer` metadata (hex, man/n3-record.5), so every node tokenizes alike.
//
// libsentencepiece is called only from the module n3-sentencepiece.so, loaded on first use
// (sentencepiece_module.cpp says why); a missing module is an EnvError (exit 2). Errors: DataError
// (exit 1) for bytes that are not a SentencePiece model and for a tokenizer whose vocabulary
// differs from the model spec's; UsageError (exit 2) for a vocabulary size or model type
// SentencePiece refuses, or text too small to train on.
#pragma once

#include "train/model.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace n3::train {

// Trains a tokenizer of `vocab` pieces on `text` (its lines are the sentences); `type` is
// "unigram" or "bpe". Returns the serialised SentencePiece model. Deterministic for one input.
std::string train_tokenizer(const std::string& text, int64_t vocab, const std::string& type);

class Tokenizer {
public:
    // `where` names the source in messages. Throws DataError for bytes that do not load.
    static Tokenizer load(const std::string& model_bytes, const std::string& where);
    int64_t vocab() const;
    std::vector<int32_t> encode(std::string_view text) const;
    std::string decode(const std::vector<int32_t>& ids) const;
    const std::string& bytes() const { return bytes_; }

private:
    std::shared_ptr<void> sp_; // the module's SentencePieceProcessor
    std::string bytes_;
    int64_t pieces_ = 0;
    int eos_ = -1;
};

// The tokenizer a model record carries, checked against its spec: DataError when a
// `tokenizer: sentencepiece` spec's record carries none, or its vocabulary is not the spec's.
Tokenizer model_tokenizer(const Model& m);
// Checks that `t` fits `spec` (the same vocabulary size); `where` names t in the message.
void check_tokenizer(const ModelSpec& spec, const Tokenizer& t, const std::string& where);

} // namespace n3::train
