// n3-train: train a model on local data and emit an update or model record (man/n3-train.1).
#include "common/tool.hpp"
#include "crypto/keys.hpp"
#include "record/format.hpp"
#include "train/data.hpp"
#include "train/lora.hpp"
#include "train/model.hpp"
#include "train/partition.hpp"
#include "train/scaffold.hpp"
#include "train/tokenizer.hpp"

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

using namespace n3;
using namespace n3::train;

int main(int argc, char** argv) {
    Tool tool("n3-train",
              "Train a model on local data and write an update record.\n\n"
              "Starts from --init MODEL.n3 (a model record, which carries its spec) or from a\n"
              "fresh model built from --model SPEC.yaml, trains on this node's share of --data,\n"
              "and writes the update (trained minus initial weights) or the trained model.");
    auto& app = tool.app();
    std::string model_path, init_path, data_path, format = "", split = "train";
    std::string partition_text = "iid", optimizer = "sgd", device = "cpu", emit = "update";
    std::string out_path, scaffold_path;
    bool scaffold_init = false;
    double dp_clip = 0, dp_noise = 0, dp_delta = 1e-5;
    bool init_only = false, list_partition = false, json = false, force = false;
    int clients = 1, client = 0, epochs = 1, threads = 0;
    int64_t steps = 0, batch = 64, limit = 0;
    double lr = 0.01, momentum = 0, weight_decay = 0, prox_mu = 0;
    uint64_t seed = 0, partition_seed = 0;

    app.add_option("--model", model_path, "Model spec (YAML)")->type_name("SPEC.yaml");
    app.add_option("--init", init_path, "Model record to start from ('-' is stdin)")
        ->type_name("MODEL.n3");
    app.add_flag("--init-only", init_only, "Write a freshly initialised model record and exit");
    app.add_option("--data", data_path, "Training data: IDX folder, CSV file or text file")
        ->type_name("PATH");
    app.add_option("--format", format, "Data format when the path does not tell: idx, csv, text");
    app.add_option("--split", split, "Part of the data set: train (default), test, all");
    app.add_option(
        "--partition", partition_text,
        "This node's share: iid, dirichlet:ALPHA, classes:K, labels:L+L,..., quantity:ALPHA, "
        "natural");
    app.add_option("--clients", clients, "Number of clients the data is split among (default 1)");
    app.add_option("--client", client, "This client's index, 0 to N-1 (default 0)");
    app.add_flag("--list-partition", list_partition,
                 "Print this client's sample indices, one per line, and exit");
    app.add_option("--limit", limit, "Use only the first N samples of the partition");
    app.add_option("--epochs", epochs, "Passes over the data (default 1)");
    app.add_option("--steps", steps, "Stop after N optimizer steps");
    app.add_option("--batch", batch, "Batch size (default 64)");
    app.add_option("--lr", lr, "Learning rate (default 0.01)");
    app.add_option("--momentum", momentum, "SGD momentum (default 0)");
    app.add_option("--weight-decay", weight_decay, "L2 weight decay (default 0)");
    app.add_option("--optimizer", optimizer, "sgd (default) or adam");
    app.add_option("--prox-mu", prox_mu, "FedProx proximal term mu (default 0: FedAvg)");
    app.add_option("--scaffold", scaffold_path,
                   "SCAFFOLD: this member's control-variate state file (created on first use)")
        ->type_name("STATE");
    app.add_flag("--scaffold-init", scaffold_init,
                 "With --init-only: add SCAFFOLD's server control variate (zero) to the model");
    app.add_option("--dp-clip", dp_clip, "DP-SGD: clip every example's gradient to L2 norm C")
        ->type_name("C");
    app.add_option("--dp-noise", dp_noise,
                   "DP-SGD: Gaussian noise of std Z*C on each batch's gradient sum")
        ->type_name("Z");
    app.add_option("--dp-delta", dp_delta, "DP-SGD: the delta of the epsilon reported (1e-5)");
    app.add_option("--seed", seed,
                   "Seed for initialisation, partition and batch order (default 0)");
    auto* o_pseed = app.add_option("--partition-seed", partition_seed,
                                   "Seed for the partition alone (default: --seed)");
    app.add_option("--threads", threads, "libtorch threads (default: every core)");
    app.add_option("--device", device, "cpu (default) or cuda");
    app.add_option("--emit", emit, "update (default) or model");
    app.add_option("-o,--output", out_path, "Output file ('-' is stdout, the default)");
    app.add_flag("--json", json, "Print a one-line JSON summary on stderr");
    app.add_flag("-f,--force", force, "Write binary output to a terminal");
    int64_t tokenizer_vocab = 0;
    std::string tokenizer_type = "unigram", tokenizer_model;
    auto* o_tok = app.add_option("--tokenizer", tokenizer_vocab,
                                 "Train a SentencePiece tokenizer of VOCAB pieces on --data and "
                                 "write it to -o (no model is trained)")
                      ->type_name("VOCAB");
    app.add_option("--tokenizer-type", tokenizer_type, "With --tokenizer: unigram (default) or bpe")
        ->needs(o_tok);
    app.add_option("--tokenizer-model", tokenizer_model,
                   "The SentencePiece tokenizer a fresh model of a 'tokenizer: sentencepiece' "
                   "spec carries")
        ->type_name("FILE");
    std::string lora_text, lora_targets = "attn,mlp", adapter_path;
    auto* o_lora = app.add_option("--lora", lora_text,
                                  "LoRA: freeze the model and train a fresh adapter of rank RANK, "
                                  "scaled by ALPHA/RANK (ALPHA defaults to RANK)")
                       ->type_name("RANK[:ALPHA]");
    auto* o_targets =
        app.add_option("--lora-targets", lora_targets,
                       "LoRA: the weights adapted: attn, mlp or attn,mlp (the default)")
            ->type_name("LIST");
    app.add_option("--adapter", adapter_path,
                   "LoRA: train this adapter of the --init model (the update's base is the "
                   "adapter)")
        ->type_name("ADAPTER.n3");
    std::string receipt_path;
    app.add_option("--receipt-key", receipt_path,
                   "Put this one-time receipt public key (n3-keys receipt) into the update")
        ->type_name("FILE.pub");

    return tool.run(argc, argv, [&]() -> int {
        if (emit != "update" && emit != "model")
            throw UsageError("--emit must be update or model, not '" + emit + "'");
        if (clients < 1) throw UsageError("--clients must be at least 1");
        if (client < 0 || client >= clients)
            throw UsageError("--client " + std::to_string(client) + " is out of range for " +
                                 std::to_string(clients) + " clients",
                             "clients are numbered 0 to " + std::to_string(clients - 1));
        if (limit < 0) throw UsageError("--limit must not be negative");
        if (threads < 0) throw UsageError("--threads must not be negative");
        PartitionSpec pspec = PartitionSpec::parse(partition_text);
        check_device(device);
        const bool make_tokenizer = o_tok->count() > 0;
        if (make_tokenizer) {
            if (data_path.empty()) throw UsageError("--tokenizer needs --data TEXT to train on");
            if (init_only || !init_path.empty() || !model_path.empty() || list_partition)
                throw UsageError("--tokenizer trains only a tokenizer",
                                 "then build the model: --init-only --model SPEC "
                                 "--tokenizer-model FILE");
            if (out_path.empty() || out_path == "-")
                throw UsageError("--tokenizer writes a file: give -o FILE");
        }
        if (!tokenizer_model.empty() && (!init_path.empty() || make_tokenizer))
            throw UsageError("--tokenizer-model is for a fresh model (--model SPEC)",
                             "a model record carries its tokenizer");
        // LoRA: flags checked before any work; the adapter itself once the model is read.
        const bool lora = o_lora->count() || !adapter_path.empty();
        LoraConfig lora_config;
        if (o_lora->count()) lora_config = parse_lora(lora_text, lora_targets);
        if (o_targets->count() && !lora)
            throw UsageError("--lora-targets needs --lora RANK (or --adapter FILE)");
        if (o_targets->count() && !o_lora->count())
            lora_config.targets = canonical_targets(lora_targets);
        if (lora) {
            if (init_path.empty())
                throw UsageError("--lora and --adapter adapt a model record: give --init MODEL.n3",
                                 "write one with n3-train --init-only --model SPEC.yaml");
            if (make_tokenizer || list_partition || !scaffold_path.empty() || scaffold_init ||
                dp_clip > 0)
                throw UsageError(std::string(make_tokenizer   ? "--tokenizer"
                                             : list_partition ? "--list-partition"
                                             : scaffold_init  ? "--scaffold-init"
                                             : dp_clip > 0    ? "--dp-clip"
                                                              : "--scaffold") +
                                 " and LoRA (--lora, --adapter) do not combine");
            if (init_only && !adapter_path.empty())
                throw UsageError("--init-only --lora RANK writes a fresh adapter; it takes no "
                                 "--adapter");
            if (adapter_path == "-" && init_path == "-")
                throw UsageError("only one of --init and --adapter may read stdin ('-')");
            if (adapter_path != "-" && !adapter_path.empty())
                tool.check_not_same({adapter_path}, out_path);
            if (!adapter_path.empty() && !init_path.empty() && adapter_path == init_path)
                throw UsageError("--adapter and --init name the same file",
                                 "--init is the model, --adapter its adapter");
        }
        if (!list_partition && !make_tokenizer) {
            if (model_path.empty() && init_path.empty())
                throw UsageError("give --model SPEC.yaml or --init MODEL.n3");
            if (init_only && !init_path.empty() && !lora)
                throw UsageError("--init-only writes a fresh model; it takes --model, not --init",
                                 "or --lora RANK for a fresh adapter of the --init model");
            if (!init_only && data_path.empty())
                throw UsageError("--data is required", "or --init-only to write a fresh model");
        }
        if (list_partition && data_path.empty()) throw UsageError("--list-partition needs --data");
        if (scaffold_init && !init_only)
            throw UsageError("--scaffold-init is for --init-only",
                             "members train with --scaffold STATE");
        if (!scaffold_path.empty() && (init_only || list_partition))
            throw UsageError("--scaffold is for training, not --init-only or --list-partition");
        if (!(dp_delta > 0 && dp_delta < 1)) throw UsageError("--dp-delta must be in (0, 1)");
        if (!scaffold_path.empty()) {
            if (scaffold_path == "-") throw UsageError("--scaffold must name a file");
            tool.check_not_same({scaffold_path}, out_path);
            if (!init_path.empty()) tool.check_not_same({init_path}, scaffold_path);
        }
        if (!init_path.empty() && init_path != "-") tool.check_not_same({init_path}, out_path);

        // Read data and options first so that mistakes fail before the output is opened.
        std::optional<Model> from_spec;
        if (!model_path.empty() && !list_partition)
            from_spec = spec_only(read_text_file(model_path), model_path);
        std::vector<size_t> indices;
        std::optional<Dataset> data;
        if (!data_path.empty() && !init_only) {
            data =
                load_dataset(data_path, format.empty() ? Format::automatic : parse_format(format),
                             parse_split(split), list_partition);
            indices =
                partition(*data, pspec, clients, client, o_pseed->count() ? partition_seed : seed);
            if (limit > 0 && indices.size() > size_t(limit)) indices.resize(size_t(limit));
            if (indices.empty())
                throw DataError(data_path + ": client " + std::to_string(client) +
                                " has no samples in this partition");
        }
        if (make_tokenizer) {
            if (!data->is_text())
                throw UsageError("--tokenizer trains on text; " + data_path + " is not text",
                                 "use a text file (--format text)");
            std::string proto =
                train_tokenizer(data->gather(indices).text, tokenizer_vocab, tokenizer_type);
            tool.check_not_same({data_path}, out_path);
            auto out = tool.open_output(out_path, force, false);
            out->write(ByteView(reinterpret_cast<const uint8_t*>(proto.data()), proto.size()));
            out->commit();
            return 0;
        }
        if (list_partition) {
            std::string text;
            for (size_t i : indices) text += std::to_string(i) + "\n";
            std::fwrite(text.data(), 1, text.size(), stdout);
            return 0;
        }

        std::string blas = configure_threads(threads);
        tool.verbose("blas: " + blas + " (1 thread), libtorch threads: " +
                     (threads ? std::to_string(threads) : "all cores"));
        std::string tokenizer_bytes;
        if (!tokenizer_model.empty()) {
            auto b = read_maybe_gzip(tokenizer_model);
            tokenizer_bytes.assign(b.begin(), b.end());
        }
        Model init = init_path.empty()
                         ? init_model(from_spec->spec, from_spec->spec_text, seed, tokenizer_bytes)
                         : load_model_record(init_path, from_spec);
        std::optional<std::string> receipt_key;
        if (!receipt_path.empty()) {
            if (init_only) throw UsageError("--receipt-key marks an update, not --init-only");
            crypto::Point Y =
                crypto::decode_receipt_public(read_text_file(receipt_path), receipt_path);
            receipt_key = crypto::receipt_public_text(Y);
        }
        std::optional<Adapter> adapter;
        if (!adapter_path.empty()) {
            adapter = load_adapter(adapter_path, init, "--init " + init_path);
            const LoraMeta& lm = adapter->meta;
            if ((o_lora->count() &&
                 (lora_config.rank != lm.rank || lora_config.alpha != lm.alpha)) ||
                (o_targets->count() && lora_config.targets != lm.targets))
                throw DataError("--adapter " + adapter_path + " is an adapter of " + lm.describe() +
                                    ", not of --lora " +
                                    (o_lora->count() ? lora_text : lm.describe()) +
                                    " --lora-targets " + lora_config.targets,
                                "drop --lora and --lora-targets to train the adapter as it is");
        } else if (o_lora->count()) {
            lora_weights(init.spec, lora_config.targets); // UsageError without transformer blocks
            adapter = init_adapter(init, lora_config, seed);
        }
        bool explicit_stdout = out_path == "-";
        auto out = tool.open_output(out_path.empty() ? "-" : out_path, force, explicit_stdout);
        if (init_only && adapter) {
            write_record(*out, RecordType::model, adapter->payload);
            out->commit();
            return 0;
        }
        if (scaffold_init) init = with_zero_control(init);
        std::vector<NamedTensor> server_c;
        std::optional<std::vector<NamedTensor>> member_c;
        if (!scaffold_path.empty()) {
            server_c = control_tensors(init);
            if (server_c.empty())
                throw DataError(init_path + ": the model carries no SCAFFOLD server control "
                                            "variate ('scaffold/' tensors)",
                                "start from n3-train --init-only --scaffold-init, merged with "
                                "n3-merge --rule scaffold");
            member_c = read_member_state(scaffold_path, init);
        }
        if (init_only) {
            write_record(*out, RecordType::model, init.payload);
            out->commit();
            return 0;
        }
        Examples examples = data->gather(indices);
        data.reset(); // the partition's copy is all training needs

        TrainOptions opts;
        opts.epochs = epochs;
        opts.steps = steps;
        opts.batch = batch;
        opts.lr = lr;
        opts.momentum = momentum;
        opts.weight_decay = weight_decay;
        opts.optimizer = optimizer;
        opts.prox_mu = prox_mu;
        opts.seed = seed;
        opts.emit_model = emit == "model";
        opts.dp_clip = dp_clip;
        opts.dp_noise = dp_noise;
        opts.dp_delta = dp_delta;
        if (!scaffold_path.empty()) {
            opts.scaffold_c = &server_c;
            if (member_c) opts.scaffold_ci = &*member_c;
        }
        if (receipt_key) opts.metadata[meta::receipt_key] = *receipt_key;
        if (adapter) opts.adapter = &*adapter;
        bool progress = tool.stderr_is_terminal() && !tool.quiet();
        if (progress)
            opts.progress = [&](int epoch, int64_t step, int64_t total, double loss) {
                if (step % 10 != 0 && step != total) return;
                std::fprintf(stderr, "\rn3-train: epoch %d, step %lld/%lld, loss %.4f ", epoch,
                             static_cast<long long>(step), static_cast<long long>(total), loss);
                if (step == total) std::fputc('\n', stderr);
            };
        TrainResult r = train_model(init, examples, opts);
        write_record(*out, r.type, r.payload);
        // c_i moves only once the update is on disk, and the update appears only once c_i
        // moved: a run that fails (a full disk) leaves both as they were.
        out->sync();
        if (!scaffold_path.empty()) write_member_state(scaffold_path, r.scaffold_ci, init);
        out->commit();
        if (json) {
            nlohmann::ordered_json j;
            j["samples"] = r.samples;
            j["processed"] = r.processed;
            j["steps"] = r.steps;
            j["seconds"] = r.seconds;
            j["samples_per_s"] = r.seconds > 0 ? double(r.processed) / r.seconds : 0.0;
            j["loss"] = r.loss;
            if (dp_noise > 0) j["dp_sgd_epsilon"] = r.dp_epsilon;
            j["emit"] = emit;
            j["trainable_parameters"] = r.trainable;
            if (adapter) {
                j["adapter"] = adapter->hash;
                j["frozen_with_grad"] = r.frozen_with_grad;
            }
            std::cerr << j.dump() << std::endl;
        }
        return 0;
    });
}
