// Golden records pin the packed and shard formats: see golden/README.
#include "codec/packed.hpp"
#include "codec/stream.hpp"

#include <catch2/catch.hpp>
#include <string>

using namespace n3;
using namespace n3::codec;

namespace {

std::string golden(const std::string& name) {
    return std::string(N3_TEST_DATA) + "/golden/" + name;
}

Bytes decode_file(const std::string& name) {
    VectorSink out;
    StreamDecoder dec(out);
    Input in(golden(name));
    dec.read(in);
    dec.finish();
    REQUIRE(dec.errors().empty());
    return out.data;
}

} // namespace

TEST_CASE("golden: packing without zstd gives the pinned bytes") {
    Record update = decode_record(read_file(golden("update.n3")));
    PackOptions o;
    o.topk = 0.25;
    o.quantize = Encoding::int8;
    o.block = 16;
    Bytes packed = pack(update.type(), update.payload(), o, nullptr, "golden");
    REQUIRE(encode_record(RecordType::packed, packed) == read_file(golden("packed-topk-int8.n3")));
}

TEST_CASE("golden: packed and shard records decode to the pinned bytes") {
    Bytes update = read_file(golden("update.n3"));
    REQUIRE(decode_file("packed-topk-int8.n3") == read_file(golden("packed-topk-int8.decoded.n3")));
    REQUIRE(decode_file("packed-int4-zstd.n3") == read_file(golden("packed-int4-zstd.decoded.n3")));
    REQUIRE(decode_file("packed-zstd.n3") == update);
    REQUIRE(decode_file("shards-2+1.n3") == update);
}
