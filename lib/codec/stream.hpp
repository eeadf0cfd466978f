// n3/codec/stream.hpp — n3-encode's two directions over whole record streams.
//
// StreamEncoder packs (PackOptions) and/or shards (ShardSpec) every record it reads, writing
// packed records or shard records to the output, or one file per shard into a folder.
// StreamDecoder is `n3-encode -d`: it reads any mix of plain records, packed records and
// shards (any order, duplicates, interleaved groups), rebuilds each group as soon as K valid
// shards are in, unpacks packed records (also those that came out of a group), and passes
// every other record through unchanged.
//
//   StreamDecoder d(out);
//   for (auto& path : inputs) { Input in(path); d.read(in); }
//   d.finish();
//   for (auto& e : d.errors()) print e;      // exit 1 if any
//
// The decoder never stops at a bad record whose length it can trust: a corrupted shard counts
// as missing (warnings()), a corrupted plain or packed record is skipped and reported
// (errors()), and other records and groups are still decoded. A damaged record header or a
// truncated stream ends that input (errors()). Nothing is written for a record that failed.
// Output failures (EnvError) propagate. StreamEncoder throws DataError for a record it cannot
// encode and UsageError for options that do not fit.
#pragma once

#include "codec/packed.hpp"
#include "codec/shard.hpp"
#include "record/format.hpp"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace n3::codec {

struct EncodeOptions {
    bool pack = false;
    PackOptions packing;
    std::optional<ShardSpec> shards;
    std::string residual;  // error-feedback state file; empty: none
    std::string shard_dir; // one file per shard; empty: shard records go to the output
};

struct EncodeStats {
    uint64_t records = 0, bytes_in = 0, bytes_out = 0, shards = 0;
    double pack_seconds = 0, shard_seconds = 0;
};

class StreamEncoder {
public:
    StreamEncoder(EncodeOptions o, Sink& out);
    ~StreamEncoder();
    void read(Input& in);
    // Saves the residual (atomically). Call once after the last input.
    void finish();
    const EncodeStats& stats() const { return stats_; }
    // Files written by --shard-dir, in order.
    const std::vector<std::string>& shard_files() const { return files_; }

private:
    unsigned threads() const;
    void encode(const Record& rec, const std::string& where,
                std::optional<uint64_t> unverified_crc);
    EncodeOptions o_;
    Sink& out_;
    std::optional<Residual> residual_;
    EncodeStats stats_;
    std::vector<std::string> files_;
};

struct DecodeStats {
    uint64_t records = 0, written = 0, unpacked = 0, shards = 0, bad_shards = 0, groups = 0;
};

class StreamDecoder {
public:
    explicit StreamDecoder(Sink& out);
    void read(Input& in);
    void finish();
    const std::vector<std::string>& errors() const { return errors_; }
    const std::vector<std::string>& warnings() const { return warnings_; }
    const DecodeStats& stats() const { return stats_; }

private:
    void handle(const Record& rec, const std::string& where, int depth);
    void add_shard(const ShardHeader& h, const Record& rec, const std::string& where, int depth);
    void corrupted(RecordType type, const std::string& message);
    Sink& out_;
    ShardAssembler shards_;
    std::vector<std::string> errors_, warnings_;
    DecodeStats stats_;
};

} // namespace n3::codec
