// n3/merge/merge.hpp — aggregation rules: FedAvg, FedAvgM, FedAdam/FedYogi/FedAdagrad, coordinate
// median, trimmed mean, Krum/Multi-Krum, gossip mixing; norm clipping before any rule.
//
//   Request req;
//   req.inputs = {"a.n3", "b.n3"};          // update (or model) records; "-" is stdin
//   req.base = "global.n3";                 // optional: apply the aggregate to this model
//   req.options.rule = Rule::parse("trimmed-mean:0.2");
//   Result res = run(req);                  // reads, checks, aggregates; writes nothing
//   res.write(sink);                        // the one output record
//   res.save_state();                       // fedavgm/fedopt: the new server state, atomically
//
// Determinism: inputs are processed in a canonical order that depends on their bytes only, each
// coordinate is summed in double precision in that order, and sums over coordinates (norms,
// Krum distances) are taken over fixed chunks reduced in chunk order. So the same inputs in any
// order, on any number of threads, give bit-identical output.
//
// Memory: coordinates are processed in chunks on every core; a rule keeps one chunk per input
// plus its output (and, for the stateful rules, the new server state). Tensor data is read
// with pread() into those chunks (and any mapped pages are dropped once used), so memory does
// not grow with the number of inputs, and median, trimmed mean and Krum work on inputs larger
// than RAM. Each record's checksum is verified inside the first pass (see inputs.hpp).
//
// FedNova (fednova.cpp) and SCAFFOLD (scaffold.cpp) are weighted averages like fedavg, with
// their own per-input and per-tensor factors; DP-FedAvg (dp.cpp) adds Gaussian noise to the
// clipped average and keeps the privacy accountant's running total in the model's metadata.
//
// Failures: DataError (exit 1) naming the offending input for every bad input (wrong record
// type, models mixed with updates, NaN/Inf, tensor names/shapes/dtypes that differ, another base
// model or model spec, an update of another LoRA adapter (lora.hpp), duplicated input, missing
// sample count, a norm above max_norm) unless skip_bad, which drops the input and returns a
// warning; DataError for a zero total weight; IncompleteError (exit 3) for fewer than min_inputs
// usable inputs or too few for the rule (Krum needs n >= 2f+3); UsageError for options that do not
// fit; EnvError for files that cannot be read or written. Bad state files (another rule, another
// model) are DataErrors.
#pragma once

#include "merge/inputs.hpp"
#include "record/safetensors.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace n3::merge {

enum class RuleKind {
    fedavg,
    fedavgm,
    fedadam,
    fedyogi,
    fedadagrad,
    median,
    trimmed_mean,
    krum,
    multi_krum,
    mix,
    fednova,
    scaffold,
    // secure-sum (masked U32 records) joins here with its own arm in run()
};

struct Rule {
    RuleKind kind = RuleKind::fedavg;
    double trim = 0.1;       // trimmed-mean:BETA, fraction cut at each end
    std::optional<size_t> f; // krum:F / multi-krum:F,M, Byzantine inputs tolerated
    std::optional<size_t> m; // multi-krum: how many to average
    // "fedavg", "trimmed-mean:0.2", "krum:2", "multi-krum:2,5", ...; throws UsageError.
    static Rule parse(const std::string& text);
    std::string name() const; // base name, e.g. "multi-krum"
    bool stateful() const;    // keeps server state (fedavgm, fedadam, fedyogi, fedadagrad)
    bool adaptive() const;    // fedadam, fedyogi, fedadagrad
    bool robust() const;      // median, trimmed-mean, krum, multi-krum: ignore `samples`
};

std::vector<std::string> rule_names();

enum class WeightMode { samples, uniform, list };

struct Options {
    Rule rule;
    WeightMode weights = WeightMode::samples;
    std::vector<double> weight_list;   // WeightMode::list, one per input record in order
    std::optional<double> self_weight; // with Request::self
    std::optional<double> clip_norm;   // scale each update to at most this L2 norm
    std::optional<double> max_norm;    // refuse (or skip) inputs whose L2 norm exceeds this
    std::optional<double> server_lr;   // default 1, or 0.01 for the adaptive rules
    double beta1 = 0.9, beta2 = 0.99, tau = 1e-3;
    size_t min_inputs = 1;
    bool skip_bad = false;
    unsigned threads = 0;  // 0: one per core
    std::string spool_dir; // for stdin; empty: $TMPDIR or /tmp
    // DP-FedAvg (dp.cpp): noise of std dp_noise * clip_norm on the sum of the clipped updates.
    std::optional<double> dp_noise;
    double dp_delta = 1e-5, dp_rate = 1;
    std::optional<double> dp_budget;    // refuse (IncompleteError) a round that would exceed it
    std::optional<uint64_t> population; // scaffold: members in all (default: the inputs)
    // Adaptive clipping (Andrew et al. 2021): the clip norm follows the quantile clip_quantile of
    // the update norms, from the count of unclipped updates noised with std clip_count_noise
    // (default n/20), by C <- C exp(-clip_lr (share - quantile)); kept in the model's metadata.
    std::optional<double> clip_quantile, clip_count_noise;
    double clip_lr = 0.2;
    // Contribution scores (scores.cpp): rate every update against the others before the rule
    // runs; inputs whose `min_score_of` score is below `min_score` are skipped with a warning.
    bool scores = false;
    std::optional<double> min_score;
    std::string min_score_of = "score"; // score, cosine or holdout (the loss drop)
    // --holdout: the loss of a model payload on the merger's evaluation set (needs --base);
    // infinity for a model that cannot be evaluated (a NaN or infinite loss).
    std::function<double(ByteView model_payload)> holdout_loss;
};

// How an update agrees with the others (scores.cpp, man/n3-merge.1 SCORES). `cosine` is the
// cosine similarity with the leave-one-out aggregate, the mean direction of the other updates
// (each scaled to unit norm first, so that no large update dominates it), `krum` the sum of squared
// distances to its n-f-2 nearest others (lower is closer), `norm_ratio` its L2 norm over the median
// norm, `holdout` the drop of the holdout loss when it alone is applied to the base (higher
// is better), `score` = max(0, cosine) * min(norm_ratio, 1 / norm_ratio).
struct Scores {
    double cosine = 1, krum = 0, norm_ratio = 1, score = 1;
    std::optional<double> holdout;
};
struct InputScore {
    std::string name;
    std::string hash;        // model_hash of the input's record payload
    std::string receipt_key; // the input's receipt_key metadata, or ""
    double weight = 0;       // normalised weight in the aggregate, 0 unless accepted
    bool accepted = false;   // merged with a weight above zero
    Scores scores;
};
// "score" -> the value of that score (nullopt for holdout when not computed); UsageError for
// another name.
std::optional<double> score_named(const Scores& s, const std::string& name);

// Parses "uniform", "samples" or "W1,W2,..." (non-negative numbers); throws UsageError.
void parse_weights(const std::string& text, Options& opts);

struct Request {
    std::vector<std::string> inputs;  // paths; "-" is stdin
    std::optional<std::string> base;  // apply the aggregate to this model
    std::optional<std::string> self;  // mix: this node's own model
    std::optional<std::string> state; // server state file for the stateful rules
    Options options;
};

struct InputReport {
    std::string name;
    double weight = 0; // normalised weight in the aggregate (0 when not selected by Krum)
    double norm = 0;   // L2 norm before clipping (computed with clip_norm or max_norm)
    double clip_scale = 1;
    bool selected = true; // Krum/Multi-Krum choice
};

class Result {
public:
    Result();
    ~Result();
    Result(Result&&) noexcept;
    Result& operator=(Result&&) noexcept;

    RecordType type() const;
    const Metadata& metadata() const;
    uint64_t payload_size() const;
    void write(Sink& out) const; // the output record
    Bytes payload() const;       // its payload (tests)
    // Writes the new server state to Request::state atomically (no-op for stateless rules).
    void save_state() const;
    const std::vector<std::string>& warnings() const;
    const std::vector<InputReport>& inputs() const; // canonical order
    const std::vector<InputScore>& scores() const;  // with Options::scores, canonical order
    const std::string& base_hash() const;           // the --base model's hash, or ""

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
    friend Result run(const Request& req);
};

Result run(const Request& req);

} // namespace n3::merge
