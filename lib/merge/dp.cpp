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
#include "merge/merger.hpp"
#include "privacy/accountant.hpp"

#include "record/error.hpp"
#include "record/number.hpp"

#include <algorithm>
#include <cstdio>

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
}

void Merger::dp_noise(const std::vector<Item*>& items) {
    double w = 0;
    for (Item* it : items) w = std::max(w, it->weight);
    dp_sd_ = *opt_.dp_noise * *opt_.clip_norm * w; // z C / n with n equal weights
}

void Merger::dp_metadata() {
    Metadata& md = out_->metadata;
    if (opt_.dp_noise) {
        md[meta::dp_epsilon] = dp_meta_[0];
        md[meta::dp_delta] = dp_meta_[1];
        md[meta::dp_rounds] = dp_meta_[2];
        md[meta::dp_rdp] = dp_meta_[3];
        return;
    }
    bool had = false;
    for (const char* k : {meta::dp_epsilon, meta::dp_delta, meta::dp_rounds, meta::dp_rdp})
        had |= md.erase(k) > 0;
    if (had)
        out_->warnings.push_back("--base carries dp_epsilon, but this round adds no noise: the "
                                 "output drops the dp_ metadata");
}

} // namespace n3::merge
