// n3-sentencepiece.so: the only code of n3 that calls libsentencepiece, loaded by tokenizer.cpp
// with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
//
// Debian's libsentencepiece carries its own protobuf-lite 3.14 and exports its symbols, and
// libtorch links libprotobuf 3.21: linked into one executable, whichever comes first serves the
// other's calls and the process crashes in protobuf's start-up (or fails its version check).
// Loaded on its own with RTLD_DEEPBIND, libsentencepiece binds to its own protobuf and nothing
// of it reaches the global scope. The entry points pass C++ types of the one libstdc++; they are
// extern "C" only so that dlsym finds them by plain names.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <string>
#include <unordered_map>
#include <vector>

namespace sentencepiece::logging {
void SetMinLogLevel(int); // exported by libsentencepiece, not declared by its public headers
}

namespace {

class LineIterator : public sentencepiece::SentenceIterator {
public:
    explicit LineIterator(const std::string& text) : text_(text) { Next(); }
    bool done() const override { return done_; }
    void Next() override {
        while (pos_ <= text_.size()) {
            size_t end = text_.find('\n', pos_);
            if (end == std::string::npos) end = text_.size();
            line_.assign(text_, pos_, end - pos_);
            pos_ = end + 1;
            if (!line_.empty()) return;
        }
        done_ = true;
    }
    const std::string& value() const override { return line_; }
    sentencepiece::util::Status status() const override { return {}; }

private:
    const std::string& text_;
    size_t pos_ = 0;
    std::string line_;
    bool done_ = false;
};

bool report(const sentencepiece::util::Status& s, std::string* error) {
    if (!s.ok()) *error = s.ToString();
    return s.ok();
}

} // namespace

extern "C" {

// SentencePiece logs progress on stderr; only its errors may pass (n3's lib/ prints nothing).
__attribute__((visibility("default"))) void n3_spm_quiet() {
    sentencepiece::logging::SetMinLogLevel(2);
}

__attribute__((visibility("default"))) bool
n3_spm_train(const std::string* text, const std::unordered_map<std::string, std::string>* args,
             std::string* proto, std::string* error) {
    LineIterator lines(*text);
    return report(sentencepiece::SentencePieceTrainer::Train(*args, &lines, proto), error);
}

__attribute__((visibility("default"))) void* n3_spm_load(const std::string* bytes,
                                                         std::string* error) {
    auto* sp = new sentencepiece::SentencePieceProcessor();
    if (!report(sp->LoadFromSerializedProto(*bytes), error)) {
        delete sp;
        return nullptr;
    }
    return sp;
}

__attribute__((visibility("default"))) void n3_spm_free(void* sp) {
    delete static_cast<sentencepiece::SentencePieceProcessor*>(sp);
}

__attribute__((visibility("default"))) int n3_spm_pieces(const void* sp) {
    return static_cast<const sentencepiece::SentencePieceProcessor*>(sp)->GetPieceSize();
}

__attribute__((visibility("default"))) int n3_spm_eos(const void* sp) {
    return static_cast<const sentencepiece::SentencePieceProcessor*>(sp)->eos_id();
}

__attribute__((visibility("default"))) bool n3_spm_encode(const void* sp, const char* text,
                                                          size_t size, std::vector<int>* ids,
                                                          std::string* error) {
    return report(static_cast<const sentencepiece::SentencePieceProcessor*>(sp)->Encode(
                      absl::string_view(text, size), ids),
                  error);
}

__attribute__((visibility("default"))) bool
n3_spm_decode(const void* sp, const std::vector<int>* ids, std::string* text, std::string* error) {
    return report(static_cast<const sentencepiece::SentencePieceProcessor*>(sp)->Decode(*ids, text),
                  error);
}

} // extern "C"
