// n3/merge/fednova.cpp — FedNova (Wang, Liu, Liang, Joshi, Poor, "Tackling the Objective
// Inconsistency Problem in Heterogeneous Federated Optimization", NeurIPS 2020).
//
// Member i ran tau_i local SGD steps with momentum rho (metadata local_steps and momentum, which
// n3-train writes). Its update is the sum of its steps weighted by a_i, whose L1 norm is
//   ||a_i|| = (tau_i - rho (1 - rho^tau_i) / (1 - rho)) / (1 - rho)      (tau_i for rho = 0).
// FedNova averages the normalised updates d_i = delta_i / ||a_i|| with the data weights p_i and
// rescales by tau_eff = sum_i p_i ||a_i||:
//   delta = tau_eff * sum_i p_i delta_i / ||a_i||,
// so each input's effective weight is p_i tau_eff / ||a_i|| (the weights n3-merge reports).
// Weight decay does not enter ||a_i|| (as in the paper's and NIID-Bench's code).
#include "merge/merger.hpp"

#include "record/error.hpp"
#include "record/number.hpp"

#include <cmath>
#include <cstdlib>

namespace n3::merge {

namespace {

double norm_of_a(double tau, double rho) {
    if (rho == 0) return tau;
    return (tau - rho * (1 - std::pow(rho, tau)) / (1 - rho)) / (1 - rho);
}

} // namespace

void Merger::fednova_weights(const std::vector<Item*>& items) {
    std::vector<double> a(items.size());
    for (size_t i = 0; i < items.size(); ++i) {
        const Item& it = *items[i];
        auto steps = it.set->meta(meta::local_steps);
        auto mom = it.set->meta(meta::momentum);
        if (!steps || !mom)
            throw NonFinite{index_of(&it),
                            std::string("has no '") + (steps ? meta::momentum : meta::local_steps) +
                                "' metadata, which fednova needs (n3-train writes it)"};
        auto tau = parse_uint(*steps);
        if (!tau || *tau == 0)
            throw NonFinite{index_of(&it), "local_steps '" + *steps + "' is not a positive count"};
        char* end = nullptr;
        double rho = std::strtod(mom->c_str(), &end);
        if (mom->empty() || *end != '\0' || !(rho >= 0 && rho < 1))
            throw NonFinite{index_of(&it), "momentum '" + *mom + "' is not a number in [0, 1)"};
        a[i] = norm_of_a(double(*tau), rho);
    }
    double tau_eff = 0;
    for (size_t i = 0; i < items.size(); ++i) tau_eff += items[i]->weight * a[i];
    for (size_t i = 0; i < items.size(); ++i) items[i]->weight *= tau_eff / a[i];
}

} // namespace n3::merge
