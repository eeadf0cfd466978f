// Fuzzes the reassembly of chunked records from hostile peers: the input is a sequence of
// messages, each a connection byte, a 16-bit length and that many bytes (a chunk header frame
// when it parses as one, followed by its data). Any sequence must be taken or refused without
// a crash, a hang, or a record committed that is not whole and checked.
#include "net/chunk.hpp"
#include "record/error.hpp"
#include "record/format.hpp"

#include <cstdint>
#include <cstring>
#include <memory>

namespace {

struct Outlet final : n3::net::RecordOutlet {
    struct Out final : n3::net::RecordOut {
        void write(n3::ByteView b) override { bytes.insert(bytes.end(), b.begin(), b.end()); }
        std::string commit() override {
            // What commits must be a record that passes the reader's checks.
            n3::Preamble p = n3::decode_preamble(bytes.data(), "fuzz");
            if (p.record_size() != bytes.size()) __builtin_trap();
            const uint64_t body = n3::kPreambleSize + p.payload_len;
            uint64_t want = 0;
            for (int i = 7; i >= 0; --i) want = (want << 8) | bytes[body + i];
            if (n3::crc64(0, n3::ByteView(bytes.data(), body)) != want) __builtin_trap();
            return "";
        }
        n3::Bytes bytes;
    };
    std::unique_ptr<n3::net::RecordOut> begin(const n3::Preamble&, const std::string&) override {
        return std::make_unique<Out>();
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Outlet outlet;
    n3::net::ChunkReassembler re(outlet, uint64_t(1) << 20, {});
    auto now = n3::net::Clock::now();
    size_t at = 0;
    while (at + 3 <= size) {
        const int conn = data[at] & 3;
        size_t len = data[at + 1] | (size_t(data[at + 2]) << 8);
        at += 3;
        len = std::min(len, size - at);
        n3::ByteView msg(data + at, len);
        at += len;
        if (msg.size() < n3::net::kChunkHeaderSize ||
            !n3::net::is_chunk_header(msg.first(n3::net::kChunkHeaderSize)))
            continue;
        try {
            auto h = n3::net::decode_chunk_header(msg.first(n3::net::kChunkHeaderSize), "fuzz");
            n3::ByteView body = msg.subspan(n3::net::kChunkHeaderSize);
            re.add(conn, "fuzz", h, {&body, 1}, now);
        } catch (const n3::Error&) {
        }
        now += std::chrono::seconds(1);
        re.expire(now, std::chrono::seconds(30));
    }
    re.clear();
    return 0;
}
