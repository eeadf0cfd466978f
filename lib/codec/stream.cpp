#include "codec/stream.hpp"

#include "codec/buffer.hpp"
#include "record/error.hpp"

#include <chrono>
#include <cstdio>
#include <sys/stat.h>
#include <thread>

namespace n3::codec {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class CountingSink final : public Sink {
public:
    explicit CountingSink(Sink& s) : s_(s) {}
    void write(ByteView b) override {
        n += b.size();
        s_.write(b);
    }
    uint64_t n = 0;

private:
    Sink& s_;
};

// All shards of a group go to the same output, in order.
class StreamShardSink final : public ShardSink {
public:
    explicit StreamShardSink(Sink& out) : out_(out) {}
    Sink& open(const ShardHeader&) override { return out_; }
    void close(const ShardHeader&) override {}

private:
    Sink& out_;
};

// One file per shard, DIR/<group>-<index>.n3; the files of a group appear together once all
// are written, or not at all.
class DirShardSink final : public ShardSink {
public:
    explicit DirShardSink(std::string dir) : dir_(std::move(dir)) {}
    Sink& open(const ShardHeader& h) override {
        char idx[16];
        std::snprintf(idx, sizeof idx, "-%03u.n3", h.index);
        std::string path = dir_ + "/" + group_hex(h.group) + idx;
        pending_.push_back(std::make_unique<Output>(path));
        paths_.push_back(path);
        return *pending_.back();
    }
    void close(const ShardHeader&) override {}
    void commit(std::vector<std::string>& files) {
        for (auto& o : pending_) o->commit();
        pending_.clear();
        files.insert(files.end(), paths_.begin(), paths_.end());
        paths_.clear();
    }

private:
    std::string dir_;
    std::vector<std::unique_ptr<Output>> pending_;
    std::vector<std::string> paths_;
};

// Walks the records of a memory-mapped file without copying or checksumming them.
struct RawRecord {
    Preamble pre;
    ByteView body; // preamble + payload: the bytes the stored checksum covers
    uint64_t stored_crc = 0;
    std::string where;
    ByteView payload() const { return body.subspan(kPreambleSize); }
    bool crc_ok() const { return crc64(0, body) == stored_crc; }
};

class MappedRecords {
public:
    explicit MappedRecords(Input& in) : name_(in.name()), map_(in.map()) {}
    const std::shared_ptr<Mapping>& mapping() const { return map_; }
    // The next record, nullopt at the end; throws DataError when the framing is broken.
    std::optional<RawRecord> next() {
        ByteView all = map_->bytes();
        if (off_ >= all.size()) return std::nullopt;
        RawRecord r;
        r.where =
            name_ + ": record " + std::to_string(index_ + 1) + " at byte " + std::to_string(off_);
        uint64_t left = all.size() - off_;
        if (left < kPreambleSize)
            throw DataError(r.where + ": truncated record header (" + std::to_string(left) +
                            " of " + std::to_string(kPreambleSize) + " bytes)");
        r.pre = decode_preamble(all.data() + off_, r.where);
        if (left < r.pre.record_size())
            throw DataError(r.where + ": truncated record (" + std::to_string(left) + " of " +
                            std::to_string(r.pre.record_size()) + " bytes)");
        r.body = all.subspan(off_, kPreambleSize + r.pre.payload_len);
        for (int i = 7; i >= 0; --i)
            r.stored_crc = (r.stored_crc << 8) | all[off_ + r.body.size() + i];
        off_ += r.pre.record_size();
        ++index_;
        return r;
    }

private:
    std::string name_;
    std::shared_ptr<Mapping> map_;
    uint64_t off_ = 0, index_ = 0;
};

} // namespace

// StreamEncoder -------------------------------------------------------------------------------

StreamEncoder::StreamEncoder(EncodeOptions o, Sink& out) : o_(std::move(o)), out_(out) {
    if (!o_.pack && !o_.shards)
        throw UsageError("nothing to do: give --quantize, --topk, --zstd or --shards",
                         "to decode, use n3-encode -d");
    if (!o_.residual.empty()) {
        if (!o_.pack || !o_.packing.lossy())
            throw UsageError("--residual keeps what a lossy stage did not send; it needs --topk "
                             "or --quantize");
        residual_ = Residual::load(o_.residual);
    }
    if (!o_.shard_dir.empty()) {
        if (!o_.shards) throw UsageError("--shard-dir needs --shards K+M");
        struct stat st {};
        if (::stat(o_.shard_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
            throw EnvError(o_.shard_dir + ": not a directory",
                           "create it first: mkdir -p " + o_.shard_dir);
    }
}

StreamEncoder::~StreamEncoder() = default;

void StreamEncoder::read(Input& in) {
    if (in.is_regular()) {
        // Records stay in the mapping; a record only sharded has its checksum verified in the
        // sharding pass itself.
        MappedRecords recs(in);
        while (auto r = recs.next()) {
            bool verify_later = !o_.pack && o_.shards;
            if (!verify_later && !r->crc_ok())
                throw DataError(r->where + ": corrupted record (checksum mismatch)");
            Record rec(r->pre.type, r->payload(), recs.mapping());
            encode(rec, r->where,
                   verify_later ? std::optional<uint64_t>(r->stored_crc) : std::nullopt);
        }
        return;
    }
    RecordReader reader(in);
    if (!o_.pack && o_.shards) {
        // Sharding a pipe: data shards leave as their bytes arrive (one shard held, not the
        // whole record).
        for (;;) {
            auto pre = reader.begin();
            if (!pre) return;
            ++stats_.records;
            stats_.bytes_in += pre->record_size();
            auto t0 = std::chrono::steady_clock::now();
            if (!o_.shard_dir.empty()) {
                DirShardSink dir(o_.shard_dir);
                write_shards_streamed(reader, *pre, *o_.shards, dir);
                dir.commit(files_);
            } else {
                CountingSink counted(out_);
                StreamShardSink sink(counted);
                write_shards_streamed(reader, *pre, *o_.shards, sink);
                stats_.bytes_out += counted.n;
            }
            stats_.shard_seconds += seconds_since(t0);
            stats_.shards += o_.shards->k + o_.shards->m;
        }
    }
    while (auto rec = reader.next()) {
        std::string where = in.name() + ": record " + std::to_string(rec->index + 1);
        encode(*rec, where, std::nullopt);
    }
}

void StreamEncoder::encode(const Record& rec, const std::string& where,
                           std::optional<uint64_t> unverified_crc) {
    ++stats_.records;
    stats_.bytes_in += rec.encoded_size();
    if (residual_ && stats_.records > 1)
        throw DataError(where + ": --residual holds the state of one update; this stream has "
                                "more than one record",
                        "run n3-encode once per update");
    Bytes packed;
    RecordType type = rec.type();
    ByteView payload = rec.payload();
    if (o_.pack) {
        if (type == RecordType::sealed)
            throw DataError(where + ": a sealed record cannot be packed (it is ciphertext)",
                            "pack before sealing: n3-encode ... | n3-seal ...");
        if (type == RecordType::shard || type == RecordType::packed)
            throw DataError(where + ": this " + std::string(type_name(type)) +
                                " record is encoded already",
                            "decode it first: n3-encode -d");
        auto t0 = std::chrono::steady_clock::now();
        packed = pack(type, payload, o_.packing, residual_ ? &*residual_ : nullptr, where);
        stats_.pack_seconds += seconds_since(t0);
        type = RecordType::packed;
        payload = packed;
    }
    CountingSink counted(out_);
    if (o_.shards) {
        auto t0 = std::chrono::steady_clock::now();
        if (!o_.shard_dir.empty()) {
            DirShardSink dir(o_.shard_dir);
            try {
                write_shards(type, payload, *o_.shards, dir, unverified_crc, threads());
            } catch (const DataError& e) {
                throw DataError(where + ": " + e.what());
            }
            dir.commit(files_);
        } else {
            StreamShardSink s(counted);
            try {
                write_shards(type, payload, *o_.shards, s, unverified_crc, threads());
            } catch (const DataError& e) {
                throw DataError(where + ": " + e.what());
            }
        }
        stats_.shard_seconds += seconds_since(t0);
        stats_.shards += o_.shards->k + o_.shards->m;
    } else {
        write_record(counted, type, payload);
    }
    stats_.bytes_out += counted.n;
}

// Reed-Solomon threads: one unless asked for more; a second thread measured no faster on this
// 2-core machine (bench/encode.sh: 3.47 against 3.77 GB/s), the pass being memory-bound.
unsigned StreamEncoder::threads() const {
    return o_.packing.threads ? o_.packing.threads : 1;
}

void StreamEncoder::finish() {
    if (residual_ && stats_.records > 0) residual_->save(o_.residual);
}

// StreamDecoder -------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(Sink& out) : out_(out) {}

void StreamDecoder::corrupted(RecordType type, const std::string& message) {
    if (type == RecordType::shard) {
        ++stats_.bad_shards;
        warnings_.push_back(message + "; shard counted as missing");
    } else {
        errors_.push_back(message + "; record skipped");
    }
}

void StreamDecoder::read(Input& in) {
    uint64_t index = 0;
    if (in.is_regular()) {
        MappedRecords recs(in);
        for (;;) {
            std::optional<RawRecord> r;
            try {
                r = recs.next();
            } catch (const DataError& e) {
                errors_.push_back(std::string(e.what()) + "; the rest of " + in.name() +
                                  " cannot be read");
                return;
            }
            if (!r) return;
            ++stats_.records;
            if (r->pre.type == RecordType::shard) {
                // One pass: parse_shard checks the data's CRC, and the record's checksum must
                // be that CRC joined to the framing's.
                ShardHeader h;
                try {
                    h = parse_shard(r->payload(), r->where);
                } catch (const DataError& e) {
                    corrupted(RecordType::shard, e.what());
                    continue;
                }
                uint64_t head = crc64(0, r->body.first(kPreambleSize + kShardHeaderSize));
                if (crc64_combine(head, h.data_crc, h.shard_len) != r->stored_crc) {
                    corrupted(RecordType::shard,
                              r->where + ": corrupted shard record (checksum mismatch)");
                    continue;
                }
                add_shard(h, Record(r->pre.type, r->payload(), recs.mapping()), r->where, 0);
                continue;
            }
            if (!r->crc_ok()) {
                corrupted(r->pre.type, r->where + ": corrupted " +
                                           std::string(type_name(r->pre.type)) +
                                           " record (checksum mismatch)");
                continue;
            }
            handle(Record(r->pre.type, r->payload(), recs.mapping()), r->where, 0);
        }
    }
    RecordReader reader(in);
    for (;;) {
        std::string where = in.name() + ": record " + std::to_string(index + 1) + " at byte " +
                            std::to_string(reader.offset());
        std::optional<Preamble> pre;
        std::optional<Record> rec;
        try {
            pre = reader.begin();
            if (!pre) return;
            rec =
                reader.read_rest(); // memory for the bytes that arrive, not for the declared length
        } catch (const DataError& e) {
            errors_.push_back(std::string(e.what()) + "; the rest of " + in.name() +
                              " cannot be read");
            return;
        }
        ++index;
        ++stats_.records;
        try {
            reader.end();
        } catch (const DataError& e) {
            corrupted(pre->type, e.what());
            continue;
        }
        handle(*rec, where, 0);
    }
}

void StreamDecoder::handle(const Record& rec, const std::string& where, int depth) {
    if (depth > 4) {
        errors_.push_back(where + ": records nested more than 4 deep; record skipped");
        return;
    }
    switch (rec.type()) {
    case RecordType::shard: {
        ShardHeader h;
        try {
            h = parse_shard(rec.payload(), where);
        } catch (const DataError& e) {
            ++stats_.shards;
            corrupted(RecordType::shard, e.what());
            return;
        }
        add_shard(h, rec, where, depth);
        return;
    }
    case RecordType::packed:
        try {
            CountingSink counted(out_);
            unpack(rec.payload(), counted, where);
            ++stats_.unpacked;
            ++stats_.written;
        } catch (const DataError& e) {
            errors_.push_back(e.what());
        }
        return;
    default: write_record(out_, rec); ++stats_.written;
    }
}

void StreamDecoder::add_shard(const ShardHeader& h, const Record& rec, const std::string& where,
                              int depth) {
    ++stats_.shards;
    std::optional<Record> whole;
    try {
        whole = shards_.add(h, rec.payload(), where);
    } catch (const DataError& e) {
        errors_.push_back(e.what());
        return;
    }
    if (whole) {
        ++stats_.groups;
        handle(*whole, "group " + group_hex(h.group), depth + 1);
    }
}

void StreamDecoder::finish() {
    for (auto& msg : shards_.incomplete()) errors_.push_back(msg);
}

} // namespace n3::codec
