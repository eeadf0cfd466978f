// The libtorch half of lib/train: the network as a function of named tensors, the training
// loop, evaluation and sampling. The only translation unit of n3 that includes libtorch.
//
// The network is not a torch::nn module tree: parameters are plain tensors named as the spec
// says, and forward() applies the spec's layers with ATen functions, so tensor names, order and
// initialisation are ours and stable across libtorch versions.
#include "record/hex.hpp"
#include "train/lora.hpp"
#include "train/model.hpp"
#include "train/tokenizer.hpp"

#include "privacy/accountant.hpp"
#include "privacy/noise.hpp"
#include "record/error.hpp"
#include "record/safetensors.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <dlfcn.h>
#include <thread>
#include <torch/torch.h>

namespace n3::train {

namespace {

using torch::Tensor;

struct Params {
    std::vector<std::string> names;
    std::vector<Tensor> tensors;
    std::map<std::string, size_t> index;
    const Tensor& operator[](const std::string& n) const { return tensors[index.at(n)]; }
};

Params to_params(const std::vector<NamedTensor>& named) {
    Params p;
    for (auto& t : named) {
        Tensor x =
            torch::from_blob(const_cast<float*>(t.values.data()), t.shape, torch::kFloat32).clone();
        p.index[t.name] = p.tensors.size();
        p.names.push_back(t.name);
        p.tensors.push_back(x);
    }
    return p;
}

std::vector<NamedTensor> from_params(const Params& p, const Params* minus = nullptr) {
    std::vector<NamedTensor> out;
    for (size_t i = 0; i < p.tensors.size(); ++i) {
        Tensor t = p.tensors[i].detach();
        if (minus) t = t - minus->tensors[i];
        t = t.contiguous();
        NamedTensor nt{p.names[i], t.sizes().vec(), {}};
        nt.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
        out.push_back(std::move(nt));
    }
    return out;
}

// A LoRA adapter at run time: the A and B of every adapted weight, by the weight's name, and
// the scale alpha / r. The tensors are the adapter's own (trained in place by train_model).
struct LoraPath {
    double scale = 0;
    std::map<std::string, std::pair<Tensor, Tensor>> ab;
};
LoraPath lora_path(const Params& adapter, double scale) {
    LoraPath lp;
    lp.scale = scale;
    const std::string prefix = meta::lora_prefix;
    for (size_t i = 0; i + 1 < adapter.names.size(); i += 2) {
        // lora/W.A, lora/W.B (adapter_shapes' order)
        const std::string& a = adapter.names[i];
        lp.ab[a.substr(prefix.size(), a.size() - prefix.size() - 2)] = {adapter.tensors[i],
                                                                        adapter.tensors[i + 1]};
    }
    return lp;
}

// x W^T + b. A single row outside autograd (one generated token) is a matrix-vector product:
// a matrix-matrix product of one row makes OpenBLAS pack (copy) the whole weight first, which
// costs more than the product itself; gemv reads each weight once (bench/generate.sh: gpt.yaml
// generates 177 tokens/s so, 133 through the one-row matrix product).
Tensor project(const Tensor& x, const Tensor& w, const Tensor& b = Tensor()) {
    if (x.dim() >= 1 && x.numel() == x.size(-1) && w.dim() == 2 && x.device().is_cpu() &&
        !torch::GradMode::is_enabled()) {
        Tensor v = x.reshape({-1});
        Tensor y = b.defined() ? torch::addmv(b, w, v) : torch::mv(w, v);
        auto shape = x.sizes().vec();
        shape.back() = w.size(0);
        return y.view(shape);
    }
    return torch::linear(x, w, b);
}

// Keys and values of every transformer block for the positions seen so far (generation).
// The tensors are allocated for the whole context once and filled in place, so a new token
// costs no copy of the positions before it.
struct KvCache {
    std::vector<Tensor> k, v; // per block, [B, H, context, Dh], valid up to length
    int64_t length = 0;
};

// Rotary position embedding (Su et al. 2021, the rotate-half form of GPT-NeoX and LLaMA):
// the angles of positions pos0 .. pos0 + T - 1 for heads of width dh, computed once per forward
// pass and shared by its blocks.
struct Rotation {
    Tensor cos, sin; // [T, dh / 2]
};
Rotation rotation(int64_t pos0, int64_t T, int64_t dh) {
    const int64_t half = dh / 2;
    Tensor inv = torch::pow(10000.0, torch::arange(0, half, torch::kFloat32) * (-2.0 / double(dh)));
    Tensor angle = torch::outer(torch::arange(pos0, pos0 + T, torch::kFloat32), inv);
    return {angle.cos(), angle.sin()};
}
// x = [B, H, T, dh] rotated by r.
Tensor rotate(const Tensor& x, const Rotation& r) {
    const int64_t half = x.size(3) / 2;
    Tensor x1 = x.slice(-1, 0, half), x2 = x.slice(-1, half);
    return torch::cat({x1 * r.cos - x2 * r.sin, x1 * r.sin + x2 * r.cos}, -1);
}

// The spec's layers applied to x. With a cache, x holds the positions after cache->length
// (their keys and values are appended); without, x is a whole sequence from position 0.
// With an adapter, every adapted weight's product gains the low-rank path x A^T B^T (alpha / r),
// so that W + (alpha / r) B A is never formed and only A and B need gradients.
Tensor forward(const ModelSpec& spec, const Params& p, Tensor x, bool train,
               KvCache* cache = nullptr, const LoraPath* lora = nullptr) {
    const auto& layers = spec.layers;
    const int64_t pos0 = cache ? cache->length : 0;
    const int64_t T0 = x.dim() > 1 ? x.size(1) : 0;
    size_t block = 0, last_block = 0;
    std::map<int64_t, Rotation> rotations; // by head width
    for (size_t i = 0; i < layers.size(); ++i)
        if (layers[i].type == LayerType::transformer) last_block = i;
    for (size_t i = 0; i < layers.size(); ++i) {
        const Layer& l = layers[i];
        const std::string& n = l.name;
        // relu then maxpool equals maxpool then relu (relu is monotone), and pooling first
        // makes relu and its backward pass work on a quarter of the elements: the CNN trains
        // 1.3-1.5x faster with the same result.
        if (l.type == LayerType::relu && i + 1 < layers.size() &&
            layers[i + 1].type == LayerType::maxpool2d) {
            x = torch::relu(torch::max_pool2d(x, layers[i + 1].kernel, layers[i + 1].stride));
            ++i;
            continue;
        }
        // Generation needs the last position's logits only: the layers after the last block
        // (final norm, head) skip the prompt's other positions.
        if (cache && i > last_block && last_block > 0 && x.size(1) > 1)
            x = x.slice(1, x.size(1) - 1);
        auto bias = [&](const std::string& name) { return l.bias ? p[name + ".bias"] : Tensor(); };
        switch (l.type) {
        case LayerType::linear:
            // A tied head reads the embedding's table: one tensor, trained by both uses.
            x = project(x, p[(l.tied.empty() ? n : l.tied) + ".weight"], bias(n));
            break;
        case LayerType::conv2d:
            x = torch::conv2d(x, p[n + ".weight"], bias(n), l.stride, l.padding);
            break;
        case LayerType::maxpool2d: x = torch::max_pool2d(x, l.kernel, l.stride); break;
        case LayerType::avgpool2d: x = torch::avg_pool2d(x, l.kernel, l.stride); break;
        case LayerType::flatten: x = x.flatten(1); break;
        case LayerType::relu:
            // In place after linear and conv2d, whose backward needs their inputs, not outputs.
            x = i > 0 && (layers[i - 1].type == LayerType::linear ||
                          layers[i - 1].type == LayerType::conv2d)
                    ? torch::relu_(x)
                    : torch::relu(x);
            break;
        case LayerType::gelu: x = torch::gelu(x); break;
        case LayerType::tanh: x = torch::tanh(x); break;
        case LayerType::dropout: x = torch::dropout(x, l.p, train); break;
        case LayerType::layernorm:
            x = torch::layer_norm(x, {l.dim}, p[n + ".weight"], p[n + ".bias"]);
            break;
        case LayerType::embedding: x = torch::embedding(p[n + ".weight"], x); break;
        case LayerType::position: x = x + p[n + ".weight"].slice(0, pos0, pos0 + x.size(1)); break;
        case LayerType::transformer: {
            auto adapted = [&](const Tensor& in, const std::string& w) {
                Tensor y = project(in, p[w + ".weight"], p[w + ".bias"]);
                if (lora)
                    if (auto ab = lora->ab.find(w + ".weight"); ab != lora->ab.end())
                        y = y +
                            project(project(in, ab->second.first), ab->second.second) * lora->scale;
                return y;
            };
            const int64_t B = x.size(0), T = x.size(1), D = l.dim, H = l.heads, Dh = D / H;
            Tensor h = torch::layer_norm(x, {D}, p[n + ".ln1.weight"], p[n + ".ln1.bias"]);
            Tensor qkv = adapted(h, n + ".attn.qkv");
            auto parts = qkv.view({B, T, 3, H, Dh}).permute({2, 0, 3, 1, 4}).unbind(0);
            Tensor q = parts[0], k = parts[1], v = parts[2];
            if (l.rotary) {
                auto r = rotations.find(Dh);
                if (r == rotations.end()) r = rotations.emplace(Dh, rotation(pos0, T, Dh)).first;
                q = rotate(q, r->second);
                k = rotate(k, r->second);
            }
            if (cache) {
                if (cache->k.size() <= block) {
                    cache->k.push_back(torch::empty({B, H, spec.context, Dh}, k.options()));
                    cache->v.push_back(torch::empty({B, H, spec.context, Dh}, v.options()));
                }
                cache->k[block].slice(2, pos0, pos0 + T).copy_(k);
                cache->v[block].slice(2, pos0, pos0 + T).copy_(v);
                k = cache->k[block].slice(2, 0, pos0 + T);
                v = cache->v[block].slice(2, 0, pos0 + T);
            }
            ++block;
            Tensor att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(Dh)));
            if (T > 1) { // one new position attends to every cached one: no mask
                Tensor mask = torch::ones({T, pos0 + T}, torch::kBool).triu(1 + pos0);
                att = att.masked_fill(mask, -INFINITY);
            }
            att = torch::softmax(att, -1);
            att = torch::dropout(att, l.p, train);
            Tensor y = torch::matmul(att, v).transpose(1, 2).reshape({B, T, D});
            y = adapted(y, n + ".attn.proj");
            x = x + torch::dropout(y, l.p, train);
            h = torch::layer_norm(x, {D}, p[n + ".ln2.weight"], p[n + ".ln2.bias"]);
            h = adapted(torch::gelu(adapted(h, n + ".mlp.fc1")), n + ".mlp.fc2");
            x = x + torch::dropout(h, l.p, train);
            break;
        }
        }
    }
    if (cache) cache->length = pos0 + T0;
    return x;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Classifier inputs as a [N, input...] tensor viewing `data` (which outlives it).
Tensor features_tensor(const ModelSpec& spec, const Examples& data) {
    if (spec.task != Task::classify || !data.text.empty() || data.shape.empty())
        throw UsageError("the model classifies, but the data is text",
                         "use an IDX folder or CSV file");
    int64_t need = 1, have = 1;
    for (auto d : spec.input) need *= d;
    for (auto d : data.shape) have *= d;
    if (need != have)
        throw DataError("data samples have " + std::to_string(have) +
                        " values each, the model's input needs " + std::to_string(need));
    std::vector<int64_t> shape = {int64_t(data.size())};
    shape.insert(shape.end(), spec.input.begin(), spec.input.end());
    return torch::from_blob(const_cast<float*>(data.features.data()), shape, torch::kFloat32);
}

Tensor labels_tensor(const ModelSpec& spec, const Examples& data) {
    for (size_t i = 0; i < data.labels.size(); ++i)
        if (data.labels[i] < 0 || data.labels[i] >= spec.classes)
            throw DataError("label " + std::to_string(data.labels[i]) + " of sample " +
                                std::to_string(i) + " is out of range for a " +
                                std::to_string(spec.classes) + "-class model",
                            "the spec's classes must cover every label in the data");
    return torch::from_blob(const_cast<int64_t*>(data.labels.data()), {int64_t(data.labels.size())},
                            torch::kInt64);
}

// The text as token ids: its bytes, or its SentencePiece pieces with the model's tokenizer.
Tensor text_tensor(const Model& m, const Examples& data) {
    const ModelSpec& spec = m.spec;
    if (spec.task != Task::lm || !data.features.empty())
        throw UsageError("the model is a language model, but the data is not text",
                         "use a text file (--format text)");
    if (spec.tokenizer == TokenizerKind::sentencepiece) {
        std::vector<int32_t> ids = model_tokenizer(m).encode(data.text);
        return torch::from_blob(ids.data(), {int64_t(ids.size())}, torch::kInt32).to(torch::kInt64);
    }
    Tensor t = torch::from_blob(const_cast<char*>(data.text.data()), {int64_t(data.text.size())},
                                torch::kUInt8)
                   .to(torch::kInt64);
    if (spec.vocab < 256 && t.numel() > 0 && t.max().item<int64_t>() >= spec.vocab)
        throw DataError("the text holds byte values >= the model's vocab " +
                        std::to_string(spec.vocab));
    return t;
}

// libgomp (libtorch's thread pool) spins up to 300k iterations at every barrier before it
// sleeps. When the cores are shared (other trainers, a build, several n3-train on one node)
// a spinning thread waits for a descheduled one: measured 25-40x slower at 2 threads on a
// loaded 2-core machine, and 0.5-2x on an idle one. libgomp reads OMP_WAIT_POLICY once, in
// its constructor, before main() runs; an executable's .preinit_array runs before any shared
// library's constructor, so this is the one place to set it. A user's own setting wins.
void n3_passive_openmp(int, char**, char**) {
    if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT"))
        setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
}
__attribute__((section(".preinit_array"),
               used)) void (*n3_preinit_openmp)(int, char**, char**) = n3_passive_openmp;

// DP-SGD's gradient for one batch: every example's gradient clipped to L2 norm `clip`, summed,
// Gaussian noise of std noise * clip added from the CSPRNG, divided by the batch size, and left
// in the parameters' .grad. Returns the batch's mean loss (a constant: backward is done).
Tensor dp_sgd_gradients(const ModelSpec& spec, Params& params, const Tensor& X, const Tensor& Y,
                        const Tensor& idx, double clip, double noise) {
    const int64_t rows = idx.size(0);
    std::vector<Tensor> sum;
    for (auto& t : params.tensors) sum.push_back(torch::zeros_like(t).detach());
    double loss_sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
        Tensor one = idx.slice(0, r, r + 1);
        for (auto& t : params.tensors) t.mutable_grad().reset();
        Tensor loss = torch::cross_entropy_loss(forward(spec, params, X.index_select(0, one), true),
                                                Y.index_select(0, one));
        loss.backward();
        loss_sum += loss.item<double>();
        torch::NoGradGuard no_grad;
        double sq = 0;
        for (auto& t : params.tensors)
            if (t.grad().defined()) sq += t.grad().pow(2).sum().item<double>();
        double scale = std::min(1.0, clip / (std::sqrt(sq) + 1e-12));
        for (size_t i = 0; i < params.tensors.size(); ++i)
            if (params.tensors[i].grad().defined()) sum[i].add_(params.tensors[i].grad(), scale);
    }
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params.tensors.size(); ++i) {
        Tensor g = sum[i].contiguous();
        if (noise > 0) privacy::add_gaussian(g.data_ptr<float>(), size_t(g.numel()), noise * clip);
        params.tensors[i].mutable_grad() = g / double(rows);
    }
    return torch::tensor(loss_sum / double(rows));
}

} // namespace

std::string configure_threads(int threads) {
    using SetThreads = void (*)(int);
    auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
    // OpenBLAS's own threads fight libtorch's (2-3x slower): one BLAS thread, unless the user
    // chose a number explicitly (bench/train.sh measures the difference that way).
    if (set && !std::getenv("OPENBLAS_NUM_THREADS")) set(1);
    if (threads <= 0) threads = int(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(threads);
    return set ? "openblas" : "other";
}

void check_device(const std::string& device) {
    if (device == "cpu") return;
    if (device == "cuda") {
        if (!torch::cuda::is_available())
            throw EnvError("--device cuda: no CUDA device is available to this libtorch build",
                           "use --device cpu");
        throw EnvError("--device cuda is not supported by this n3 build", "use --device cpu");
    }
    throw UsageError("--device must be cpu or cuda, not '" + device + "'");
}

Model init_model(const ModelSpec& spec, const std::string& spec_text, uint64_t seed,
                 const std::string& tokenizer) {
    torch::NoGradGuard no_grad;
    torch::manual_seed(seed);
    std::vector<NamedTensor> named;
    auto fan_in_of = [&](const Layer& l) {
        return l.type == LayerType::conv2d ? l.in * l.kernel * l.kernel : l.in;
    };
    for (const auto& l : spec.layers) {
        for (auto& ts : spec.tensors()) {
            if (ts.name.rfind(l.name + ".", 0) != 0) continue;
            Tensor t = torch::empty(ts.shape, torch::kFloat32);
            std::string leaf = ts.name.substr(l.name.size() + 1);
            if (l.type == LayerType::linear || l.type == LayerType::conv2d) {
                // PyTorch's default: kaiming_uniform(a = sqrt(5)) = U(+-1/sqrt(fan_in)), and
                // the same bound for the bias.
                double b = 1.0 / std::sqrt(double(fan_in_of(l)));
                t.uniform_(-b, b);
            } else if (l.type == LayerType::layernorm) {
                leaf == "weight" ? t.fill_(1) : t.fill_(0);
            } else if (l.type == LayerType::embedding || l.type == LayerType::position) {
                t.normal_(0, 0.02); // GPT-2's initialisation for token and position tables
            } else if (l.type == LayerType::transformer) {
                if (leaf.find("ln") == 0)
                    leaf.find("weight") != std::string::npos ? t.fill_(1) : t.fill_(0);
                else if (leaf.find("bias") != std::string::npos)
                    t.fill_(0);
                else if (leaf == "attn.proj.weight" || leaf == "mlp.fc2.weight")
                    // GPT-2 scales residual projections down with depth.
                    t.normal_(0, 0.02 / std::sqrt(2.0 * double(spec.layers.size())));
                else
                    t.normal_(0, 0.02);
            }
            NamedTensor nt{ts.name, ts.shape, {}};
            nt.values.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
            named.push_back(std::move(nt));
        }
    }
    Model m;
    m.spec = spec;
    m.spec_text = spec_text;
    m.round = 0;
    Metadata meta;
    meta[meta::spec] = spec_text;
    meta[meta::spec_hash] = spec.hash();
    meta[meta::round] = "0";
    m.tokenizer = tokenizer;
    if (!tokenizer.empty()) {
        check_tokenizer(spec, Tokenizer::load(tokenizer, "--tokenizer-model"), "--tokenizer-model");
        meta[meta::tokenizer] =
            to_hex({reinterpret_cast<const uint8_t*>(tokenizer.data()), tokenizer.size()});
    } else if (spec.tokenizer == TokenizerKind::sentencepiece) {
        throw UsageError("the spec says tokenizer: sentencepiece; give its --tokenizer-model FILE",
                         "train one with n3-train --tokenizer VOCAB --data TEXT -o tok.model");
    }
    m.payload = make_payload(named, meta);
    m.hash = model_hash(m.payload);
    return m;
}

Adapter init_adapter(const Model& base, const LoraConfig& c, uint64_t seed) {
    torch::NoGradGuard no_grad;
    torch::manual_seed(seed);
    LoraMeta lm;
    lm.base = base.hash;
    lm.rank = c.rank;
    lm.alpha = c.alpha;
    lm.targets = c.targets;
    std::vector<NamedTensor> named;
    for (auto& s : adapter_shapes(base.spec, lm)) {
        Tensor t = torch::zeros(s.shape, torch::kFloat32);
        if (s.name.ends_with(".A")) {
            // PEFT's kaiming_uniform_(a = sqrt(5)) over fan_in = in: U(+-1/sqrt(in)).
            double b = 1.0 / std::sqrt(double(s.shape[1]));
            t.uniform_(-b, b);
        }
        named.push_back({s.name, s.shape,
                         std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel())});
    }
    return make_adapter(lm, base, std::move(named), 0);
}

TrainResult train_model(const Model& init, const Examples& data, const TrainOptions& opts) {
    const ModelSpec& spec = init.spec;
    if (opts.batch < 1) throw UsageError("--batch must be at least 1");
    if (opts.epochs < 1 && opts.steps < 1) throw UsageError("--epochs or --steps must be positive");
    if (!(opts.lr > 0) || !std::isfinite(opts.lr)) throw UsageError("--lr must be positive");
    if (opts.optimizer != "sgd" && opts.optimizer != "adam")
        throw UsageError("--optimizer must be sgd or adam, not '" + opts.optimizer + "'");
    const bool dp = opts.dp_clip > 0;
    if (opts.dp_clip < 0 || !std::isfinite(opts.dp_clip))
        throw UsageError("--dp-clip must be positive");
    if (opts.dp_noise < 0 || !std::isfinite(opts.dp_noise))
        throw UsageError("--dp-noise must not be negative");
    if (opts.dp_noise > 0 && !dp) throw UsageError("--dp-noise needs --dp-clip C");
    if (dp && spec.task != Task::classify)
        throw UsageError("DP-SGD (--dp-clip) is for classifiers", "the model is a language model");
    if (dp && opts.prox_mu > 0) throw UsageError("--dp-clip and --prox-mu do not combine");
    const bool scaffold = opts.scaffold_c != nullptr;
    if (scaffold && opts.emit_model)
        throw UsageError("--scaffold emits updates (with the control-variate delta)",
                         "drop --emit model");
    const Adapter* adapter = opts.adapter;
    if (adapter && (scaffold || dp))
        throw UsageError(std::string(scaffold ? "--scaffold" : "--dp-clip") +
                         " and LoRA (--adapter, --lora) do not combine");
    auto t0 = std::chrono::steady_clock::now();
    torch::manual_seed(opts.seed);

    // With an adapter, the trainable tensors are its A and B; the model's weights are constants
    // of the forward pass (no gradient, not in the optimizer).
    Params init_params = adapter ? to_params(adapter->tensors) : to_params(model_tensors(init));
    Params frozen;
    if (adapter) frozen = to_params(model_tensors(init));
    // SCAFFOLD's correction c - c_i, applied after every optimizer step as NIID-Bench does.
    std::vector<Tensor> correction;
    if (scaffold) {
        Params c = to_params(*opts.scaffold_c);
        for (size_t i = 0; i < c.tensors.size(); ++i)
            correction.push_back(opts.scaffold_ci
                                     ? c.tensors[i] - to_params(*opts.scaffold_ci).tensors[i]
                                     : c.tensors[i]);
    }
    Params params = init_params;
    for (auto& t : params.tensors) t = t.clone().set_requires_grad(true);
    LoraPath lora;
    if (adapter) lora = lora_path(params, adapter->meta.scale());
    auto net = [&](const Tensor& x) {
        return adapter ? forward(spec, frozen, x, true, nullptr, &lora)
                       : forward(spec, params, x, true);
    };

    const bool lm = spec.task == Task::lm;
    Tensor X, Y, text;
    int64_t n = 0, per_epoch = 0;
    if (lm) {
        text = text_tensor(init, data);
        if (text.numel() < spec.context + 2)
            throw DataError("the text has " + std::to_string(text.numel()) +
                            " tokens, too few for the model's context " +
                            std::to_string(spec.context));
        n = (text.numel() - 1) / spec.context; // sequences per epoch
    } else {
        X = features_tensor(spec, data);
        Y = labels_tensor(spec, data);
        n = X.size(0);
        if (n == 0) throw DataError("no training samples");
    }
    per_epoch = (n + opts.batch - 1) / opts.batch;
    int64_t total = opts.steps > 0 ? opts.steps : per_epoch * opts.epochs;

    std::unique_ptr<torch::optim::Optimizer> opt;
    if (opts.optimizer == "sgd")
        opt = std::make_unique<torch::optim::SGD>(params.tensors,
                                                  torch::optim::SGDOptions(opts.lr)
                                                      .momentum(opts.momentum)
                                                      .weight_decay(opts.weight_decay));
    else
        opt = std::make_unique<torch::optim::Adam>(
            params.tensors, torch::optim::AdamOptions(opts.lr).weight_decay(opts.weight_decay));

    TrainResult r;
    // What the optimizer steps: with an adapter, its tensors and nothing of the model's.
    for (auto& group : opt->param_groups())
        for (auto& t : group.params()) r.trainable += uint64_t(t.numel());
    for (auto& t : frozen.tensors) r.frozen_with_grad += t.requires_grad();
    Tensor offsets_base;
    if (lm) offsets_base = torch::arange(spec.context + 1, torch::kInt64).unsqueeze(0);
    int64_t step = 0;
    double window_loss = 0;
    int64_t window_steps = 0;
    for (int epoch = 1; step < total; ++epoch) {
        Tensor perm = lm ? Tensor() : torch::randperm(n, torch::kInt64);
        double epoch_loss = 0;
        int64_t epoch_steps = 0;
        for (int64_t b = 0; b < per_epoch && step < total; ++b) {
            Tensor loss;
            int64_t rows = 0;
            if (lm) {
                rows = std::min(opts.batch, n - b * opts.batch);
                Tensor starts =
                    torch::randint(text.numel() - spec.context - 1, {rows, 1}, torch::kInt64);
                Tensor seq = text.index({starts + offsets_base});
                Tensor logits = net(seq.slice(1, 0, spec.context));
                loss = torch::cross_entropy_loss(logits.reshape({-1, spec.vocab}),
                                                 seq.slice(1, 1).reshape({-1}));
            } else if (dp) {
                Tensor idx = perm.slice(0, b * opts.batch, std::min(n, (b + 1) * opts.batch));
                rows = idx.size(0);
                loss = dp_sgd_gradients(spec, params, X, Y, idx, opts.dp_clip, opts.dp_noise);
            } else {
                Tensor idx = perm.slice(0, b * opts.batch, std::min(n, (b + 1) * opts.batch));
                rows = idx.size(0);
                Tensor logits = net(X.index_select(0, idx));
                loss = torch::cross_entropy_loss(logits, Y.index_select(0, idx));
            }
            if (opts.prox_mu > 0) {
                Tensor prox = torch::zeros({}, torch::kFloat32);
                for (size_t i = 0; i < params.tensors.size(); ++i)
                    prox = prox + (params.tensors[i] - init_params.tensors[i]).pow(2).sum();
                loss = loss + 0.5 * opts.prox_mu * prox;
            }
            // Drop the gradients instead of zeroing them (PyTorch's set_to_none): backward then
            // stores fresh gradients without a fill and an add per parameter.
            if (!dp) {
                for (auto& t : params.tensors) t.mutable_grad().reset();
                loss.backward();
            }
            double value = loss.item<double>();
            if (!std::isfinite(value))
                throw DataError("training loss became " +
                                    std::string(std::isnan(value) ? "nan" : "infinite") +
                                    " at step " + std::to_string(step + 1) + " (epoch " +
                                    std::to_string(epoch) + ")",
                                "lower --lr, or check the data for NaN values");
            opt->step();
            if (scaffold) {
                torch::NoGradGuard no_grad;
                for (size_t i = 0; i < params.tensors.size(); ++i)
                    params.tensors[i].sub_(correction[i], opts.lr);
            }
            ++step;
            r.processed += uint64_t(rows);
            epoch_loss += value;
            ++epoch_steps;
            if (opts.progress) opts.progress(epoch, step, total, epoch_loss / double(epoch_steps));
        }
        window_loss = epoch_loss;
        window_steps = epoch_steps;
    }
    r.steps = step;
    r.loss = window_steps ? window_loss / double(window_steps) : 0;
    r.samples = lm ? uint64_t(data.text.size()) : uint64_t(n);
    if (lm) r.samples = std::count(data.text.begin(), data.text.end(), '\n');
    if (r.samples == 0) r.samples = uint64_t(n);

    Metadata meta;
    char loss_text[32];
    std::snprintf(loss_text, sizeof loss_text, "%.6g", r.loss);
    meta[meta::loss] = loss_text;
    meta[meta::round] = std::to_string(adapter ? adapter->round : init.round);
    meta[meta::samples] = std::to_string(r.samples);
    meta[meta::spec_hash] = spec.hash();
    meta[meta::local_steps] = std::to_string(step);
    if (opts.optimizer == "sgd") {
        char m[32]; // the shortest text that reads back as the same double
        std::snprintf(m, sizeof m, "%.15g", opts.momentum);
        if (std::strtod(m, nullptr) != opts.momentum)
            std::snprintf(m, sizeof m, "%.17g", opts.momentum);
        meta[meta::momentum] = m;
    }
    if (dp && opts.dp_noise > 0) {
        // Shuffled batches of a fixed size, accounted as Poisson sampling at rate batch/n, as
        // TensorFlow Privacy and Opacus do.
        privacy::Rdp rdp =
            privacy::gaussian_rdp(std::min(1.0, double(opts.batch) / double(n)), opts.dp_noise);
        rdp *= double(step);
        r.dp_epsilon = privacy::epsilon(rdp, opts.dp_delta).epsilon;
        char e[32];
        std::snprintf(e, sizeof e, "%.6g", r.dp_epsilon);
        meta["dp_sgd_epsilon"] = e;
        std::snprintf(e, sizeof e, "%.6g", opts.dp_delta);
        meta["dp_sgd_delta"] = e;
    }
    if (adapter)
        for (auto& [k, v] : adapter_metadata(adapter->meta, init, adapter->round)) meta[k] = v;
    for (auto& [k, v] : opts.metadata) meta[k] = v;
    if (adapter && opts.emit_model) {
        r.type = RecordType::model; // the trained adapter: lora tensors and metadata only
        r.payload = make_payload(from_params(params), meta);
    } else if (adapter) {
        r.type = RecordType::update;
        meta[meta::base] = adapter->hash;
        r.payload = make_payload(from_params(params, &init_params), meta);
    } else if (opts.emit_model) {
        r.type = RecordType::model;
        meta[meta::spec] = init.spec_text;
        if (!init.tokenizer.empty())
            meta[meta::tokenizer] = to_hex(
                {reinterpret_cast<const uint8_t*>(init.tokenizer.data()), init.tokenizer.size()});
        r.payload = make_payload(from_params(params), meta);
    } else {
        r.type = RecordType::update;
        meta[meta::base] = init.hash;
        std::vector<NamedTensor> out = from_params(params, &init_params);
        if (scaffold) {
            // c_i+ = c_i - c + (x - y) / (K lr); the update carries dc = c_i+ - c_i.
            torch::NoGradGuard no_grad;
            Params c = to_params(*opts.scaffold_c);
            for (size_t i = 0; i < params.tensors.size(); ++i) {
                Tensor dc = (init_params.tensors[i] - params.tensors[i].detach()) /
                                (double(std::max<int64_t>(step, 1)) * opts.lr) -
                            c.tensors[i];
                Tensor ci = opts.scaffold_ci ? to_params(*opts.scaffold_ci).tensors[i] + dc : dc;
                auto flat = [](const Tensor& t) {
                    Tensor x = t.contiguous();
                    return std::vector<float>(x.data_ptr<float>(), x.data_ptr<float>() + x.numel());
                };
                out.push_back({meta::control_prefix + params.names[i],
                               params.tensors[i].sizes().vec(), flat(dc)});
                r.scaffold_ci.push_back(
                    {params.names[i], params.tensors[i].sizes().vec(), flat(ci)});
            }
        }
        r.payload = make_payload(out, meta);
    }
    r.seconds = seconds_since(t0);
    return r;
}

EvalResult evaluate_model(const Model& m, const Examples& data, const Adapter* adapter) {
    torch::NoGradGuard no_grad;
    auto t0 = std::chrono::steady_clock::now();
    const ModelSpec& spec = m.spec;
    Params params = to_params(model_tensors(m));
    Params adapter_params;
    LoraPath lora;
    if (adapter) {
        adapter_params = to_params(adapter->tensors);
        lora = lora_path(adapter_params, adapter->meta.scale());
    }
    const LoraPath* lp = adapter ? &lora : nullptr;
    EvalResult r;
    double loss_sum = 0;
    uint64_t correct = 0;
    if (spec.task == Task::lm) {
        r.lm = true;
        Tensor text = text_tensor(m, data);
        const int64_t T = spec.context, len = text.numel();
        if (len < 2) throw DataError("the text is too short to evaluate");
        // Non-overlapping windows; the last one is shorter. Each predicts its next characters.
        const int64_t windows_per_batch = 64;
        for (int64_t start = 0; start + 1 < len; start += T * windows_per_batch) {
            std::vector<Tensor> rows;
            int64_t last_len = 0;
            for (int64_t w = 0; w < windows_per_batch; ++w) {
                int64_t s = start + w * T;
                if (s + 1 >= len) break;
                int64_t l = std::min(T, len - 1 - s);
                if (l != T) {
                    last_len = l;
                    break;
                }
                rows.push_back(text.slice(0, s, s + T + 1));
            }
            auto score = [&](const Tensor& seq) {
                Tensor logits =
                    forward(spec, params, seq.slice(1, 0, seq.size(1) - 1), false, nullptr, lp);
                Tensor target = seq.slice(1, 1).reshape({-1});
                logits = logits.reshape({-1, spec.vocab});
                loss_sum += torch::cross_entropy_loss(logits, target, {}, at::Reduction::Sum)
                                .item<double>();
                correct += uint64_t(logits.argmax(1).eq(target).sum().item<int64_t>());
                r.samples += uint64_t(target.numel());
            };
            if (!rows.empty()) score(torch::stack(rows));
            if (last_len > 0) {
                int64_t s = start + int64_t(rows.size()) * T;
                score(text.slice(0, s, s + last_len + 1).unsqueeze(0));
                break;
            }
        }
        r.loss = loss_sum / double(r.samples);
        r.perplexity = std::exp(r.loss);
        // Per character of the text, so byte-level and tokenized models compare: the tokens
        // predicted cover every byte but those of the first token.
        r.characters =
            spec.tokenizer == TokenizerKind::sentencepiece ? uint64_t(data.text.size()) : r.samples;
        r.bits_per_char = loss_sum / double(std::max<uint64_t>(1, r.characters)) / std::log(2.0);
    } else {
        Tensor X = features_tensor(spec, data);
        Tensor Y = labels_tensor(spec, data);
        const int64_t n = X.size(0), batch = 1000;
        if (n == 0) throw DataError("no samples to evaluate");
        r.class_total.assign(size_t(spec.classes), 0);
        r.class_correct.assign(size_t(spec.classes), 0);
        for (int64_t s = 0; s < n; s += batch) {
            Tensor x = X.slice(0, s, std::min(n, s + batch));
            Tensor y = Y.slice(0, s, std::min(n, s + batch));
            Tensor logits = forward(spec, params, x, false, nullptr, lp);
            loss_sum += torch::cross_entropy_loss(logits, y, {}, at::Reduction::Sum).item<double>();
            Tensor hit = logits.argmax(1).eq(y);
            auto ya = y.accessor<int64_t, 1>();
            auto ha = hit.accessor<bool, 1>();
            for (int64_t i = 0; i < y.size(0); ++i) {
                r.class_total[size_t(ya[i])]++;
                if (ha[i]) r.class_correct[size_t(ya[i])]++, ++correct;
            }
        }
        r.samples = uint64_t(n);
        r.loss = loss_sum / double(n);
    }
    if (!std::isfinite(r.loss)) throw DataError("the model's loss on this data is not finite");
    r.accuracy = double(correct) / double(r.samples);
    r.seconds = seconds_since(t0);
    return r;
}

struct Generator::Impl {
    Model model;
    Params params, adapter;
    LoraPath lora;
    const LoraPath* lp = nullptr;
    std::optional<Tokenizer> tokenizer;
};

Generator::Generator(const Model& m, const Adapter* adapter) : impl_(std::make_unique<Impl>()) {
    if (m.spec.task != Task::lm)
        throw UsageError("--generate needs a language model; this model classifies");
    impl_->model = m;
    impl_->params = to_params(model_tensors(m));
    if (adapter) {
        impl_->adapter = to_params(adapter->tensors);
        impl_->lora = lora_path(impl_->adapter, adapter->meta.scale());
        impl_->lp = &impl_->lora;
    }
    if (m.spec.tokenizer == TokenizerKind::sentencepiece) impl_->tokenizer = model_tokenizer(m);
}

Generator::~Generator() = default;

namespace {

// One token from the last position's logits: greedy at temperature 0, else top-k, then top-p
// (the smallest set of most likely tokens whose probability reaches p), then a draw.
int64_t sample_token(const Tensor& logits, const GenerateOptions& o) {
    if (o.temperature == 0) return logits.argmax().item<int64_t>();
    Tensor l = logits.to(torch::kFloat64) / o.temperature;
    if (o.top_k > 0 && o.top_k < l.size(0)) {
        Tensor kth = std::get<0>(l.topk(o.top_k)).select(0, o.top_k - 1);
        l = l.masked_fill(l < kth, -INFINITY);
    }
    if (o.top_p < 1) {
        auto [sorted, order] = l.sort(0, true);
        Tensor probs = torch::softmax(sorted, 0);
        Tensor before = probs.cumsum(0) - probs; // mass of the tokens ranked above each
        sorted = sorted.masked_fill(before > o.top_p, -INFINITY);
        l = torch::full_like(l, -INFINITY).scatter(0, order, sorted);
    }
    return torch::multinomial(torch::softmax(l, 0), 1).item<int64_t>();
}

} // namespace

GenerateResult Generator::run(const std::string& prompt, const GenerateOptions& o) {
    const ModelSpec& spec = impl_->model.spec;
    if (o.tokens < 0) throw UsageError("--tokens must not be negative");
    if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
        throw UsageError("--temperature must be zero or positive");
    if (o.top_k < 0) throw UsageError("--top-k must not be negative");
    if (!(o.top_p > 0 && o.top_p <= 1)) throw UsageError("--top-p must be in (0, 1]");
    torch::NoGradGuard no_grad;
    torch::manual_seed(o.seed);
    const Tokenizer* tok = impl_->tokenizer ? &*impl_->tokenizer : nullptr;
    std::vector<int64_t> ids;
    if (tok) {
        for (int32_t id : tok->encode(prompt)) ids.push_back(id);
        if (ids.empty()) ids.push_back(tok->encode("\n").at(0)); // the line end's piece
    } else {
        for (unsigned char c : prompt) {
            if (int64_t(c) >= spec.vocab)
                throw UsageError("--generate: the prompt holds a byte outside the model's vocab");
            ids.push_back(c);
        }
        if (ids.empty()) ids.push_back('\n');
    }
    GenerateResult r;
    r.prompt_tokens = int64_t(ids.size());
    const size_t prompt_len = ids.size();
    // Decoding the whole sequence each time keeps SentencePiece's spacing right; text is
    // emitted once it is stable (no half-decoded UTF-8 at its end).
    auto decode = [&](size_t n) {
        std::vector<int32_t> v(ids.begin(), ids.begin() + long(n));
        return tok->decode(v);
    };
    std::string printed = tok ? decode(prompt_len) : std::string();
    auto emit = [&](bool final) {
        if (!tok) {
            std::string c(1, char(ids.back()));
            r.text += c;
            if (o.on_text) o.on_text(c);
            return;
        }
        std::string all = decode(ids.size());
        static const std::string replacement = "\xEF\xBF\xBD";
        bool partial = all.size() >= 3 && all.compare(all.size() - 3, 3, replacement) == 0;
        if ((partial && !final) || all.compare(0, printed.size(), printed) != 0) return;
        std::string add = all.substr(printed.size());
        printed = all;
        r.text += add;
        if (o.on_text && !add.empty()) o.on_text(add);
    };
    const Params& params = impl_->params;
    const LoraPath* lp = impl_->lp;
    const int64_t C = spec.context;
    KvCache cache;
    auto t0 = std::chrono::steady_clock::now();
    Tensor logits;
    auto window = [&](size_t keep) {
        size_t from = ids.size() > keep ? ids.size() - keep : 0;
        return torch::tensor(std::vector<int64_t>(ids.begin() + long(from), ids.end()),
                             torch::kInt64)
            .unsqueeze(0);
    };
    auto prefill = [&](size_t keep) {
        cache = KvCache();
        Tensor x = window(keep);
        logits = forward(spec, params, x, false, &cache, lp).select(1, -1).squeeze(0);
    };
    if (o.cache) prefill(size_t(C));
    r.prompt_seconds = seconds_since(t0);
    auto t1 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < o.tokens; ++i) {
        if (!o.cache) {
            Tensor x = window(size_t(C));
            logits =
                forward(spec, params, x, false, nullptr, lp).select(1, x.size(1) - 1).squeeze(0);
        }
        int64_t next = sample_token(logits, o);
        ids.push_back(next);
        ++r.generated;
        emit(i + 1 == o.tokens);
        if (o.cache && i + 1 < o.tokens) {
            if (cache.length >= C) {
                // The context is full: start again from its last half (positions restart).
                prefill(size_t(C / 2));
            } else {
                Tensor x = torch::tensor({next}, torch::kInt64).unsqueeze(0);
                logits = forward(spec, params, x, false, &cache, lp).select(1, -1).squeeze(0);
            }
        }
    }
    r.seconds = seconds_since(t1);
    r.ids.assign(ids.begin() + long(prompt_len), ids.end());
    return r;
}

std::string generate_text(const Model& m, const std::string& prompt, int64_t tokens,
                          double temperature, uint64_t seed) {
    GenerateOptions o;
    o.tokens = tokens;
    o.temperature = temperature;
    o.seed = seed;
    return Generator(m).run(prompt, o).text;
}

} // namespace n3::train
