// n3/merge/rule.cpp — the command-line spelling of the aggregation rules and of --weights:
// Rule::parse and its inverse Rule::name, the rule families, and parse_weights (see merge.hpp).
#include "merge/merge.hpp"

#include "record/error.hpp"
#include "record/number.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace n3::merge {

namespace {

struct RuleName {
    const char* name;
    RuleKind kind;
};
constexpr RuleName kRules[] = {
    {"fedavg", RuleKind::fedavg},
    {"fedavgm", RuleKind::fedavgm},
    {"fedadam", RuleKind::fedadam},
    {"fedyogi", RuleKind::fedyogi},
    {"fedadagrad", RuleKind::fedadagrad},
    {"median", RuleKind::median},
    {"trimmed-mean", RuleKind::trimmed_mean},
    {"krum", RuleKind::krum},
    {"multi-krum", RuleKind::multi_krum},
    {"mix", RuleKind::mix},
    {"fednova", RuleKind::fednova},
    {"scaffold", RuleKind::scaffold},
};

double parse_number(const std::string& s, const std::string& what) {
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v))
        throw UsageError(what + " must be a number, not '" + s + "'");
    return v;
}

size_t parse_count(const std::string& s, const std::string& what) {
    auto v = parse_uint(s, 999999999);
    if (!v) throw UsageError(what + " must be a non-negative integer, not '" + s + "'");
    return static_cast<size_t>(*v);
}

} // namespace

std::vector<std::string> rule_names() {
    std::vector<std::string> v;
    for (auto& r : kRules) v.emplace_back(r.name);
    return v;
}

Rule Rule::parse(const std::string& text) {
    auto colon = text.find(':');
    std::string name = text.substr(0, colon);
    std::optional<std::string> arg;
    if (colon != std::string::npos) arg = text.substr(colon + 1);
    Rule r;
    bool found = false;
    for (auto& k : kRules)
        if (name == k.name) r.kind = k.kind, found = true;
    if (!found) {
        std::string all;
        for (auto& k : kRules) all += std::string(all.empty() ? "" : ", ") + k.name;
        throw UsageError("unknown rule '" + name + "'", "rules: " + all);
    }
    if (!arg) return r;
    switch (r.kind) {
    case RuleKind::trimmed_mean:
        r.trim = parse_number(*arg, "trimmed-mean:BETA");
        if (r.trim < 0 || r.trim >= 0.5)
            throw UsageError("trimmed-mean:BETA must be in [0, 0.5), not " + *arg);
        break;
    case RuleKind::krum: r.f = parse_count(*arg, "krum:F"); break;
    case RuleKind::multi_krum: {
        auto comma = arg->find(',');
        r.f = parse_count(arg->substr(0, comma), "multi-krum:F");
        if (comma != std::string::npos) {
            r.m = parse_count(arg->substr(comma + 1), "multi-krum:F,M");
            if (*r.m == 0) throw UsageError("multi-krum:F,M needs M >= 1");
        }
        break;
    }
    default: throw UsageError("rule " + name + " takes no parameter (':" + *arg + "')");
    }
    return r;
}

std::string Rule::name() const {
    for (auto& k : kRules)
        if (k.kind == kind) return k.name;
    return "?";
}

bool Rule::stateful() const {
    return kind == RuleKind::fedavgm || adaptive();
}
bool Rule::adaptive() const {
    return kind == RuleKind::fedadam || kind == RuleKind::fedyogi || kind == RuleKind::fedadagrad;
}
bool Rule::robust() const {
    return kind == RuleKind::median || kind == RuleKind::trimmed_mean || kind == RuleKind::krum ||
           kind == RuleKind::multi_krum;
}

void parse_weights(const std::string& text, Options& opts) {
    if (text == "samples") {
        opts.weights = WeightMode::samples;
        return;
    }
    if (text == "uniform") {
        opts.weights = WeightMode::uniform;
        return;
    }
    opts.weights = WeightMode::list;
    opts.weight_list.clear();
    std::stringstream ss(text);
    std::string item;
    while (std::getline(ss, item, ',')) {
        double w = parse_number(item, "--weights");
        if (w < 0) throw UsageError("--weights must not be negative, not " + item);
        opts.weight_list.push_back(w);
    }
    if (opts.weight_list.empty())
        throw UsageError("--weights takes samples, uniform or a list W1,W2,...");
}

} // namespace n3::merge
