// Fuzzes the packed-record parser: any payload must unpack or throw n3::Error, never crash,
// hang, read out of bounds or allocate without bound.
#include "codec/packed.hpp"
#include "record/error.hpp"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    n3::ByteView in(data, size);
    try {
        n3::codec::packed_info(in, "fuzz");
    } catch (const n3::Error&) {
    }
    try {
        n3::VectorSink out;
        n3::codec::unpack(in, out, "fuzz");
    } catch (const n3::Error&) {
    }
    return 0;
}
