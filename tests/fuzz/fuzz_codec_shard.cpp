// Fuzzes the shard parser and the decoder behind `n3-encode -d`: the input is read as a shard
// payload, and as a stream of records (plain, packed, shards) from a mapped file. Anything must
// decode, be reported, or throw n3::Error; never crash or read out of bounds. The mapped file is
// a file in memory (memfile.hpp).
#include "codec/shard.hpp"
#include "codec/stream.hpp"
#include "memfile.hpp"
#include "record/error.hpp"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    n3::ByteView in(data, size);
    try {
        auto h = n3::codec::parse_shard(in, "fuzz");
        n3::codec::ShardAssembler a;
        a.add(h, in, "fuzz");
        a.incomplete();
    } catch (const n3::Error&) {
    }
    static n3::fuzz::MemFile mem("n3-fuzz-shard");
    if (mem.set(data, size)) {
        try {
            n3::Input file(mem.path(), true);
            n3::VectorSink out;
            n3::codec::StreamDecoder dec(out);
            dec.read(file);
            dec.finish();
        } catch (const n3::Error&) {
        }
    }
    return 0;
}
