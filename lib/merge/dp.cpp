// n3/merge/dp.cpp — DP-FedAvg with user-level privacy (McMahan, Ramage, Talwar, Zhang, "Learning
// Differentially Private Recurrent Language Models", ICLR 2018).
//
// Every update is clipped to L2 norm C (--clip-norm), the n clipped updates are averaged with
// equal weights, and Gaussian noise of std z*C (--dp-noise z) is added to their sum, i.e. z*C/n
// to each coordinate of the average; the noise comes from the CSPRNG (privacy/noise.hpp). One
// member changes the sum by at most C, so a round is the Gaussian mechanism with noise
// multiplier z on a sample of rate q (--dp-rate, 1 when every member takes part every round).
// The accountant (privacy/accountant.hpp) adds this round's RDP to the base model's (metadata
// dp_rdp) and writes dp_epsilon for --dp-delta, dp_delta, dp_rounds and dp_rdp into the merged
// model; --dp-budget refuses (IncompleteError, exit 3) a round that would take dp_epsilon above
// it, before any tensor is read. A round merged without --dp-noise from a base that has them
// drops the dp_ keys (its output is no longer covered by them) with a warning.
//
// Adaptive clipping (Andrew, Thakkar, McMahan, Ramaswamy, "Differentially Private Learning with
// Adaptive Clipping", NeurIPS 2021), with --clip-quantile Q: this round clips at the base
// model's dp_clip_norm (the first round at --clip-norm); the share of updates it leaves
// unclipped is counted with Gaussian noise of std sigma_b (--clip-count-noise, default n/20),
// and the next round's norm, C exp(-clip_lr (share - Q)), goes into the merged model. Both
// releases together are the Gaussian mechanism with multiplier z: the updates' sum gets
// z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2), so z must be below 2 sigma_b.
#include "merge/merger.hpp"
#include "privacy/accountant.hpp"
#include "privacy/noise.hpp"

#include "record/error.hpp"
#include "record/number.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace n3::merge {

namespace {

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

} // namespace

void Merger::dp_check() {
    const double z = *opt_.dp_noise;
    const std::string where = "--base " + *req_.base;
    privacy::Rdp total;
    uint64_t rounds = 0;
    if (auto r = base_set_->meta(meta::dp_rounds)) {
        auto v = parse_uint(*r);
        auto rdp = base_set_->meta(meta::dp_rdp);
        if (!v) throw DataError(where + ": dp_rounds '" + *r + "' is not a count");
        if (!rdp) throw DataError(where + ": dp_rounds without dp_rdp, the accountant's total");
        try {
            total = privacy::Rdp::parse(*rdp, where + ": dp_rdp");
        } catch (const UsageError& e) {
            throw DataError(e.what());
        }
        rounds = *v;
    }
    total += privacy::gaussian_rdp(opt_.dp_rate, z);
    rounds += 1;
    privacy::Spent spent = privacy::epsilon(total, opt_.dp_delta);
    if (opt_.dp_budget && spent.epsilon > *opt_.dp_budget)
        throw IncompleteError("round " + std::to_string(rounds) + " of DP-FedAvg would spend " +
                                  "epsilon " + number(spent.epsilon) + " (delta " +
                                  number(opt_.dp_delta) + "), above --dp-budget " +
                                  number(*opt_.dp_budget),
                              "the budget is spent: stop, or train on with more --dp-noise");
    dp_meta_[0] = number(spent.epsilon);
    dp_meta_[1] = number(opt_.dp_delta);
    dp_meta_[2] = std::to_string(rounds);
    dp_meta_[3] = total.text();
    if (opt_.clip_quantile) {
        adaptive_clip_ = *opt_.clip_norm;
        if (auto c = base_set_->meta(meta::dp_clip_norm)) {
            char* end = nullptr;
            adaptive_clip_ = std::strtod(c->c_str(), &end);
            if (c->empty() || *end != '\0' || !(adaptive_clip_ > 0) ||
                !std::isfinite(adaptive_clip_))
                throw DataError(where + ": dp_clip_norm '" + *c + "' is not a positive number");
        }
    }
}

void Merger::dp_noise(const std::vector<Item*>& items) {
    double w = 0;
    for (Item* it : items) w = std::max(w, it->weight);
    double z = *opt_.dp_noise;
    if (opt_.clip_quantile) {
        const double n = double(items.size());
        const double sigma_b = opt_.clip_count_noise.value_or(n / 20);
        if (!(z < 2 * sigma_b))
            throw UsageError("adaptive clipping with --dp-noise " + number(z) +
                                 " needs a count noise above " + number(z / 2) + ", not " +
                                 number(sigma_b),
                             "raise --clip-count-noise (default: inputs / 20)");
        z = 1 / std::sqrt(1 / (z * z) - 1 / (4 * sigma_b * sigma_b));
        double unclipped = 0;
        for (Item* it : items) unclipped += it->clip >= 1;
        double share = (unclipped + sigma_b * privacy::gaussian(1)[0]) / n;
        next_clip_ = clip_norm() * std::exp(-opt_.clip_lr * (share - *opt_.clip_quantile));
    }
    dp_sd_ = z * clip_norm() * w; // z C / n with n equal weights
}

void Merger::dp_metadata() {
    Metadata& md = out_->metadata;
    if (opt_.dp_noise) {
        md[meta::dp_epsilon] = dp_meta_[0];
        md[meta::dp_delta] = dp_meta_[1];
        md[meta::dp_rounds] = dp_meta_[2];
        md[meta::dp_rdp] = dp_meta_[3];
        if (opt_.clip_quantile)
            md[meta::dp_clip_norm] = number(next_clip_);
        else
            md.erase(meta::dp_clip_norm);
        return;
    }
    bool had = false;
    for (const char* k :
         {meta::dp_epsilon, meta::dp_delta, meta::dp_rounds, meta::dp_rdp, meta::dp_clip_norm})
        had |= md.erase(k) > 0;
    if (had)
        out_->warnings.push_back("--base carries dp_epsilon, but this round adds no noise: the "
                                 "output drops the dp_ metadata");
}

} // namespace n3::merge
