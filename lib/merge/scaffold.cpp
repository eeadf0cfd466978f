// n3/merge/scaffold.cpp — SCAFFOLD's server step (Karimireddy, Kale, Mohri, Reddi, Stich,
// Suresh, "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning", ICML 2020, option
// II control variates).
//
// The global model record carries the server control variate c as tensors "scaffold/NAME", one
// per model tensor NAME (man/n3-record.5); each update carries the model delta dy_i and, under
// the same "scaffold/" names, its member's control-variate delta dc_i (n3-train --scaffold).
// The server step is
//   x <- x + lr * sum_i p_i dy_i          (p_i the usual --weights, samples by default)
//   c <- c + (1 / N) sum_i dc_i           (N = --population, the members in all)
// so with partial participation c moves by the sum over the members that took part, divided
// by all of them, as the paper's |S|/N factor has it. --server-lr applies to x only.
#include "merge/merger.hpp"

#include "record/error.hpp"

#include <set>

namespace n3::merge {

void Merger::scaffold_check() {
    if (!req_.base)
        throw UsageError("rule scaffold updates the server control variate, which travels with "
                         "the global model",
                         "give --base MODEL");
    if (kind_ != RecordType::update) throw DataError("rule scaffold merges updates, not models");
    const std::string prefix = meta::control_prefix;
    std::set<std::string> params, controls;
    control_.assign(layout_.size(), 0);
    for (size_t t = 0; t < layout_.size(); ++t) {
        const std::string& n = layout_[t].name;
        if (n.rfind(prefix, 0) == 0)
            controls.insert(n.substr(prefix.size())), control_[t] = 1;
        else
            params.insert(n);
    }
    if (controls.empty())
        throw DataError("--base " + *req_.base + " has no server control variate ('" + prefix +
                            "' tensors)",
                        "start SCAFFOLD from a model written by n3-train --init-only "
                        "--scaffold-init");
    if (controls != params)
        throw DataError("--base " + *req_.base + ": the '" + prefix +
                        "' tensors do not match the model's tensors one to one");
    size_t inputs = 0;
    for (auto& it : items_) inputs += !it.bad;
    uint64_t n = opt_.population.value_or(inputs);
    if (opt_.population && *opt_.population < inputs)
        throw UsageError("--population " + std::to_string(*opt_.population) + " is below the " +
                         std::to_string(inputs) + " inputs");
    if (n == 0) throw UsageError("--population must be positive");
    control_weight_ = 1.0 / double(n);
}

} // namespace n3::merge
