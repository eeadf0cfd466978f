// n3/net/wire.hpp — how records travel over ZeroMQ, and the checks every arriving record passes.
//
// On the wire one record is one ZeroMQ multipart message whose frames, concatenated, are
// exactly the record's bytes (preamble, payload, trailer; man/n3-record.5). Senders cut
// records into frames of kFrameSize bytes (a single huge frame costs the receiver a fresh
// allocation and its page faults; 1 MiB frames move at the raw socket's speed), but a
// receiver accepts any split, so a plain pyzmq program that sends a whole file as one frame
// takes part too.
//
//   RecordAssembler check(max_payload);
//   for (auto& frame : frames) check.add(frame);   // throws DataError as soon as it can tell
//   Preamble p = check.finish();                   // throws DataError: short, long, bad CRC
//   Preamble p = check.whole(frames);              // the same for a message already complete
//
// check_endpoint() validates a tcp:// or ipc:// endpoint before ZeroMQ sees it, so a typo gets
// a message that says what is wrong (UsageError, exit 2) instead of "Invalid argument".
#pragma once

#include "record/format.hpp"

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace n3::net {

constexpr size_t kFrameSize = size_t(1) << 20;

// Checks one record arriving in pieces. `where` prefixes messages ("message from 10.0.0.2").
class RecordAssembler {
public:
    explicit RecordAssembler(uint64_t max_payload = kDefaultMaxPayload,
                             std::string where = "message");
    void add(ByteView frame);
    // Verifies length and checksum; returns the record's preamble.
    Preamble finish();
    // add() for every frame of a message that has arrived whole, then finish(). A large
    // message's checksum is computed on two threads (halves joined with crc64_combine): the
    // check is the only work between a record's arrival and its output.
    Preamble whole(std::span<const ByteView> frames);
    uint64_t bytes_seen() const { return seen_; }

private:
    // add(), with or without folding the payload bytes into the CRC.
    void consume(ByteView frame, bool crc);
    uint64_t max_payload_;
    std::string where_;
    uint8_t head_[kPreambleSize]{};
    uint8_t tail_[kTrailerSize]{};
    Preamble pre_{};
    bool have_pre_ = false;
    uint64_t seen_ = 0;
    uint64_t crc_ = 0;
};

enum class EndpointRole { bind, connect };

struct Endpoint {
    std::string text;      // as ZeroMQ takes it
    std::string transport; // "tcp" or "ipc"
    std::string host;      // tcp: host, "*", IPv4, IPv6 without brackets; ipc: the path
    int port = 0;          // tcp only; 0 for "*" or 0 (bind to any free port)
};

// Throws UsageError naming the endpoint and what is wrong with it.
Endpoint check_endpoint(const std::string& text, EndpointRole role);

} // namespace n3::net
