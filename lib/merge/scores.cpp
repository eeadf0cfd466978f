// n3/merge/scores.cpp — contribution scores: how each update agrees with the others (cosine
// with the leave-one-out mean, a Krum-style distance score, the norm over the median norm) and,
// with a holdout evaluator, how much it alone lowers the base model's loss; --min-score skips
// the inputs that score below a threshold.
//
// One pass over the inputs' chunks takes every pairwise dot product (the Gram matrix G, summed
// per chunk in double precision and reduced in chunk order, as the other passes are); every
// score is a function of G: |x_i|^2 = G_ii, |x_i - x_j|^2 = G_ii + G_jj - 2 G_ij, and the
// cosine with the sum of the other updates' unit directions follows from G and the norms. Inputs
// are in canonical order, so the scores do not depend on the order they were given in.
#include "merge/kernels.hpp"
#include "merge/merger.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>

namespace n3::merge {

namespace {

double dot(const float* a, const float* b, size_t n) {
    double s = 0;
    for (size_t j = 0; j < n; ++j) s += double(a[j]) * double(b[j]);
    return s;
}

double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string number(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.6g", v);
    return b;
}

} // namespace

std::optional<double> score_named(const Scores& s, const std::string& name) {
    if (name == "score") return s.score;
    if (name == "cosine") return s.cosine;
    if (name == "holdout") return s.holdout;
    throw UsageError("--min-score: unknown score '" + name + "'", "score, cosine or holdout");
}

void Merger::score_inputs(const std::vector<Item*>& items) {
    if (kind_ != RecordType::update)
        throw UsageError("--scores and --min-score rate update records, not models");
    if (opt_.holdout_loss && !base_set_)
        throw UsageError("--holdout applies each update to the base model: give --base");
    const size_t n = items.size();
    const std::vector<double> g = pairwise(items, true,
                                           [](const float* a, const Item&, const float* b,
                                              const Item&, size_t len) { return dot(a, b, len); });

    // The leave-one-out aggregate is the sum of the other updates' directions (each scaled to
    // unit norm), so that one large update cannot make itself the reference the others are
    // measured against. With u_j = 1/|x_j| and R_i = sum_j u_j G_ij: x_i . A_i = R_i - u_i G_ii
    // and |A_i|^2 = T - 2 u_i R_i + u_i^2 G_ii, where T = sum_j u_j R_j.
    std::vector<double> norm(n), unit(n), row(n, 0.0);
    for (size_t i = 0; i < n; ++i) {
        norm[i] = std::sqrt(std::max(0.0, g[i * n + i]));
        unit[i] = norm[i] > 0 ? 1 / norm[i] : 0.0;
    }
    double total = 0;
    for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < n; ++j) row[i] += unit[j] * g[i * n + j];
        total += unit[i] * row[i];
    }
    const double med = median_of(norm);
    const bool krum_rule = rule_.kind == RuleKind::krum || rule_.kind == RuleKind::multi_krum;
    const size_t f = krum_rule && rule_.f ? *rule_.f : (n >= 3 ? (n - 3) / 2 : 0);
    const size_t nearest = n >= f + 3 ? n - f - 2 : (n >= 2 ? 1 : 0);
    for (size_t i = 0; i < n; ++i) {
        Scores s;
        if (n >= 2) {
            const double gi = g[i * n + i];
            const double xa = row[i] - unit[i] * gi;
            const double aa = total - 2 * unit[i] * row[i] + unit[i] * unit[i] * gi;
            const double na = std::sqrt(std::max(0.0, aa));
            s.cosine = norm[i] > 0 && na > 0 ? std::clamp(xa / (norm[i] * na), -1.0, 1.0) : 0.0;
            std::vector<double> d;
            for (size_t j = 0; j < n; ++j)
                if (j != i)
                    d.push_back(std::max(0.0, g[i * n + i] + g[j * n + j] - 2 * g[i * n + j]));
            std::sort(d.begin(), d.end());
            s.krum = std::accumulate(d.begin(), d.begin() + static_cast<long>(nearest), 0.0);
            s.norm_ratio = med > 0 ? norm[i] / med : 0.0;
            const double r = s.norm_ratio;
            s.score = r > 0 ? std::max(0.0, s.cosine) * std::min(r, 1 / r) : 0.0;
        }
        items[i]->scores = s;
    }

    if (!opt_.holdout_loss) return;
    // Each update alone applied to the base: base + server_lr * x_i, as fedavg would.
    const double lr = opt_.server_lr.value_or(1.0);
    const double base_loss = opt_.holdout_loss(base_rec_->record.payload());
    if (!std::isfinite(base_loss))
        throw DataError("--holdout: the base model's holdout loss is not finite");
    std::vector<std::vector<float>> model(layout_.size());
    std::vector<float> in;
    for (size_t t = 0; t < layout_.size(); ++t) model[t].resize(layout_[t].numel);
    for (Item* it : items) {
        SafetensorsBuilder b;
        b.set_metadata(base_set_->metadata());
        for (size_t t = 0; t < layout_.size(); ++t) {
            const size_t numel = layout_[t].numel;
            in.resize(std::max<size_t>(numel, 1));
            model[t].resize(std::max<size_t>(numel, 1));
            const float* x = floats(it->src, t, 0, numel, in.data());
            const float* base = floats(base_src_, t, 0, numel, model[t].data());
            for (size_t j = 0; j < numel; ++j)
                model[t][j] = float(double(base[j]) + lr * double(x[j]));
            b.add(layout_[t].name, DType::F32, layout_[t].shape,
                  ByteView(reinterpret_cast<const uint8_t*>(model[t].data()), numel * 4));
        }
        const double loss = opt_.holdout_loss(b.bytes());
        // An update that makes the loss infinite gets the lowest finite score (the ledger
        // holds finite numbers only).
        it->scores->holdout =
            std::isfinite(loss) ? base_loss - loss : -std::numeric_limits<double>::max();
    }
}

bool Merger::reject_low_scores(const std::vector<Item*>& items) {
    if (!opt_.min_score) return false;
    bool any = false;
    for (Item* it : items) {
        std::optional<double> v = score_named(*it->scores, opt_.min_score_of);
        if (!v) throw UsageError("--min-score holdout:T needs --holdout DATA");
        if (*v >= *opt_.min_score) continue;
        it->bad = true;
        any = true;
        out_->warnings.push_back(it->rec->name + ": " + opt_.min_score_of + " " + number(*v) +
                                 " below --min-score " + number(*opt_.min_score) + " (skipped)");
    }
    return any;
}

void Merger::report_scores() {
    for (Item& it : items_) {
        if (!it.scores) continue;
        InputScore s;
        s.name = it.rec->name;
        s.hash = model_hash(it.rec->record.payload());
        s.receipt_key = it.set->meta(meta::receipt_key).value_or("");
        s.accepted = !it.bad && it.selected && it.weight > 0;
        s.weight = s.accepted ? it.weight : 0;
        s.scores = *it.scores;
        out_->scores.push_back(std::move(s));
    }
}

} // namespace n3::merge
