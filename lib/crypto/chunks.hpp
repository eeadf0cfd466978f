// n3/crypto/chunks.hpp — internal to seal.cpp: the envelope's chunk stream, sealed and opened
// on two threads.
//
// The plaintext stream (inner header, content, signature 2, padding; envelope::Layout) is cut
// into 64 KiB chunks, each sealed with the envelope's suite (suite.hpp) under a nonce of its
// index and a last-chunk flag (age's STREAM). Both sides work in batches of 64 chunks, and
// their threads take chunks in groups of 16, whose leaves suite 2 hashes together
// (suite::leaves16). ChunkSealer keeps a ring of kRingBatches batches in flight (ChunkRing):
// the calling thread and a helper claim groups in stream order, each chunk's plaintext copied
// into its place in the batch's output buffer (through the file for a mapped input: a private
// copy, so the bytes hashed and checksummed are the bytes encrypted), hashed, checksummed and
// encrypted there in place; the calling thread writes each batch out once all its chunks are
// done, and while it waits for one it seals the groups after it. ChunkOpener alternates two
// batches (ChunkPool): while both threads decrypt one (and hash its content leaves), the
// calling thread reads the next or writes the previous; a mapped input is read in place, each
// chunk copied once into a per-thread buffer so that the bytes checked are the bytes used.
//
// A sealer or opener handles one record and refers to the key, input and writer it was given,
// which must outlive it. Sealing throws DataError when a mapped input changes size while it is
// read; opening throws DataError for a chunk that does not authenticate, non-zero padding and
// trailing bytes; the caller checks the signatures between the steps.
#pragma once

#include "crypto/transcript.hpp"
#include "record/error.hpp"
#include "record/pages.hpp"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

namespace n3::crypto::chunks {

using envelope::kCtChunk;
using envelope::Layout;

constexpr size_t kBatchChunks = 64; // 4 MiB of plaintext per batch

// Runs f(i) for i in [0, n) on the calling thread and one persistent helper thread, which take
// chunk indices from a shared counter. If the helper is not scheduled in time (a busy machine),
// the caller does all the work and does not wait for it: no fork-join stalls. f must not throw.
class ChunkPool {
public:
    ChunkPool() = default;
    // Stops handing out indices and waits for the helper's current chunk: called before
    // anything the job refers to is destroyed, including when an error unwinds.
    void cancel();
    ~ChunkPool();
    ChunkPool(const ChunkPool&) = delete;
    ChunkPool& operator=(const ChunkPool&) = delete;

    // Starts f(i), i in [0, n), on the helper; the caller is free until finish().
    void post(size_t n, std::function<void(size_t)> f);
    // The caller takes the indices left, then waits for the helper's current one (if it
    // started at all).
    void finish();

private:
    void loop();

    std::mutex m_;
    std::condition_variable cv_, done_cv_;
    std::function<void(size_t)> job_;
    size_t n_ = 0;
    std::atomic<size_t> next_{0};
    uint64_t posted_ = 0, taken_ = 0, finished_ = 0, closed_ = 0;
    bool stop_ = false;
    std::thread worker_;
};

// Runs job(item) for the items (the sealer's groups of chunks) the caller published, on the
// calling thread and one persistent helper, which claim item numbers one at a time in order (a
// shared counter). The caller publishes items a batch at a time and waits for a batch with
// wait(): while it waits it runs the items published after that batch, so a helper descheduled
// in the middle of an item (a busy machine) holds up that batch only, not the thread that
// writes, and a machine with one free core degrades to one thread. The job counts its chunks
// done (its batch's counter); it must not throw.
class ChunkRing {
public:
    explicit ChunkRing(std::function<void(uint64_t)> job) : job_(std::move(job)) {}
    // Stops the helper after its current item: called before anything the job refers to is
    // destroyed, including when an error unwinds.
    ~ChunkRing();
    ChunkRing(const ChunkRing&) = delete;
    ChunkRing& operator=(const ChunkRing&) = delete;

    // Items below `end` may now be claimed (end never decreases: item numbers go on from one
    // run of the sealer to the next).
    void publish(uint64_t end);
    // Returns once `done` reaches n, running published items meanwhile.
    void wait(std::atomic<uint32_t>& done, uint32_t n);

private:
    bool run_one();
    void loop();

    std::function<void(uint64_t)> job_;
    std::atomic<uint64_t> next_{0}, ready_{0};
    std::atomic<uint32_t> wake_{0};
    std::atomic<bool> stop_{false};
    std::thread helper_;
};

// One batch of chunks: plaintext, ciphertext and per-chunk results.
struct Batch {
    // Room for `chunks` chunks (at most kBatchChunks): a small record gets small buffers.
    // Sealing needs no plaintext buffer (chunks are encrypted in place in ct); opening a
    // mapped input needs no ciphertext buffer (chunks are read in place).
    Batch(uint64_t chunks, bool with_pt, bool with_ct)
        : pt(with_pt ? static_cast<size_t>(std::min<uint64_t>(chunks, kBatchChunks)) * kChunkSize
                     : 0),
          ct(with_ct ? static_cast<size_t>(std::min<uint64_t>(chunks, kBatchChunks)) * kCtChunk
                     : 0) {}
    // Mapped and faulted in at once (one call, huge pages where the kernel gives them),
    // rather than page by page as the threads first write to it.
    struct Buffer {
        explicit Buffer(size_t size) : pages(size, Commit::up_front) { pages.populate(0, size); }
        uint8_t* data() { return pages.data(); }
        size_t size() const { return pages.size(); }
        PageBuffer pages;
    };
    Buffer pt, ct;
    std::vector<const uint8_t*> srcs =
        std::vector<const uint8_t*>(kBatchChunks); // sealing: each chunk's plaintext
    std::vector<char> in_place =
        std::vector<char>(kBatchChunks); // sealing: srcs[i] points into the mapped input
    std::atomic<uint32_t> done{0};       // sealing: chunks finished
    const uint8_t* src = nullptr; // opening: the batch's ciphertext (ct, or the input's mapping)
    std::vector<uint64_t> in_crc =
        std::vector<uint64_t>(kBatchChunks); // of ciphertext read in place
    std::vector<uint64_t> out_crc = std::vector<uint64_t>(kBatchChunks); // of content written out
    size_t fill = 0; // plaintext bytes (sealing) or ciphertext bytes (opening)
    size_t nchunks = 0;
    uint64_t base = 0; // stream index of the first chunk
    bool hash = false, final = false;
    std::vector<Hash32> leaves = std::vector<Hash32>(kBatchChunks);
    std::vector<char> has_leaf = std::vector<char>(kBatchChunks);
    std::vector<char> ok = std::vector<char>(kBatchChunks);
};

constexpr size_t kRingBatches = 4;  // sealing: batches in flight, 16 MiB of plaintext
constexpr size_t kGroupChunks = 16; // sealing: chunks a thread claims at once (their leaves
                                    // hashed together: suite::leaves16)
constexpr size_t kGroupsPerBatch = kBatchChunks / kGroupChunks;

// Seals one record's stream into `w` (whose clear header is written) in two steps: the chunks
// up to the content's end, whose leaves give the content hash that signature 2 signs, then
// the chunk that holds signature 2 and the rest.
class ChunkSealer {
public:
    // `inner` is the whole inner header, `prefix` the content bytes the caller already read
    // from `in` (to find the metadata); the rest of the content comes from `in`.
    ChunkSealer(Suite suite, const Secret& payload_key, const Layout& layout, ByteView inner,
                ByteView prefix, PayloadSource& in, RecordWriter& w);
    ChunkSealer(const ChunkSealer&) = delete;
    ChunkSealer& operator=(const ChunkSealer&) = delete;

    // Seals the chunks before the content's last, reads the input to its end and checks it;
    // returns the content hash.
    Bytes seal_content();
    // Seals the content's last chunk, now with signature 2, and the padding after it.
    void seal_rest(const Signature& s2);

private:
    size_t chunk_len(uint64_t idx) const;
    std::pair<uint64_t, uint64_t> view_in_chunk(uint64_t idx) const;
    void assemble(uint64_t idx, uint8_t* dst, bool content);
    Batch& slot(uint64_t seq);
    void prepare(Batch& b, uint64_t base, size_t n, bool hash, const uint8_t* tail,
                 uint64_t tail_idx);
    bool place_chunk(Batch& b, size_t i);
    void seal_group(uint64_t item);
    void complete(Batch& b);
    void run(uint64_t from, uint64_t to, bool hash, const uint8_t* tail, uint64_t tail_idx);

    const Suite suite_;
    const Secret& key_;
    const Layout lay_;
    const ByteView inner_, prefix_;
    PayloadSource& in_;
    RecordWriter& w_;
    // Stream offsets: inner header [0, H), content [H, cend) of which the bytes after `prefix`
    // start at vbeg, signature 2 [cend, cend + 64), zero padding up to lay.padded.
    const std::optional<ByteView> view_;
    const uint64_t H_, cend_, vbeg_;
    const uint64_t c1_; // the chunk where the content ends
    Signature s2_{};
    // The ring: batch number `seq` of a run lives in slots_[seq % size];
    // slots are made as they are first needed, so a small record gets one small batch.
    std::vector<std::unique_ptr<Batch>> slots_;
    uint64_t items_ = 0;     // groups published to the ring so far
    uint64_t run_item0_ = 0; // the current run's first group: batch numbers count from it
    transcript::ContentHash content_hash_;
    uint64_t in_crc_ = 0; // of the view's bytes, joined chunk by chunk
    Bytes tail_;          // chunk c1's plaintext
    ChunkRing ring_;      // last: stopped before anything its jobs refer to is destroyed
};

// Opens one record's stream: chunk 0 first (the inner header, checked by the caller before a
// byte is released), then the rest into `w`, then the input's own checksum.
class ChunkOpener {
public:
    // `in` is positioned after the clear header; ct_len bytes of chunks follow.
    ChunkOpener(Suite suite, const Secret& payload_key, PayloadSource& in, uint64_t ct_len);
    ChunkOpener(const ChunkOpener&) = delete;
    ChunkOpener& operator=(const ChunkOpener&) = delete;

    uint64_t padded() const { return padded_; } // plaintext stream length
    // Reads the first batch and opens chunk 0; its plaintext (all of the stream's first
    // kChunkSize bytes) stays valid until stream().
    ByteView open_first();
    // Writes the content of every chunk to w, absorbs its leaves into `content_hash`, checks
    // the padding and that the input ends; returns signature 2.
    Signature stream(const Layout& layout, RecordWriter& w, transcript::ContentHash& content_hash);
    // After signature 2 verified: checks the input record's own checksum.
    void finish_input();

private:
    static uint64_t count_chunks(uint64_t ct_len, const std::string& where);
    DataError chunk_fail(uint64_t idx) const;
    void read_batch(Batch& b, uint64_t base);
    void decrypt(Batch& b, size_t i);
    void post(Batch& b, size_t from);
    void write_batch(Batch& b, RecordWriter& w, transcript::ContentHash& content_hash,
                     Signature& s2);

    const Suite suite_;
    const Secret& key_;
    PayloadSource& in_;
    const std::string& where_;
    const uint64_t ct_len_, nchunks_, padded_;
    // A mapped input is decrypted in place: the helper and this thread read the chunks
    // straight from the page cache and checksum them, so this thread only writes (a pipe is
    // read into the batches and checksummed by the reader).
    const std::optional<ByteView> view_;
    uint64_t in_crc_ = 0; // of the ciphertext in view_, joined chunk by chunk
    // view_'s bytes before this are done with: their pages were dropped (release_pages)
    const uint8_t* released_ = view_ ? view_->data() : nullptr;
    Layout lay_; // known once chunk 0 is open
    Batch batches_[2];
    ChunkPool pool_; // last: stopped before anything its jobs refer to is destroyed
};

// An opened record held back until it verified: in memory up to `in_memory` bytes, the rest
// in an unlinked temporary file (TMPDIR, else /tmp), so a large record costs disk, not memory.
class HeldOutput final : public Sink {
public:
    explicit HeldOutput(size_t in_memory) : in_memory_(in_memory) {}
    ~HeldOutput() override;
    HeldOutput(const HeldOutput&) = delete;
    HeldOutput& operator=(const HeldOutput&) = delete;

    void write(ByteView bytes) override;
    void release(Sink& out);

private:
    void open_spill();
    size_t in_memory_;
    Bytes mem_;
    int fd_ = -1;
    uint64_t spilled_ = 0;
    std::string dir_;
};

} // namespace n3::crypto::chunks
