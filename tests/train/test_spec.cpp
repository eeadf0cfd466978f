#include "record/error.hpp"
#include "record/io.hpp"
#include "train/spec.hpp"

#include <catch2/catch.hpp>

using namespace n3;
using namespace n3::train;

namespace {
std::string example(const std::string& name) {
    return read_text_file(std::string(N3_TEST_DATA) + "/../../examples/models/" + name);
}
std::string error_of(const std::string& yaml) {
    try {
        parse_spec(yaml, "s.yaml");
    } catch (const UsageError& e) {
        return e.what();
    }
    return "";
}
} // namespace

TEST_CASE("the shipped specs parse and name their tensors as the spec says") {
    ModelSpec cnn = parse_spec(example("cnn.yaml"), "cnn.yaml");
    REQUIRE(cnn.task == Task::classify);
    auto t = cnn.tensors();
    REQUIRE(t.size() == 10);
    CHECK(t[0].name == "conv1.weight");
    CHECK(t[0].shape == std::vector<int64_t>{6, 1, 5, 5});
    CHECK(t[4].name == "fc1.weight");
    CHECK(t[4].shape == std::vector<int64_t>{120, 256});
    CHECK(t[9].name == "fc3.bias");

    ModelSpec mlp = parse_spec(example("mlp.yaml"), "mlp.yaml");
    CHECK(mlp.parameter_count() == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10);

    ModelSpec lm = parse_spec(example("charlm.yaml"), "charlm.yaml");
    REQUIRE(lm.task == Task::lm);
    CHECK(lm.vocab == 256);
    auto lt = lm.tensors();
    CHECK(lt.front().name == "tok.weight");
    CHECK(std::find_if(lt.begin(), lt.end(), [](auto& x) {
              return x.name == "block1.attn.qkv.weight" && x.shape == std::vector<int64_t>{192, 64};
          }) != lt.end());
}

TEST_CASE("the spec hash ignores comments and layout but not content") {
    std::string a = "task: classify\ninput: [4]\nclasses: 2\nlayers:\n"
                    "  - {type: linear, in: 4, out: 2}\n";
    std::string b = "# a comment\ntask: classify\ninput: [4]\nclasses: 2\nlayers:\n"
                    "  - type: linear\n    in: 4\n    out: 2\n    bias: true\n";
    std::string c = "task: classify\ninput: [4]\nclasses: 2\nlayers:\n"
                    "  - {type: linear, in: 4, out: 2, bias: false}\n";
    CHECK(parse_spec(a, "a").hash() == parse_spec(b, "b").hash());
    CHECK(parse_spec(a, "a").hash() != parse_spec(c, "c").hash());
    CHECK(parse_spec(a, "a").hash().size() == 64);
}

TEST_CASE("spec errors name the line and what is wrong") {
    std::string head = "task: classify\ninput: [1, 28, 28]\nclasses: 10\nlayers:\n";
    CHECK_THAT(error_of(head + "  - flatten\n  - {type: linear, in: 700, out: 10}\n"),
               Catch::Matches("s\\.yaml:6: linear 'linear1': in is 700 but the layer before "
                              "gives \\[784\\].*"));
    CHECK_THAT(error_of(head + "  - flatten\n  - {type: lineer, in: 784, out: 10}\n"),
               Catch::Contains("s.yaml:6: unknown layer type 'lineer'"));
    CHECK_THAT(error_of(head + "  - flatten\n  - {type: linear, in: 784, out: 10, kernal: 3}\n"),
               Catch::Contains("s.yaml:6: unknown key 'kernal' for linear"));
    CHECK_THAT(error_of(head + "  - flatten\n  - {type: linear, in: 784, out: 12}\n"),
               Catch::Contains("s.yaml:6: the last layer gives [12] but classes is 10"));
    CHECK_THAT(error_of(head + "  - flatten\n  - {type: linear, in: x, out: 10}\n"),
               Catch::Contains("s.yaml:6: linear 'linear1' in must be an integer, not 'x'"));
    CHECK_THAT(error_of(head + "  - {type: linear, in: 784, out: 10}\n"),
               Catch::Contains("add a flatten layer"));
    CHECK_THAT(error_of("task: classify\ninput: [4\nclasses: 2\n"),
               Catch::Matches("s\\.yaml:[0-9]+: not valid YAML.*"));
    CHECK_THAT(error_of("task: regress\nlayers: [relu]\n"),
               Catch::Contains("s.yaml:1: task must be classify or lm, not 'regress'"));
    CHECK_THAT(error_of("task: classify\ninput: [4]\nclasses: 2\nlayers: []\n"),
               Catch::Contains("s.yaml:4: layers must be a non-empty list"));
    CHECK_THAT(error_of("task: lm\ncontext: 8\nlayers:\n  - {type: linear, in: 8, out: 256}\n"),
               Catch::Contains("s.yaml:4: linear 'linear0': an lm spec starts with an embedding"));
    CHECK_THAT(
        error_of("task: lm\ncontext: 8\nlayers:\n  - {type: embedding, vocab: 256, dim: 6}\n"
                 "  - {type: transformer, dim: 6, heads: 4}\n"),
        Catch::Contains("s.yaml:5: transformer 'transformer1': dim 6 is not divisible by heads 4"));
    CHECK_THAT(error_of(head + "  - flatten\n  - {type: linear, name: a, in: 784, out: 10}\n"
                               "  - {type: linear, name: a, in: 10, out: 10}\n"),
               Catch::Contains("s.yaml:7: layer name 'a' is used twice"));
    CHECK_THAT(error_of(std::string("task: lm\0", 9)), Catch::Contains("binary data"));
    CHECK_THAT(error_of("task: classify\ninput: 100000\nclasses: 100000\nlayers:\n"
                        "  - {type: linear, in: 100000, out: 100000}\n"),
               Catch::Contains("s.yaml:1: the model has 10000100000 parameters, more than"));
    CHECK(error_of(head + "  - flatten\n  - {type: linear, in: 784, out: 10}\n").empty());
}

TEST_CASE("language model keys: tokenizer, rotary positions, a tied head") {
    ModelSpec gpt = parse_spec(example("gpt.yaml"), "gpt.yaml");
    CHECK(gpt.tokenizer == TokenizerKind::sentencepiece);
    CHECK(gpt.vocab == 8192);
    CHECK(gpt.context == 256);
    CHECK(gpt.layers[1].rotary);
    const Layer& head = gpt.layers.back();
    CHECK(head.tied == "tok");
    CHECK(head.in == 384);
    CHECK(head.out == 8192);
    CHECK_FALSE(head.bias);
    for (auto& t : gpt.tensors()) CHECK(t.name.rfind("head.", 0) != 0); // the head has none
    CHECK(gpt.parameter_count() > 10'000'000);
    CHECK(gpt.parameter_count() < 20'000'000);
    // Specs without the new keys keep the canonical form (and hash) they had before them.
    std::string c = parse_spec(example("charlm.yaml"), "charlm.yaml").canonical();
    CHECK(c.find("tokenizer") == std::string::npos);
    CHECK(c.find("rotary") == std::string::npos);
    CHECK(c.find("tied") == std::string::npos);
    CHECK(gpt.canonical().find("tokenizer sentencepiece\n") != std::string::npos);
    std::string without = example("gpt.yaml");
    without.replace(without.find("rotary: true"), 12, "rotary: false");
    CHECK(parse_spec(without, "g").hash() != gpt.hash());
}

TEST_CASE("language model key errors") {
    const std::string head = "task: lm\ncontext: 8\n";
    CHECK_THAT(error_of(head + "tokenizer: words\nlayers: [relu]\n"),
               Catch::Contains("tokenizer must be bytes or sentencepiece"));
    CHECK_THAT(error_of(head + "tokenizer: sentencepiece\nlayers: [relu]\n"),
               Catch::Contains("needs 'vocab'"));
    CHECK_THAT(error_of(head + "vocab: 1000\nlayers: [relu]\n"),
               Catch::Contains("outside 2..256")); // bytes: at most 256
    CHECK_THAT(error_of("task: classify\ninput: 4\nclasses: 2\ntokenizer: sentencepiece\n"
                        "layers: [relu]\n"),
               Catch::Contains("tokenizer is for lm specs"));
    const std::string lm = head + "tokenizer: sentencepiece\nvocab: 500\nlayers:\n"
                                  "  - {type: embedding, name: tok, vocab: 500, dim: 8}\n";
    CHECK_THAT(error_of(lm + "  - {type: linear, name: head, tied: nothing}\n"),
               Catch::Contains("tied names 'nothing', which is not an embedding layer before it"));
    CHECK_THAT(error_of(lm + "  - {type: linear, name: head, tied: tok, out: 7}\n"),
               Catch::Contains("has in 8 and out 500"));
    CHECK_THAT(error_of(lm + "  - {type: transformer, dim: 8, heads: 8, rotary: true}\n"
                             "  - {type: linear, name: head, tied: tok}\n"),
               Catch::Contains("rotary positions need an even head width, not 1"));
    CHECK(error_of(lm + "  - {type: transformer, dim: 8, heads: 2, rotary: true}\n"
                        "  - {type: linear, name: head, tied: tok}\n")
              .empty());
}
