// The chunk stream of n3-seal's envelope on two threads. The calling thread owns all I/O and
// everything order-dependent (the content hash, the CRCs joined in stream order, the record
// writer); the per-chunk work (AEAD, leaf hash, CRC of the chunk) runs on whichever thread
// takes the chunk, so a loaded machine degrades to one thread instead of stalling.
#include "crypto/chunks.hpp"
#include "record/io.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <unistd.h>

namespace n3::crypto::chunks {

using envelope::kSig;
using envelope::read_exact;

namespace {

// A chunk read in place from a mapped file is copied first, into the calling thread's own
// buffer (64 KiB: it stays in that core's cache): the file may change under the mapping, and
// the bytes checked must be the bytes used (authenticated, then decrypted; hashed and
// checksummed, then encrypted).
const uint8_t* stable_copy(const uint8_t* p, size_t n) {
    thread_local const std::unique_ptr<uint8_t[]> buf(new uint8_t[kCtChunk]);
    std::memcpy(buf.get(), p, n);
    return buf.get();
}

DataError changed_input(const std::string& where) {
    return DataError(where + ": input changed while it was being sealed (truncated)");
}

} // namespace

// --- ChunkPool

void ChunkPool::cancel() {
    next_.store(std::numeric_limits<size_t>::max() / 2);
    std::unique_lock<std::mutex> lock(m_);
    if (taken_ != posted_) {
        closed_ = posted_;
        return;
    }
    done_cv_.wait(lock, [&] { return finished_ == posted_; });
}

ChunkPool::~ChunkPool() {
    cancel();
    {
        std::lock_guard<std::mutex> lock(m_);
        stop_ = true;
    }
    cv_.notify_all();
    if (worker_.joinable()) worker_.join();
}

void ChunkPool::post(size_t n, std::function<void(size_t)> f) {
    {
        std::lock_guard<std::mutex> lock(m_);
        job_ = std::move(f);
        n_ = n;
        next_.store(0);
        ++posted_;
    }
    // The helper starts with the first job that has more than one chunk: small records
    // never pay for a thread.
    if (n > 1 && !worker_.joinable()) worker_ = std::thread([this] { loop(); });
    cv_.notify_one();
}

void ChunkPool::finish() {
    for (size_t i; (i = next_.fetch_add(1)) < n_;) job_(i);
    std::unique_lock<std::mutex> lock(m_);
    if (taken_ != posted_) {
        closed_ = posted_; // the helper never started this job (or does not exist): it skips it
        return;
    }
    done_cv_.wait(lock, [&] { return finished_ == posted_; });
}

void ChunkPool::loop() {
    uint64_t seen = 0;
    for (;;) {
        std::unique_lock<std::mutex> lock(m_);
        cv_.wait(lock, [&] { return stop_ || posted_ != seen; });
        if (stop_) return;
        seen = posted_;
        if (closed_ == seen) continue;
        taken_ = seen;
        size_t n = n_;
        lock.unlock();
        for (size_t i; (i = next_.fetch_add(1)) < n;) job_(i);
        lock.lock();
        finished_ = seen;
        lock.unlock();
        done_cv_.notify_one();
    }
}

// --- ChunkRing

ChunkRing::~ChunkRing() {
    next_.store(std::numeric_limits<uint64_t>::max()); // no chunk is claimed after this
    stop_.store(true);
    wake_.fetch_add(1);
    wake_.notify_all();
    if (helper_.joinable()) helper_.join();
}

void ChunkRing::publish(uint64_t end) {
    const uint64_t before = ready_.exchange(end, std::memory_order_acq_rel);
    // The helper starts with the first run of more than one chunk: small records never pay
    // for a thread.
    if (!helper_.joinable() && end - next_.load() > 1) helper_ = std::thread([this] { loop(); });
    if (end != before) {
        wake_.fetch_add(1, std::memory_order_release);
        wake_.notify_one();
    }
}

bool ChunkRing::run_one() {
    uint64_t c = next_.load(std::memory_order_acquire);
    do {
        if (c >= ready_.load(std::memory_order_acquire)) return false;
    } while (!next_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                          std::memory_order_acquire));
    job_(c);
    return true;
}

void ChunkRing::wait(std::atomic<uint32_t>& done, uint32_t n) {
    for (;;) {
        const uint32_t d = done.load(std::memory_order_acquire);
        if (d >= n) return;
        if (!run_one()) done.wait(d, std::memory_order_acquire);
    }
}

void ChunkRing::loop() {
    for (;;) {
        const uint32_t w = wake_.load(std::memory_order_acquire);
        if (stop_.load()) return;
        while (run_one()) {
        }
        if (stop_.load()) return;
        wake_.wait(w, std::memory_order_acquire);
    }
}

// --- ChunkSealer

// A mapped input's content is copied through the file, chunk by chunk, by the threads that
// encrypt it; a pipe is read into the batches by this thread, checksummed by the reader.
ChunkSealer::ChunkSealer(Suite suite, const Secret& payload_key, const Layout& layout,
                         ByteView inner, ByteView prefix, PayloadSource& in, RecordWriter& w)
    : suite_(suite), key_(payload_key), lay_(layout), inner_(inner), prefix_(prefix), in_(in),
      w_(w), view_(in.take ? in.take() : std::nullopt), H_(layout.header),
      cend_(layout.content_end()), vbeg_(layout.header + prefix.size()),
      c1_(layout.content_end() / kChunkSize), content_hash_(suite, in.length),
      ring_([this](uint64_t item) { seal_group(item); }) {
    if (view_ && view_->size() != cend_ - vbeg_)
        throw std::logic_error("seal: mapped payload of the wrong length");
}

size_t ChunkSealer::chunk_len(uint64_t idx) const {
    return static_cast<size_t>(std::min<uint64_t>(kChunkSize, lay_.padded - idx * kChunkSize));
}

// The view's bytes inside chunk idx, as stream offsets [x, y) (x == y if none).
std::pair<uint64_t, uint64_t> ChunkSealer::view_in_chunk(uint64_t idx) const {
    uint64_t x = std::max(idx * kChunkSize, vbeg_),
             y = std::min(idx * kChunkSize + kChunkSize, cend_);
    return {x, std::max(x, y)};
}

// Writes chunk idx's plaintext to dst: the inner header, the content (from `prefix`, the
// view, or read from the pipe in stream order) when `content`, signature 2 and padding.
void ChunkSealer::assemble(uint64_t idx, uint8_t* dst, bool content) {
    const uint64_t lo = idx * kChunkSize, hi = lo + chunk_len(idx);
    auto region = [&](uint64_t a, uint64_t b, auto&& fill) {
        uint64_t x = std::max(lo, a), y = std::min(hi, b);
        if (x < y) fill(dst + (x - lo), x - a, static_cast<size_t>(y - x));
    };
    if (content) {
        region(0, H_,
               [&](uint8_t* d, uint64_t off, size_t n) { std::memcpy(d, inner_.data() + off, n); });
        region(H_, vbeg_, [&](uint8_t* d, uint64_t off, size_t n) {
            std::memcpy(d, prefix_.data() + off, n);
        });
        region(vbeg_, cend_, [&](uint8_t* d, uint64_t off, size_t n) {
            if (!view_)
                read_exact(in_, {d, n});
            else if (!in_.copy_taken)
                std::memcpy(d, view_->data() + off, n);
            else if (!in_.copy_taken(view_->data() + off, {d, n}))
                throw changed_input(in_.where);
        });
    }
    region(cend_, cend_ + kSig,
           [&](uint8_t* d, uint64_t off, size_t n) { std::memcpy(d, s2_.data() + off, n); });
    region(cend_ + kSig, lay_.padded,
           [&](uint8_t* d, uint64_t, size_t n) { std::memset(d, 0, n); });
}

Batch& ChunkSealer::slot(uint64_t seq) {
    return *slots_[static_cast<size_t>(seq % slots_.size())];
}

// Sets batch b up for chunks [base, base + n): where each chunk's plaintext comes from (the
// tail, zero padding, the mapped input or bytes assembled here into the chunk's place).
void ChunkSealer::prepare(Batch& b, uint64_t base, size_t n, bool hash, const uint8_t* tail,
                          uint64_t tail_idx) {
    static const uint8_t zero_chunk[kChunkSize] = {};
    b.base = base;
    b.nchunks = n;
    b.hash = hash;
    b.done.store(0, std::memory_order_relaxed);
    for (size_t i = 0; i < n; ++i) {
        const uint64_t idx = base + i, lo = idx * kChunkSize;
        uint8_t* place = b.ct.data() + i * kCtChunk;
        b.ok[i] = 1;
        b.in_place[i] =
            view_ && lo >= vbeg_ && lo + kChunkSize <= cend_ && !(tail && idx == tail_idx);
        if (tail && idx == tail_idx)
            b.srcs[i] = tail;
        else if (b.in_place[i])
            b.srcs[i] = view_->data() + (lo - vbeg_);
        else if (lo >= cend_ + kSig)
            b.srcs[i] = zero_chunk;
        else {
            assemble(idx, place, true);
            b.srcs[i] = place;
        }
    }
}

// One chunk, on either thread: its plaintext copied into its place in the output (a mapped
// input's, through the file); false if the file no longer holds it.
bool ChunkSealer::place_chunk(Batch& b, size_t i) {
    if (!b.in_place[i]) return true;
    uint8_t* c = b.ct.data() + i * kCtChunk;
    const size_t len = chunk_len(b.base + i);
    const uint8_t* from = b.srcs[i];
    b.srcs[i] = c;
    if (!in_.copy_taken) {
        std::memcpy(c, from, len);
        return true;
    }
    return in_.copy_taken(from, {c, len});
}

// Chunks [i, i + n) of batch b (a group of at most kGroupChunks), on either thread: each
// chunk's plaintext put in place, the group's leaves (sixteen at once where the suite can),
// then per chunk the checksum of the view's bytes, encryption in place and the checksum of
// the ciphertext.
void ChunkSealer::seal_group(uint64_t item) {
    const uint64_t g = item - run_item0_;
    Batch& b = slot(g / kGroupsPerBatch);
    const size_t i0 = static_cast<size_t>(g % kGroupsPerBatch) * kGroupChunks;
    const size_t n = std::min(kGroupChunks, b.nchunks - i0);
    bool all_full = n == kGroupChunks;
    for (size_t i = i0; i < i0 + n; ++i) {
        b.ok[i] = place_chunk(b, i);
        auto [lo, hi] = lay_.content_in_chunk(b.base + i);
        all_full =
            all_full && b.ok[i] && hi - lo == kChunkSize && b.srcs[i] == b.ct.data() + i * kCtChunk;
    }
    if (b.hash) {
        if (all_full && suite::leaves16(suite_, b.base + i0, b.ct.data() + i0 * kCtChunk, kCtChunk,
                                        kChunkSize, &b.leaves[i0])) {
            std::fill(b.has_leaf.begin() + static_cast<long>(i0),
                      b.has_leaf.begin() + static_cast<long>(i0 + n), 1);
        } else {
            for (size_t i = i0; i < i0 + n; ++i)
                if (b.ok[i])
                    b.has_leaf[i] =
                        transcript::leaf(suite_, lay_, b.base + i, b.srcs[i], b.leaves[i]);
        }
    }
    for (size_t i = i0; i < i0 + n; ++i) {
        if (!b.ok[i]) continue;
        const uint64_t idx = b.base + i;
        const size_t len = chunk_len(idx);
        const uint8_t* p = b.srcs[i];
        uint8_t* c = b.ct.data() + i * kCtChunk;
        if (view_) {
            auto [x, y] = view_in_chunk(idx);
            b.in_crc[i] =
                x < y ? crc64(0, {p + (x - idx * kChunkSize), static_cast<size_t>(y - x)}) : 0;
        }
        suite::seal_chunk(suite_, key_, idx, idx + 1 == lay_.chunks, p, len, c);
        b.out_crc[i] = crc64(0, {c, len + kTag});
    }
    // The batch's last group wakes the writer. After the increment b may already be reused:
    // only the notification touches it.
    const size_t total = b.nchunks;
    if (b.done.fetch_add(static_cast<uint32_t>(n), std::memory_order_acq_rel) + n == total)
        b.done.notify_one();
}

// After all of b's chunks are done: its leaves, checksums and ciphertext, in stream order.
void ChunkSealer::complete(Batch& b) {
    uint64_t ct_crc = 0;
    size_t ct_bytes = 0;
    for (size_t i = 0; i < b.nchunks; ++i) {
        const uint64_t idx = b.base + i;
        if (!b.ok[i]) throw changed_input(in_.where);
        if (b.hash && b.has_leaf[i]) content_hash_.add(b.leaves[i]);
        if (view_) {
            auto [x, y] = view_in_chunk(idx);
            in_crc_ = crc64_combine(in_crc_, b.in_crc[i], y - x);
        }
        ct_crc = crc64_combine(ct_crc, b.out_crc[i], chunk_len(idx) + kTag);
        ct_bytes += chunk_len(idx) + kTag;
    }
    w_.write({b.ct.data(), ct_bytes}, ct_crc);
}

// Seals chunks [from, to) in batches, up to kRingBatches in flight: this thread prepares them
// (plaintext assembled or read from a pipe), seals chunks with the helper, and writes each
// batch once it is done.
void ChunkSealer::run(uint64_t from, uint64_t to, bool hash, const uint8_t* tail,
                      uint64_t tail_idx) {
    if (from >= to) return;
    const uint64_t nbatches = (to - from + kBatchChunks - 1) / kBatchChunks;
    if (slots_.size() < std::min<uint64_t>(kRingBatches, nbatches)) {
        const uint64_t room = std::min<uint64_t>(lay_.chunks, kBatchChunks);
        while (slots_.size() < std::min<uint64_t>(kRingBatches, nbatches))
            slots_.push_back(std::make_unique<Batch>(room, false, true));
    }
    // The ring's items are groups of chunks, numbered on over the runs; batches are numbered
    // from each run's first: slot() finds an item's batch from its number.
    run_item0_ = items_;
    uint64_t pub = from, seq = 0, written = 0; // next chunk to publish, batches published, written
    while (written < nbatches) {
        while (pub < to && seq - written < slots_.size()) {
            const size_t n = static_cast<size_t>(std::min<uint64_t>(kBatchChunks, to - pub));
            prepare(slot(seq), pub, n, hash, tail, tail_idx);
            pub += n;
            ++seq;
            // Every batch but a run's last is whole, so item g is group g % 4 of batch g / 4.
            items_ += (n + kGroupChunks - 1) / kGroupChunks;
            ring_.publish(items_);
        }
        Batch& b = slot(written);
        ring_.wait(b.done, static_cast<uint32_t>(b.nchunks));
        complete(b);
        ++written;
    }
}

// Chunks that hold nothing after the content, then the chunk where the content ends: its
// leaf completes the content hash that signature 2 signs.
Bytes ChunkSealer::seal_content() {
    run(0, c1_, true, nullptr, 0);
    tail_.resize(kChunkSize);
    assemble(c1_, tail_.data(), true);
    Hash32 l;
    if (transcript::leaf(suite_, lay_, c1_, tail_.data(), l)) content_hash_.add(l);
    if (view_) {
        auto [x, y] = view_in_chunk(c1_);
        ByteView bytes{tail_.data() + (x - c1_ * kChunkSize), static_cast<size_t>(y - x)};
        if (x < y) in_crc_ = crc64_combine(in_crc_, crc64(0, bytes), y - x);
    }
    if (view_) {
        in_.finish_taken(in_crc_);
    } else {
        uint8_t extra;
        if (in_.read({&extra, 1}) != 0)
            throw DataError(in_.where + ": payload longer than declared");
        if (in_.finish) in_.finish();
    }
    return content_hash_.digest();
}

void ChunkSealer::seal_rest(const Signature& s2) {
    s2_ = s2;
    assemble(c1_, tail_.data(), false); // signature 2 (and padding) into the content's last chunk
    run(c1_, lay_.chunks, false, tail_.data(), c1_);
}

// --- ChunkOpener

uint64_t ChunkOpener::count_chunks(uint64_t ct_len, const std::string& where) {
    const uint64_t nchunks = (ct_len + kCtChunk - 1) / kCtChunk;
    if (nchunks == 0 || ct_len - (nchunks - 1) * kCtChunk <= kTag)
        throw DataError(where + ": sealed payload truncated (no final chunk)");
    if (nchunks > kMaxChunks)
        throw DataError(where + ": sealed payload longer than an envelope holds");
    return nchunks;
}

ChunkOpener::ChunkOpener(Suite suite, const Secret& payload_key, PayloadSource& in, uint64_t ct_len)
    : suite_(suite), key_(payload_key), in_(in), where_(in.where), ct_len_(ct_len),
      nchunks_(count_chunks(ct_len, in.where)), padded_(ct_len - nchunks_ * kTag),
      view_(in.take ? in.take() : std::nullopt), batches_{Batch(nchunks_, true, !view_),
                                                          Batch(nchunks_, true, !view_)} {
    if (view_ && view_->size() != ct_len)
        throw std::logic_error("open: mapped payload of the wrong length");
}

DataError ChunkOpener::chunk_fail(uint64_t idx) const {
    return DataError(where_ + ": chunk " + std::to_string(idx + 1) + " of " +
                     std::to_string(nchunks_) +
                     " does not authenticate (tampered, truncated or reordered)");
}

// Reads the next batch of ciphertext (from stream chunk `base`) into b.
void ChunkOpener::read_batch(Batch& b, uint64_t base) {
    b.base = base;
    b.nchunks = static_cast<size_t>(std::min<uint64_t>(kBatchChunks, nchunks_ - base));
    b.fill =
        static_cast<size_t>(std::min<uint64_t>(b.nchunks * kCtChunk, ct_len_ - base * kCtChunk));
    if (view_) {
        b.src = view_->data() + base * kCtChunk;
    } else {
        read_exact(in_, {b.ct.data(), b.fill});
        b.src = b.ct.data();
    }
}

void ChunkOpener::decrypt(Batch& b, size_t i) {
    uint64_t idx = b.base + i;
    size_t clen = std::min(kCtChunk, b.fill - i * kCtChunk);
    const uint8_t* ct = b.src + i * kCtChunk;
    if (view_) {
        ct = stable_copy(ct, clen);
        b.in_crc[i] = crc64(0, {ct, clen});
    }
    b.ok[i] = suite::open_chunk(suite_, key_, idx, idx + 1 == nchunks_, ct, clen,
                                b.pt.data() + i * kChunkSize);
    b.has_leaf[i] = b.ok[i] && transcript::leaf(suite_, lay_, idx, b.pt.data() + i * kChunkSize,
                                                b.leaves[i], &b.out_crc[i]);
}

void ChunkOpener::post(Batch& b, size_t from) {
    pool_.post(b.nchunks - from, [this, &b, from](size_t k) { decrypt(b, k + from); });
}

// Chunk 0 holds the inner header, opened alone: nothing is released before signature 1, and
// its leaf needs the layout the header gives.
ByteView ChunkOpener::open_first() {
    Batch& first = batches_[0];
    read_batch(first, 0);
    size_t clen = std::min(kCtChunk, first.fill);
    const uint8_t* ct = view_ ? stable_copy(first.src, clen) : first.src;
    if (view_) first.in_crc[0] = crc64(0, {ct, clen});
    first.ok[0] = suite::open_chunk(suite_, key_, 0, nchunks_ == 1, ct, clen, first.pt.data());
    if (!first.ok[0]) throw chunk_fail(0);
    return {first.pt.data(), static_cast<size_t>(std::min<uint64_t>(kChunkSize, padded_))};
}

// The next batch is read and decrypted while this one is written.
Signature ChunkOpener::stream(const Layout& layout, RecordWriter& w,
                              transcript::ContentHash& content_hash) {
    lay_ = layout;
    Signature s2{};
    Batch& first = batches_[0];
    first.has_leaf[0] =
        transcript::leaf(suite_, lay_, 0, first.pt.data(), first.leaves[0], &first.out_crc[0]);
    post(first, 1);
    int cur = 0;
    for (;;) {
        Batch& b = batches_[cur];
        Batch& other = batches_[cur ^ 1];
        bool more = b.base + b.nchunks < nchunks_;
        if (more) read_batch(other, b.base + b.nchunks);
        pool_.finish();
        for (size_t i = 0; i < b.nchunks; ++i)
            if (!b.ok[i]) throw chunk_fail(b.base + i);
        if (more) post(other, 0);
        write_batch(b, w, content_hash, s2);
        if (view_) {
            // Its ciphertext was read (copied once per chunk): its pages leave the resident
            // set, all but the one the next batch starts in.
            static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
            const uint8_t* end = b.src + b.fill;
            release_pages(ByteView(released_, static_cast<size_t>(end - released_)));
            const uint8_t* next = end - (reinterpret_cast<uintptr_t>(end) & (page - 1));
            released_ = std::max(released_, next);
        }
        if (!more) break;
        cur ^= 1;
    }
    uint8_t extra;
    if (in_.read({&extra, 1}) != 0)
        throw DataError(where_ + ": sealed payload longer than declared");
    return s2;
}

// A batch whose chunks all opened: its leaves and checksums in stream order, then the
// content, signature 2 and padding parts of its plaintext.
void ChunkOpener::write_batch(Batch& b, RecordWriter& w, transcript::ContentHash& content_hash,
                              Signature& s2) {
    uint64_t out_crc = 0; // of this batch's content, joined from its chunks'
    for (size_t i = 0; i < b.nchunks; ++i) {
        if (view_)
            in_crc_ =
                crc64_combine(in_crc_, b.in_crc[i], std::min(kCtChunk, b.fill - i * kCtChunk));
        if (!b.has_leaf[i]) continue;
        content_hash.add(b.leaves[i]);
        auto [clo, chi] = lay_.content_in_chunk(b.base + i);
        out_crc = crc64_combine(out_crc, b.out_crc[i], chi - clo);
    }
    uint64_t lo = b.base * kChunkSize;
    uint64_t hi = lo + (b.fill - b.nchunks * kTag);
    uint64_t x = std::max(lo, lay_.header), y = std::min(hi, lay_.content_end());
    if (x < y) w.write({b.pt.data() + (x - lo), static_cast<size_t>(y - x)}, out_crc);
    x = std::max(lo, lay_.content_end());
    y = std::min(hi, lay_.content_end() + kSig);
    if (x < y) std::memcpy(s2.data() + (x - lay_.content_end()), b.pt.data() + (x - lo), y - x);
    x = std::max(lo, lay_.content_end() + kSig);
    if (x < hi && !sodium_is_zero(b.pt.data() + (x - lo), static_cast<size_t>(hi - x)))
        throw DataError(where_ + ": padding is not zero (corrupted)");
}

void ChunkOpener::finish_input() {
    if (view_)
        in_.finish_taken(in_crc_);
    else if (in_.finish)
        in_.finish();
}

// --- HeldOutput

HeldOutput::~HeldOutput() {
    if (fd_ >= 0) ::close(fd_);
}

void HeldOutput::write(ByteView bytes) {
    size_t n = std::min(bytes.size(), in_memory_ - std::min(in_memory_, mem_.size()));
    mem_.insert(mem_.end(), bytes.begin(), bytes.begin() + static_cast<long>(n));
    bytes = bytes.subspan(n);
    if (bytes.empty()) return;
    if (fd_ < 0) open_spill();
    while (!bytes.empty()) {
        ssize_t w = ::write(fd_, bytes.data(), bytes.size());
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw_errno("holding back an opened record in " + dir_);
        bytes = bytes.subspan(static_cast<size_t>(w));
        spilled_ += static_cast<uint64_t>(w);
    }
}

void HeldOutput::release(Sink& out) {
    out.write(mem_);
    if (fd_ < 0) return;
    Bytes buf(std::min<uint64_t>(spilled_, 1 << 20));
    for (uint64_t off = 0; off < spilled_;) {
        ssize_t r = ::pread(fd_, buf.data(), std::min<uint64_t>(buf.size(), spilled_ - off),
                            static_cast<off_t>(off));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) throw_errno("reading back a held record from " + dir_);
        out.write({buf.data(), static_cast<size_t>(r)});
        off += static_cast<uint64_t>(r);
    }
}

void HeldOutput::open_spill() {
    const char* t = std::getenv("TMPDIR");
    dir_ = t && *t ? t : "/tmp";
    fd_ = ::open(dir_.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0) {
        std::string path = dir_ + "/n3-seal-held.XXXXXX";
        fd_ = ::mkostemp(path.data(), O_CLOEXEC);
        if (fd_ < 0) throw_errno("holding back an opened record in " + dir_);
        ::unlink(path.c_str());
    }
}

} // namespace n3::crypto::chunks
