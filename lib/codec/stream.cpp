#include "codec/stream.hpp"

#include "codec/buffer.hpp"
#include "record/bytes.hpp"
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

// A packed payload going into a temporary file after `base` bytes of room for the preamble.
class TempOut final : public PackedOut {
public:
    TempOut(TempFile& f, uint64_t base) : f_(f), base_(base) {}
    void append(ByteView b) override { f_.write(b); }
    void patch(uint64_t off, ByteView b) override { f_.write_at(base_ + off, b); }
    uint64_t size() const override { return f_.size() - base_; }

private:
    TempFile& f_;
    uint64_t base_;
};

class WriterSink final : public Sink {
public:
    explicit WriterSink(RecordWriter& w) : w_(w) {}
    void write(ByteView b) override { w_.write(b); }

private:
    RecordWriter& w_;
};

// The CRC-64 of bytes [0, len) of a source, read in 1 MiB pieces.
uint64_t crc_of(const ByteSource& src, uint64_t len) {
    uint64_t crc = 0;
    Bytes piece(static_cast<size_t>(std::min<uint64_t>(len, uint64_t(1) << 20)));
    for (uint64_t off = 0; off < len; off += piece.size()) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(piece.size(), len - off));
        src.read_at(off, std::span<uint8_t>(piece.data(), n));
        crc = crc64(crc, ByteView(piece.data(), n));
    }
    return crc;
}

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

TempFile& StreamEncoder::spool() {
    if (!spool_) spool_ = std::make_unique<TempFile>("n3-encode");
    return *spool_;
}

void StreamEncoder::read(Input& in) {
    // Read, not mapped: the pages of a mapped record would count against the process.
    RecordReader reader(in, kDefaultMaxPayload, false);
    for (;;) {
        auto pre = reader.begin();
        if (!pre) return;
        std::string where =
            in.is_regular() ? reader.where()
                            : in.name() + ": record " + std::to_string(reader.records_read() + 1);
        encode(reader, in, *pre, where);
    }
}

void StreamEncoder::encode(RecordReader& reader, Input& in, const Preamble& pre,
                           const std::string& where) {
    ++stats_.records;
    stats_.bytes_in += pre.record_size();
    if (residual_ && stats_.records > 1)
        throw DataError(where + ": --residual holds the state of one update; this stream has "
                                "more than one record",
                        "run n3-encode once per update");
    CountingSink counted(out_);
    TempFile& tmp = spool();
    tmp.clear();
    if (o_.pack) {
        RecordType type = pre.type;
        auto t0 = std::chrono::steady_clock::now();
        try {
            if (type == RecordType::sealed)
                throw DataError(where + ": a sealed record cannot be packed (it is ciphertext)",
                                "pack before sealing: n3-encode ... | n3-seal ...");
            if (type == RecordType::shard || type == RecordType::packed)
                throw DataError(where + ": this " + std::string(type_name(type)) +
                                    " record is encoded already",
                                "decode it first: n3-encode -d");
            uint8_t room[kPreambleSize] = {};
            tmp.write(ByteView(room, kPreambleSize));
            TempOut packed(tmp, kPreambleSize);
            ReaderPayload payload(reader);
            pack_stream(type, pre.payload_len, payload, o_.packing,
                        residual_ ? &*residual_ : nullptr, where, packed);
            reader.end(); // nothing leaves before the input's checksum matched
        } catch (const DataError&) {
            // A truncated or corrupted input is reported as such, whatever it made the packer
            // trip over first.
            reader.end();
            throw;
        }
        stats_.pack_seconds += seconds_since(t0);
        uint64_t len = tmp.size() - kPreambleSize;
        Preamble packed{kFormatVersion, RecordType::packed, len};
        if (o_.shards) {
            // The packed record, framed in the temporary file, is sharded from there.
            uint8_t head[kPreambleSize];
            encode_preamble(packed, head);
            tmp.write_at(0, ByteView(head, kPreambleSize));
            FdSource rec(tmp.fd(), 0, kPreambleSize + len, "the packed record");
            uint8_t trailer[kTrailerSize];
            put_le(trailer, crc_of(rec, kPreambleSize + len), 8);
            tmp.write(ByteView(trailer, kTrailerSize));
            shard(tmp.fd(), 0, packed, false, "the packed record", where, counted);
        } else {
            RecordWriter w(counted, RecordType::packed, len);
            WriterSink ws(w);
            tmp.copy_to(ws, kPreambleSize, len);
            w.end();
        }
    } else if (in.is_regular()) {
        // Sharded from the file itself, its checksum checked in the same pass.
        uint64_t at = reader.record_start_in_file();
        shard(in.fd(), at, pre, true, in.name(), where, counted);
        reader.skip_rest();
    } else {
        // A piped record is kept in the temporary file until its checksum matched.
        uint8_t head[kPreambleSize];
        encode_preamble(pre, head);
        tmp.write(ByteView(head, kPreambleSize));
        uint64_t crc = crc64(0, ByteView(head, kPreambleSize));
        Bytes piece(static_cast<size_t>(std::min<uint64_t>(pre.payload_len, uint64_t(1) << 20)));
        while (size_t n = reader.read_payload(piece)) {
            ByteView got(piece.data(), n);
            crc = crc64(crc, got);
            tmp.write(got);
        }
        reader.end();
        uint8_t trailer[kTrailerSize];
        put_le(trailer, crc, 8);
        tmp.write(ByteView(trailer, kTrailerSize));
        shard(tmp.fd(), 0, pre, false, "a temporary copy of " + in.name(), where, counted);
    }
    stats_.bytes_out += counted.n;
}

void StreamEncoder::shard(int fd, uint64_t base, const Preamble& pre, bool verify,
                          const std::string& name, const std::string& where, Sink& out) {
    auto t0 = std::chrono::steady_clock::now();
    try {
        if (!o_.shard_dir.empty()) {
            DirShardSink dir(o_.shard_dir);
            write_shards_file(fd, base, pre, *o_.shards, dir, verify, name);
            dir.commit(files_);
        } else {
            StreamShardSink s(out);
            write_shards_file(fd, base, pre, *o_.shards, s, verify, name);
        }
    } catch (const DataError& e) {
        throw DataError(where + ": " + e.what());
    }
    stats_.shard_seconds += seconds_since(t0);
    stats_.shards += o_.shards->k + o_.shards->m;
}

void StreamEncoder::finish() {
    if (residual_ && stats_.records > 0) residual_->save(o_.residual);
}

// StreamDecoder -------------------------------------------------------------------------------

StreamDecoder::StreamDecoder(Sink& out, bool hold) : out_(out), hold_(hold) {}

void StreamDecoder::corrupted(RecordType type, const std::string& message) {
    if (type == RecordType::shard) {
        ++stats_.bad_shards;
        warnings_.push_back(message + "; shard counted as missing");
    } else {
        errors_.push_back(message + "; record skipped");
    }
}

TempFile& StreamDecoder::temp(std::unique_ptr<TempFile>& t, const char* what) {
    if (!t) t = std::make_unique<TempFile>(what);
    return *t;
}

void StreamDecoder::read(Input& in) {
    RecordReader reader(in, kDefaultMaxPayload, false);
    uint64_t index = 0;
    for (;;) {
        std::string where = in.name() + ": record " + std::to_string(index + 1) + " at byte " +
                            std::to_string(reader.offset());
        std::optional<Preamble> pre;
        uint64_t at = 0;
        try {
            pre = reader.begin();
            if (!pre) return;
            if (in.is_regular()) {
                at = reader.record_start_in_file();
                reader.skip_rest();
            }
        } catch (const DataError& e) {
            errors_.push_back(std::string(e.what()) + "; the rest of " + in.name() +
                              " cannot be read");
            return;
        }
        ++index;
        ++stats_.records;
        if (in.is_regular()) {
            take_file(in, at, *pre, where);
            continue;
        }
        // From a pipe: kept in a temporary file until the trailer's checksum matched.
        TempFile& tmp = temp(spool_, "n3-encode -d");
        tmp.clear();
        try {
            Bytes piece(
                static_cast<size_t>(std::min<uint64_t>(pre->payload_len, uint64_t(1) << 20)));
            while (size_t n = reader.read_payload(piece)) tmp.write(ByteView(piece.data(), n));
        } catch (const DataError& e) {
            errors_.push_back(std::string(e.what()) + "; the rest of " + in.name() +
                              " cannot be read");
            return;
        }
        try {
            reader.end();
        } catch (const DataError& e) {
            corrupted(pre->type, e.what());
            continue;
        }
        handle(pre->type,
               FdSource(tmp.fd(), 0, pre->payload_len, "a temporary copy of " + in.name()), where,
               0);
    }
}

// A record of a regular file, at byte `at`: checked through pread, then handled in place.
void StreamDecoder::take_file(Input& in, uint64_t at, const Preamble& pre,
                              const std::string& where) {
    FdSource rec(in.fd(), at, pre.record_size(), in.name());
    FdSource payload(in.fd(), at + kPreambleSize, pre.payload_len, in.name());
    uint8_t t[kTrailerSize];
    rec.read_at(kPreambleSize + pre.payload_len, t);
    uint64_t stored = get_le(t, 8);
    if (pre.type == RecordType::shard) {
        // One pass: parse_shard checks the data's CRC, and the record's checksum must be that
        // CRC joined to the framing's.
        ShardHeader h;
        try {
            h = parse_shard(payload, where);
        } catch (const DataError& e) {
            corrupted(RecordType::shard, e.what());
            return;
        }
        uint8_t head[kPreambleSize + kShardHeaderSize];
        rec.read_at(0, head);
        if (crc64_combine(crc64(0, ByteView(head, sizeof head)), h.data_crc, h.shard_len) !=
            stored) {
            corrupted(RecordType::shard, where + ": corrupted shard record (checksum mismatch)");
            return;
        }
        add_shard(h, payload, where, 0);
        return;
    }
    if (crc_of(rec, kPreambleSize + pre.payload_len) != stored) {
        corrupted(pre.type, where + ": corrupted " + std::string(type_name(pre.type)) +
                                " record (checksum mismatch)");
        return;
    }
    handle(pre.type, payload, where, 0);
}

void StreamDecoder::handle(RecordType type, const ByteSource& payload, const std::string& where,
                           int depth) {
    if (depth > 4) {
        errors_.push_back(where + ": records nested more than 4 deep; record skipped");
        return;
    }
    switch (type) {
    case RecordType::shard: {
        ShardHeader h;
        try {
            h = parse_shard(payload, where);
        } catch (const DataError& e) {
            ++stats_.shards;
            corrupted(RecordType::shard, e.what());
            return;
        }
        add_shard(h, payload, where, depth);
        return;
    }
    case RecordType::packed: {
        // Unpacked into a temporary file: a record that fails halfway writes nothing.
        if (hold_) temp(held_, "n3-encode -d").clear();
        try {
            unpack_stream(payload, hold_ ? static_cast<Sink&>(*held_) : out_, where);
        } catch (const DataError& e) {
            errors_.push_back(e.what());
            return;
        }
        if (hold_) held_->copy_to(out_, 0, held_->size());
        ++stats_.unpacked;
        ++stats_.written;
        return;
    }
    default: {
        RecordWriter w(out_, type, payload.size());
        WriterSink ws(w);
        copy_source(payload, 0, payload.size(), ws);
        w.end();
        ++stats_.written;
    }
    }
}

void StreamDecoder::add_shard(const ShardHeader& h, const ByteSource& payload,
                              const std::string& where, int depth) {
    ++stats_.shards;
    std::optional<ShardAssembler::Rebuilt> whole;
    try {
        whole = shards_.add_spilled(h, payload, where);
    } catch (const DataError& e) {
        errors_.push_back(e.what());
        return;
    }
    if (whole) {
        ++stats_.groups;
        std::string name = "group " + group_hex(h.group);
        handle(whole->type, FdSource(whole->file->fd(), kPreambleSize, whole->payload_len, name),
               name, depth + 1);
    }
}

void StreamDecoder::finish() {
    for (auto& msg : shards_.incomplete()) errors_.push_back(msg);
}

} // namespace n3::codec
