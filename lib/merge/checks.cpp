// n3/merge/checks.cpp — everything n3-merge refuses before it reads any tensor data: options
// that do not fit together, and inputs that cannot be merged with the others (wrong record
// type, models mixed with updates, duplicates, other tensors, another base model or spec,
// no sample count). The tensor data itself is checked during the passes (aggregate.cpp).
#include "merge/merger.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <map>

namespace n3::merge {

namespace {

// The first usable input, in canonical order, holding the value of key() that most usable
// inputs share; null when no usable input has one. Ties go to canonical order, so the
// reference the others are held to depends only on the inputs' bytes.
template <class Key> const Item* majority(const std::vector<Item>& items, Key key) {
    std::vector<std::optional<std::string>> keys;
    std::map<std::string, size_t> votes;
    for (auto& it : items) {
        keys.push_back(it.bad ? std::nullopt : key(it));
        if (keys.back()) votes[*keys.back()]++;
    }
    const Item* most = nullptr;
    size_t best = 0;
    for (size_t i = 0; i < items.size(); ++i)
        if (keys[i] && votes[*keys[i]] > best) best = votes[*keys[i]], most = &items[i];
    return most;
}

std::optional<std::string> layout_of_item(const Item& it) {
    return layout_key(it.layout);
}
// Updates without a base hash agree with each other.
std::optional<std::string> base_of_item(const Item& it) {
    return it.set->meta(meta::base).value_or("");
}
// Inputs without a spec hash do not vote.
std::optional<std::string> spec_of_item(const Item& it) {
    return it.set->meta(meta::spec_hash);
}

} // namespace

void Merger::check_request() const {
    if (rule_.stateful() && !req_.state)
        throw UsageError("rule " + rule_.name() + " keeps server state between rounds",
                         "give --state FILE (created on the first round)");
    if (!rule_.stateful() && req_.state)
        throw UsageError("--state is for fedavgm, fedadam, fedyogi and fedadagrad, not " +
                         rule_.name());
    if (rule_.kind == RuleKind::mix && req_.base)
        throw UsageError("mix averages models; --base applies updates",
                         "drop --base, or use --rule fedavg for updates");
    if ((req_.self || opt_.self_weight) && rule_.kind != RuleKind::mix)
        throw UsageError("--self and --self-weight are for --rule mix");
    if (opt_.self_weight && !req_.self) throw UsageError("--self-weight needs --self FILE");
    if (opt_.self_weight && (*opt_.self_weight < 0 || *opt_.self_weight > 1))
        throw UsageError("--self-weight must be in [0, 1]");
    if (opt_.self_weight && opt_.weights == WeightMode::list)
        throw UsageError("--self-weight and a --weights list both set the weights", "give one");
    if (rule_.robust() && opt_.weights == WeightMode::list)
        throw UsageError("rule " + rule_.name() + " does not weight its inputs");
    if (opt_.clip_norm && !(*opt_.clip_norm > 0)) throw UsageError("--clip-norm must be positive");
    if (opt_.max_norm && !(*opt_.max_norm > 0)) throw UsageError("--max-norm must be positive");
    if (opt_.server_lr && !(*opt_.server_lr > 0)) throw UsageError("--server-lr must be positive");
    if (opt_.beta1 < 0 || opt_.beta1 >= 1) throw UsageError("--beta1 must be in [0, 1)");
    if (opt_.beta2 < 0 || opt_.beta2 >= 1) throw UsageError("--beta2 must be in [0, 1)");
    if (!(opt_.tau > 0)) throw UsageError("--tau must be positive");
    if (opt_.population && rule_.kind != RuleKind::scaffold)
        throw UsageError("--population is for --rule scaffold");
    if (!opt_.dp_noise) {
        if (opt_.dp_budget) throw UsageError("--dp-budget needs --dp-noise Z");
        if (opt_.clip_quantile)
            throw UsageError("--clip-quantile is DP-FedAvg's: give --dp-noise Z");
        return;
    }
    if (!(*opt_.dp_noise > 0)) throw UsageError("--dp-noise must be positive");
    if (!opt_.clip_norm)
        throw UsageError("--dp-noise needs --clip-norm C", "the noise std is Z*C on the sum");
    if (!req_.base)
        throw UsageError("--dp-noise needs --base MODEL",
                         "the accountant's total travels in the model's metadata");
    if (rule_.robust() || rule_.kind == RuleKind::mix || rule_.kind == RuleKind::fednova ||
        rule_.kind == RuleKind::scaffold)
        throw UsageError("--dp-noise is for fedavg and the server optimisers, not " + rule_.name());
    if (opt_.weights != WeightMode::uniform)
        throw UsageError("--dp-noise averages with equal weights",
                         "drop --weights, or give --weights uniform");
    if (!(opt_.dp_delta > 0 && opt_.dp_delta < 1)) throw UsageError("--dp-delta must be in (0, 1)");
    if (!(opt_.dp_rate > 0 && opt_.dp_rate <= 1)) throw UsageError("--dp-rate must be in (0, 1]");
    if (opt_.dp_budget && !(*opt_.dp_budget > 0)) throw UsageError("--dp-budget must be positive");
    if (opt_.clip_quantile && !(*opt_.clip_quantile > 0 && *opt_.clip_quantile < 1))
        throw UsageError("--clip-quantile must be in (0, 1)");
    if (opt_.clip_count_noise && !(*opt_.clip_count_noise > 0))
        throw UsageError("--clip-count-noise must be positive");
    if (!(opt_.clip_lr > 0)) throw UsageError("--clip-lr must be positive");
}

void Merger::reject(Item& it, const std::string& msg_in, const std::string& hint_in) {
    // A corrupted record shows up as whatever its damage looks like; name the real cause.
    std::string msg = msg_in, hint = hint_in;
    if (!it.rec->verified) {
        if (!verify(*it.rec)) msg = "corrupted record (checksum mismatch)", hint.clear();
        it.rec->verified = true;
    }
    if (!opt_.skip_bad) throw DataError(it.rec->name + ": " + msg, hint);
    it.bad = true;
    out_->warnings.push_back(it.rec->name + ": " + msg + " (skipped)");
}

void Merger::check_inputs() {
    std::vector<Item*> by_pos = by_position();
    check_payloads(by_pos);
    check_models_or_updates(by_pos);
    check_duplicates();
    check_adapters(by_pos);
    check_layouts(by_pos);
    check_samples(by_pos);
    check_base_models(by_pos);
    check_specs(by_pos);
}

// Checks run in command-line order so the first complaint is about the first bad input.
std::vector<Item*> Merger::by_position() {
    std::vector<Item*> by_pos;
    for (auto& it : items_) by_pos.push_back(&it);
    std::sort(by_pos.begin(), by_pos.end(),
              [](Item* a, Item* b) { return a->rec->position < b->rec->position; });
    return by_pos;
}

void Merger::check_payloads(const std::vector<Item*>& by_pos) {
    for (Item* it : by_pos) {
        RecordType t = it->rec->record.type();
        if (t != RecordType::model && t != RecordType::update) {
            std::string hint = t == RecordType::packed || t == RecordType::shard
                                   ? "decode it first: n3-encode -d"
                               : t == RecordType::sealed ? "open it first: n3-seal --open"
                                                         : "";
            reject(*it, "is " + article(type_name(t)) + " record, not an update or model", hint);
            continue;
        }
        try {
            it->set = TensorSet::parse(it->rec->record.payload(), it->rec->name);
            it->layout = layout_of(*it->set);
            // Reading a header maps the pages around it too (the kernel's fault-around, 64 KiB):
            // 1,000 inputs would hold 64 MiB that no pass needs yet.
            release_around(*it->rec);
        } catch (const DataError& e) {
            if (!it->rec->verified && !verify(*it->rec)) {
                reject(*it, "corrupted record (checksum mismatch)");
                continue;
            }
            if (!opt_.skip_bad) throw;
            it->bad = true;
            out_->warnings.push_back(std::string(e.what()) + " (skipped)");
        }
    }
}

// Without --base, a stateful rule or mix to say which, the inputs are what most of them are.
RecordType Merger::expected_type(const std::vector<Item*>& by_pos) const {
    if (req_.base || rule_.stateful()) return RecordType::update;
    if (rule_.kind == RuleKind::mix) return RecordType::model;
    size_t models = 0, updates = 0;
    for (Item* it : by_pos)
        if (!it->bad) (it->rec->record.type() == RecordType::model ? models : updates)++;
    return models > updates ? RecordType::model : RecordType::update;
}

void Merger::check_models_or_updates(const std::vector<Item*>& by_pos) {
    kind_ = expected_type(by_pos);
    for (Item* it : by_pos) {
        if (it->bad || it->is_self || it->rec->record.type() == kind_) continue;
        bool is_model = it->rec->record.type() == RecordType::model;
        std::string msg = std::string(is_model ? "is a model" : "is an update") + " record, ";
        std::string hint;
        if (req_.base)
            msg += "but --base applies updates", hint = "models are averaged without --base";
        else if (rule_.stateful())
            msg += "but " + rule_.name() + " steps with updates";
        else if (rule_.kind == RuleKind::mix)
            msg += "but mix averages models", hint = "merge updates with --rule fedavg";
        else
            msg += std::string("and the other inputs are ") + (is_model ? "updates" : "models"),
                hint = "n3-merge does not mix models and updates";
        reject(*it, msg, hint);
    }
    if (req_.self) {
        for (auto& it : items_)
            if (it.is_self && !it.bad && it.rec->record.type() != RecordType::model)
                throw DataError("--self " + it.rec->name + " is not a model record");
    }
}

// Equal payloads sit next to each other in canonical order.
void Merger::check_duplicates() {
    for (size_t i = 1; i < items_.size(); ++i) {
        Item& a = items_[i - 1];
        Item& b = items_[i];
        if (canonical_compare(*a.rec, *b.rec) == 0) {
            Item& later = a.rec->position > b.rec->position ? a : b;
            Item& earlier = &later == &a ? b : a;
            if (!later.bad)
                reject(later, "is a duplicate of " + earlier.rec->name + " (same payload)",
                       "each update may count once");
        }
    }
}

// Tensor names, shapes and dtypes: the base model's, else the layout most inputs share.
void Merger::check_layouts(const std::vector<Item*>& by_pos) {
    if (!req_.base)
        if (const Item* most = majority(items_, layout_of_item)) {
            layout_ = most->layout;
            require_mergeable(layout_, most->rec->name);
        }
    for (Item* it : by_pos) {
        if (it->bad) continue;
        std::string diff = layout_difference(it->layout, layout_);
        if (!diff.empty())
            reject(*it, diff + (req_.base ? " (as in --base " + *req_.base + ")" : ""),
                   req_.base ? "" : "every input must have the same tensors");
        else
            it->src = source_of(*it->set, layout_, it->rec);
    }
}

void Merger::check_samples(const std::vector<Item*>& by_pos) {
    bool need_samples =
        opt_.weights == WeightMode::samples && !rule_.robust() && rule_.kind != RuleKind::mix;
    for (Item* it : by_pos) {
        if (it->bad) continue;
        it->samples = it->set->samples();
        if (need_samples && kind_ == RecordType::update && !it->samples)
            reject(*it, "has no sample count (metadata 'samples')",
                   "--weights uniform ignores sample counts");
    }
}

// Updates apply to --base's model, else to the model most of them were trained from.
void Merger::check_base_models(const std::vector<Item*>& by_pos) {
    if (kind_ != RecordType::update) return;
    std::string want;
    if (req_.base)
        want = base_hash_;
    else if (const Item* most = majority(items_, base_of_item))
        want = *base_of_item(*most);
    for (Item* it : by_pos) {
        if (it->bad) continue;
        auto b = it->set->meta(meta::base);
        if (req_.base && !b)
            reject(*it, "names no base model (metadata 'base')",
                   "updates from n3-train carry it; n3-inspect --from-safetensors --meta "
                   "base=HASH adds it");
        else if (b.value_or("") != want)
            reject(*it,
                   "was trained from model " + b.value_or("(none)").substr(0, 16) + "…, " +
                       (req_.base ? "not --base " + *req_.base + " (" + want.substr(0, 16) + "…)"
                                  : "the other updates from " +
                                        (want.empty() ? "(none)" : want.substr(0, 16) + "…")),
                   "an update applies only to the model it was trained from");
    }
    base_of_updates_ = want;
}

// The model spec: --base's when it names one, else the one most inputs name.
void Merger::check_specs(const std::vector<Item*>& by_pos) {
    std::optional<std::string> want = base_set_ ? base_set_->meta(meta::spec_hash) : std::nullopt;
    if (!want)
        if (const Item* most = majority(items_, spec_of_item)) want = spec_of_item(*most);
    for (Item* it : by_pos) {
        if (it->bad) continue;
        auto s = it->set->meta(meta::spec_hash);
        if (s && want && *s != *want)
            reject(*it, "was built from model spec " + s->substr(0, 16) + "…, not " +
                            want->substr(0, 16) + "…" +
                            (base_set_ ? " (--base's)" : " (the other inputs')"));
    }
}

} // namespace n3::merge
