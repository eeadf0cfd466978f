// n3/merge/merge.cpp — run(): loads the inputs and the base model, checks them, then runs the
// rule's passes over the data, starting over without any input a pass finds bad, and builds
// the output record's metadata. The steps live in checks.cpp, aggregate.cpp and state.cpp
// (see merger.hpp); the Result accessors are here.
#include "merge/merge.hpp"

#include "merge/merger.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <exception>
#include <thread>

namespace n3::merge {

Result::Result() : impl_(std::make_unique<Impl>()) {}
Result::~Result() = default;
Result::Result(Result&&) noexcept = default;
Result& Result::operator=(Result&&) noexcept = default;
RecordType Result::type() const {
    return impl_->type;
}
const Metadata& Result::metadata() const {
    return impl_->metadata;
}
uint64_t Result::payload_size() const {
    return impl_->builder().size();
}
const std::vector<std::string>& Result::warnings() const {
    return impl_->warnings;
}
const std::vector<InputReport>& Result::inputs() const {
    return impl_->reports;
}
const std::vector<InputScore>& Result::scores() const {
    return impl_->scores;
}
const std::string& Result::base_hash() const {
    return impl_->base_hash;
}

void Result::write(Sink& out) const {
    SafetensorsBuilder b = impl_->builder();
    write_tensor_record(out, impl_->type, b);
}

Bytes Result::payload() const {
    return impl_->builder().bytes();
}

std::vector<Item*> Merger::usable() {
    std::vector<Item*> v;
    for (auto& it : items_)
        if (!it.bad) v.push_back(&it);
    return v;
}

void Merger::load() {
    LoadOptions lo{opt_.skip_bad, threads_, opt_.spool_dir};
    std::exception_ptr base_error;
    // The base model loads and hashes while the inputs load.
    std::jthread base_loader;
    if (req_.base)
        base_loader = std::jthread([&] {
            try {
                base_rec_ = load_single(*req_.base, "--base", lo);
                base_hash_ = model_hash(base_rec_->record.payload());
                release_around(*base_rec_);
            } catch (...) {
                base_error = std::current_exception();
            }
        });
    std::vector<std::string> paths = req_.inputs;
    if (req_.self) paths.push_back(*req_.self);
    LoadOptions li = lo;
    li.threads = req_.base ? std::max(1u, threads_ - 1) : threads_;
    loaded_ = load_records(paths, li);
    if (base_loader.joinable()) base_loader.join();
    if (base_error) std::rethrow_exception(base_error);
    out_->warnings = loaded_.warnings;

    if (req_.base) {
        const std::string where = "--base " + base_rec_->name;
        if (base_rec_->record.type() != RecordType::model)
            throw DataError(where + " is " + article(type_name(base_rec_->record.type())) +
                            " record, not a model");
        base_set_ = TensorSet::parse(base_rec_->record.payload(), where);
        layout_ = layout_of(*base_set_);
        require_mergeable(layout_, where);
        base_src_ = source_of(*base_set_, layout_, &*base_rec_);
    }

    size_t self_pos = SIZE_MAX;
    if (req_.self) {
        // The self model was loaded last, and must be one record on its own.
        if (loaded_.records.empty() || loaded_.records.back().name != *req_.self)
            throw DataError("--self " + *req_.self + " must hold exactly one model record");
        self_pos = loaded_.records.size() - 1;
    }
    if (opt_.weights == WeightMode::list && opt_.weight_list.size() != loaded_.records.size())
        throw UsageError("--weights lists " + std::to_string(opt_.weight_list.size()) +
                         " weights for " + std::to_string(loaded_.records.size()) + " inputs");
    items_.resize(loaded_.records.size());
    for (size_t i = 0; i < items_.size(); ++i) {
        items_[i].rec = &loaded_.records[i];
        items_[i].is_self = i == self_pos;
    }
    std::sort(items_.begin(), items_.end(), [](const Item& a, const Item& b) {
        int c = canonical_compare(*a.rec, *b.rec);
        return c != 0 ? c < 0 : a.rec->position < b.rec->position;
    });
}

void Merger::build_metadata(const std::vector<Item*>& items) {
    Result::Impl& r = *out_;
    Metadata md;
    if (base_set_) {
        md = base_set_->metadata();
        md.erase(meta::codec);
        md.erase(meta::loss);
        const uint64_t base_round = base_set_->round().value_or(0);
        if (base_round == UINT64_MAX)
            throw DataError("the base model's round is the last there is");
        md[meta::round] = std::to_string(base_round + 1);
        r.type = RecordType::model;
    } else {
        // Keys every used input agrees on.
        md = items.front()->set->metadata();
        for (Item* it : items)
            for (auto k = md.begin(); k != md.end();) {
                auto v = it->set->meta(k->first);
                k = v && *v == k->second ? std::next(k) : md.erase(k);
            }
        md.erase(meta::codec);
        md.erase(meta::loss);
        md.erase(meta::samples);
        r.type = kind_;
        if (kind_ == RecordType::update) {
            uint64_t total = 0;
            bool all = true;
            for (Item* it : items) {
                if (!it->selected) continue;
                all = all && it->samples;
                total += it->samples.value_or(0);
            }
            if (all) md[meta::samples] = std::to_string(total);
        }
    }
    r.metadata = md;
}

std::unique_ptr<Result::Impl> Merger::run() {
    check_request();
    load();
    if (opt_.dp_noise) dp_check(); // the budget, before any input is looked at
    check_inputs();
    Result::Impl& r = *out_;
    if (req_.state) load_state();
    if (rule_.kind == RuleKind::scaffold) scaffold_check();

    for (;;) {
        std::vector<Item*> items = usable();
        if (items.size() < std::max<size_t>(opt_.min_inputs, 1))
            throw IncompleteError(std::to_string(items.size()) + " usable input" +
                                  (items.size() == 1 ? "" : "s") + ", fewer than --min-inputs " +
                                  std::to_string(std::max<size_t>(opt_.min_inputs, 1)));
        try {
            r.layout = layout_;
            r.dtypes.clear();
            for (auto& t : layout_) r.dtypes.push_back(t.dtype);
            if (r.out.data.empty()) r.out = allocate(layout_, r.dtypes);
            allocate_state();
            for (Item* it : items) it->clip = 1, it->selected = true;
            if ((opt_.scores || opt_.min_score) && !scored_) {
                score_inputs(items);
                scored_ = true;
                if (reject_low_scores(items)) continue; // over again without them
            }
            if (opt_.clip_norm || opt_.max_norm) compute_norms(items);
            if (rule_.kind == RuleKind::krum || rule_.kind == RuleKind::multi_krum)
                select_krum(items);
            set_weights(items);
            if (opt_.dp_noise) dp_noise(items);
            if (rule_.kind == RuleKind::median || rule_.kind == RuleKind::trimmed_mean)
                robust_average(items);
            else
                average(items);
            for (Item* it : items)
                if (!it->rec->verified) {
                    if (!verify(*it->rec))
                        throw NonFinite{index_of(it), "corrupted record (checksum mismatch)"};
                    it->rec->verified = true;
                }
            build_metadata(items);
            dp_metadata();
            for (Item* it : items)
                r.reports.push_back({it->rec->name, it->weight, it->norm, it->clip, it->selected});
            if (scored_) report_scores();
            r.base_hash = base_hash_;
            break;
        } catch (const NonFinite& nf) {
            crc_pending_.clear();
            reject(items_[nf.item], nf.message); // names corruption first when the CRC fails
        }
    }
    finish_state();
    return std::move(out_);
}

Result run(const Request& req) {
    Merger m(req);
    Result r;
    r.impl_ = m.run();
    return r;
}

} // namespace n3::merge
