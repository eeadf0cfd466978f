// Fuzzes the data set readers of n3-train and n3-eval (lib/train/data.cpp, no libtorch): the
// input is read as an IDX folder (split into an images and a labels file, gzipped or not), as
// a CSV file and as a text corpus, in every split. Any input must load (and its samples gather)
// or throw n3::Error; never crash, hang, read out of bounds or hit undefined behaviour.
#include "record/error.hpp"
#include "train/data.hpp"

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <unistd.h>

using namespace n3;
using namespace n3::train;

namespace {
// The folder outlives every static destructor (the exit handler removes it). It is made in
// memory (tmpfs, /dev/shm) where there is one: an IDX folder is a folder, so the files cannot be
// memfd files, and on a disk every input's files cost a write-back.
const std::string& dir() {
    static const std::string* d = [] {
        std::error_code ec;
        std::string t =
            std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0
                ? "/dev/shm/n3-fuzz-data.XXXXXX"
                : "/tmp/n3-fuzz-data.XXXXXX";
        auto* p = new std::string(::mkdtemp(t.data()) ? t : "/tmp");
        std::atexit([] {
            if (dir() != "/tmp") std::filesystem::remove_all(dir());
        });
        return p;
    }();
    return *d;
}
void put(const std::string& path, const uint8_t* data, size_t size) {
    if (FILE* f = std::fopen(path.c_str(), "wb")) {
        std::fwrite(data, 1, size, f);
        std::fclose(f);
    }
}
void load(const std::string& path, Format format, Split split) {
    try {
        Dataset d = load_dataset(path, format, split);
        (void)d.classes();
        std::vector<size_t> all(std::min<size_t>(d.size(), 64));
        std::iota(all.begin(), all.end(), size_t(0));
        Examples e = d.gather(all);
        (void)e.size();
    } catch (const Error&) {
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 3) return 0;
    // Byte 0: which IDX files are gzipped (bits 0, 1) and the split of the CSV and text reads
    // (bits 2-3); bytes 1-2: where the images end and the labels begin.
    const uint8_t mode = data[0];
    const uint8_t* body = data + 3;
    const size_t n = size - 3;
    const size_t cut = std::min(n, size_t(data[1]) << 8 | data[2]);
    const std::string& d = dir();
    for (const char* f : {"/train-images-idx3-ubyte", "/train-images-idx3-ubyte.gz",
                          "/train-labels-idx1-ubyte", "/train-labels-idx1-ubyte.gz"})
        std::remove((d + f).c_str());
    const char* images = mode & 1 ? "/train-images-idx3-ubyte.gz" : "/train-images-idx3-ubyte";
    const char* labels = mode & 2 ? "/train-labels-idx1-ubyte.gz" : "/train-labels-idx1-ubyte";
    put(d + images, body, cut);
    put(d + labels, body + cut, n - cut);
    load(d, Format::automatic, Split::train);
    // The whole body as one CSV and one text file, and as a file that may be gzipped.
    put(d + "/data.csv", body, n);
    const Split split = (mode >> 2 & 3) == 0   ? Split::all
                        : (mode >> 2 & 3) == 1 ? Split::train
                                               : Split::test;
    load(d + "/data.csv", Format::automatic, split);
    load(d + "/data.csv", Format::text, split);
    try {
        (void)read_maybe_gzip(d + "/data.csv");
    } catch (const Error&) {
    }
    return 0;
}
