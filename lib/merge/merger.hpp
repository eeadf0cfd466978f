// n3/merge/merger.hpp — internal to n3_merge: the Merger behind run(), whose steps live in one
// file per noun. Not part of the public API.
//
//   merge.cpp      run(): load, check, pass over the data until no input is bad, metadata
//   checks.cpp     the request's options and every input, before any tensor data is read
//   aggregate.cpp  the passes: norms, Krum scores, weights, averages, the server optimiser step
//   state.cpp      the server state file of the stateful rules
//   fednova.cpp    FedNova's normalised weights;  scaffold.cpp  SCAFFOLD's control variates
//   lora.cpp       adapter updates merge only with updates of the same LoRA adapter
//   dp.cpp         DP-FedAvg: the noise's size, the accountant, the budget, the metadata
//
// A pass that finds an input bad throws NonFinite; run() rejects that input (a DataError, or a
// warning under --skip-bad) and starts the passes over without it, so an output never mixes
// the results of two input sets.
#pragma once

#include "merge/merge.hpp"
#include "merge/tensors.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace n3::merge {

// Thrown inside a pass when an input turns out bad (NaN or Inf, a norm above --max-norm, a
// checksum mismatch); the pass is redone without it under --skip-bad, else it becomes a
// DataError.
struct NonFinite {
    size_t item;
    std::string message;
};

// An input taking part in the merge.
struct Item {
    LoadedRecord* rec = nullptr;
    std::optional<TensorSet> set;
    Layout layout;
    Source src;
    bool is_self = false;
    bool bad = false;
    std::optional<uint64_t> samples;
    double raw_weight = 1;
    double norm = 0, clip = 1;
    double weight = 0; // normalised
    bool selected = true;
    std::optional<Scores> scores; // scores.cpp
    std::optional<LoraMeta> lora; // lora.cpp: the input's lora_* metadata
};

// One thread's buffers for a pass, sized by the pass that uses them.
struct Scratch {
    std::vector<double> acc;
    std::vector<float> in, base, out, m, v, gathered;
    std::vector<double> column, rows;
};

struct Result::Impl {
    RecordType type = RecordType::update;
    Metadata metadata;
    Layout layout;
    std::vector<DType> dtypes;
    Tensors out;
    // Server state (stateful rules only).
    std::optional<std::string> state_path;
    Metadata state_meta;
    Tensors state_m, state_v;
    bool has_v = false;
    std::vector<std::string> warnings;
    std::vector<InputReport> reports;
    std::vector<InputScore> scores;
    std::string base_hash;

    SafetensorsBuilder builder() const {
        SafetensorsBuilder b;
        b.set_metadata(metadata);
        for (size_t i = 0; i < layout.size(); ++i)
            b.add(layout[i].name, dtypes[i], layout[i].shape,
                  ByteView(out.data[i].data(), out.bytes[i]));
        return b;
    }
};

// "a model", "an update": for messages.
inline std::string article(std::string_view word) {
    return std::string(word.find_first_of("aeiou") == 0 ? "an " : "a ") + std::string(word);
}

class Merger {
public:
    explicit Merger(const Request& req) : req_(req), opt_(req.options), rule_(req.options.rule) {
        threads_ = opt_.threads ? opt_.threads : default_threads();
    }

    std::unique_ptr<Result::Impl> run();

private:
    // merge.cpp
    void load();
    std::vector<Item*> usable();
    void build_metadata(const std::vector<Item*>& items);

    // checks.cpp
    void check_request() const;
    void check_inputs();
    std::vector<Item*> by_position();
    void check_payloads(const std::vector<Item*>& by_pos);
    RecordType expected_type(const std::vector<Item*>& by_pos) const;
    void check_models_or_updates(const std::vector<Item*>& by_pos);
    void check_duplicates();
    void check_layouts(const std::vector<Item*>& by_pos);
    void check_samples(const std::vector<Item*>& by_pos);
    void check_base_models(const std::vector<Item*>& by_pos);
    void check_specs(const std::vector<Item*>& by_pos);
    void check_adapters(const std::vector<Item*>& by_pos); // lora.cpp
    void reject(Item& it, const std::string& msg, const std::string& hint = {});

    // aggregate.cpp
    void compute_norms(const std::vector<Item*>& items);
    void set_weights(const std::vector<Item*>& items);
    void select_krum(const std::vector<Item*>& items);
    // The symmetric n x n matrix whose (i, j) entry is the sum over the layout's chunks of
    // f(x_i, item i, x_j, item j, length) for i < j (and i == j with `diagonal`; 0 there
    // otherwise): one pass over the inputs in chunks on every thread, checksums verified on the
    // way. Used by Krum (squared distances) and the scores (dot products).
    using PairFn =
        std::function<double(const float*, const Item&, const float*, const Item&, size_t)>;
    std::vector<double> pairwise(const std::vector<Item*>& items, bool diagonal, const PairFn& f);
    void average(const std::vector<Item*>& items);
    void robust_average(const std::vector<Item*>& items);
    bool finish_chunk(const Chunk& c, const double* acc, Scratch& s);
    [[noreturn]] void diagnose(const std::vector<Item*>& items, const Chunk& c, Scratch& s);
    // Fused checksum verification of mapped records during a pass over chunks.
    void crc_begin(const std::vector<Item*>& items, const std::vector<Chunk>& chunks);
    uint64_t* crc_slot(size_t i, size_t c) {
        if (crc_pending_.empty() || !crc_pending_[i]) return nullptr;
        return &crc_table_[c * crc_pending_.size() + i];
    }
    void crc_end(const std::vector<Item*>& items);

    // fednova.cpp, scaffold.cpp, dp.cpp
    void fednova_weights(const std::vector<Item*>& items);
    void scaffold_check();
    double tensor_weight(const Item* it, size_t tensor) const {
        return control_.empty() || !control_[tensor] ? it->weight * it->clip : control_weight_;
    }
    void dp_check();
    void dp_noise(const std::vector<Item*>& items);
    void dp_metadata();
    double clip_norm() const { return adaptive_clip_ > 0 ? adaptive_clip_ : *opt_.clip_norm; }
    // scores.cpp
    void score_inputs(const std::vector<Item*>& items);
    bool reject_low_scores(const std::vector<Item*>& items); // true: some were skipped
    void report_scores();

    // state.cpp
    void load_state();
    void allocate_state();
    void finish_state();

    size_t index_of(const Item* it) const { return static_cast<size_t>(it - items_.data()); }
    NonFinite holds_nan(const Item* it, size_t tensor) const {
        return {index_of(it), "tensor '" + layout_[tensor].name + "' holds NaN or Inf"};
    }

    const Request& req_;
    const Options& opt_;
    const Rule& rule_;
    unsigned threads_;
    LoadResult loaded_;
    std::optional<LoadedRecord> base_rec_;
    std::optional<TensorSet> base_set_;
    std::string base_hash_;
    Source base_src_;
    std::vector<Item> items_; // canonical order
    RecordType kind_ = RecordType::update;
    Layout layout_;
    std::string base_of_updates_; // the base model hash the updates share
    // State read from --state (mapped), when it exists.
    std::shared_ptr<Mapping> state_map_;
    std::optional<TensorSet> state_set_;
    Source state_m_src_, state_v_src_;
    std::vector<char> crc_pending_;
    std::vector<uint64_t> crc_table_;
    const std::vector<Chunk>* crc_chunks_ = nullptr;
    uint64_t state_round_ = 0;
    std::vector<char> control_; // scaffold: tensor t is a control variate
    double control_weight_ = 0; // scaffold: 1 / population
    double adaptive_clip_ = 0;  // this round's clip norm under adaptive clipping
    double next_clip_ = 0;      // and the next round's
    double dp_sd_ = 0;          // noise std on the averaged coordinates
    std::string dp_meta_[4];    // dp_epsilon, dp_delta, dp_rounds, dp_rdp of this round
    bool scored_ = false;
    std::unique_ptr<Result::Impl> out_ = std::make_unique<Result::Impl>();
};

} // namespace n3::merge
