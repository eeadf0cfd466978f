#include "crypto/seal.hpp"

#include "record/error.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <unistd.h>

namespace n3::crypto {

namespace {

// Version 2 makes the inner header's size depend on the stanza count alone. Version 1, whose
// header grew with the sender's id and the real recipient count, is still opened.
constexpr uint8_t kEnvelopeVersion = 2;
constexpr uint8_t kEnvelopeV1 = 1;
// The sender's record travels in a slot this large: what a record with the longest id
// (128 characters, the limit keys.cpp enforces at request, issuance and decoding) encodes to.
constexpr size_t kSenderSlot = 256;
constexpr size_t kTag = crypto_aead_xchacha20poly1305_ietf_ABYTES;
constexpr size_t kCtChunk = kChunkSize + kTag;
constexpr size_t kClearFixed = 8;
constexpr size_t kStanza = 32 + 32 + kTag;
constexpr size_t kBatchChunks = 64; // 4 MiB of plaintext per batch
constexpr size_t kContextSize = 1 + 16 + 32 + 1 + 8 + 32 + 1;
constexpr size_t kSig = 64;

uint64_t clock_or(uint64_t now) { return now ? now : now_seconds(); }

// The context as bound into the signatures and carried inside the ciphertext.
Bytes encode_context(const AuthorityPublic& fed, const SealContext& c, RecordType type) {
    Bytes b;
    b.push_back(1);
    put(b, fed.id);
    put(b, fed.P);
    b.push_back(static_cast<uint8_t>((c.round ? 1 : 0) | (c.base ? 2 : 0)));
    put_u64(b, c.round.value_or(0));
    put(b, c.base.value_or(Hash32{}));
    b.push_back(static_cast<uint8_t>(type));
    return b;
}

Hash32 stanza_key(const Point& K, const Point& E, const Point& Ykem, const Fingerprint& fp,
                  const AuthorityPublic& fed) {
    return Hasher("n3/v1/kem", K, 32).part(E).part(Ykem).part(fp).part(fed.id).part(fed.P).hash32();
}

void chunk_nonce(uint8_t nonce[24], uint64_t index, bool last) {
    std::memset(nonce, 0, 24);
    for (int i = 0; i < 8; ++i) nonce[i] = static_cast<uint8_t>(index >> (8 * i));
    nonce[8] = last ? 1 : 0;
}

// Runs f(i) for i in [0, n) on the calling thread and one persistent helper thread, which take
// chunk indices from a shared counter. If the helper is not scheduled in time (a busy machine),
// the caller does all the work and does not wait for it: no fork-join stalls. f must not throw.
class ChunkPool {
public:
    ChunkPool() = default;
    // Stops handing out indices and waits for the helper's current chunk: called (via Guard)
    // before anything the job refers to is destroyed, including when an error unwinds.
    void cancel() {
        next_.store(std::numeric_limits<size_t>::max() / 2);
        std::unique_lock<std::mutex> lock(m_);
        if (taken_ != posted_) {
            closed_ = posted_;
            return;
        }
        done_cv_.wait(lock, [&] { return finished_ == posted_; });
    }
    struct Guard {
        ChunkPool& pool;
        ~Guard() { pool.cancel(); }
    };
    ~ChunkPool() {
        cancel();
        {
            std::lock_guard<std::mutex> lock(m_);
            stop_ = true;
        }
        cv_.notify_all();
        if (worker_.joinable()) worker_.join();
    }
    ChunkPool(const ChunkPool&) = delete;
    ChunkPool& operator=(const ChunkPool&) = delete;

    // Starts f(i), i in [0, n), on the helper; the caller is free until finish().
    void post(size_t n, std::function<void(size_t)> f) {
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
    // The caller takes the indices left, then waits for the helper's current one (if it
    // started at all).
    void finish() {
        for (size_t i; (i = next_.fetch_add(1)) < n_;) job_(i);
        std::unique_lock<std::mutex> lock(m_);
        if (taken_ != posted_) {
            closed_ = posted_; // the helper never started this job (or does not exist): it skips it
            return;
        }
        done_cv_.wait(lock, [&] { return finished_ == posted_; });
    }

private:
    void loop() {
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

    std::mutex m_;
    std::condition_variable cv_, done_cv_;
    std::function<void(size_t)> job_;
    size_t n_ = 0;
    std::atomic<size_t> next_{0};
    uint64_t posted_ = 0, taken_ = 0, finished_ = 0, closed_ = 0;
    bool stop_ = false;
    std::thread worker_;
};

// A chunk read in place from a mapped file is copied first, into the calling thread's own
// buffer (64 KiB: it stays in that core's cache): the file may change under the mapping, and
// the bytes checked must be the bytes used (authenticated, then decrypted; hashed and
// checksummed, then encrypted).
const uint8_t* stable_copy(const uint8_t* p, size_t n) {
    thread_local const std::unique_ptr<uint8_t[]> buf(new uint8_t[kCtChunk]);
    std::memcpy(buf.get(), p, n);
    return buf.get();
}

// The chunked layout shared by both sides: the plaintext stream is inner header (H bytes),
// content (L bytes), signature 2, zero padding up to padme(H + L + 64).
struct Layout {
    uint64_t header = 0, content = 0, padded = 0, chunks = 0;
    uint64_t content_end() const { return header + content; }
    uint64_t ct_length() const { return padded + chunks * kTag; }
    static Layout make(uint64_t header, uint64_t content) {
        Layout l;
        l.header = header;
        l.content = content;
        l.padded = padme(header + content + kSig);
        l.chunks = (l.padded + kChunkSize - 1) / kChunkSize;
        return l;
    }
};

// The content bytes that fall in stream chunk i, as stream offsets [lo, hi) (empty if none).
std::pair<uint64_t, uint64_t> content_in_chunk(const Layout& l, uint64_t chunk) {
    uint64_t lo = std::max<uint64_t>(chunk * kChunkSize, l.header);
    uint64_t hi = std::min<uint64_t>((chunk + 1) * kChunkSize, l.content_end());
    return {lo, std::max(lo, hi)};
}

// Leaf i of the payload tree hash: the content bytes that fall in stream chunk i. With `crc`,
// also their CRC-64 (opening: the checksum of the record written out, computed per chunk).
bool leaf(const Layout& l, uint64_t chunk, const uint8_t* chunk_data, Hash32& out,
          uint64_t* crc = nullptr) {
    auto [lo, hi] = content_in_chunk(l, chunk);
    if (lo >= hi) return false;
    ByteView bytes{chunk_data + (lo - chunk * kChunkSize), static_cast<size_t>(hi - lo)};
    out = Hasher("n3/v1/leaf", {}, 32).part_u64(chunk).part(bytes).hash32();
    if (crc) *crc = crc64(0, bytes);
    return true;
}

Digest transcript1(ByteView clear, const Hash32& commit, ByteView inner_before_sig) {
    return Hasher("n3/v1/sig-head").part(clear).part(commit).part(inner_before_sig).digest();
}
Digest transcript2(const Digest& t1, const Signature& s1, const Digest& content) {
    return Hasher("n3/v1/sig-body").part(t1).part(s1).part(content).digest();
}

// Reads exactly out.size() bytes or throws.
void read_exact(PayloadSource& in, std::span<uint8_t> out) {
    size_t got = 0;
    while (got < out.size()) {
        size_t n = in.read(out.subspan(got));
        if (n == 0) throw DataError(in.where + ": payload ends early");
        got += n;
    }
}

// round/base from a tensor record's safetensors metadata, read from `prefix` (the first bytes).
void context_from_metadata(const std::string& json, SealContext& c, const std::string& where) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json);
    } catch (const std::exception&) {
        throw DataError(where + ": safetensors header is not valid JSON");
    }
    if (!j.is_object() || !j.contains("__metadata__") || !j["__metadata__"].is_object()) return;
    auto& m = j["__metadata__"];
    if (m.contains(meta::round) && m[meta::round].is_string()) {
        std::string r = m[meta::round];
        if (r.empty() || r.size() > 19 || r.find_first_not_of("0123456789") != std::string::npos)
            throw DataError(where + ": metadata round '" + r + "' is not a number");
        uint64_t v = std::stoull(r);
        if (c.round && *c.round != v)
            throw DataError(where + ": record is for round " + r + ", not " + std::to_string(*c.round));
        c.round = v;
    }
    if (m.contains(meta::base) && m[meta::base].is_string()) {
        std::string b = m[meta::base];
        Hash32 h;
        size_t len = 0;
        if (b.size() != 64 || sodium_hex2bin(h.data(), 32, b.data(), b.size(), nullptr, &len, nullptr) != 0 || len != 32)
            throw DataError(where + ": metadata base '" + b + "' is not a model hash");
        if (c.base && !equal(*c.base, h))
            throw DataError(where + ": record's base model differs from the one given");
        c.base = h;
    }
}

// One batch of chunks: plaintext, ciphertext and per-chunk results. Two batches alternate so
// that the main thread's reading and writing overlap the other batch's crypto.
struct Batch {
    // Room for `chunks` chunks (at most kBatchChunks): a small record gets small buffers.
    // Opening a mapped input needs no ciphertext buffer (with_ct false): chunks are read in place.
    Batch(uint64_t chunks, bool with_ct)
        : pt(static_cast<size_t>(std::min<uint64_t>(chunks, kBatchChunks)) * kChunkSize),
          ct(with_ct ? static_cast<size_t>(std::min<uint64_t>(chunks, kBatchChunks)) * kCtChunk
                     : 0) {}
    struct Buffer { // uninitialised: pages a batch never uses are never touched
        explicit Buffer(size_t size) : p(size ? new uint8_t[size] : nullptr), n(size) {}
        uint8_t* data() { return p.get(); }
        size_t size() const { return n; }
        std::unique_ptr<uint8_t[]> p;
        size_t n;
    };
    Buffer pt, ct;
    std::vector<const uint8_t*> srcs =
        std::vector<const uint8_t*>(kBatchChunks); // sealing: each chunk's plaintext
    std::vector<char> in_place =
        std::vector<char>(kBatchChunks); // sealing: srcs[i] points into the mapped input
    const uint8_t* src = nullptr; // opening: the batch's ciphertext (ct, or the input's mapping)
    std::vector<uint64_t> in_crc =
        std::vector<uint64_t>(kBatchChunks); // of ciphertext read in place
    std::vector<uint64_t> out_crc = std::vector<uint64_t>(kBatchChunks); // of content written out
    size_t fill = 0;     // plaintext bytes (sealing) or ciphertext bytes (opening)
    size_t nchunks = 0;
    uint64_t base = 0;   // stream index of the first chunk
    bool hash = false, final = false;
    std::vector<Hash32> leaves = std::vector<Hash32>(kBatchChunks);
    std::vector<char> has_leaf = std::vector<char>(kBatchChunks);
    std::vector<char> ok = std::vector<char>(kBatchChunks);
};

// The clear header: version, suite, stanza count, and per recipient E_j || wrap_j(file_key).
Bytes make_clear(std::span<const PublicRecord> recipients, const AuthorityPublic& fed, const Secret& file_key,
                 std::vector<Fingerprint>& fps, size_t stanzas = 0) {
    Bytes clear;
    clear.push_back(kEnvelopeVersion);
    clear.push_back(kSuite);
    put_u16(clear, static_cast<uint16_t>(std::max(recipients.size(), stanzas)));
    put_u32(clear, 0);
    for (auto& r : recipients) {
        Fingerprint fp = r.fingerprint();
        fps.push_back(fp);
        Point Ykem = r.Y_kem(fed.P);
        Secret e(32);
        scalar_random({e.data(), 32});
        Point E = base_mul(e.view());
        Point K;
        if (!mul(K, e.view(), Ykem)) throw DataError("recipient '" + r.id + "' has a degenerate key");
        Hash32 k = stanza_key(K, E, Ykem, fp, fed);
        sodium_memzero(K.data(), 32);
        uint8_t ad[kClearFixed + 32];
        std::memcpy(ad, clear.data(), kClearFixed);
        std::memcpy(ad + kClearFixed, E.data(), 32);
        uint8_t wrapped[32 + kTag];
        uint8_t nonce[24] = {};
        crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped, nullptr, file_key.data(), 32, ad, sizeof ad,
                                                   nullptr, nonce, k.data());
        sodium_memzero(k.data(), 32);
        put(clear, E);
        put(clear, wrapped);
    }
    // Dummies look like real stanzas: a random valid point and random bytes. They hide how
    // many recipients there are; the recipients' fingerprints inside are the real list.
    for (size_t j = recipients.size(); j < stanzas; ++j) {
        Point E;
        crypto_core_ristretto255_random(E.data());
        uint8_t wrapped[32 + kTag];
        random_bytes(wrapped);
        put(clear, E);
        put(clear, wrapped);
    }
    return clear;
}

// An opened record held back until it verified: in memory up to `in_memory` bytes, the rest
// in an unlinked temporary file (TMPDIR, else /tmp), so a large record costs disk, not memory.
class HeldOutput final : public Sink {
public:
    explicit HeldOutput(size_t in_memory) : in_memory_(in_memory) {}
    ~HeldOutput() override {
        if (fd_ >= 0) ::close(fd_);
    }
    HeldOutput(const HeldOutput&) = delete;
    HeldOutput& operator=(const HeldOutput&) = delete;

    void write(ByteView bytes) override {
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
    void release(Sink& out) {
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

private:
    void open_spill() {
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
    size_t in_memory_;
    Bytes mem_;
    int fd_ = -1;
    uint64_t spilled_ = 0;
    std::string dir_;
};

} // namespace

uint64_t padme(uint64_t L) {
    if (L < 2) return L;
    int E = 63 - __builtin_clzll(L);
    int S = 32 - __builtin_clz(static_cast<unsigned>(E)); // floor(log2 E) + 1
    int last_bits = E - S;
    uint64_t mask = (uint64_t(1) << last_bits) - 1;
    return (L + mask) & ~mask;
}

void seal(const MemberKey& sender, std::span<const PublicRecord> recipients, PayloadSource& in,
          Sink& out, const SealOptions& opts) {
    init();
    const uint64_t now = clock_or(opts.now);
    const AuthorityPublic fed = sender.authority();
    if (recipients.empty()) throw UsageError("no recipients");
    if (recipients.size() > kMaxRecipients)
        throw UsageError("at most " + std::to_string(kMaxRecipients) + " recipients");
    if (sender.record.expired(now))
        throw DataError("the sender's key expired on " + format_time(sender.record.expiry),
                        "get a new key: n3-keys request / issue / complete");
    for (auto& r : recipients) check_member(r, fed, now, "recipient '" + r.id + "'");

    // The context: round and base from the record's metadata, if it has them.
    SealContext ctx = opts.context;
    Bytes prefix; // the content's first bytes, read to find the metadata
    if (is_tensor_type(in.type) && in.length >= 8) {
        prefix.resize(8);
        read_exact(in, prefix);
        uint64_t n = 0;
        for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[static_cast<size_t>(i)];
        if (n > in.length - 8 || n > (uint64_t(100) << 20))
            throw DataError(in.where + ": safetensors header length " + std::to_string(n) + " out of range");
        prefix.resize(8 + n);
        read_exact(in, {prefix.data() + 8, static_cast<size_t>(n)});
        context_from_metadata(std::string(prefix.begin() + 8, prefix.end()), ctx, in.where);
    }
    const Bytes context = encode_context(fed, ctx, in.type);

    // Clear header and one stanza per recipient.
    Secret file_key(32);
    random_bytes({file_key.data(), 32});
    std::vector<Fingerprint> fps;
    if (opts.stanzas > kMaxRecipients)
        throw UsageError("at most " + std::to_string(kMaxRecipients) + " stanzas");
    Bytes clear = make_clear(recipients, fed, file_key, fps, opts.stanzas);
    Secret payload_key(32);
    Hasher("n3/v1/payload", file_key.view(), 32).part(clear).final({payload_key.data(), 32});
    Hash32 commit = Hasher("n3/v1/commit", file_key.view(), 32).part(clear).hash32();

    // Inner header and signature 1. Its size depends on the stanza count only (which the clear
    // header shows anyway): the sender's record is padded to its slot, and the fingerprint list
    // has a slot per stanza, the real recipients' first and zeros for the dummies.
    Bytes inner;
    inner.push_back(kEnvelopeVersion);
    Bytes rec = sender.record.encode();
    if (rec.size() > kSenderSlot)
        throw UsageError("the sender's public record is " + std::to_string(rec.size()) +
                         " bytes, more than an envelope holds");
    put_u16(inner, static_cast<uint16_t>(rec.size()));
    put(inner, rec);
    inner.resize(inner.size() + kSenderSlot - rec.size(), 0);
    put(inner, context);
    put_u16(inner, static_cast<uint16_t>(fps.size()));
    for (auto& fp : fps) put(inner, fp);
    const size_t nstanzas = std::max(recipients.size(), opts.stanzas);
    inner.resize(inner.size() + 32 * (nstanzas - fps.size()), 0);
    put_u64(inner, in.length);
    Digest t1 = transcript1(clear, commit, inner);
    Signature s1 = schnorr_sign(sender.y_sig, sender.Y_sig, t1);
    put(inner, s1);

    Layout lay = Layout::make(inner.size(), in.length);
    if (lay.header > kChunkSize) throw UsageError("too many recipients for one envelope");
    RecordWriter w(out, RecordType::sealed, clear.size() + lay.ct_length());
    w.write(clear);

    // Stream offsets: inner header [0, H), content [H, cend) of which the bytes after `prefix`
    // start at vbeg, signature 2 [cend, cend + 64), zero padding up to lay.padded. A mapped
    // input's content is encrypted in place (no copy) and checksummed by the threads that
    // encrypt it; a pipe is read into the batches by this thread, checksummed by the reader.
    const std::optional<ByteView> view = in.take ? in.take() : std::nullopt;
    const uint64_t H = lay.header, cend = lay.content_end(), vbeg = H + prefix.size();
    if (view && view->size() != cend - vbeg)
        throw std::logic_error("seal: mapped payload of the wrong length");
    static const uint8_t zero_chunk[kChunkSize] = {};
    Signature s2{};
    auto chunk_len = [&](uint64_t idx) {
        return static_cast<size_t>(std::min<uint64_t>(kChunkSize, lay.padded - idx * kChunkSize));
    };
    // The view's bytes inside chunk idx, as stream offsets [x, y) (x == y if none).
    auto view_in_chunk = [&](uint64_t idx) {
        uint64_t x = std::max(idx * kChunkSize, vbeg),
                 y = std::min(idx * kChunkSize + kChunkSize, cend);
        return std::pair<uint64_t, uint64_t>{x, std::max(x, y)};
    };
    // Writes chunk idx's plaintext to dst: the inner header, the content (from `prefix`, the
    // view, or read from the pipe in stream order) when `content`, signature 2 and padding.
    auto assemble = [&](uint64_t idx, uint8_t* dst, bool content) {
        const uint64_t lo = idx * kChunkSize, hi = lo + chunk_len(idx);
        auto region = [&](uint64_t a, uint64_t b, auto&& fill) {
            uint64_t x = std::max(lo, a), y = std::min(hi, b);
            if (x < y) fill(dst + (x - lo), x - a, static_cast<size_t>(y - x));
        };
        if (content) {
            region(0, H, [&](uint8_t* d, uint64_t off, size_t n) {
                std::memcpy(d, inner.data() + off, n);
            });
            region(H, vbeg, [&](uint8_t* d, uint64_t off, size_t n) {
                std::memcpy(d, prefix.data() + off, n);
            });
            region(vbeg, cend, [&](uint8_t* d, uint64_t off, size_t n) {
                if (view)
                    std::memcpy(d, view->data() + off, n);
                else
                    read_exact(in, {d, n});
            });
        }
        region(cend, cend + kSig,
               [&](uint8_t* d, uint64_t off, size_t n) { std::memcpy(d, s2.data() + off, n); });
        region(cend + kSig, lay.padded,
               [&](uint8_t* d, uint64_t, size_t n) { std::memset(d, 0, n); });
    };

    ChunkPool pool;
    Batch batches[2] = {Batch(lay.chunks, true), Batch(lay.chunks, true)};
    int cur = 0;               // the batch being prepared
    Batch* inflight = nullptr; // the batch whose chunks are being sealed
    Hasher content_hash("n3/v1/content");
    content_hash.part_u64(in.length);
    uint64_t in_crc = 0; // of the view's bytes, joined chunk by chunk

    // One chunk, on either thread: leaf, checksum of the view's bytes, encryption, checksum of
    // the ciphertext.
    auto seal_chunk = [&](Batch& b, size_t i) {
        const uint64_t idx = b.base + i;
        const size_t len = chunk_len(idx);
        const uint8_t* p = b.srcs[i];
        if (b.in_place[i]) p = stable_copy(p, len);
        if (b.hash) b.has_leaf[i] = leaf(lay, idx, p, b.leaves[i]);
        if (view) {
            auto [x, y] = view_in_chunk(idx);
            b.in_crc[i] =
                x < y ? crc64(0, {p + (x - idx * kChunkSize), static_cast<size_t>(y - x)}) : 0;
        }
        uint8_t nonce[24];
        chunk_nonce(nonce, idx, idx + 1 == lay.chunks);
        uint8_t* c = b.ct.data() + i * kCtChunk;
        crypto_aead_xchacha20poly1305_ietf_encrypt(c, nullptr, p, len, nullptr, 0, nullptr, nonce,
                                                   payload_key.data());
        b.out_crc[i] = crc64(0, {c, len + kTag});
    };
    // After the pool finished b: its leaves, checksums and ciphertext, in stream order.
    auto complete = [&](Batch& b) {
        uint64_t ct_crc = 0;
        size_t ct_bytes = 0;
        for (size_t i = 0; i < b.nchunks; ++i) {
            const uint64_t idx = b.base + i;
            if (b.hash && b.has_leaf[i]) content_hash.raw(b.leaves[i]);
            if (view) {
                auto [x, y] = view_in_chunk(idx);
                in_crc = crc64_combine(in_crc, b.in_crc[i], y - x);
            }
            ct_crc = crc64_combine(ct_crc, b.out_crc[i], chunk_len(idx) + kTag);
            ct_bytes += chunk_len(idx) + kTag;
        }
        w.write({b.ct.data(), ct_bytes}, ct_crc);
    };
    // Seals chunks [from, to) in batches: this thread prepares one batch (pointers into the
    // view, or plaintext assembled or read) and writes the one before while both threads seal.
    auto run = [&](uint64_t from, uint64_t to, bool hash, const uint8_t* tail, uint64_t tail_idx) {
        for (uint64_t base = from; base < to;) {
            Batch& b = batches[cur];
            b.base = base;
            b.nchunks = static_cast<size_t>(std::min<uint64_t>(kBatchChunks, to - base));
            b.hash = hash;
            for (size_t i = 0; i < b.nchunks; ++i) {
                const uint64_t idx = base + i, lo = idx * kChunkSize;
                b.in_place[i] =
                    view && lo >= vbeg && lo + kChunkSize <= cend && !(tail && idx == tail_idx);
                if (tail && idx == tail_idx)
                    b.srcs[i] = tail;
                else if (b.in_place[i])
                    b.srcs[i] = view->data() + (lo - vbeg);
                else if (lo >= cend + kSig)
                    b.srcs[i] = zero_chunk;
                else {
                    assemble(idx, b.pt.data() + i * kChunkSize, true);
                    b.srcs[i] = b.pt.data() + i * kChunkSize;
                }
            }
            Batch* prev = inflight;
            if (prev) pool.finish();
            pool.post(b.nchunks, [&b, &seal_chunk](size_t i) { seal_chunk(b, i); });
            inflight = &b;
            if (prev) complete(*prev); // written while the helper seals this batch
            base += b.nchunks;
            cur ^= 1;
        }
    };
    auto drain = [&] {
        if (!inflight) return;
        pool.finish();
        complete(*inflight);
        inflight = nullptr;
    };

    ChunkPool::Guard guard{pool}; // destroyed before the batches the jobs use
    // Chunks that hold nothing after the content, then the chunk where the content ends: its
    // leaf completes the content hash that signature 2 signs.
    const uint64_t c1 = cend / kChunkSize;
    run(0, c1, true, nullptr, 0);
    drain();
    Bytes tail(kChunkSize);
    assemble(c1, tail.data(), true);
    {
        Hash32 l;
        if (leaf(lay, c1, tail.data(), l)) content_hash.raw(l);
        if (view) {
            auto [x, y] = view_in_chunk(c1);
            ByteView bytes{tail.data() + (x - c1 * kChunkSize), static_cast<size_t>(y - x)};
            if (x < y) in_crc = crc64_combine(in_crc, crc64(0, bytes), y - x);
        }
    }
    if (view) {
        in.finish_taken(in_crc);
    } else {
        uint8_t extra;
        if (in.read({&extra, 1}) != 0) throw DataError(in.where + ": payload longer than declared");
        if (in.finish) in.finish();
    }
    Digest t2 = transcript2(t1, s1, content_hash.digest());
    s2 = schnorr_sign(sender.y_sig, sender.Y_sig, t2);
    assemble(c1, tail.data(), false); // signature 2 (and padding) into the content's last chunk
    run(c1, lay.chunks, false, tail.data(), c1);
    drain();
    w.end();
}

Opened open(const MemberKey& me, const AuthorityPublic& authority, PayloadSource& in, Sink& out,
            const OpenOptions& opts) {
    init();
    const uint64_t now = clock_or(opts.now);
    const std::string& where = in.where;
    if (!equal(me.record.authority, authority.id) || !equal(me.P, authority.P))
        throw DataError(where + ": the key of '" + me.record.id + "' belongs to another federation than --authority");

    // Clear header and stanzas.
    if (in.length < kClearFixed) throw DataError(where + ": sealed payload too short (truncated)");
    Bytes clear(kClearFixed);
    read_exact(in, clear);
    const uint8_t version = clear[0];
    if (version != kEnvelopeVersion && version != kEnvelopeV1)
        throw DataError(where + ": unsupported envelope version " + std::to_string(version));
    if (clear[1] != kSuite) throw DataError(where + ": unsupported suite " + std::to_string(clear[1]));
    size_t nstanzas = static_cast<size_t>(clear[2] | (clear[3] << 8));
    if (nstanzas == 0 || nstanzas > kMaxRecipients || clear[4] | clear[5] | clear[6] | clear[7])
        throw DataError(where + ": corrupted envelope header");
    if (in.length < kClearFixed + nstanzas * kStanza)
        throw DataError(where + ": sealed payload too short (truncated)");
    clear.resize(kClearFixed + nstanzas * kStanza);
    read_exact(in, {clear.data() + kClearFixed, nstanzas * kStanza});

    const Fingerprint my_fp = me.record.fingerprint();
    Secret file_key(32);
    bool found = false;
    for (size_t j = 0; j < nstanzas && !found; ++j) {
        const uint8_t* s = clear.data() + kClearFixed + j * kStanza;
        Point E;
        std::memcpy(E.data(), s, 32);
        if (!point_valid(E)) continue; // an identity or non-canonical E opens nothing
        Point K;
        if (!mul(K, me.y_kem.view(), E)) continue;
        Hash32 k = stanza_key(K, E, me.Y_kem, my_fp, authority);
        sodium_memzero(K.data(), 32);
        uint8_t ad[kClearFixed + 32];
        std::memcpy(ad, clear.data(), kClearFixed);
        std::memcpy(ad + kClearFixed, E.data(), 32);
        uint8_t nonce[24] = {};
        found = crypto_aead_xchacha20poly1305_ietf_decrypt(file_key.data(), nullptr, nullptr, s + 32,
                                                           32 + kTag, ad, sizeof ad, nonce, k.data()) == 0;
        sodium_memzero(k.data(), 32);
    }
    if (!found)
        throw DataError(where + ": not sealed to '" + me.record.id + "' (no recipient stanza opens with this key)",
                        "wrong recipient key, another federation, or a corrupted header");
    Secret payload_key(32);
    Hasher("n3/v1/payload", file_key.view(), 32).part(clear).final({payload_key.data(), 32});
    Hash32 commit = Hasher("n3/v1/commit", file_key.view(), 32).part(clear).hash32();

    // Chunk geometry from the ciphertext length.
    const uint64_t ct_len = in.length - clear.size();
    const uint64_t nchunks = (ct_len + kCtChunk - 1) / kCtChunk;
    if (nchunks == 0 || ct_len - (nchunks - 1) * kCtChunk <= kTag)
        throw DataError(where + ": sealed payload truncated (no final chunk)");
    const uint64_t padded = ct_len - nchunks * kTag;

    // A mapped input is decrypted in place: the helper and this thread read the chunks straight
    // from the page cache and checksum them, so this thread only writes (a pipe is read into
    // the batches and checksummed by the reader).
    const std::optional<ByteView> view = in.take ? in.take() : std::nullopt;
    if (view && view->size() != ct_len)
        throw std::logic_error("open: mapped payload of the wrong length");
    uint64_t in_crc = 0; // of the ciphertext in `view`, joined chunk by chunk
    ChunkPool pool;
    Batch batches[2] = {Batch(nchunks, !view), Batch(nchunks, !view)};
    auto chunk_fail = [&](uint64_t idx) {
        return DataError(where + ": chunk " + std::to_string(idx + 1) + " of " + std::to_string(nchunks) +
                             " does not authenticate (tampered, truncated or reordered)");
    };
    // Reads the next batch of ciphertext (from stream chunk `base`) into b.
    auto read_batch = [&](Batch& b, uint64_t base) {
        b.base = base;
        b.nchunks = static_cast<size_t>(std::min<uint64_t>(kBatchChunks, nchunks - base));
        b.fill = static_cast<size_t>(std::min<uint64_t>(b.nchunks * kCtChunk, ct_len - base * kCtChunk));
        if (view) {
            b.src = view->data() + base * kCtChunk;
        } else {
            read_exact(in, {b.ct.data(), b.fill});
            b.src = b.ct.data();
        }
    };
    Layout lay; // known once chunk 0 is open
    auto decrypt = [&](Batch& b, size_t i) {
        uint64_t idx = b.base + i;
        size_t clen = std::min(kCtChunk, b.fill - i * kCtChunk);
        const uint8_t* ct = b.src + i * kCtChunk;
        if (view) {
            ct = stable_copy(ct, clen);
            b.in_crc[i] = crc64(0, {ct, clen});
        }
        uint8_t nonce[24];
        chunk_nonce(nonce, idx, idx + 1 == nchunks);
        b.ok[i] = crypto_aead_xchacha20poly1305_ietf_decrypt(b.pt.data() + i * kChunkSize, nullptr,
                                                             nullptr, ct, clen, nullptr, 0, nonce,
                                                             payload_key.data()) == 0;
        b.has_leaf[i] =
            b.ok[i] && leaf(lay, idx, b.pt.data() + i * kChunkSize, b.leaves[i], &b.out_crc[i]);
    };
    auto post = [&](Batch& b, size_t from) {
        pool.post(b.nchunks - from, [&b, from, &decrypt](size_t k) { decrypt(b, k + from); });
    };

    ChunkPool::Guard guard{pool}; // destroyed before the batches the jobs use
    // First batch: chunk 0 holds the inner header; nothing is released before signature 1.
    Batch& first = batches[0];
    read_batch(first, 0);
    {
        uint8_t nonce[24];
        chunk_nonce(nonce, 0, nchunks == 1);
        size_t clen = std::min(kCtChunk, first.fill);
        const uint8_t* ct = view ? stable_copy(first.src, clen) : first.src;
        if (view) first.in_crc[0] = crc64(0, {ct, clen});
        first.ok[0] =
            crypto_aead_xchacha20poly1305_ietf_decrypt(first.pt.data(), nullptr, nullptr, ct, clen,
                                                       nullptr, 0, nonce, payload_key.data()) == 0;
    }
    if (!first.ok[0]) throw chunk_fail(0);
    const uint8_t* chunk0_data = first.pt.data();
    size_t chunk0 = static_cast<size_t>(std::min<uint64_t>(kChunkSize, padded));
    Cursor c({chunk0_data, chunk0}, where + ": sealed header");
    if (c.u8() != version) c.fail("inner version differs from the envelope's");
    uint16_t reclen = c.u16();
    if (version != kEnvelopeV1 && reclen > kSenderSlot) c.fail("sender record longer than its slot");
    Opened info;
    {
        ByteView recbytes = c.take(reclen);
        info.sender = PublicRecord::decode(recbytes, where + ": sender record");
    }
    if (version != kEnvelopeV1) {
        ByteView pad = c.take(kSenderSlot - reclen);
        if (!sodium_is_zero(pad.data(), pad.size())) c.fail("sender record padding is not zero");
    }
    ByteView ctxbytes = c.take(kContextSize);
    {
        Cursor cc(ctxbytes, where + ": context");
        if (cc.u8() != 1) cc.fail("unsupported context version");
        AuthorityId id = cc.array<16>();
        Point P = cc.array<32>();
        if (!equal(id, authority.id) || !equal(P, authority.P))
            cc.fail("sealed in another federation");
        uint8_t flags = cc.u8();
        if (flags & ~3) cc.fail("unknown context flags");
        uint64_t round = cc.u64();
        Hash32 base = cc.array<32>();
        if (flags & 1) info.context.round = round;
        if (flags & 2) info.context.base = base;
        uint8_t t = cc.u8();
        if (t < 1 || t > 6) cc.fail("unknown inner record type " + std::to_string(t));
        info.type = static_cast<RecordType>(t);
    }
    uint16_t nfp = c.u16(); // the real recipients, whose fingerprints come first
    if (nfp == 0 || nfp > nstanzas)
        throw DataError(where + ": recipient count does not match the header (corrupted)");
    bool for_me = false;
    for (uint16_t i = 0; i < nfp; ++i) for_me |= equal(c.array<32>(), my_fp);
    if (version != kEnvelopeV1) {
        ByteView unused = c.take(32 * (nstanzas - nfp));
        if (!sodium_is_zero(unused.data(), unused.size())) c.fail("dummy recipient slots are not zero");
    }
    info.recipients = nfp;
    info.length = c.u64();
    size_t before_sig = c.pos();
    Signature s1 = c.array<64>();
    if (info.length > padded) throw DataError(where + ": sealed lengths do not agree (corrupted)");
    lay = Layout::make(c.pos(), info.length);
    if (lay.padded != padded) throw DataError(where + ": sealed lengths do not agree (corrupted)");

    // Who sent it, and may they? All before a single byte is released.
    Point Ysig = info.sender.Y_sig(authority.P);
    Digest t1 = transcript1(clear, commit, {chunk0_data, before_sig});
    if (!schnorr_verify(Ysig, t1, s1))
        throw DataError(where + ": signature does not verify (forged, or the sender's record was altered)");
    if (!for_me)
        throw DataError(where + ": sealed for other recipients (forwarded by a recipient?)");
    info.sender_fingerprint = info.sender.fingerprint();
    check_member(info.sender, authority, now, where + ": sender");
    if (opts.roster && !opts.roster->find(info.sender_fingerprint))
        throw DataError(where + ": sender '" + info.sender.id + "' (" + hex(info.sender_fingerprint).substr(0, 16) +
                            ") is not in the roster");
    if (opts.senders_seen && opts.senders_seen->count(info.sender_fingerprint))
        throw DataError(where + ": a second record from sender '" + info.sender.id + "' (" +
                            hex(info.sender_fingerprint).substr(0, 16) + ")",
                        "one record per member per round; --allow-repeat-senders accepts more");
    if (opts.round) {
        if (!info.context.round)
            throw DataError(where + ": sealed without a round, expected round " + std::to_string(*opts.round));
        if (*info.context.round != *opts.round)
            throw DataError(where + ": sealed for round " + std::to_string(*info.context.round) + ", not round " +
                                std::to_string(*opts.round),
                            "a replay from another round?");
    }

    // Stream the payload out while checking the rest; the next batch is read and decrypted
    // while this one is written. Every recipient knows the file key, so a co-recipient can
    // re-encrypt the chunks after the first with a payload of its own, which only signature 2
    // catches: with more than one recipient nothing is released before it verified. Version 1
    // is held back whenever it has several stanzas.
    const bool hold = version == kEnvelopeV1 ? nstanzas > 1 : nfp > 1;
    HeldOutput held(hold ? opts.hold_in_memory : 0);
    RecordWriter w(hold ? static_cast<Sink&>(held) : out, info.type, info.length);
    Hasher content_hash("n3/v1/content");
    content_hash.part_u64(info.length);
    Signature s2{};
    first.has_leaf[0] = leaf(lay, 0, first.pt.data(), first.leaves[0], &first.out_crc[0]);
    post(first, 1);
    int cur = 0;
    for (;;) {
        Batch& b = batches[cur];
        Batch& other = batches[cur ^ 1];
        bool more = b.base + b.nchunks < nchunks;
        if (more) read_batch(other, b.base + b.nchunks);
        pool.finish();
        for (size_t i = 0; i < b.nchunks; ++i)
            if (!b.ok[i]) throw chunk_fail(b.base + i);
        if (more) post(other, 0);
        uint64_t out_crc = 0; // of this batch's content, joined from its chunks'
        for (size_t i = 0; i < b.nchunks; ++i) {
            if (view)
                in_crc =
                    crc64_combine(in_crc, b.in_crc[i], std::min(kCtChunk, b.fill - i * kCtChunk));
            if (!b.has_leaf[i]) continue;
            content_hash.raw(b.leaves[i]);
            auto [clo, chi] = content_in_chunk(lay, b.base + i);
            out_crc = crc64_combine(out_crc, b.out_crc[i], chi - clo);
        }
        // Content, signature 2 and padding parts of this batch's plaintext.
        uint64_t lo = b.base * kChunkSize;
        uint64_t hi = lo + (b.fill - b.nchunks * kTag);
        uint64_t x = std::max(lo, lay.header), y = std::min(hi, lay.content_end());
        if (x < y) w.write({b.pt.data() + (x - lo), static_cast<size_t>(y - x)}, out_crc);
        x = std::max(lo, lay.content_end());
        y = std::min(hi, lay.content_end() + kSig);
        if (x < y) std::memcpy(s2.data() + (x - lay.content_end()), b.pt.data() + (x - lo), y - x);
        x = std::max(lo, lay.content_end() + kSig);
        if (x < hi && !sodium_is_zero(b.pt.data() + (x - lo), static_cast<size_t>(hi - x)))
            throw DataError(where + ": padding is not zero (corrupted)");
        if (!more) break;
        cur ^= 1;
    }
    uint8_t extra;
    if (in.read({&extra, 1}) != 0) throw DataError(where + ": sealed payload longer than declared");
    Digest t2 = transcript2(t1, s1, content_hash.digest());
    if (!schnorr_verify(Ysig, t2, s2))
        throw DataError(where + ": payload signature does not verify (the payload was replaced)");
    if (view)
        in.finish_taken(in_crc);
    else if (in.finish)
        in.finish();
    w.end();
    if (hold) held.release(out);
    if (opts.senders_seen) opts.senders_seen->insert(info.sender_fingerprint);
    return info;
}

Bytes seal_record(const MemberKey& sender, std::span<const PublicRecord> recipients, RecordType type,
                  ByteView payload, const SealOptions& opts) {
    size_t pos = 0;
    PayloadSource src;
    src.type = type;
    src.length = payload.size();
    src.read = [&](std::span<uint8_t> outb) {
        size_t n = std::min(outb.size(), payload.size() - pos);
        if (n) std::memcpy(outb.data(), payload.data() + pos, n);
        pos += n;
        return n;
    };
    VectorSink sink;
    seal(sender, recipients, src, sink, opts);
    return std::move(sink.data);
}

OpenedRecord open_record(const MemberKey& me, const AuthorityPublic& authority, ByteView sealed,
                         const OpenOptions& opts) {
    Record r = decode_record(sealed, "sealed record");
    if (r.type() != RecordType::sealed)
        throw DataError("sealed record: is a " + std::string(type_name(r.type())) + " record, not sealed");
    ByteView payload = r.payload();
    size_t pos = 0;
    PayloadSource src;
    src.type = RecordType::sealed;
    src.length = payload.size();
    src.where = "sealed record";
    src.read = [&](std::span<uint8_t> outb) {
        size_t n = std::min(outb.size(), payload.size() - pos);
        if (n) std::memcpy(outb.data(), payload.data() + pos, n);
        pos += n;
        return n;
    };
    VectorSink sink;
    OpenedRecord o;
    o.info = open(me, authority, src, sink, opts);
    Record inner = decode_record(sink.data, "opened record");
    o.record = Record(inner.type(), Bytes(inner.payload().begin(), inner.payload().end()));
    return o;
}

namespace detail {

RawEnvelope raw_decrypt(const MemberKey& me, const AuthorityPublic& authority, ByteView sealed) {
    Record r = decode_record(sealed, "sealed record");
    ByteView p = r.payload();
    RawEnvelope env;
    size_t n = static_cast<size_t>(p[2] | (p[3] << 8));
    env.clear.assign(p.begin(), p.begin() + static_cast<long>(kClearFixed + n * kStanza));
    bool found = false;
    for (size_t j = 0; j < n && !found; ++j) {
        const uint8_t* s = env.clear.data() + kClearFixed + j * kStanza;
        Point E, K;
        std::memcpy(E.data(), s, 32);
        if (!point_valid(E) || !mul(K, me.y_kem.view(), E)) continue;
        Hash32 k = stanza_key(K, E, me.Y_kem, me.record.fingerprint(), authority);
        uint8_t ad[kClearFixed + 32];
        std::memcpy(ad, env.clear.data(), kClearFixed);
        std::memcpy(ad + kClearFixed, E.data(), 32);
        uint8_t nonce[24] = {};
        found = crypto_aead_xchacha20poly1305_ietf_decrypt(env.file_key.data(), nullptr, nullptr, s + 32, 32 + kTag,
                                                           ad, sizeof ad, nonce, k.data()) == 0;
    }
    if (!found) throw DataError("raw_decrypt: not a recipient");
    Secret pk(32);
    Hasher("n3/v1/payload", env.file_key.view(), 32).part(env.clear).final({pk.data(), 32});
    ByteView ct = p.subspan(env.clear.size());
    uint64_t nchunks = (ct.size() + kCtChunk - 1) / kCtChunk;
    for (uint64_t i = 0; i < nchunks; ++i) {
        size_t len = std::min(kCtChunk, ct.size() - i * kCtChunk);
        Bytes out(len - kTag);
        uint8_t nonce[24];
        chunk_nonce(nonce, i, i + 1 == nchunks);
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), nullptr, nullptr, ct.data() + i * kCtChunk, len,
                                                       nullptr, 0, nonce, pk.data()) != 0)
            throw DataError("raw_decrypt: chunk does not authenticate");
        put(env.stream, out);
    }
    return env;
}

RawEnvelope raw_wrap(std::span<const PublicRecord> recipients, const AuthorityPublic& fed) {
    RawEnvelope env;
    random_bytes({env.file_key.data(), 32});
    std::vector<Fingerprint> fps;
    env.clear = make_clear(recipients, fed, env.file_key, fps);
    return env;
}

Bytes raw_encrypt(const RawEnvelope& env) {
    Secret pk(32);
    Hasher("n3/v1/payload", env.file_key.view(), 32).part(env.clear).final({pk.data(), 32});
    Bytes payload = env.clear;
    uint64_t nchunks = (env.stream.size() + kChunkSize - 1) / kChunkSize;
    for (uint64_t i = 0; i < nchunks; ++i) {
        size_t len = std::min(kChunkSize, env.stream.size() - i * kChunkSize);
        Bytes out(len + kTag);
        uint8_t nonce[24];
        chunk_nonce(nonce, i, i + 1 == nchunks);
        crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), nullptr, env.stream.data() + i * kChunkSize, len,
                                                   nullptr, 0, nullptr, nonce, pk.data());
        put(payload, out);
    }
    return encode_record(RecordType::sealed, payload);
}

} // namespace detail

} // namespace n3::crypto
