// Fuzzes n3-merge's input handling: its own scan of mapped record files, the checks on
// metadata, layouts and values, and the rules over whatever survives --skip-bad. Any input
// must merge or throw n3::Error, never crash, hang or read out of bounds. The input file is a
// file in memory (memfile.hpp) that n3-merge maps as it maps any regular file.
#include "memfile.hpp"
#include "merge/merge.hpp"
#include "record/error.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static n3::fuzz::MemFile file("n3-fuzz-merge");
    if (size < 1 || !file.set(data + 1, size - 1)) return 0;
    static const char* rules[] = {"fedavg", "median",         "trimmed-mean:0.2",
                                  "krum:0", "multi-krum:0,2", "mix"};
    n3::merge::Request req;
    req.inputs = {file.path()};
    req.options.rule = n3::merge::Rule::parse(rules[data[0] % 6]);
    req.options.skip_bad = data[0] & 0x80;
    req.options.weights =
        data[0] & 0x40 ? n3::merge::WeightMode::uniform : n3::merge::WeightMode::samples;
    req.options.threads = 1 + (data[0] >> 5 & 1);
    if (data[0] & 0x08) req.options.clip_norm = 1.0;
    try {
        n3::merge::Result r = n3::merge::run(req);
        n3::VectorSink sink;
        r.write(sink);
    } catch (const n3::Error&) {
    }
    return 0;
}
