// n3/codec/shard.hpp — Reed-Solomon shards: any K of a record's K+M shards rebuild it.
//
// write_shards() cuts a whole encoded record (preamble, payload and trailer, so the rebuilt
// record verifies itself) into K data shards of S = ceil(L / K) bytes, the last one padded
// with zeros, and computes M parity shards with a Cauchy matrix over GF(2^8) (Intel ISA-L).
// Each shard is a self-contained shard record (type 4; byte layout in man/n3-record.5, SHARD
// RECORDS) naming its group (16 random bytes, never derived from content or keys), its index,
// K, M, the record's length, and the CRC-64 of its own data, so it can travel alone through
// any relay.
//
//   ShardAssembler a;
//   for each shard record: if (auto rec = a.add(parse_shard(payload, where), payload, where))
//       use *rec;                      // the group's record, checked against its own CRC
//   for (auto& msg : a.incomplete()) report msg;
//
// n3-encode -d uses add_spilled(), which keeps each incomplete group in a temporary file
// instead of memory.
//
// parse_shard throws DataError for any malformed field or a data CRC mismatch; callers count
// such a shard as missing. add() throws DataError when a rebuilt record fails its checksum
// (shards of different records under one group id). write_shards throws what its sink throws.
#pragma once

#include "record/format.hpp"
#include "record/io.hpp"
#include "record/spill.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace n3::codec {

constexpr size_t kShardHeaderSize = 56;
constexpr unsigned kMaxShards = 255; // K + M, the limit of a Cauchy matrix over GF(2^8)

struct ShardSpec {
    unsigned k = 0, m = 0;
};
// "K+M" with K >= 1, M >= 0, K + M <= 255; throws UsageError.
ShardSpec parse_shard_spec(std::string_view text);

using GroupId = std::array<uint8_t, 16>;
std::string group_hex(const GroupId& g);

struct ShardHeader {
    GroupId group{};
    unsigned index = 0, k = 0, m = 0;
    uint64_t record_len = 0, shard_len = 0, data_crc = 0;
};

ShardHeader parse_shard(ByteView payload, const std::string& where);
// The same for a shard payload read through a source (its data checked in 1 MiB pieces).
ShardHeader parse_shard(const ByteSource& payload, const std::string& where);
Bytes encode_shard_header(const ShardHeader& h);

// Where write_shards puts each shard record.
class ShardSink {
public:
    virtual ~ShardSink() = default;
    virtual Sink& open(const ShardHeader& h) = 0;
    virtual void close(const ShardHeader& h) = 0;
};

// Writes the K + M shard records of one record, data shards first. Returns the group id.
// record_crc: the record's stored checksum when the caller has it (a mapped file) and has not
// verified it; it is then checked in the same pass (DataError before any shard is written).
// threads: records of 16 MiB and more are coded in two halves on two threads when > 1.
GroupId write_shards(RecordType type, ByteView payload, ShardSpec spec, ShardSink& sink,
                     std::optional<uint64_t> record_crc = std::nullopt, unsigned threads = 1);

// The same for a record stored whole at `base` in a file (preamble, payload, trailer): the
// shards' data, their CRCs and the parity are formed stripe by stripe through pread, the
// parity kept in a temporary file, and each shard is then copied out; memory stays at K + M
// stripes (at most 32 MiB), whatever the record's size. verify: the record's stored checksum
// is checked in the first pass (DataError before any shard is written). `name` for messages.
GroupId write_shards_file(int fd, uint64_t base, const Preamble& pre, ShardSpec spec,
                          ShardSink& sink, bool verify, const std::string& name);

class ShardAssembler {
public:
    ShardAssembler();
    ~ShardAssembler();
    ShardAssembler(const ShardAssembler&) = delete;
    ShardAssembler& operator=(const ShardAssembler&) = delete;

    // Adds a checked shard (payload is the whole shard payload). Returns the group's record
    // when this shard is its K-th distinct one; nullopt otherwise (also for a duplicate or a
    // shard of a group already rebuilt).
    std::optional<Record> add(const ShardHeader& h, ByteView payload, const std::string& where);

    // The same without holding the group: each shard's data goes to the group's temporary
    // file, the missing data shards are rebuilt there stripe by stripe (K + M stripes in
    // memory), and the record is returned in that file. Do not mix with add() on one group.
    struct Rebuilt {
        RecordType type = RecordType::model;
        uint64_t payload_len = 0;
        std::unique_ptr<TempFile> file; // the record from byte 0 (payload at kPreambleSize)
    };
    std::optional<Rebuilt> add_spilled(const ShardHeader& h, const ByteSource& payload,
                                       const std::string& where);
    // A message for every group that did not get K valid shards.
    std::vector<std::string> incomplete() const;
    uint64_t groups_rebuilt() const { return rebuilt_; }

private:
    struct Group;
    using Key = std::tuple<GroupId, unsigned, unsigned, uint64_t>;
    std::map<Key, std::unique_ptr<Group>> open_;
    std::set<Key> done_;
    std::map<GroupId, std::set<Key>> claims_;
    uint64_t rebuilt_ = 0;
};

} // namespace n3::codec
