// n3/net/chunk.hpp — large records on the wire as a sequence of bounded chunk messages, and
// their reassembly, per sender, into outputs written as the chunks arrive.
//
// A record of at most kChunkAbove bytes travels as one multipart message whose frames,
// concatenated, are the record (wire.hpp). A larger record travels as chunk messages: each
// is a multipart message of a 32-byte chunk header frame and one or more data frames, in all
// at most kChunkSize bytes of the record (n3-send sends exactly one data frame per chunk).
// The header, integers little-endian (man/n3-send.1, WIRE FORMAT):
//   0  magic   89 4E 33 43 ("\x89N3C")    4  version u8 (1)    5  flags u8 (bit 0: last chunk)
//   6  reserved u16 (0)                  8  record id u64 (unique per sender)
//   16 offset u64: where the chunk's data starts in the record
//   24 total u64: the record's size in bytes (preamble, payload and trailer)
// A sender sends a record's chunks in order, offset 0 first, the last one flagged, and the
// last only once the record's CRC-64 matched (a corrupt input never completes on the wire).
// A receiver tells a chunk from a record by the first frame: 32 bytes that start with the
// chunk magic (a record's preamble starts with "\x89N3R").
//
//   ChunkReassembler re(outlet, max_payload, warn);
//   auto done = re.add(conn, "10.0.0.2", header, data_frames, now);  // a record completed?
//   re.expire(now, stall);     // drops records whose sender went quiet (it died mid-record)
//   re.clear();                // at the end of a run: drops every record still partial
//
// The reassembler keys records by the connection they came on (ZeroMQ's source descriptor)
// and the record id, so that chunks of many senders interleave freely and a chunk from
// another connection never joins a record. Every record is checked as its bytes arrive
// (preamble, --max-size, length, CRC-64) and written to its RecordOut; commit() is called
// only after the last chunk arrived and the checksum matched, abort() otherwise. A chunk out
// of order, duplicated, inconsistent with its record or from a record never started is
// reported through `warn` and dropped, and with it the record it claims to belong to. Errors
// of the outlet itself (a full disk: EnvError; stdout cut short: IncompleteError) propagate.
#pragma once

#include "record/format.hpp"
#include "record/io.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace n3::net {

// Chunk messages carry at most this many bytes of the record (the last one fewer). ZeroMQ
// queues hwm messages per peer, so a receiver holds about hwm x kChunkSize per sender.
constexpr size_t kChunkSize = size_t(1) << 20;
// Records larger than this travel chunked (below it, one message costs the receiver no more
// memory than a few chunks, and a pyzmq peer reads it as one message).
constexpr uint64_t kChunkAbove = uint64_t(4) << 20;
constexpr size_t kChunkHeaderSize = 32;
constexpr uint8_t kChunkMagic[4] = {0x89, 'N', '3', 'C'};
constexpr uint8_t kChunkVersion = 1;

struct ChunkHeader {
    uint64_t id = 0;
    uint64_t offset = 0;
    uint64_t total = 0;
    bool last = false;
};

void encode_chunk_header(const ChunkHeader& h, uint8_t out[kChunkHeaderSize]);
// True when `frame` is a chunk header (its size and magic); decode it with decode_chunk_header.
bool is_chunk_header(ByteView frame);
// Throws DataError (prefixed with `where`) for an unknown version or flags, or an offset
// past the total.
ChunkHeader decode_chunk_header(ByteView frame, const std::string& where);

// One record being written where it belongs (a spool file, stdout). The destructor without
// commit() discards what was written where that is possible (a temporary file).
class RecordOut {
public:
    virtual ~RecordOut() = default;
    virtual void write(ByteView bytes) = 0;
    // The record is whole and checked; returns where it went ("" for stdout).
    virtual std::string commit() = 0;
    // The record will not complete (`why` says why). May throw when the output cannot take
    // back what it already received (stdout).
    virtual void abort(const std::string& why) { (void)why; }
};

// Where received records go: begin() is called once the preamble of a record is known.
class RecordOutlet {
public:
    virtual ~RecordOutlet() = default;
    virtual std::unique_ptr<RecordOut> begin(const Preamble& p, const std::string& peer) = 0;
};

using Clock = std::chrono::steady_clock;

struct Reassembled {
    Preamble preamble;
    std::string peer;  // as given to add()
    std::string where; // what RecordOut::commit() returned
};

class ChunkReassembler {
public:
    // At most this many records in progress per connection: a sender sends one record after
    // the other, a second one only when the first broke off.
    static constexpr size_t kPerConnection = 4;

    ChunkReassembler(RecordOutlet& outlet, uint64_t max_payload,
                     std::function<void(const std::string&)> warn);
    ~ChunkReassembler();
    ChunkReassembler(const ChunkReassembler&) = delete;
    ChunkReassembler& operator=(const ChunkReassembler&) = delete;

    // Takes one chunk arriving on connection `conn` from `peer` (used in messages). Returns
    // the record when this chunk completed it.
    std::optional<Reassembled> add(int conn, const std::string& peer, const ChunkHeader& h,
                                   std::span<const ByteView> data, Clock::time_point now);
    // Drops every record that got no chunk for `stall`; returns how many.
    size_t expire(Clock::time_point now, Clock::duration stall);
    // Drops every record in progress; returns how many.
    size_t clear();

    size_t partial() const { return partials_.size(); }
    uint64_t dropped() const { return dropped_; } // records dropped
    uint64_t refused() const { return refused_; } // chunks refused
    // Bytes of records in progress (what a receiver has written but not committed).
    uint64_t pending_bytes() const;

private:
    struct Partial;
    using Key = std::pair<int, uint64_t>;
    void drop(std::map<Key, std::unique_ptr<Partial>>::iterator it, const std::string& why);
    void refuse(const std::string& why);
    RecordOutlet& outlet_;
    uint64_t max_payload_;
    std::function<void(const std::string&)> warn_;
    std::map<Key, std::unique_ptr<Partial>> partials_;
    // The record each connection's chunks are ignored for, after its first chunk was refused
    // (one warning per record, not one per chunk).
    std::map<int, uint64_t> ignored_;
    uint64_t dropped_ = 0, refused_ = 0, started_ = 0;
};

} // namespace n3::net
