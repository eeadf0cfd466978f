// Fuzzes the shard parser and the decoder behind `n3-encode -d`: the input is read as a shard
// payload, and as a stream of records (plain, packed, shards) from a mapped file. Anything must
// decode, be reported, or throw n3::Error; never crash or read out of bounds.
#include "codec/shard.hpp"
#include "codec/stream.hpp"
#include "record/error.hpp"

#include <cstdint>
#include <cstdio>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    n3::ByteView in(data, size);
    try {
        auto h = n3::codec::parse_shard(in, "fuzz");
        n3::codec::ShardAssembler a;
        a.add(h, in, "fuzz");
        a.incomplete();
    } catch (const n3::Error&) {
    }
    if (FILE* tmp = std::tmpfile()) {
        std::fwrite(data, 1, size, tmp);
        std::fflush(tmp);
        try {
            n3::Input file("/proc/self/fd/" + std::to_string(fileno(tmp)), true);
            n3::VectorSink out;
            n3::codec::StreamDecoder dec(out);
            dec.read(file);
            dec.finish();
        } catch (const n3::Error&) {
        }
        std::fclose(tmp);
    }
    return 0;
}
