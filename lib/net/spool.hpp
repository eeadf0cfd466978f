// n3/net/spool.hpp — where a receiver's records go: a spool directory (one file per record) or
// stdout (records back to back). Both are RecordOutlets (chunk.hpp): a record is written as
// its bytes arrive and becomes visible only once it is whole and checked.
//
//   Spool spool("inbox");                     // EnvError unless a writable directory
//   std::string path = spool.write(frames);   // inbox/<arrival ns>-<pid>-<seq>.n3
//   auto out = spool.begin(preamble, peer);   // the same, written piece by piece:
//   out->write(piece); ...; path = out->commit();
//
//   BatchedFdSink sink(1);
//   StdoutOutlet stdout_records(sink);        // records to stdout, in the order they completed
//   StdoutOutlet streamed(sink, true);        // large ones straight through (see below)
//
// Every spool file is written through n3::Output: a hidden temporary file in the same
// directory, fsynced, then renamed, so a reader that globs DIR/*.n3 only ever sees whole
// records, even when the receiver is killed with SIGKILL (which can leave a hidden .*.tmp.*
// file behind). A record that does not complete leaves nothing. Names sort in arrival order.
//
// Stdout. A record that arrived as one message (at most kChunkAbove bytes) was checked
// before begin() and is written at once. A chunked record:
// - stdout a regular file written at its end (> or >>, and -o's hidden temporary file): goes
//   in place as it arrives; when it breaks off, or SIGINT/SIGTERM/SIGHUP stops the receiver
//   (cut_back_on_signal), the file is truncated back to where the record began. Records
//   completed meanwhile wait, whole, in the queue file below.
// - stdout /dev/null: goes straight through.
// - a pipe, which cannot take bytes back: held until its last chunk arrived and its checksum
//   matched, in an unnamed temporary file (O_TMPFILE in $TMPDIR, else /tmp), then copied out
//   whole (sendfile: page references for a pipe).
// So a sender that dies mid-record leaves nothing on stdout, and records appear whole in the
// order they completed.
//
// With `stream` and a pipe, one chunked record at a time goes straight to stdout as it arrives (no
// temporary file); records completed meanwhile wait, whole, in one queue file copied out
// after it. When the streaming record breaks off (its sender died, a chunk was refused, its
// checksum failed), stdout holds a truncated or corrupt record that every n3 reader refuses
// (RecordReader checks length and CRC-64), so abort() throws IncompleteError and the run
// ends: nothing more is written after it. For a single trusted sender (a subscriber's
// publisher), where its death fails the run anyway.
//
// Failures (disk full, permissions, a closed stdout) throw EnvError.
#pragma once

#include "net/chunk.hpp"
#include "record/io.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace n3::net {

class Spool final : public RecordOutlet {
public:
    explicit Spool(std::string dir);
    // Writes the record whose bytes are the concatenated frames; returns the file's path.
    std::string write(std::span<const ByteView> frames);
    std::unique_ptr<RecordOut> begin(const Preamble& p, const std::string& peer) override;
    const std::string& dir() const { return dir_; }

private:
    std::string next_path();
    std::string dir_;
    uint64_t seq_ = 0;
};

class StdoutOutlet final : public RecordOutlet {
public:
    explicit StdoutOutlet(BatchedFdSink& sink, bool stream = false, std::string temp_dir = "");
    ~StdoutOutlet() override;
    std::unique_ptr<RecordOut> begin(const Preamble& p, const std::string& peer) override;
    // Bytes of whole records waiting for the streaming one to end.
    uint64_t queued() const { return queue_size_; }

private:
    class Streaming;
    class Held;
    class Direct;
    int temp_file();
    // Where a record written in place would start, or -1 when stdout cannot be cut back.
    int64_t end_of_file();
    // Truncates stdout to `at`, unless it is not `written` bytes past it (false).
    bool cut_back(int64_t at, uint64_t written);
    void streaming_ended();
    void queue(ByteView bytes);
    void copy_out(int fd, uint64_t size);
    BatchedFdSink& sink_;
    std::string temp_dir_;
    bool stream_;
    bool streaming_ = false;
    bool regular_ = false; // stdout is a regular file
    bool discard_ = false; // stdout is /dev/null
    int queue_fd_ = -1;
    uint64_t queue_size_ = 0;
};

} // namespace n3::net
