// Unit tests for lib/merge/lora.cpp: an adapter applied to its model against a double-precision
// reference computed here, the model's other tensors and metadata kept, and every refusal.
#include "merge/lora.hpp"
#include "record/error.hpp"
#include "record/format.hpp"
#include "record/safetensors.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

using namespace n3;
using namespace n3::merge;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "n3-lora-test.XXXXXX").string();
        path = ::mkdtemp(t.data());
    }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct T {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> v;
};

Bytes payload(const std::vector<T>& ts, const Metadata& md) {
    SafetensorsBuilder b;
    b.set_metadata(md);
    for (auto& t : ts) {
        Bytes d(t.v.size() * 4);
        std::memcpy(d.data(), t.v.data(), d.size());
        b.add_owned(t.name, DType::F32, t.shape, d);
    }
    return b.bytes();
}

std::string write(const std::string& path, const std::vector<T>& ts, const Metadata& md) {
    Bytes p = payload(ts, md);
    Bytes rec = encode_record(RecordType::model, p);
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(rec.data()), std::streamsize(rec.size()));
    return model_hash(p);
}

std::vector<float> randoms(std::mt19937_64& rng, size_t n) {
    std::normal_distribution<float> d(0, 1);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}

std::vector<float> read(const Bytes& p, const std::string& name) {
    TensorSet s = TensorSet::parse(p);
    const TensorInfo* t = s.find(name);
    REQUIRE(t);
    std::vector<float> v(t->numel());
    std::memcpy(v.data(), s.data(*t).data(), v.size() * 4);
    return v;
}

std::string error_of(const std::string& base, const std::string& adapter) {
    try {
        apply_adapter(base, adapter);
    } catch (const DataError& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST_CASE("an applied adapter is W + (alpha / r) B A, the rest of the model unchanged") {
    TempDir dir;
    std::mt19937_64 rng(7);
    const int64_t out = 5, in = 6, r = 3;
    std::vector<T> model = {{"w", {out, in}, randoms(rng, size_t(out * in))},
                            {"b", {out}, randoms(rng, size_t(out))}};
    Metadata mm = {{"round", "4"}, {"spec_hash", "abc"}};
    const std::string hash = write(dir / "base.n3", model, mm);
    T a{"lora/w.A", {r, in}, randoms(rng, size_t(r * in))};
    T bm{"lora/w.B", {out, r}, randoms(rng, size_t(out * r))};
    Metadata am = {{"lora_base", hash},
                   {"lora_rank", "3"},
                   {"lora_alpha", "1.5"},
                   {"lora_targets", "attn,mlp"}};
    write(dir / "a.n3", {a, bm}, am);

    AppliedAdapter res = apply_adapter(dir / "base.n3", dir / "a.n3");
    CHECK(res.weights == 1);
    CHECK(res.base_hash == hash);
    TensorSet set = TensorSet::parse(res.payload);
    CHECK(set.metadata() == mm);
    CHECK(set.tensors().size() == 2);
    CHECK(read(res.payload, "b") == model[1].v);
    std::vector<float> got = read(res.payload, "w");
    const double s = 1.5 / 3;
    for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
            double ba = 0;
            for (int64_t k = 0; k < r; ++k)
                ba += double(bm.v[size_t(o * r + k)]) * double(a.v[size_t(k * in + i)]);
            const size_t j = size_t(o * in + i);
            CHECK(got[j] == float(double(model[0].v[j]) + s * ba));
        }

    SECTION("another model's adapter is refused, naming both hashes") {
        std::vector<T> other = model;
        other[1].v[0] += 1;
        const std::string h2 = write(dir / "other.n3", other, mm);
        std::string e = error_of(dir / "other.n3", dir / "a.n3");
        CHECK(e.find(hash.substr(0, 16)) != std::string::npos);
        CHECK(e.find(h2.substr(0, 16)) != std::string::npos);
    }
    SECTION("a half pair, a tensor the model lacks, another rank, no adapter at all") {
        write(dir / "half.n3", {a}, am);
        CHECK(error_of(dir / "base.n3", dir / "half.n3").find("no matching '.B'") !=
              std::string::npos);
        T a2 = a, b2 = bm;
        a2.name = "lora/v.A", b2.name = "lora/v.B";
        write(dir / "lacks.n3", {a2, b2}, am);
        CHECK(error_of(dir / "base.n3", dir / "lacks.n3").find("which --base") !=
              std::string::npos);
        Metadata r2 = am;
        r2["lora_rank"] = "2";
        write(dir / "rank.n3", {a, bm}, r2);
        CHECK(error_of(dir / "base.n3", dir / "rank.n3").find("is not F32 2x6") !=
              std::string::npos);
        CHECK(error_of(dir / "base.n3", dir / "base.n3").find("is not a LoRA adapter") !=
              std::string::npos);
        CHECK(error_of(dir / "a.n3", dir / "a.n3").find("itself a LoRA adapter") !=
              std::string::npos);
    }
}

TEST_CASE("lora metadata comes whole and well-formed, or not at all") {
    auto meta_of = [](const Metadata& md) {
        Bytes p = payload({}, md);
        return lora_meta(TensorSet::parse(p), "x");
    };
    CHECK(!meta_of({{"round", "1"}}));
    const std::string h(64, 'a');
    auto m = meta_of(
        {{"lora_base", h}, {"lora_rank", "8"}, {"lora_alpha", "16"}, {"lora_targets", "attn"}});
    REQUIRE(m);
    CHECK(m->scale() == 2.0);
    CHECK(m->describe() == "rank 8, alpha 16, attn");
    CHECK_THROWS_AS(meta_of({{"lora_base", h}}), DataError);
    Metadata good = {
        {"lora_base", h}, {"lora_rank", "8"}, {"lora_alpha", "16"}, {"lora_targets", "attn"}};
    for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"lora_base", "xyz"},
                                                                        {"lora_rank", "0"},
                                                                        {"lora_rank", "-1"},
                                                                        {"lora_alpha", "0"},
                                                                        {"lora_alpha", "nan"},
                                                                        {"lora_alpha", "2x"},
                                                                        {"lora_targets", "mlp,"}}) {
        Metadata bad = good;
        bad[k] = v;
        CHECK_THROWS_AS(meta_of(bad), DataError);
    }
    CHECK(LoraMeta::alpha_text(0.1) == "0.1");
}
