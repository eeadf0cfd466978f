#include "train/tokenizer.hpp"

#include "record/error.hpp"

#include <dlfcn.h>
#include <filesystem>
#include <mutex>
#include <unistd.h>
#include <unordered_map>

#ifndef N3_SPM_MODULE_BUILD
#define N3_SPM_MODULE_BUILD ""
#endif
#ifndef N3_SPM_MODULE_INSTALL
#define N3_SPM_MODULE_INSTALL ""
#endif

namespace n3::train {

namespace {

// The entry points of n3-sentencepiece.so (sentencepiece_module.cpp, which says why it is a
// module of its own).
struct Module {
    void (*quiet)();
    bool (*train)(const std::string*, const std::unordered_map<std::string, std::string>*,
                  std::string*, std::string*);
    void* (*load)(const std::string*, std::string*);
    void (*free)(void*);
    int (*pieces)(const void*);
    int (*eos)(const void*);
    bool (*encode)(const void*, const char*, size_t, std::vector<int>*, std::string*);
    bool (*decode)(const void*, const std::vector<int>*, std::string*, std::string*);
};

// Next to the executable's ../lib/n3 (installed), then where the build put it.
std::vector<std::string> module_paths() {
    std::vector<std::string> paths;
    if (const char* env = std::getenv("N3_SENTENCEPIECE_MODULE"); env && *env) paths.push_back(env);
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec)
        paths.push_back((exe.parent_path().parent_path() / "lib/n3/n3-sentencepiece.so").string());
    if (*N3_SPM_MODULE_INSTALL) paths.push_back(N3_SPM_MODULE_INSTALL);
    if (*N3_SPM_MODULE_BUILD) paths.push_back(N3_SPM_MODULE_BUILD);
    return paths;
}

// RTLD_DEEPBIND keeps libsentencepiece's protobuf apart from libtorch's (sentencepiece_module.cpp).
// AddressSanitizer cannot run a library loaded so (it refuses the dlopen): a sanitizer build
// loads it plainly, which serves a process without libtorch (the unit tests); the tools, which
// link libtorch, are not run on a tokenizer under it (tests/cli/eval-llm.sh skips).
#if defined(__SANITIZE_ADDRESS__)
constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL;
#else
constexpr int kDlopenFlags = RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND;
#endif

const Module& module() {
    static Module m{};
    static std::string failure;
    static std::once_flag once;
    std::call_once(once, [] {
        void* h = nullptr;
        std::string tried;
        for (auto& p : module_paths()) {
            if (access(p.c_str(), R_OK) != 0) continue;
            h = dlopen(p.c_str(), kDlopenFlags);
            if (h) break;
            const char* e = dlerror();
            tried += std::string(tried.empty() ? "" : "; ") + (e ? e : p);
        }
        if (!h) {
            failure = tried.empty() ? "n3-sentencepiece.so is not installed" : tried;
            return;
        }
        auto sym = [&](const char* name) {
            void* f = dlsym(h, name);
            if (!f && failure.empty()) failure = std::string("n3-sentencepiece.so lacks ") + name;
            return f;
        };
        m.quiet = reinterpret_cast<decltype(m.quiet)>(sym("n3_spm_quiet"));
        m.train = reinterpret_cast<decltype(m.train)>(sym("n3_spm_train"));
        m.load = reinterpret_cast<decltype(m.load)>(sym("n3_spm_load"));
        m.free = reinterpret_cast<decltype(m.free)>(sym("n3_spm_free"));
        m.pieces = reinterpret_cast<decltype(m.pieces)>(sym("n3_spm_pieces"));
        m.eos = reinterpret_cast<decltype(m.eos)>(sym("n3_spm_eos"));
        m.encode = reinterpret_cast<decltype(m.encode)>(sym("n3_spm_encode"));
        m.decode = reinterpret_cast<decltype(m.decode)>(sym("n3_spm_decode"));
        if (failure.empty()) m.quiet();
    });
    if (!failure.empty())
        throw EnvError("cannot load the SentencePiece tokenizer module: " + failure,
                       "install n3 (make install), or set N3_SENTENCEPIECE_MODULE");
    return m;
}

} // namespace

std::string train_tokenizer(const std::string& text, int64_t vocab, const std::string& type) {
    if (type != "unigram" && type != "bpe")
        throw UsageError("--tokenizer-type must be unigram or bpe, not '" + type + "'");
    if (vocab < 300 || vocab > (int64_t(1) << 20))
        throw UsageError("--tokenizer " + std::to_string(vocab) + ": a vocabulary of 300 to " +
                             std::to_string(int64_t(1) << 20) + " pieces",
                         "byte fallback alone takes 259 pieces");
    if (text.find_first_not_of('\n') == std::string::npos)
        throw DataError("the text has no lines to train a tokenizer on");
    const std::unordered_map<std::string, std::string> args = {
        {{"vocab_size", std::to_string(vocab)},
         {"model_type", type},
         {"byte_fallback", "true"},
         {"character_coverage", "1.0"},
         {"normalization_rule_name", "identity"},
         {"remove_extra_whitespaces", "false"},
         {"split_digits", "true"},
         {"max_sentence_length", "65536"},
         {"input_sentence_size", "2000000"},
         {"shuffle_input_sentence", "false"},
         {"num_threads", "1"}}};
    std::string proto, error;
    if (!module().train(&text, &args, &proto, &error))
        throw UsageError("sentencepiece cannot train this tokenizer: " + error,
                         "a smaller --tokenizer vocabulary, or more text");
    return proto;
}

Tokenizer Tokenizer::load(const std::string& model_bytes, const std::string& where) {
    const Module& mod = module();
    Tokenizer t;
    std::string error;
    void* sp = mod.load(&model_bytes, &error);
    if (!sp) throw DataError(where + ": not a SentencePiece tokenizer (" + error + ")");
    t.sp_ = std::shared_ptr<void>(sp, mod.free);
    t.bytes_ = model_bytes;
    t.pieces_ = mod.pieces(sp);
    t.eos_ = mod.eos(sp);
    if (t.eos_ < 0)
        throw DataError(where + ": the tokenizer has no end-of-sentence piece for line ends");
    return t;
}

int64_t Tokenizer::vocab() const {
    return pieces_;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
    std::vector<int32_t> out;
    out.reserve(text.size() / 3);
    std::vector<int> ids;
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t end = text.find('\n', pos);
        bool last = end == std::string_view::npos;
        if (last) end = text.size();
        if (end > pos) {
            ids.clear();
            std::string error;
            if (!module().encode(sp_.get(), text.data() + pos, end - pos, &ids, &error))
                throw DataError("cannot tokenize the text: " + error);
            out.insert(out.end(), ids.begin(), ids.end());
        }
        if (last) break;
        out.push_back(eos_);
        pos = end + 1;
    }
    return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
    std::string out;
    std::vector<int> line;
    auto flush = [&] {
        if (line.empty()) return;
        std::string piece;
        std::string error;
        if (!module().decode(sp_.get(), &line, &piece, &error))
            throw DataError("cannot decode tokens: " + error);
        out += piece;
        line.clear();
    };
    for (int32_t id : ids) {
        if (id < 0 || id >= vocab())
            throw DataError("token " + std::to_string(id) + " is outside the tokenizer's " +
                            std::to_string(vocab()) + " pieces");
        if (id == eos_) {
            flush();
            out.push_back('\n');
        } else {
            line.push_back(id);
        }
    }
    flush();
    return out;
}

void check_tokenizer(const ModelSpec& spec, const Tokenizer& t, const std::string& where) {
    if (spec.tokenizer != TokenizerKind::sentencepiece)
        throw UsageError(where + ": the spec's tokenizer is bytes; a SentencePiece tokenizer "
                                 "needs 'tokenizer: sentencepiece' in the spec");
    if (t.vocab() != spec.vocab)
        throw DataError(where + ": the tokenizer has " + std::to_string(t.vocab()) +
                            " pieces but the spec's vocab is " + std::to_string(spec.vocab),
                        "train the tokenizer with --tokenizer " + std::to_string(spec.vocab) +
                            ", or set vocab: " + std::to_string(t.vocab()) + " in the spec");
}

Tokenizer model_tokenizer(const Model& m) {
    if (m.tokenizer.empty())
        throw DataError("the model's spec says tokenizer: sentencepiece but the record carries "
                        "no tokenizer",
                        "build the model with n3-train --init-only --tokenizer-model FILE");
    Tokenizer t = Tokenizer::load(m.tokenizer, "the model's tokenizer");
    check_tokenizer(m.spec, t, "the model's tokenizer");
    return t;
}

} // namespace n3::train
