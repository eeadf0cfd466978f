// n3-merge: aggregate update (or model) records into one (man/n3-merge.1).
#include "common/tool.hpp"
#include "merge/merge.hpp"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

using namespace n3;

int main(int argc, char** argv) {
    Tool tool("n3-merge",
              "Aggregate update records into the next model, or models into their average.\n\n"
              "Reads update (or model) records from the FILEs and/or stdin ('-') and writes one "
              "record: with --base, the next global model; without it, the aggregated update.");
    auto& app = tool.app();
    merge::Request req;
    merge::Options& o = req.options;
    std::string rule = "fedavg", weights, out_path;
    std::string base, self, state;
    bool force = false, json = false;
    double self_weight = 0, clip = 0, max_norm = 0, lr = 0, dp_noise = 0, dp_budget = 0;
    uint64_t population = 0;
    double clip_quantile = 0, clip_count_noise = 0;
    app.add_option("INPUT", req.inputs, "Update or model records ('-' is stdin; default stdin)");
    app.add_option("-r,--rule", rule,
                   "fedavg, fedavgm, fedadam, fedyogi, fedadagrad, median, trimmed-mean[:BETA], "
                   "krum[:F], multi-krum[:F,M], mix, fednova, scaffold (default fedavg)");
    app.add_option("-b,--base", base, "Apply the aggregate to this model; write the next model")
        ->type_name("MODEL");
    app.add_option("--state", state, "Server state file (fedavgm, fedadam, fedyogi, fedadagrad)");
    app.add_option("-w,--weights", weights,
                   "samples (default), uniform, or W1,W2,... one per input record");
    auto* o_self = app.add_option("--self", self, "mix: this node's own model")->type_name("MODEL");
    auto* o_self_w = app.add_option("--self-weight", self_weight,
                                    "mix: weight of --self; the others share the rest equally");
    auto* o_clip =
        app.add_option("--clip-norm", clip, "Scale every update to L2 norm at most C first")
            ->type_name("C");
    auto* o_max =
        app.add_option("--max-norm", max_norm, "Refuse updates with an L2 norm above C (outliers)")
            ->type_name("C");
    auto* o_lr = app.add_option("--server-lr", lr,
                                "Server learning rate (default 1; 0.01 for fedadam/yogi/adagrad)");
    app.add_option("--beta1", o.beta1, "Momentum (fedavgm) or first-moment decay (default 0.9)");
    app.add_option("--beta2", o.beta2, "Second-moment decay, fedadam and fedyogi (default 0.99)");
    app.add_option("--tau", o.tau, "Adaptivity, fedadam/yogi/adagrad (default 1e-3)");
    app.add_option("--min-inputs", o.min_inputs,
                   "Exit 3 unless at least N inputs are usable (default 1)")
        ->type_name("N");
    auto* o_dp = app.add_option("--dp-noise", dp_noise,
                                "DP-FedAvg: Gaussian noise of std Z*C on the sum of the updates "
                                "clipped to --clip-norm C")
                     ->type_name("Z");
    app.add_option("--dp-delta", o.dp_delta,
                   "DP: the delta of the epsilon reported (default 1e-5)");
    app.add_option("--dp-rate", o.dp_rate,
                   "DP: the rate at which members are sampled per round (default 1)");
    auto* o_budget =
        app.add_option("--dp-budget", dp_budget, "DP: exit 3 if the round would exceed epsilon EPS")
            ->type_name("EPS");
    auto* o_quant =
        app.add_option("--clip-quantile", clip_quantile,
                       "DP: adaptive clipping towards this quantile of the update norms")
            ->type_name("Q");
    auto* o_count = app.add_option("--clip-count-noise", clip_count_noise,
                                   "DP: noise std on the count of unclipped updates (default n/20)")
                        ->type_name("S");
    app.add_option("--clip-lr", o.clip_lr, "DP: adaptive clipping's learning rate (default 0.2)");
    auto* o_pop = app.add_option("--population", population,
                                 "scaffold: the members in all, N of c += sum(dc)/N (default: "
                                 "the inputs)")
                      ->type_name("N");
    app.add_flag("--skip-bad", o.skip_bad, "Drop bad inputs with a warning instead of failing");
    app.add_option("-j,--threads", o.threads, "Threads (default: one per core)");
    app.add_option("-o,--output", out_path, "Output file, written atomically ('-' is stdout)");
    app.add_flag("-f,--force", force, "Write binary output to a terminal");
    app.add_flag("--json", json, "Print a one-line JSON summary on stderr");
    o_self_w->needs(o_self);

    return tool.run(argc, argv, [&] {
        if (rule == "secure-sum")
            throw UsageError("secure aggregation has its own tool",
                             "n3-secagg sum --roster FILE --authority PUB "
                             "--round N --adverts FILE INPUT...");
        o.rule = merge::Rule::parse(rule);
        if (!weights.empty())
            merge::parse_weights(weights, o);
        else if (o.rule.kind == merge::RuleKind::mix || o_dp->count())
            o.weights = merge::WeightMode::uniform;
        if (o_dp->count()) o.dp_noise = dp_noise;
        if (o_budget->count()) o.dp_budget = dp_budget;
        if (o_pop->count()) o.population = population;
        if (o_quant->count()) o.clip_quantile = clip_quantile;
        if (o_count->count()) o.clip_count_noise = clip_count_noise;
        if (o_self->count()) req.self = self;
        if (o_self_w->count()) o.self_weight = self_weight;
        if (o_clip->count()) o.clip_norm = clip;
        if (o_max->count()) o.max_norm = max_norm;
        if (o_lr->count()) o.server_lr = lr;
        if (!base.empty()) req.base = base;
        if (!state.empty()) req.state = state;
        req.inputs = tool.normalize_inputs(req.inputs);
        bool explicit_stdout = out_path == "-";
        if (out_path.empty()) out_path = "-";
        std::vector<std::string> all = req.inputs;
        if (req.base) all.push_back(*req.base);
        if (req.self) all.push_back(*req.self);
        if (std::count(all.begin(), all.end(), "-") > 1)
            throw UsageError("only one of the inputs, --base and --self may read stdin ('-')");
        if (req.state && *req.state == "-")
            throw UsageError("--state must name a file", "it is read and then replaced");
        if (req.state) all.push_back(*req.state);
        std::erase(all, std::string("-")); // stdin is never the output file
        tool.check_not_same(all, out_path);

        auto out = tool.open_output(out_path, force, explicit_stdout);
        merge::Result res = merge::run(req);
        for (auto& w : res.warnings()) tool.warn(w);
        for (auto& in : res.inputs()) {
            char line[256];
            std::snprintf(line, sizeof line, "weight %.6g%s%s", in.weight,
                          in.selected ? "" : " (not selected)",
                          in.clip_scale < 1
                              ? (", clipped from norm " + std::to_string(in.norm)).c_str()
                              : "");
            tool.verbose(in.name + ": " + line);
        }
        res.write(*out);
        res.save_state();
        out->commit();
        if (json) {
            nlohmann::ordered_json j;
            j["rule"] = o.rule.name();
            j["output"] = std::string(type_name(res.type()));
            j["metadata"] = res.metadata();
            auto& ins = j["inputs"] = nlohmann::ordered_json::array();
            for (auto& in : res.inputs()) {
                nlohmann::ordered_json e;
                e["name"] = in.name;
                e["weight"] = in.weight;
                e["selected"] = in.selected;
                if (o.clip_norm || o.max_norm) e["norm"] = in.norm, e["clip_scale"] = in.clip_scale;
                ins.push_back(std::move(e));
            }
            j["skipped"] = res.warnings();
            std::cerr << j.dump() << "\n";
        }
        tool.verbose(std::string("wrote ") +
                     (res.type() == RecordType::update ? "an update" : "a model") +
                     " record from " + std::to_string(res.inputs().size()) + " inputs (" +
                     o.rule.name() + ")");
        return 0;
    });
}
