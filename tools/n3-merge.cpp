// n3-merge: aggregate update (or model) records into one (man/n3-merge.1).
#include "common/tool.hpp"
#include "crypto/keys.hpp"
#include "ledger/ledger.hpp"
#include "merge/lora.hpp"
#include "merge/merge.hpp"
#include "record/error.hpp"
#include "record/format.hpp"
#include "record/hex.hpp"
#include "record/number.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace n3;

namespace {

// --min-score [NAME:]T
void parse_min_score(const std::string& text, merge::Options& o) {
    std::string name = "score", value = text;
    if (size_t colon = text.find(':'); colon != std::string::npos)
        name = text.substr(0, colon), value = text.substr(colon + 1);
    merge::score_named(merge::Scores{}, name); // UsageError for an unknown name
    char* end = nullptr;
    double t = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || !std::isfinite(t))
        throw UsageError("--min-score takes [NAME:]T with a number T, not '" + text + "'",
                         "e.g. --min-score 0.1 or --min-score cosine:0.2");
    o.min_score = t;
    o.min_score_of = name;
}

// One line of the --scores file: TSV, or a JSON object with --json.
std::string score_line(const merge::InputScore& s, bool json) {
    const merge::Scores& v = s.scores;
    if (json) {
        nlohmann::ordered_json j;
        j["record"] = s.hash;
        j["weight"] = s.weight;
        j["accepted"] = s.accepted;
        j["cosine"] = v.cosine;
        j["krum"] = v.krum;
        j["norm_ratio"] = v.norm_ratio;
        if (v.holdout) j["holdout"] = *v.holdout;
        j["score"] = v.score;
        if (!s.receipt_key.empty()) j["receipt_key"] = s.receipt_key;
        return j.dump() + "\n";
    }
    char b[256];
    std::snprintf(b, sizeof b, "\t%.9g\t%s\t%.9g\t%.9g\t%.9g\t", s.weight,
                  s.accepted ? "yes" : "no", v.cosine, v.krum, v.norm_ratio);
    char h[40] = "-";
    if (v.holdout) std::snprintf(h, sizeof h, "%.9g", *v.holdout);
    char sc[40];
    std::snprintf(sc, sizeof sc, "\t%.9g\n", v.score);
    return s.hash + b + h + sc;
}

// --holdout: n3-eval (next to this n3-merge, else on PATH) evaluates each candidate model, so
// that n3-merge itself never links libtorch: a merge node may have none.
std::string find_n3_eval() {
    std::vector<std::string> dirs;
    char self[4096];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        std::string exe(self, size_t(n));
        dirs.push_back(exe.substr(0, exe.rfind('/')));
    }
    const char* path = std::getenv("PATH");
    for (std::string rest = path ? path : ""; !rest.empty();) {
        size_t colon = rest.find(':');
        dirs.push_back(rest.substr(0, colon));
        rest = colon == std::string::npos ? "" : rest.substr(colon + 1);
    }
    for (auto& d : dirs) {
        std::string p = (d.empty() ? "." : d) + "/n3-eval";
        if (::access(p.c_str(), X_OK) == 0) return p;
    }
    throw EnvError("--holdout evaluates models with n3-eval, which is neither next to n3-merge "
                   "nor on PATH",
                   "n3-eval is built with libtorch (-DN3_WITH_TORCH=ON); or score without "
                   "--holdout");
}

// The loss n3-eval --json reports for a model payload on the holdout set's test split.
std::function<double(ByteView)> holdout_evaluator(const std::string& data, uint64_t limit) {
    const std::string eval = find_n3_eval();
    return [eval, data, limit](ByteView payload) {
        const char* tmp = std::getenv("TMPDIR");
        std::string path = std::string(tmp && *tmp ? tmp : "/tmp") + "/n3-merge-holdout.XXXXXX";
        int fd = ::mkstemp(path.data());
        if (fd < 0) throw_errno("cannot create a temporary file for --holdout");
        struct Unlink {
            std::string p;
            ~Unlink() { ::unlink(p.c_str()); }
        } unlink_at_exit{path};
        Bytes rec = encode_record(RecordType::model, payload);
        for (size_t off = 0; off < rec.size();) {
            ssize_t w = ::write(fd, rec.data() + off, rec.size() - off);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) {
                ::close(fd);
                throw_errno("cannot write " + path);
            }
            off += size_t(w);
        }
        ::close(fd);
        std::vector<std::string> args = {eval,      path,   "--data", data,
                                         "--split", "test", "--json", "-q"};
        if (limit) args.insert(args.end(), {"--limit", std::to_string(limit)});
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        int pipefd[2];
        if (::pipe(pipefd) != 0) throw_errno("pipe");
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
        posix_spawn_file_actions_addclose(&fa, pipefd[0]);
        pid_t pid = 0;
        int rc = ::posix_spawn(&pid, eval.c_str(), &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(pipefd[1]);
        std::string out;
        if (rc == 0) {
            char buf[4096];
            for (ssize_t r; (r = ::read(pipefd[0], buf, sizeof buf)) != 0;) {
                if (r < 0 && errno == EINTR) continue;
                if (r < 0) break;
                out.append(buf, size_t(r));
            }
        }
        ::close(pipefd[0]);
        if (rc != 0) throw_errno("cannot run " + eval, rc);
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 2;
            // Exit 1: the model is bad data (a NaN or infinite loss): the worst loss there is.
            if (code == 1) return HUGE_VAL;
            throw EnvError("--holdout: n3-eval failed on a candidate model (exit " +
                           std::to_string(code) + ")");
        }
        auto j = nlohmann::json::parse(out, nullptr, false);
        if (j.is_discarded() || !j.contains("loss") || !j["loss"].is_number())
            throw EnvError("--holdout: n3-eval printed no loss");
        return j["loss"].get<double>();
    };
}

} // namespace

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
    app.add_flag("--json", json, "Print a one-line JSON summary on stderr (and --scores as JSON)");
    std::string scores_path, min_score, holdout, holdout_limit, receipts, key_path;
    app.add_option("--scores", scores_path,
                   "Write every input's contribution scores to FILE (TSV; JSON lines with --json)")
        ->type_name("FILE");
    app.add_option("--min-score", min_score,
                   "Skip inputs whose score (or cosine, holdout) is below T")
        ->type_name("[NAME:]T");
    app.add_option("--holdout", holdout,
                   "Also score each update by the loss it removes on this data set (test split)")
        ->type_name("DATA");
    app.add_option("--holdout-limit", holdout_limit, "Evaluate only the first N holdout samples")
        ->type_name("N");
    app.add_option("--receipts", receipts,
                   "Append a signed receipt per accepted input to this ledger (needs --key)")
        ->type_name("LEDGER");
    app.add_option("--key", key_path, "The merger's member key, which signs the receipts")
        ->type_name("FILE");
    std::string adapter;
    app.add_option("--adapter", adapter,
                   "Apply this LoRA adapter to --base: write the model with W + (alpha/r) B A "
                   "(no INPUT)")
        ->type_name("ADAPTER.n3");
    o_self_w->needs(o_self);

    return tool.run(argc, argv, [&] {
        if (!adapter.empty()) {
            if (base.empty())
                throw UsageError("--adapter applies an adapter to its model: give --base MODEL");
            if (!req.inputs.empty())
                throw UsageError("--adapter takes no INPUT: it applies one adapter to --base",
                                 "merge adapter updates first: n3-merge --base ADAPTER.n3 "
                                 "UPDATE...");
            for (const char* name : {"--rule",          "--state",         "--weights",
                                     "--self",          "--self-weight",   "--clip-norm",
                                     "--max-norm",      "--server-lr",     "--beta1",
                                     "--beta2",         "--tau",           "--min-inputs",
                                     "--dp-noise",      "--dp-delta",      "--dp-rate",
                                     "--dp-budget",     "--clip-quantile", "--clip-count-noise",
                                     "--clip-lr",       "--population",    "--skip-bad",
                                     "--scores",        "--min-score",     "--holdout",
                                     "--holdout-limit", "--receipts",      "--key"})
                if (app.get_option(name)->count())
                    throw UsageError(std::string(name) + " is for merges, not --adapter");
            if (base == "-" && adapter == "-")
                throw UsageError("only one of --base and --adapter may read stdin ('-')");
            bool to_stdout = out_path.empty() || out_path == "-";
            std::vector<std::string> ins;
            for (auto* p : {&base, &adapter})
                if (*p != "-") ins.push_back(*p);
            tool.check_not_same(ins, to_stdout ? "-" : out_path);
            auto out = tool.open_output(to_stdout ? "-" : out_path, force, out_path == "-");
            merge::AppliedAdapter a = merge::apply_adapter(base, adapter);
            write_record(*out, RecordType::model, a.payload);
            out->commit();
            tool.verbose("applied adapter " + a.adapter_hash.substr(0, 16) + "… to " +
                         std::to_string(a.weights) + " weights of model " +
                         a.base_hash.substr(0, 16) + "…");
            if (json) {
                nlohmann::ordered_json j;
                j["output"] = "model";
                j["base"] = a.base_hash;
                j["adapter"] = a.adapter_hash;
                j["weights"] = a.weights;
                j["model"] = model_hash(a.payload);
                std::cerr << j.dump() << "\n";
            }
            return 0;
        }
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
        if (!min_score.empty()) parse_min_score(min_score, o);
        o.scores = !scores_path.empty() || !receipts.empty() || o.min_score || !holdout.empty();
        if (receipts.empty() != key_path.empty())
            throw UsageError("--receipts LEDGER and --key FILE go together",
                             "the merger's member key signs every receipt in the ledger");
        if (receipts == "-")
            throw UsageError("--receipts must name a file", "the ledger is read and extended");
        if (!receipts.empty() && !req.base)
            throw UsageError("--receipts needs --base: a receipt names the base and new model");
        if (!holdout_limit.empty() && holdout.empty())
            throw UsageError("--holdout-limit needs --holdout DATA");
        if (!holdout.empty()) {
            if (!req.base) throw UsageError("--holdout applies each update to --base: give it");
            auto limit = holdout_limit.empty() ? std::optional<uint64_t>(0)
                                               : parse_uint(holdout_limit, 1ull << 40);
            if (!limit)
                throw UsageError("--holdout-limit must be a whole number, not '" + holdout_limit +
                                 "'");
            o.holdout_loss = holdout_evaluator(holdout, *limit);
        }
        std::optional<crypto::MemberKey> merger_key;
        if (!key_path.empty()) {
            crypto::init();
            crypto::set_key_file_warning([&](const std::string& m) { tool.warn(m); });
            merger_key = crypto::MemberKey::load(key_path);
            // A ledger that does not verify is refused before any work.
            if (access(receipts.c_str(), F_OK) == 0)
                ledger::read_ledger(receipts, merger_key->record, merger_key->authority());
        }
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
        for (const std::string* p : {&scores_path, &receipts})
            if (!p->empty()) {
                if (*p == "-" && *p == out_path)
                    throw UsageError("--scores and the output cannot both go to stdout");
                tool.check_not_same(all, *p);
                if (*p != "-" && out_path != "-" && *p == out_path)
                    throw UsageError(*p + " is named twice as an output");
            }

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
        std::unique_ptr<Output> scores_out;
        if (!scores_path.empty()) {
            OutputOptions so;
            so.binary = false;
            so.force = true;
            scores_out = std::make_unique<Output>(scores_path, so);
            if (!json)
                scores_out->write(std::string(
                    "record\tweight\taccepted\tcosine\tkrum\tnorm_ratio\tholdout\tscore\n"));
            for (auto& s : res.scores()) scores_out->write(score_line(s, json));
        }
        std::vector<ledger::Receipt> rs;
        if (merger_key) {
            const std::string model = model_hash(res.payload());
            const uint64_t round = res.metadata().count(meta::round)
                                       ? parse_uint(res.metadata().at(meta::round)).value_or(1)
                                       : 1;
            for (auto& s : res.scores()) {
                if (!s.accepted) continue;
                if (s.receipt_key.empty()) {
                    tool.warn(s.name + " carries no receipt_key: no receipt for it");
                    continue;
                }
                ledger::Receipt r;
                try { // one member's bad key costs that member its receipt, not the round
                    r.receipt_key = crypto::receipt_public_text(
                        crypto::decode_receipt_public(s.receipt_key, s.name + ": receipt_key"));
                    if (r.receipt_key != s.receipt_key)
                        throw DataError(s.name + ": receipt_key is not one N3-RECEIPT- line");
                } catch (const DataError& e) {
                    tool.warn(std::string(e.what()) + ": no receipt for it");
                    continue;
                }
                r.round = round;
                r.base = res.base_hash();
                r.model = model;
                r.record = s.hash;
                r.weight = s.weight;
                r.cosine = s.scores.cosine;
                r.krum = s.scores.krum;
                r.norm_ratio = s.scores.norm_ratio;
                r.holdout = s.scores.holdout;
                r.score = s.scores.score;
                rs.push_back(std::move(r));
            }
        }
        // The model and the server state appear together or not at all (a full disk).
        res.write(*out);
        out->sync();
        if (scores_out) scores_out->sync();
        res.save_state();
        out->commit();
        if (scores_out) scores_out->commit();
        if (merger_key) {
            crypto::Hash32 head = ledger::append_receipts(receipts, *merger_key, rs);
            tool.verbose(receipts + ": " + std::to_string(rs.size()) + " receipts, head " +
                         to_hex(head));
        }
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
