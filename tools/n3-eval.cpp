// n3-eval: evaluate a model record on a data set, or sample text from an LM (man/n3-eval.1).
#include "common/tool.hpp"
#include "train/data.hpp"
#include "train/lora.hpp"
#include "train/model.hpp"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <unistd.h>

using namespace n3;
using namespace n3::train;

int main(int argc, char** argv) {
    Tool tool("n3-eval",
              "Evaluate a model record, or sample text from a language model.\n\n"
              "Prints accuracy and loss for classifiers, bits per character and next-character\n"
              "accuracy for language models. With --generate, writes sampled text to stdout.");
    auto& app = tool.app();
    std::string model_path, data_path, format, split = "test", spec_path, prompt, adapter_path;
    bool json = false, generate = false, no_cache = false, interactive = false;
    int threads = 0;
    int64_t limit = 0, tokens = 200;
    double temperature = 0.8, top_p = 1;
    int64_t top_k = 0;
    uint64_t seed = 0;
    app.add_option("MODEL", model_path, "Model record ('-' is stdin)")->required();
    app.add_option("--data", data_path, "Evaluation data: IDX folder, CSV file or text file")
        ->type_name("PATH");
    app.add_option("--format", format, "Data format when the path does not tell: idx, csv, text");
    app.add_option("--split", split, "Part of the data set: test (default), train, all");
    app.add_option("--limit", limit, "Evaluate only the first N samples (text: lines)");
    app.add_option("--model", spec_path, "Model spec, for a record that carries none")
        ->type_name("SPEC.yaml");
    app.add_option("--adapter", adapter_path,
                   "Evaluate or sample MODEL with this LoRA adapter of it")
        ->type_name("ADAPTER.n3");
    app.add_flag("--json", json, "Print the result as one line of JSON");
    app.add_option("--threads", threads, "libtorch threads (default: every core)");
    auto* o_gen = app.add_option("--generate", prompt, "Sample text after PROMPT (language models)")
                      ->type_name("PROMPT");
    auto* o_int = app.add_flag("--interactive", interactive,
                               "Read prompts from stdin, one a line, and answer each");
    auto* o_tok = app.add_option("--tokens", tokens, "Tokens to generate (default 200)");
    auto* o_temp = app.add_option("--temperature", temperature,
                                  "Sampling temperature, 0 = greedy (default 0.8)");
    auto* o_topk =
        app.add_option("--top-k", top_k, "Sample among the K most likely tokens (0: all)");
    auto* o_topp = app.add_option("--top-p", top_p,
                                  "Sample among the most likely tokens that reach mass P (1: all)");
    auto* o_nc = app.add_flag("--no-cache", no_cache,
                              "Rerun the whole window for every token (no KV cache)");
    app.add_option("--seed", seed, "Sampling seed (default 0)");
    o_gen->excludes(o_int);

    return tool.run(argc, argv, [&]() -> int {
        generate = o_gen->count() > 0 || interactive;
        for (auto* o : {o_tok, o_temp, o_topk, o_topp, o_nc})
            if (o->count() && !generate)
                throw UsageError(o->get_name() + " is for sampling", "add --generate PROMPT");
        if (threads < 0) throw UsageError("--threads must not be negative");
        if (limit < 0) throw UsageError("--limit must not be negative");
        if (generate && !data_path.empty())
            throw UsageError("--generate samples text; it takes no --data");
        if (interactive && model_path == "-")
            throw UsageError("--interactive reads prompts from stdin; give the model as a file");
        if (!generate && data_path.empty())
            throw UsageError("--data is required", "or --generate PROMPT for a language model");
        if (!adapter_path.empty() && adapter_path == "-" && model_path == "-")
            throw UsageError("only one of MODEL and --adapter may read stdin ('-')");
        if (interactive && adapter_path == "-")
            throw UsageError("--interactive reads prompts from stdin; give the adapter as a file");
        std::optional<Model> from_spec;
        if (!spec_path.empty()) from_spec = spec_only(read_text_file(spec_path), spec_path);
        Model m = load_model_record(model_path, from_spec);
        std::optional<Adapter> adapter;
        if (!adapter_path.empty()) adapter = load_adapter(adapter_path, m, model_path);
        const Adapter* ap = adapter ? &*adapter : nullptr;
        configure_threads(threads);
        if (generate) {
            Generator gen(m, ap);
            GenerateOptions o;
            o.tokens = tokens;
            o.temperature = temperature;
            o.top_k = top_k;
            o.top_p = top_p;
            o.seed = seed;
            o.cache = !no_cache;
            bool at_line_start = true;
            o.on_text = [&](const std::string& piece) { // streamed, flushed per token
                std::fwrite(piece.data(), 1, piece.size(), stdout);
                std::fflush(stdout);
                at_line_start = piece.back() == '\n';
            };
            auto answer = [&](const std::string& p) {
                std::fwrite(p.data(), 1, p.size(), stdout);
                at_line_start = p.empty() || p.back() == '\n';
                GenerateResult r = gen.run(p, o);
                if (!at_line_start || (p.empty() && r.text.empty())) std::fputc('\n', stdout);
                std::fflush(stdout);
                char line[200];
                std::snprintf(line, sizeof line,
                              "prompt %lld tokens in %.3f s, generated %lld tokens in %.3f s "
                              "(%.1f tokens/s)",
                              static_cast<long long>(r.prompt_tokens), r.prompt_seconds,
                              static_cast<long long>(r.generated), r.seconds,
                              r.seconds > 0 ? double(r.generated) / r.seconds : 0.0);
                tool.verbose(line);
                if (json) {
                    nlohmann::ordered_json j;
                    j["prompt_tokens"] = r.prompt_tokens;
                    j["prompt_seconds"] = r.prompt_seconds;
                    j["prompt_tokens_per_s"] =
                        r.prompt_seconds > 0 ? double(r.prompt_tokens) / r.prompt_seconds : 0.0;
                    j["tokens"] = r.generated;
                    j["seconds"] = r.seconds;
                    j["tokens_per_s"] = r.seconds > 0 ? double(r.generated) / r.seconds : 0.0;
                    j["cache"] = o.cache;
                    std::cerr << j.dump() << std::endl;
                }
            };
            if (!interactive) {
                answer(prompt);
                return 0;
            }
            bool tty = isatty(0);
            std::string line;
            for (;;) {
                if (tty) std::fputs("> ", stderr);
                if (!std::getline(std::cin, line)) break;
                if (line.empty()) continue;
                answer(line);
                ++o.seed; // a new draw for every prompt, reproducible from --seed
            }
            if (tty) std::fputc('\n', stderr);
            return 0;
        }
        Dataset d =
            load_dataset(data_path, format.empty() ? Format::automatic : parse_format(format),
                         parse_split(split));
        std::vector<size_t> idx(d.size());
        std::iota(idx.begin(), idx.end(), size_t(0));
        if (limit > 0 && idx.size() > size_t(limit)) idx.resize(size_t(limit));
        Examples ex = d.gather(idx);
        EvalResult r = evaluate_model(m, ex, ap);
        if (json) {
            nlohmann::ordered_json j;
            j["model"] = m.hash;
            j["round"] = m.round;
            if (adapter) j["adapter"] = adapter->hash, j["adapter_round"] = adapter->round;
            j["samples"] = r.samples;
            j["loss"] = r.loss;
            j["accuracy"] = r.accuracy;
            if (r.lm) j["bits_per_char"] = r.bits_per_char;
            if (r.lm) j["perplexity"] = r.perplexity;
            if (!r.lm && tool.verbosity() > 0) {
                auto per = nlohmann::ordered_json::array();
                for (size_t c = 0; c < r.class_total.size(); ++c)
                    per.push_back({{"class", c},
                                   {"samples", r.class_total[c]},
                                   {"accuracy", r.class_total[c] ? double(r.class_correct[c]) /
                                                                       double(r.class_total[c])
                                                                 : 0.0}});
                j["classes"] = per;
            }
            j["seconds"] = r.seconds;
            std::cout << j.dump() << std::endl;
            return 0;
        }
        char line[200];
        const bool sp = m.spec.tokenizer == TokenizerKind::sentencepiece;
        if (r.lm)
            std::snprintf(line, sizeof line,
                          "bits/char %.4f  next-%s accuracy %.4f  loss %.4f  perplexity %.2f  "
                          "%s %llu\n",
                          r.bits_per_char, sp ? "token" : "char", r.accuracy, r.loss, r.perplexity,
                          sp ? "tokens" : "characters", static_cast<unsigned long long>(r.samples));
        else
            std::snprintf(line, sizeof line, "accuracy %.4f  loss %.4f  samples %llu\n", r.accuracy,
                          r.loss, static_cast<unsigned long long>(r.samples));
        std::cout << line;
        if (!r.lm && tool.verbosity() > 0)
            for (size_t c = 0; c < r.class_total.size(); ++c) {
                std::snprintf(
                    line, sizeof line, "  class %-3zu accuracy %.4f  samples %llu\n", c,
                    r.class_total[c] ? double(r.class_correct[c]) / double(r.class_total[c]) : 0.0,
                    static_cast<unsigned long long>(r.class_total[c]));
                std::cout << line;
            }
        return 0;
    });
}
