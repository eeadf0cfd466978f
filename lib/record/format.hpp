// n3/record/format.hpp — record framing, format version 1 (byte layout in man/n3-record.5).
//
// A record is a 32-byte preamble, a payload, and an 8-byte trailer:
//   0  magic   89 4E 33 52 0D 0A 1A 0A  ("\x89N3R\r\n\x1a\n": non-ASCII, catches text-mode damage)
//   8  version u8 (1)        9  type u8          10 flags u16 (0)     12 reserved u32 (0)
//   16 payload length u64 LE 24 preamble CRC-32 (zlib) of bytes 0..23, u32 LE   28 reserved u32 (0)
//   32 payload               32+len  CRC-64/XZ of bytes 0..32+len, u64 LE
// A stream is records back to back, so `cat a b | tool` works and no other framing is needed.
//
// Reading: RecordReader over an Input memory-maps regular files (records are views into the
// mapping; with map = false a regular file is read like a pipe, so the pages of a large record
// never count against the process, and skip_rest() moves past a record the caller checks itself
// through pread) and streams pipes (a piped payload's memory grows with the bytes that arrive,
// never to the length a preamble merely declares). next() gives whole records;
// begin()/read_payload()/end() give a record's payload in chunks so a tool never has to hold a
// huge record (end() verifies the checksum: do not release output derived from the payload
// before it returns).
// Writing: write_record() for a payload in memory, RecordWriter for a payload in pieces.
// Any truncation, corruption, bad magic, unknown version or type throws DataError naming the
// input, the record's index and byte offset.
#pragma once

#include "record/io.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace n3 {

enum class RecordType : uint8_t {
    model = 1,  // safetensors: a whole model
    update = 2, // safetensors: a model delta trained from a base model
    packed = 3, // n3-encode's compressed form of a model or update
    shard = 4,  // one Reed-Solomon piece of a record
    sealed = 5, // n3-seal's signcrypted envelope around a record
    masked = 6, // secure-aggregation input (safetensors, U32 tensors)
};

constexpr uint8_t kFormatVersion = 1;
constexpr size_t kPreambleSize = 32;
constexpr size_t kTrailerSize = 8;
constexpr uint8_t kMagic[8] = {0x89, 'N', '3', 'R', '\r', '\n', 0x1a, '\n'};
// The largest payload a reader accepts unless told otherwise (1 TiB): a guard against a
// corrupted or hostile length, not a design limit.
constexpr uint64_t kDefaultMaxPayload = uint64_t(1) << 40;

std::string_view type_name(RecordType t);
std::optional<RecordType> parse_type(std::string_view name);
bool is_tensor_type(RecordType t); // model, update, masked: the payload is safetensors

struct Preamble {
    uint8_t version = kFormatVersion;
    RecordType type = RecordType::model;
    uint64_t payload_len = 0;
    uint64_t record_size() const { return kPreambleSize + payload_len + kTrailerSize; }
};

void encode_preamble(const Preamble& p, uint8_t out[kPreambleSize]);
// Checks magic, version, type, flags and the preamble CRC. `where` prefixes messages.
Preamble decode_preamble(const uint8_t in[kPreambleSize], const std::string& where,
                         uint64_t max_payload = kDefaultMaxPayload);

// CRC-64/XZ (ECMA-182, reflected; ISA-L crc64_ecma_refl). Chain by passing the previous value.
uint64_t crc64(uint64_t crc, ByteView bytes);
uint32_t crc32(uint32_t crc, ByteView bytes); // zlib's CRC-32
// crc64(0, A || B) from crc64(0, A), crc64(0, B) and the length of B (zlib's crc32_combine
// method), without reading the bytes again: lets several threads check one record.
uint64_t crc64_combine(uint64_t crc_a, uint64_t crc_b, uint64_t len_b);

// A record in memory: its payload is owned or a view into a mapping kept alive by `owner`.
class Record {
public:
    Record() = default;
    Record(RecordType type, Bytes payload);
    Record(RecordType type, ByteView payload, std::shared_ptr<const void> owner);

    RecordType type() const { return type_; }
    uint8_t version() const { return version_; }
    ByteView payload() const { return view_; }
    uint64_t encoded_size() const { return kPreambleSize + view_.size() + kTrailerSize; }
    // Position in the input it was read from (0-based index, byte offset), for messages.
    uint64_t index = 0, offset = 0;

private:
    RecordType type_ = RecordType::model;
    uint8_t version_ = kFormatVersion;
    ByteView view_;
    std::shared_ptr<const void> owner_;
};

void write_record(Sink& out, RecordType type, ByteView payload);
inline void write_record(Sink& out, const Record& r) {
    write_record(out, r.type(), r.payload());
}
Bytes encode_record(RecordType type, ByteView payload);
// Decodes the single record that fills `bytes` exactly (tests, parsers of nested records).
Record decode_record(ByteView bytes, const std::string& where = "record");

class RecordReader {
public:
    explicit RecordReader(Input& in, uint64_t max_payload = kDefaultMaxPayload, bool map = true);
    // The next whole record, or nullopt at a clean end of input.
    std::optional<Record> next();

    // Chunked reading: begin() returns the next preamble (nullopt at clean end of input),
    // read_payload() fills up to out.size() bytes and returns how many (0 when the payload is
    // done), end() consumes the rest of the payload and the trailer and verifies the CRC.
    std::optional<Preamble> begin();
    size_t read_payload(std::span<uint8_t> out);
    void end();
    // Mapped input only (nullopt for a pipe): the rest of the current payload in place, not
    // yet checked. The caller computes the CRC-64 of exactly those bytes, on as many threads
    // as it likes (crc64(0, ...) per piece, joined with crc64_combine), and passes it to
    // end(crc), which verifies the record's checksum as end() does.
    std::optional<ByteView> take_payload();
    void end(uint64_t taken_crc);
    // Copies out.size() bytes of a taken payload, from `p` on, through the file (pread), not
    // the mapping: the copy is private, so bytes checked and then used stay the same even if
    // the file changes, and the mapping's pages are never faulted in. Safe to call from
    // several threads at once. False if the file no longer holds those bytes (truncated) or
    // cannot be read.
    bool copy_taken(const uint8_t* p, std::span<uint8_t> out) const;
    // After begin(): the rest of the payload as a record, in place for a mapped input, else read
    // into memory that grows as bytes arrive (a truncated record costs the bytes that came,
    // not the length it declares). end() still has to verify the checksum.
    Record read_rest();

    // Unmapped regular file only, after begin(): moves past the rest of the record (payload and
    // trailer) without reading or checking it, and counts it as read.
    void skip_rest();
    // Unmapped regular file: where the current record starts in the file (for pread).
    uint64_t record_start_in_file() const { return file_base_ + rec_start_; }

    uint64_t records_read() const { return index_; }
    uint64_t offset() const { return offset_; }
    const std::string& name() const { return in_.name(); }
    // "<input>: record N at byte B" for messages about the current record.
    std::string where() const;

private:
    size_t fill(std::span<uint8_t> out);
    Input& in_;
    uint64_t max_payload_;
    std::shared_ptr<Mapping> map_;
    uint64_t offset_ = 0;    // byte offset of the next unread byte
    uint64_t file_base_ = 0; // unmapped regular file: the file offset reading started at
    uint64_t index_ = 0;     // records completed
    uint64_t rec_start_ = 0;
    bool in_record_ = false;
    Preamble cur_{};
    uint64_t remaining_ = 0;
    uint64_t crc_ = 0;
    uint64_t taken_ = 0; // bytes handed out by take_payload(), not yet in crc_
};

// Writes one record whose payload arrives in pieces; the total length is declared up front.
class RecordWriter {
public:
    RecordWriter(Sink& out, RecordType type, uint64_t payload_len);
    void write(ByteView bytes);
    // The same for bytes whose CRC-64 (crc64(0, bytes)) the caller already computed.
    void write(ByteView bytes, uint64_t bytes_crc);
    void end(); // throws if fewer or more bytes were written than declared

private:
    Sink& out_;
    uint64_t remaining_;
    uint64_t crc_ = 0;
    bool ended_ = false;
};

} // namespace n3
