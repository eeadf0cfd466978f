// Unit tests for lib/train/lora.cpp (no libtorch): --lora and --lora-targets, the weights an
// adapter targets, adapter records and their checks against the model.
#include "record/error.hpp"
#include "record/format.hpp"
#include "record/io.hpp"
#include "train/lora.hpp"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

using namespace n3;
using namespace n3::train;
namespace fs = std::filesystem;

namespace {
Model gpt() {
    std::string path = std::string(N3_TEST_DATA) + "/../../examples/models/gpt.yaml";
    Model m = spec_only(read_text_file(path), path);
    m.hash = std::string(64, '1');
    return m;
}
std::string usage_error(const std::string& v, const std::string& t = "attn,mlp") {
    try {
        parse_lora(v, t);
    } catch (const UsageError& e) {
        return e.what();
    }
    return "";
}
} // namespace

TEST_CASE("the values of the lora and lora-targets flags") {
    LoraConfig c = parse_lora("8");
    CHECK(c.rank == 8);
    CHECK(c.alpha == 8);
    CHECK(c.targets == "attn,mlp");
    c = parse_lora("4:0.5", "mlp,attn");
    CHECK(c.rank == 4);
    CHECK(c.alpha == 0.5);
    CHECK(c.targets == "attn,mlp");
    CHECK(parse_lora("2", "mlp").targets == "mlp");
    for (const char* bad : {"", "0", "-1", "x", "4x", ":4", "1048577", " 4"})
        CHECK(usage_error(bad).find("RANK a positive integer") != std::string::npos);
    for (const char* bad : {"4:", "4:0", "4:-2", "4:x", "4:inf", "4:nan", "4:1:2"})
        CHECK(usage_error(bad).find("ALPHA must be a positive number") != std::string::npos);
    for (const char* bad : {"", "attn,", "ffn", "attn,attn", ",mlp"})
        CHECK(usage_error("4", bad).find("--lora-targets takes") != std::string::npos);
}

TEST_CASE("an adapter targets the blocks' attention and MLP weights, A r x in and B out x r") {
    Model m = gpt();
    auto w = lora_weights(m.spec, "attn,mlp");
    REQUIRE(w.size() == 24);
    CHECK(w[0].name == "block0.attn.qkv.weight");
    CHECK(w[3].name == "block0.mlp.fc2.weight");
    CHECK(lora_weights(m.spec, "attn").size() == 12);
    LoraMeta lm{m.hash, 8, 16, "mlp"};
    auto s = adapter_shapes(m.spec, lm);
    REQUIRE(s.size() == 24);
    CHECK(s[0].name == "lora/block0.mlp.fc1.weight.A");
    CHECK(s[0].shape == std::vector<int64_t>{8, 384});
    CHECK(s[1].name == "lora/block0.mlp.fc1.weight.B");
    CHECK(s[1].shape == std::vector<int64_t>{1536, 8});
    ModelSpec mlp = parse_spec("task: classify\ninput: [4]\nclasses: 2\nlayers:\n"
                               "  - {type: linear, in: 4, out: 2}\n",
                               "mlp.yaml");
    CHECK_THROWS_AS(lora_weights(mlp, "attn,mlp"), UsageError);
}

TEST_CASE("adapter records round-trip and refuse another model") {
    std::string tmp = (fs::temp_directory_path() / "n3-train-lora.XXXXXX").string();
    fs::path dir = ::mkdtemp(tmp.data());
    Model m = gpt();
    LoraMeta lm{m.hash, 2, 4, "attn"};
    std::vector<NamedTensor> ts;
    for (auto& s : adapter_shapes(m.spec, lm)) {
        size_t n = size_t(s.shape[0] * s.shape[1]);
        ts.push_back({s.name, s.shape, std::vector<float>(n, 0.25f)});
    }
    Adapter a = make_adapter(lm, m, ts, 3);
    Bytes rec = encode_record(RecordType::model, a.payload);
    const std::string path = (dir / "a.n3").string();
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(rec.data()), std::streamsize(rec.size()));
    Adapter b = load_adapter(path, m, "--init m.n3");
    CHECK(b.hash == a.hash);
    CHECK(b.round == 3);
    CHECK(b.meta.describe() == "rank 2, alpha 4, attn");
    CHECK(b.tensors.size() == ts.size());
    CHECK(b.tensors[5].values == ts[5].values);
    Model other = m;
    other.hash = std::string(64, '2');
    try {
        load_adapter(path, other, "--init o.n3");
        FAIL("another model's adapter was accepted");
    } catch (const DataError& e) {
        CHECK(std::string(e.what()) == "--adapter " + path +
                                           " adapts model 1111111111111111…, not --init o.n3 "
                                           "(2222222222222222…)");
    }
    fs::remove_all(dir);
}
