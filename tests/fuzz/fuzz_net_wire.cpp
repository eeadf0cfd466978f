// Fuzzes what a receiver does with a peer's bytes: the record check over an arbitrary split
// into frames, and the endpoint parser. Any input must pass or throw n3::Error, never crash,
// hang or read out of bounds.
#include "net/wire.hpp"
#include "record/error.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    // The first byte picks the frame size, the rest is the message.
    size_t frame = 1 + data[0] * 7u;
    n3::ByteView msg(data + 1, size - 1);
    try {
        n3::net::RecordAssembler check(uint64_t(1) << 20, "fuzz");
        for (size_t off = 0; off < msg.size(); off += frame)
            check.add(msg.subspan(off, std::min(frame, msg.size() - off)));
        check.finish();
    } catch (const n3::Error&) {
    }
    std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
    for (auto role : {n3::net::EndpointRole::bind, n3::net::EndpointRole::connect}) {
        try {
            n3::net::check_endpoint(text, role);
        } catch (const n3::Error&) {
        }
    }
    return 0;
}
