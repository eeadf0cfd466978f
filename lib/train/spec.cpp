#include "train/spec.hpp"

#include "record/error.hpp"
#include "record/io.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <yaml-cpp/yaml.h>

namespace n3::train {

namespace {

struct TypeName {
    LayerType type;
    const char* name;
};
constexpr TypeName kTypes[] = {
    {LayerType::linear, "linear"},
    {LayerType::conv2d, "conv2d"},
    {LayerType::maxpool2d, "maxpool2d"},
    {LayerType::avgpool2d, "avgpool2d"},
    {LayerType::flatten, "flatten"},
    {LayerType::relu, "relu"},
    {LayerType::gelu, "gelu"},
    {LayerType::tanh, "tanh"},
    {LayerType::dropout, "dropout"},
    {LayerType::layernorm, "layernorm"},
    {LayerType::embedding, "embedding"},
    {LayerType::position, "position"},
    {LayerType::transformer, "transformer"},
};

// The keys each layer type accepts besides `type` and `name`.
const std::map<LayerType, std::set<std::string>>& allowed_keys() {
    static const std::map<LayerType, std::set<std::string>> m = {
        {LayerType::linear, {"in", "out", "bias", "tied"}},
        {LayerType::conv2d, {"in", "out", "kernel", "stride", "padding", "bias"}},
        {LayerType::maxpool2d, {"kernel", "stride"}},
        {LayerType::avgpool2d, {"kernel", "stride"}},
        {LayerType::flatten, {}},
        {LayerType::relu, {}},
        {LayerType::gelu, {}},
        {LayerType::tanh, {}},
        {LayerType::dropout, {"p"}},
        {LayerType::layernorm, {"dim"}},
        {LayerType::embedding, {"vocab", "dim"}},
        {LayerType::position, {"context", "dim"}},
        {LayerType::transformer, {"dim", "heads", "hidden", "dropout", "rotary"}},
    };
    return m;
}

constexpr int64_t kMaxVocab = int64_t(1) << 20;

class Parser {
public:
    explicit Parser(std::string where) : where_(std::move(where)) {}

    [[noreturn]] void fail(const YAML::Node& at, const std::string& what) const {
        int line = at.IsDefined() ? at.Mark().line + 1 : 0;
        fail(line, what);
    }
    [[noreturn]] void fail(int line, const std::string& what) const {
        throw UsageError(where_ + (line > 0 ? ":" + std::to_string(line) : "") + ": " + what);
    }

    int64_t integer(const YAML::Node& n, const std::string& what, int64_t lo, int64_t hi) const {
        if (!n.IsScalar()) fail(n, what + " must be an integer");
        int64_t v = 0;
        try {
            v = n.as<int64_t>();
        } catch (const YAML::Exception&) {
            fail(n, what + " must be an integer, not '" + n.Scalar() + "'");
        }
        if (v < lo || v > hi)
            fail(n, what + " is " + std::to_string(v) + ", outside " + std::to_string(lo) + ".." +
                        std::to_string(hi));
        return v;
    }
    double number(const YAML::Node& n, const std::string& what, double lo, double hi) const {
        if (!n.IsScalar()) fail(n, what + " must be a number");
        double v = 0;
        try {
            v = n.as<double>();
        } catch (const YAML::Exception&) {
            fail(n, what + " must be a number, not '" + n.Scalar() + "'");
        }
        if (!(v >= lo && v <= hi))
            fail(n, what + " is " + n.Scalar() + ", outside " + std::to_string(lo) + ".." +
                        std::to_string(hi));
        return v;
    }
    bool boolean(const YAML::Node& n, const std::string& what) const {
        try {
            return n.as<bool>();
        } catch (const YAML::Exception&) {
            fail(n, what + " must be true or false");
        }
    }

    ModelSpec parse(const std::string& text) {
        YAML::Node root;
        try {
            root = YAML::Load(text);
        } catch (const YAML::ParserException& e) {
            fail(e.mark.line + 1, "not valid YAML: " + e.msg);
        }
        if (!root.IsMap()) fail(root, "a model spec is a mapping with 'task' and 'layers'");
        static const std::set<std::string> top = {"name",  "task",    "input",     "classes",
                                                  "vocab", "context", "tokenizer", "layers"};
        for (auto it = root.begin(); it != root.end(); ++it) {
            if (!it->first.IsScalar()) fail(it->first, "keys must be plain words");
            std::string k = it->first.Scalar();
            if (!top.count(k))
                fail(it->first, "unknown key '" + k +
                                    "' (expected name, task, input, classes, vocab, context, "
                                    "tokenizer, layers)");
        }
        ModelSpec s;
        if (root["name"]) s.name = root["name"].as<std::string>("");
        auto task = root["task"];
        if (!task) fail(root, "missing 'task' (classify or lm)");
        if (!task.IsScalar()) fail(task, "task must be classify or lm");
        if (task.Scalar() == "classify")
            s.task = Task::classify;
        else if (task.Scalar() == "lm")
            s.task = Task::lm;
        else
            fail(task, "task must be classify or lm, not '" + task.Scalar() + "'");

        if (s.task == Task::classify) {
            auto in = root["input"];
            if (!in)
                fail(root, "a classify spec needs 'input' (the sample shape, e.g. [1, 28, 28])");
            if (in.IsScalar()) {
                s.input = {integer(in, "input", 1, int64_t(1) << 24)};
            } else if (in.IsSequence() && in.size() >= 1 && in.size() <= 3) {
                for (auto d : in) s.input.push_back(integer(d, "input dimension", 1, 1 << 16));
            } else {
                fail(in, "input must be a list of 1 to 3 dimensions, e.g. [1, 28, 28] or [784]");
            }
            if (!root["classes"]) fail(root, "a classify spec needs 'classes'");
            s.classes = integer(root["classes"], "classes", 2, 1 << 20);
            for (auto k : {"vocab", "context", "tokenizer"})
                if (root[k]) fail(root[k], std::string(k) + " is for lm specs");
        } else {
            if (!root["context"]) fail(root, "an lm spec needs 'context' (the sequence length)");
            s.context = integer(root["context"], "context", 1, 1 << 16);
            if (auto tk = root["tokenizer"]) {
                if (!tk.IsScalar() || (tk.Scalar() != "bytes" && tk.Scalar() != "sentencepiece"))
                    fail(tk, "tokenizer must be bytes or sentencepiece");
                if (tk.Scalar() == "sentencepiece") s.tokenizer = TokenizerKind::sentencepiece;
            }
            if (s.tokenizer == TokenizerKind::sentencepiece) {
                if (!root["vocab"])
                    fail(root, "a sentencepiece spec needs 'vocab' (the tokenizer's pieces)");
                s.vocab = integer(root["vocab"], "vocab", 2, kMaxVocab);
            } else {
                s.vocab = root["vocab"] ? integer(root["vocab"], "vocab", 2, 256) : 256;
            }
            for (auto k : {"input", "classes"})
                if (root[k]) fail(root[k], std::string(k) + " is for classify specs");
        }

        auto layers = root["layers"];
        if (!layers) fail(root, "missing 'layers'");
        if (!layers.IsSequence() || layers.size() == 0)
            fail(layers, "layers must be a non-empty list");
        std::set<std::string> names;
        for (size_t i = 0; i < layers.size(); ++i) {
            Layer l = layer(layers[i], i);
            if (!names.insert(l.name).second)
                fail(l.line, "layer name '" + l.name + "' is used twice");
            s.layers.push_back(std::move(l));
        }
        infer_shapes(s);
        double params = 0;
        for (const auto& t : s.tensors()) {
            double n = 1;
            for (auto d : t.shape) n *= double(d);
            params += n;
        }
        if (params > 2e9)
            fail(root, "the model has " + std::to_string(int64_t(params)) +
                           " parameters, more than n3 trains (2e9)");
        return s;
    }

    Layer layer(const YAML::Node& n, size_t index) {
        Layer l;
        l.line = n.Mark().line + 1;
        YAML::Node params;
        std::string type;
        if (n.IsScalar()) {
            type = n.Scalar();
        } else if (n.IsMap()) {
            if (!n["type"] || !n["type"].IsScalar())
                fail(n, "layer " + std::to_string(index) + " has no 'type'");
            type = n["type"].Scalar();
            params = n;
        } else {
            fail(n, "a layer is a word (relu) or a mapping with 'type'");
        }
        auto t = std::find_if(std::begin(kTypes), std::end(kTypes),
                              [&](const TypeName& tn) { return type == tn.name; });
        if (t == std::end(kTypes))
            fail(n, "unknown layer type '" + type +
                        "' (linear, conv2d, maxpool2d, avgpool2d, flatten, relu, gelu, tanh, "
                        "dropout, layernorm, embedding, position, transformer)");
        l.type = t->type;
        l.name = type + std::to_string(index);
        if (!params) {
            if (!allowed_keys().at(l.type).empty())
                fail(n, type + " needs parameters (" + type + " is written as a mapping)");
            return l;
        }
        const auto& allowed = allowed_keys().at(l.type);
        for (auto it = params.begin(); it != params.end(); ++it) {
            std::string k = it->first.as<std::string>("");
            if (k == "type" || k == "name") continue;
            if (!allowed.count(k)) {
                std::string list;
                for (auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
                fail(it->first,
                     "unknown key '" + k + "' for " + type +
                         (list.empty() ? " (it takes none)" : " (expected " + list + ")"));
            }
        }
        if (params["name"]) {
            const auto& nm = params["name"];
            if (!nm.IsScalar()) fail(nm, "name must be a word");
            l.name = nm.Scalar();
            bool ok = !l.name.empty() && l.name.size() <= 64 &&
                      std::all_of(l.name.begin(), l.name.end(), [](char c) {
                          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                 (c >= '0' && c <= '9') || c == '_';
                      });
            if (!ok) fail(nm, "layer name '" + l.name + "' must be letters, digits and _");
        }
        const std::string what = type + " '" + l.name + "'";
        auto need = [&](const char* key, int64_t lo, int64_t hi) {
            if (!params[key]) fail(n, what + " needs '" + key + "'");
            return integer(params[key], what + " " + key, lo, hi);
        };
        auto opt = [&](const char* key, int64_t dflt, int64_t lo, int64_t hi) {
            return params[key] ? integer(params[key], what + " " + key, lo, hi) : dflt;
        };
        constexpr int64_t big = int64_t(1) << 24;
        switch (l.type) {
        case LayerType::linear:
            if (params["tied"]) {
                // in and out come from the embedding named (checked in infer_shapes).
                const auto& tn = params["tied"];
                if (!tn.IsScalar() || tn.Scalar().empty())
                    fail(tn, what + " tied must name an embedding layer");
                l.tied = tn.Scalar();
                l.in = opt("in", 0, 1, big);
                l.out = opt("out", 0, 1, big);
                l.bias = false;
            } else {
                l.in = need("in", 1, big);
                l.out = need("out", 1, big);
            }
            if (params["bias"]) l.bias = boolean(params["bias"], what + " bias");
            break;
        case LayerType::conv2d:
            l.in = need("in", 1, 1 << 16);
            l.out = need("out", 1, 1 << 16);
            l.kernel = need("kernel", 1, 64);
            l.stride = opt("stride", 1, 1, 64);
            l.padding = opt("padding", 0, 0, 64);
            if (params["bias"]) l.bias = boolean(params["bias"], what + " bias");
            break;
        case LayerType::maxpool2d:
        case LayerType::avgpool2d:
            l.kernel = need("kernel", 1, 64);
            l.stride = opt("stride", l.kernel, 1, 64);
            break;
        case LayerType::dropout:
            l.p = params["p"] ? number(params["p"], what + " p", 0, 0.99) : 0.5;
            break;
        case LayerType::layernorm: l.dim = need("dim", 1, big); break;
        case LayerType::embedding:
            l.vocab = need("vocab", 2, kMaxVocab);
            l.dim = need("dim", 1, 1 << 16);
            break;
        case LayerType::position:
            l.context = need("context", 1, 1 << 16);
            l.dim = need("dim", 1, 1 << 16);
            break;
        case LayerType::transformer:
            l.dim = need("dim", 1, 1 << 16);
            l.heads = need("heads", 1, 256);
            l.hidden = opt("hidden", 4 * l.dim, 1, big);
            l.p = params["dropout"] ? number(params["dropout"], what + " dropout", 0, 0.99) : 0;
            if (params["rotary"]) l.rotary = boolean(params["rotary"], what + " rotary");
            if (l.dim % l.heads != 0)
                fail(params["heads"], what + ": dim " + std::to_string(l.dim) +
                                          " is not divisible by heads " + std::to_string(l.heads));
            if (l.rotary && (l.dim / l.heads) % 2 != 0)
                fail(params["rotary"], what + ": rotary positions need an even head width, not " +
                                           std::to_string(l.dim / l.heads));
            break;
        default: break;
        }
        return l;
    }

    // Walks the layers with the shape of one sample (classify) or of one position (lm: the
    // last dimension only; tokens until the embedding) and refuses what does not fit.
    void infer_shapes(ModelSpec& s) const {
        auto text = [](const std::vector<int64_t>& v) {
            std::string t = "[";
            for (size_t i = 0; i < v.size(); ++i) t += (i ? ", " : "") + std::to_string(v[i]);
            return t + "]";
        };
        std::vector<int64_t> shape = s.input;
        bool tokens = s.task == Task::lm; // lm input is token ids until an embedding
        for (auto& l : s.layers) {
            const std::string what = std::string(layer_type_name(l.type)) + " '" + l.name + "'";
            if (!l.tied.empty()) {
                auto e = std::find_if(s.layers.begin(), s.layers.end(), [&](const Layer& o) {
                    return o.name == l.tied && o.type == LayerType::embedding;
                });
                if (e == s.layers.end() || &*e >= &l)
                    fail(l.line, what + ": tied names '" + l.tied +
                                     "', which is not an embedding layer before it");
                if ((l.in && l.in != e->dim) || (l.out && l.out != e->vocab))
                    fail(l.line, what + ": a layer tied to '" + l.tied + "' has in " +
                                     std::to_string(e->dim) + " and out " +
                                     std::to_string(e->vocab));
                l.in = e->dim;
                l.out = e->vocab;
            }
            if (tokens && l.type != LayerType::embedding)
                fail(l.line, what + ": an lm spec starts with an embedding layer");
            if (s.task == Task::classify &&
                (l.type == LayerType::embedding || l.type == LayerType::position ||
                 l.type == LayerType::transformer))
                fail(l.line, what + " is for lm specs (task: lm)");
            switch (l.type) {
            case LayerType::linear:
                if (shape.empty() || shape.back() != l.in)
                    fail(l.line, what + ": in is " + std::to_string(l.in) +
                                     " but the layer before gives " + text(shape) +
                                     (shape.size() > 1 && s.task == Task::classify
                                          ? " (add a flatten layer)"
                                          : ""));
                if (s.task == Task::classify && shape.size() != 1)
                    fail(l.line, what + ": needs a flat input, the layer before gives " +
                                     text(shape) + " (add a flatten layer)");
                shape.back() = l.out;
                break;
            case LayerType::conv2d:
                if (shape.size() != 3 || shape[0] != l.in)
                    fail(l.line, what + ": expects [" + std::to_string(l.in) +
                                     ", H, W] but the layer before gives " + text(shape));
                for (int d = 1; d < 3; ++d) {
                    int64_t o = (shape[d] + 2 * l.padding - l.kernel) / l.stride + 1;
                    if (shape[d] + 2 * l.padding < l.kernel)
                        fail(l.line, what + ": kernel " + std::to_string(l.kernel) +
                                         " is larger than the input " + text(shape));
                    shape[d] = o;
                }
                shape[0] = l.out;
                break;
            case LayerType::maxpool2d:
            case LayerType::avgpool2d:
                if (shape.size() != 3)
                    fail(l.line,
                         what + ": expects [C, H, W] but the layer before gives " + text(shape));
                for (int d = 1; d < 3; ++d) {
                    if (shape[d] < l.kernel)
                        fail(l.line, what + ": kernel " + std::to_string(l.kernel) +
                                         " is larger than the input " + text(shape));
                    shape[d] = (shape[d] - l.kernel) / l.stride + 1;
                }
                break;
            case LayerType::flatten: {
                if (s.task == Task::lm) fail(l.line, what + " is for classify specs");
                int64_t n = 1;
                for (auto d : shape) n *= d;
                shape = {n};
                break;
            }
            case LayerType::layernorm:
                if (shape.empty() || shape.back() != l.dim)
                    fail(l.line, what + ": dim is " + std::to_string(l.dim) +
                                     " but the layer before gives " + text(shape));
                break;
            case LayerType::embedding:
                if (!tokens) fail(l.line, what + ": an embedding must be the first layer");
                if (l.vocab != s.vocab)
                    fail(l.line, what + ": vocab is " + std::to_string(l.vocab) +
                                     " but the spec's vocab is " + std::to_string(s.vocab));
                tokens = false;
                shape = {l.dim};
                break;
            case LayerType::position:
                if (shape.empty() || shape.back() != l.dim)
                    fail(l.line, what + ": dim is " + std::to_string(l.dim) +
                                     " but the layer before gives " + text(shape));
                if (l.context < s.context)
                    fail(l.line, what + ": context " + std::to_string(l.context) +
                                     " is shorter than the spec's context " +
                                     std::to_string(s.context));
                break;
            case LayerType::transformer:
                if (shape.empty() || shape.back() != l.dim)
                    fail(l.line, what + ": dim is " + std::to_string(l.dim) +
                                     " but the layer before gives " + text(shape));
                break;
            default: break;
            }
        }
        if (s.task == Task::classify && (shape.size() != 1 || shape[0] != s.classes))
            fail(s.layers.back().line, "the last layer gives " + text(shape) + " but classes is " +
                                           std::to_string(s.classes));
        if (s.task == Task::lm && (tokens || shape.back() != s.vocab))
            fail(s.layers.back().line, "the last layer gives " + text(shape) +
                                           " per position but vocab is " + std::to_string(s.vocab));
    }

private:
    std::string where_;
};

} // namespace

std::string_view layer_type_name(LayerType t) {
    for (auto& tn : kTypes)
        if (tn.type == t) return tn.name;
    return "?";
}

ModelSpec parse_spec(const std::string& yaml, const std::string& where) {
    if (yaml.find('\0') != std::string::npos)
        throw UsageError(where + ": not a YAML model spec (binary data)");
    Parser p(where);
    try {
        return p.parse(yaml);
    } catch (const YAML::Exception& e) {
        throw UsageError(where + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
}

std::string ModelSpec::canonical() const {
    std::ostringstream o;
    o << "n3-model-spec 1\n";
    o << "task " << (task == Task::classify ? "classify" : "lm") << "\n";
    if (task == Task::classify) {
        o << "input";
        for (auto d : input) o << " " << d;
        o << "\nclasses " << classes << "\n";
    } else {
        o << "vocab " << vocab << "\ncontext " << context << "\n";
        // Only when set, so that the hashes of specs written before these keys stay the same.
        if (tokenizer == TokenizerKind::sentencepiece) o << "tokenizer sentencepiece\n";
    }
    for (const auto& l : layers) {
        o << layer_type_name(l.type) << " " << l.name << " in=" << l.in << " out=" << l.out
          << " kernel=" << l.kernel << " stride=" << l.stride << " padding=" << l.padding
          << " bias=" << l.bias << " p=" << l.p << " dim=" << l.dim << " vocab=" << l.vocab
          << " context=" << l.context << " heads=" << l.heads << " hidden=" << l.hidden;
        if (l.rotary) o << " rotary=1";
        if (!l.tied.empty()) o << " tied=" << l.tied;
        o << "\n";
    }
    return o.str();
}

std::string ModelSpec::hash() const {
    std::string c = canonical();
    return model_hash(ByteView(reinterpret_cast<const uint8_t*>(c.data()), c.size()));
}

std::vector<ModelSpec::TensorShape> ModelSpec::tensors() const {
    std::vector<TensorShape> t;
    for (const auto& l : layers) {
        const std::string& n = l.name;
        switch (l.type) {
        case LayerType::linear:
            if (l.tied.empty()) t.push_back({n + ".weight", {l.out, l.in}});
            if (l.bias) t.push_back({n + ".bias", {l.out}});
            break;
        case LayerType::conv2d:
            t.push_back({n + ".weight", {l.out, l.in, l.kernel, l.kernel}});
            if (l.bias) t.push_back({n + ".bias", {l.out}});
            break;
        case LayerType::layernorm:
            t.push_back({n + ".weight", {l.dim}});
            t.push_back({n + ".bias", {l.dim}});
            break;
        case LayerType::embedding: t.push_back({n + ".weight", {l.vocab, l.dim}}); break;
        case LayerType::position: t.push_back({n + ".weight", {l.context, l.dim}}); break;
        case LayerType::transformer:
            t.push_back({n + ".ln1.weight", {l.dim}});
            t.push_back({n + ".ln1.bias", {l.dim}});
            t.push_back({n + ".attn.qkv.weight", {3 * l.dim, l.dim}});
            t.push_back({n + ".attn.qkv.bias", {3 * l.dim}});
            t.push_back({n + ".attn.proj.weight", {l.dim, l.dim}});
            t.push_back({n + ".attn.proj.bias", {l.dim}});
            t.push_back({n + ".ln2.weight", {l.dim}});
            t.push_back({n + ".ln2.bias", {l.dim}});
            t.push_back({n + ".mlp.fc1.weight", {l.hidden, l.dim}});
            t.push_back({n + ".mlp.fc1.bias", {l.hidden}});
            t.push_back({n + ".mlp.fc2.weight", {l.dim, l.hidden}});
            t.push_back({n + ".mlp.fc2.bias", {l.dim}});
            break;
        default: break;
        }
    }
    return t;
}

int64_t ModelSpec::parameter_count() const {
    int64_t total = 0;
    for (auto& t : tensors()) {
        int64_t n = 1;
        for (auto d : t.shape) n *= d;
        total += n;
    }
    return total;
}

} // namespace n3::train
