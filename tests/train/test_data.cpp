#include "record/error.hpp"
#include "train/data.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <zlib.h>

using namespace n3;
using namespace n3::train;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "n3-train-test.XXXXXX").string();
        path = mkdtemp(t.data());
    }
    ~TempDir() { fs::remove_all(path); }
};

std::vector<uint8_t> idx_bytes(uint8_t dims, std::vector<uint32_t> shape, size_t data_bytes,
                               uint8_t fill = 7) {
    std::vector<uint8_t> b = {0, 0, 8, dims};
    for (auto s : shape)
        for (int k = 3; k >= 0; --k) b.push_back(uint8_t(s >> (8 * k)));
    for (size_t i = 0; i < data_bytes; ++i) b.push_back(uint8_t((fill + i) % 10));
    return b;
}

void write(const fs::path& p, const std::vector<uint8_t>& b, bool gzip) {
    if (gzip) {
        gzFile f = gzopen(p.c_str(), "wb");
        gzwrite(f, b.data(), unsigned(b.size()));
        gzclose(f);
    } else {
        std::ofstream(p, std::ios::binary)
            .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
    }
}

// A tiny IDX folder: n images of 4x4 and n labels (0..9).
void write_idx(const fs::path& dir, const std::string& prefix, uint32_t n, bool gzip) {
    std::string ext = gzip ? ".gz" : "";
    write(dir / (prefix + "-images-idx3-ubyte" + ext), idx_bytes(3, {n, 4, 4}, n * 16), gzip);
    write(dir / (prefix + "-labels-idx1-ubyte" + ext), idx_bytes(1, {n}, n, 0), gzip);
}

template <class E> std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const E& e) {
        return e.what();
    }
    return "no error";
}

} // namespace

TEST_CASE("IDX folders load gzipped or not, and gather scales pixels") {
    for (bool gz : {true, false}) {
        TempDir t;
        write_idx(t.path, "train", 20, gz);
        write_idx(t.path, "t10k", 5, gz);
        Dataset d = load_dataset(t.path.string(), Format::automatic, Split::train);
        REQUIRE(d.size() == 20);
        CHECK(d.shape == std::vector<int64_t>{1, 4, 4});
        CHECK(d.classes() == 10);
        CHECK(d.labels[3] == 3);
        Examples e = d.gather({3, 1});
        REQUIRE(e.size() == 2);
        CHECK(e.labels == std::vector<int64_t>{3, 1});
        CHECK(e.features.size() == 32);
        CHECK(e.features[0] == Approx(float((7 + 48) % 10) / 255.0f));
        CHECK(load_dataset(t.path.string(), Format::idx, Split::test).size() == 5);
    }
}

TEST_CASE("bad IDX input is refused with the file named") {
    TempDir t;
    auto images = t.path / "train-images-idx3-ubyte";
    auto labels = t.path / "train-labels-idx1-ubyte";
    auto load = [&] { load_dataset(t.path.string(), Format::idx, Split::train); };
    CHECK_THAT(error_of<DataError>(load), Catch::Contains("no train-images-idx3-ubyte"));

    write(labels, idx_bytes(1, {10}, 10), false);
    auto bad = idx_bytes(3, {10, 4, 4}, 160);
    bad[2] = 0x0d; // float data: not the unsigned-byte IDX Fashion-MNIST uses
    write(images, bad, false);
    CHECK_THAT(error_of<DataError>(load), Catch::Contains("bad IDX magic"));

    write(images, idx_bytes(3, {10, 4, 4}, 150), false);
    CHECK_THAT(error_of<DataError>(load), Catch::Contains("truncated IDX data"));

    write(images, idx_bytes(3, {12, 4, 4}, 12 * 16), false);
    CHECK_THAT(error_of<DataError>(load), Catch::Contains("holds 12 images but"));

    auto good = idx_bytes(3, {10, 4, 4}, 160);
    write(images, good, true);
    fs::rename(images, t.path / "train-images-idx3-ubyte.gz");
    std::vector<uint8_t> gz;
    {
        std::ifstream f(t.path / "train-images-idx3-ubyte.gz", std::ios::binary);
        gz.assign(std::istreambuf_iterator<char>(f), {});
    }
    gz.resize(gz.size() / 2); // a cut gzip stream
    write(t.path / "train-images-idx3-ubyte.gz", gz, false);
    CHECK_THAT(error_of<DataError>(load), Catch::Contains("train-images-idx3-ubyte.gz"));
}

TEST_CASE("read_maybe_gzip returns a file's bytes whole, plain or gzipped, small or large") {
    TempDir t;
    // Empty, one byte, around the first 64 KiB piece and several growing pieces past it.
    for (size_t n :
         {size_t(0), size_t(1), size_t(65535), size_t(65536), size_t(65537), size_t(3) << 20}) {
        std::vector<uint8_t> b(n);
        for (size_t i = 0; i < n; ++i) b[i] = uint8_t(i * 131 + i / 65536);
        for (bool gzip : {false, true}) {
            auto p = t.path / (std::to_string(n) + (gzip ? ".gz" : ""));
            write(p, b, gzip);
            INFO(p.string());
            CHECK(read_maybe_gzip(p.string()) == b);
        }
    }
}

TEST_CASE("CSV rows are features then label, with an optional header") {
    TempDir t;
    auto p = t.path / "d.csv";
    std::ofstream(p) << "a,b,label\n";
    {
        std::ofstream f(p, std::ios::app);
        for (int i = 0; i < 20; ++i) f << i << "," << i * 0.5 << "," << i % 3 << "\n";
    }
    Dataset all = load_dataset(p.string(), Format::automatic, Split::all);
    REQUIRE(all.size() == 20);
    CHECK(all.shape == std::vector<int64_t>{2});
    CHECK(all.classes() == 3);
    CHECK(load_dataset(p.string(), Format::csv, Split::train).size() == 18);
    CHECK(load_dataset(p.string(), Format::csv, Split::test).size() == 2);
    std::ofstream(p, std::ios::app) << "1,2\n";
    CHECK_THAT(error_of<DataError>([&] { load_dataset(p.string(), Format::csv, Split::all); }),
               Catch::Contains("d.csv:22: has 2 fields, the first row has 3"));
    std::ofstream(p) << "1,2,0\n1,x,1\n";
    CHECK_THAT(error_of<DataError>([&] { load_dataset(p.string(), Format::csv, Split::all); }),
               Catch::Contains("d.csv:2: not a row of numbers"));
    std::ofstream(p) << "1,2,0.5\n";
    CHECK_THAT(error_of<DataError>([&] { load_dataset(p.string(), Format::csv, Split::all); }),
               Catch::Contains("is not a non-negative integer"));
    // Labels no integer can hold (found by fuzz_train_data: the conversion was undefined).
    for (const char* label : {"nan", "inf", "-inf", "1e30", "-1e30", "2e6"}) {
        std::ofstream(p) << "1,2," << label << "\n";
        CHECK_THAT(error_of<DataError>([&] { load_dataset(p.string(), Format::csv, Split::all); }),
                   Catch::Contains("is not a non-negative integer"));
    }
}

TEST_CASE("text lines carry their book for natural partitions") {
    TempDir t;
    auto p = t.path / "b.txt";
    std::ofstream(p) << "Ge1:1 In the beginning\nGe1:2 And the earth\nplain line\n"
                        "Exo1:1 Now these are\n1Cor13:4 Charity suffereth long\n";
    Dataset d = load_dataset(p.string(), Format::automatic, Split::all);
    REQUIRE(d.size() == 5);
    CHECK(d.book_names == std::vector<std::string>{"Ge", "Exo", "1Cor"});
    CHECK(d.book == std::vector<int32_t>{0, 0, -1, 1, 2});
    Examples e = d.gather({0, 3});
    CHECK(e.text == "Ge1:1 In the beginning\nExo1:1 Now these are\n");
    CHECK_THAT(error_of<EnvError>([&] {
                   load_dataset((t.path / "x.bin").string(), Format::automatic, Split::all);
               }),
               Catch::Contains("no such file"));
}
