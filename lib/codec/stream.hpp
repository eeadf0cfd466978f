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
// Memory (n3-encode(1), MEMORY): records are read, never mapped, and never held whole. A
// record to pack is packed as its bytes arrive into a temporary file, and written out (or
// sharded) only once its trailer checksum matched; a record to shard is sharded from the input
// file through pread, or from a temporary copy when it comes through a pipe. -d checks each
// record's checksum before decoding it (from the file, or from a temporary copy of a piped
// one) and unpacks into a temporary file (unless the output is itself one that an error
// discards), so a record that fails writes nothing; each
// incomplete shard group waits in a temporary file (ShardAssembler::add_spilled).
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
#include "record/spill.hpp"

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
    void encode(RecordReader& reader, Input& in, const Preamble& pre, const std::string& where);
    void shard(int fd, uint64_t base, const Preamble& pre, bool verify, const std::string& name,
               const std::string& where, Sink& out);
    TempFile& spool();
    EncodeOptions o_;
    std::unique_ptr<TempFile> spool_;
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
    // hold: unpack each packed record into a temporary file first, so that one that fails
    // halfway writes nothing; false for an output that is discarded whole after any error
    // (an Output file that is not committed), which then takes the record as it is decoded.
    explicit StreamDecoder(Sink& out, bool hold = true);
    void read(Input& in);
    void finish();
    const std::vector<std::string>& errors() const { return errors_; }
    const std::vector<std::string>& warnings() const { return warnings_; }
    const DecodeStats& stats() const { return stats_; }

private:
    void take_file(Input& in, uint64_t at, const Preamble& pre, const std::string& where);
    void handle(RecordType type, const ByteSource& payload, const std::string& where, int depth);
    void add_shard(const ShardHeader& h, const ByteSource& payload, const std::string& where,
                   int depth);
    void corrupted(RecordType type, const std::string& message);
    TempFile& temp(std::unique_ptr<TempFile>& t, const char* what);
    Sink& out_;
    bool hold_ = true;
    std::unique_ptr<TempFile> spool_, held_;
    ShardAssembler shards_;
    std::vector<std::string> errors_, warnings_;
    DecodeStats stats_;
};

} // namespace n3::codec
