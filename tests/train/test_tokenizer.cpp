#include "record/error.hpp"
#include "train/spec.hpp"
#include "train/tokenizer.hpp"

#include <catch2/catch.hpp>

using namespace n3;
using namespace n3::train;

namespace {
// A few thousand lines of varied text: enough for SentencePiece to learn 400 pieces.
std::string corpus() {
    const char* words[] = {"the",   "LORD",  "said",  "unto", "Moses", "and",     "Aaron",
                           "land",  "of",    "Egypt", "went", "out",   "into",    "city",
                           "water", "bread", "house", "king", "son",   "daughter"};
    std::string text;
    uint32_t x = 12345;
    for (int line = 0; line < 3000; ++line) {
        text += "Ex" + std::to_string(line / 30 + 1) + ":" + std::to_string(line % 30 + 1);
        for (int w = 0; w < 12; ++w) {
            x = x * 1103515245u + 12345u;
            text += " ";
            if ((x >> 8) % 3) {
                text += words[(x >> 16) % 20];
            } else { // a made-up name of two or three syllables
                for (uint32_t k = 0; k < 2 + (x >> 12) % 2; ++k) {
                    text += "bcdfghklmnprstvz"[(x >> (14 + 4 * k)) % 16];
                    text += "aeiou"[(x >> (15 + 3 * k)) % 5];
                }
            }
        }
        text += ".\n";
    }
    return text;
}
const std::string& tokenizer_bytes() {
    static const std::string b = train_tokenizer(corpus(), 400, "unigram");
    return b;
}
} // namespace

TEST_CASE("a trained tokenizer round-trips any text, byte for byte") {
    Tokenizer t = Tokenizer::load(tokenizer_bytes(), "tok");
    CHECK(t.vocab() == 400);
    for (std::string s :
         {std::string("Ex1:1 the LORD said unto Moses."), std::string("two\n\nlines\n"),
          std::string("  leading and  double  spaces, a tab\t"),
          std::string("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC"), std::string("\n"), std::string(""),
          std::string("zebra quux 0123456789")}) {
        auto ids = t.encode(s);
        CHECK(t.decode(ids) == s);
        for (auto id : ids) CHECK((id >= 0 && id < 400));
    }
    // Pieces are learned: common words take fewer tokens than their letters.
    CHECK(t.encode("the LORD said unto Moses").size() < 12);
}

TEST_CASE("training is deterministic and bpe works too") {
    CHECK(train_tokenizer(corpus(), 400, "unigram") == tokenizer_bytes());
    Tokenizer b = Tokenizer::load(train_tokenizer(corpus(), 400, "bpe"), "bpe");
    CHECK(b.vocab() == 400);
    CHECK(b.decode(b.encode("Moses went out\n")) == "Moses went out\n");
}

TEST_CASE("tokenizer errors") {
    CHECK_THROWS_AS(Tokenizer::load("not a model", "x"), DataError);
    CHECK_THROWS_WITH(Tokenizer::load("not a model", "x"),
                      Catch::Contains("x: not a SentencePiece tokenizer"));
    CHECK_THROWS_AS(train_tokenizer(corpus(), 100, "unigram"), UsageError);
    CHECK_THROWS_AS(train_tokenizer(corpus(), 400, "words"), UsageError);
    CHECK_THROWS_AS(train_tokenizer("\n\n", 400, "unigram"), DataError);
    Tokenizer t = Tokenizer::load(tokenizer_bytes(), "tok");
    CHECK_THROWS_AS(t.decode({400}), DataError);
    ModelSpec spec = parse_spec("task: lm\ntokenizer: sentencepiece\nvocab: 500\ncontext: 8\n"
                                "layers:\n  - {type: embedding, name: tok, vocab: 500, dim: 8}\n"
                                "  - {type: linear, name: head, tied: tok}\n",
                                "s");
    CHECK_THROWS_AS(check_tokenizer(spec, t, "tok"), DataError);
    CHECK_THROWS_WITH(check_tokenizer(spec, t, "tok"),
                      Catch::Contains("the tokenizer has 400 pieces but the spec's vocab is 500"));
    spec.vocab = 400;
    CHECK_NOTHROW(check_tokenizer(spec, t, "tok"));
}
