#include "net/transport.hpp"

#include "crypto/primitives.hpp"
#include "net/chunk.hpp"
#include "record/error.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <linux/sockios.h>
#include <malloc.h>
#include <memory>
#include <netdb.h>
#include <optional>
#include <set>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>
#include <zmq.hpp>

namespace n3::net {

namespace {

using std::chrono::milliseconds;

class Deadline {
public:
    explicit Deadline(double seconds)
        : infinite_(seconds <= 0),
          end_(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(infinite_ ? 0 : seconds))),
          seconds_(seconds) {}
    bool infinite() const { return infinite_; }
    bool expired() const { return !infinite_ && Clock::now() >= end_; }
    milliseconds remaining() const {
        if (infinite_) return milliseconds(INT_MAX);
        auto left = std::chrono::duration_cast<milliseconds>(end_ - Clock::now());
        return std::max(left, milliseconds(0));
    }
    // A poll step: never longer than `step`, never past the deadline.
    milliseconds step(milliseconds step) const { return std::min(step, remaining()); }
    int linger_ms() const { return infinite_ ? -1 : static_cast<int>(remaining().count()); }
    std::string text() const {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", seconds_);
        return std::string(buf) + " s";
    }

private:
    bool infinite_;
    Clock::time_point end_;
    double seconds_;
};

// A record is a multipart message of 1 MiB frames that ZeroMQ allocates in its I/O thread and
// frees after we wrote it out. glibc would give every frame its own mmap (and fresh, faulting
// pages) and trim its heaps after each record; one shared arena that keeps its pages lets
// every record after the first land in memory that is already mapped (measured: 2.3x faster
// for a stream of 256 MiB records, bench/send.sh). Process-wide, so only n3-send calls it.
//
// The first large record still lands in fresh memory, and that is what limits a single large
// transfer (bench/send.sh: n3-send moves one 256 MiB record as fast as a bare libzmq program,
// about 0.4x socat, which reuses one 1 MiB buffer). Measured on the project's VM, 256 MiB:
// 4 KiB page faults cost 0.15-0.2 s of CPU in ZeroMQ's I/O thread (45% of the receiver's
// time); transparent huge pages (MADV_HUGEPAGE) cost 0.035 s when the pages were freed a
// moment before but 0.5-0.75 s once the machine was idle a few seconds (the balloon driver
// hands free 2 MiB blocks back to the host; touching them again costs a host fault per
// 4 KiB), so they are not used; a second thread faulting the arena in ahead of the I/O
// thread (MADV_POPULATE_WRITE) faults no faster than the I/O thread copies, so it could not
// keep ahead on two shared cores (median of 9: 0.72 s against 0.64 s without it).
void keep_frame_memory() {
    static const bool done = [] {
        mallopt(M_ARENA_MAX, 1);
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, INT_MAX);
        return true;
    }();
    (void)done;
}

// Receiving with a reserve: `bytes` of the arena's heap are faulted in and freed again, so
// that ZeroMQ cuts the first record's frames out of memory that is already mapped (as it does
// for every record after the first, see keep_frame_memory). Measured with bench/send.sh on a
// loaded machine: one 256 MiB record in 0.34 s instead of 0.53 s (median of 7).
void reserve_frame_memory(uint64_t bytes) {
    if (bytes == 0) return;
    if (bytes > kMaxReserve)
        throw UsageError("cannot reserve " + std::to_string(bytes) + " bytes: at most " +
                         std::to_string(kMaxReserve >> 20) + " MiB");
    // From the heap, not a mapping of its own that free() would hand back to the system.
    mallopt(M_MMAP_MAX, 0);
    void* p = std::malloc(static_cast<size_t>(bytes));
    mallopt(M_MMAP_MAX, 65536); // glibc's default
    if (!p)
        throw EnvError("cannot reserve " + std::to_string(bytes >> 20) + " MiB of memory",
                       "lower --reserve");
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto from = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
    const auto to = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
    // MADV_POPULATE_WRITE (Linux 5.14) faults a range in at once; older kernels get a write
    // to every page.
    constexpr int populate_write = 23;
    if (to > from && ::madvise(reinterpret_cast<void*>(from), to - from, populate_write) != 0) {
        volatile uint8_t* v = static_cast<uint8_t*>(p);
        for (uint64_t i = 0; i < bytes; i += page) v[i] = 0;
    }
    std::free(p);
}

void set_curve_server(zmq::socket_t& s, const CurveServer& c) {
    make_curve_server(s, c.keys.key);
}

void warn_exposed(const CurveSecretFile& keys, const Notify& warn) {
    if (warn && !keys.exposed.empty()) warn(keys.exposed);
}

void set_curve_client(zmq::socket_t& s, const CurveClient& c) {
    zmq_setsockopt(s.handle(), ZMQ_CURVE_SERVERKEY, c.server.data(), 32);
    zmq_setsockopt(s.handle(), ZMQ_CURVE_PUBLICKEY, c.keys.key.public_key.data(), 32);
    zmq_setsockopt(s.handle(), ZMQ_CURVE_SECRETKEY, c.keys.key.secret.data(), 32);
}

// A listening unix socket answers connect(); ZeroMQ would silently unlink it and take over.
void check_ipc_free(const Endpoint& ep) {
    if (ep.host.empty() || ep.host[0] == '@') return;
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, ep.host.c_str(), ep.host.size() + 1);
    bool in_use = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (in_use)
        throw EnvError("cannot listen on " + ep.text + ": address already in use",
                       "another receiver listens there; pick another path");
}

// ZeroMQ speaks IPv6 only when asked; an IPv6 literal asks.
void allow_ipv6(zmq::socket_t& s, const Endpoint& ep) {
    if (ep.transport == "tcp" && ep.host.find(':') != std::string::npos)
        s.set(zmq::sockopt::ipv6, 1);
}

void bind_or_throw(zmq::socket_t& s, const Endpoint& ep) {
    if (ep.transport == "ipc") check_ipc_free(ep);
    allow_ipv6(s, ep);
    try {
        s.bind(ep.text);
    } catch (const zmq::error_t& e) {
        switch (e.num()) {
        case EADDRINUSE:
            throw EnvError("cannot listen on " + ep.text + ": address already in use",
                           "another program listens there; pick another port");
        case EADDRNOTAVAIL:
            throw EnvError("cannot listen on " + ep.text + ": no such address on this host",
                           "use tcp://*:PORT to listen on every address");
        case ENODEV:
            throw EnvError("cannot listen on " + ep.text + ": no such address or interface");
        case EACCES: throw EnvError("cannot listen on " + ep.text + ": permission denied");
        case ENOENT: throw EnvError("cannot listen on " + ep.text + ": no such directory");
        default: throw EnvError("cannot listen on " + ep.text + ": " + e.what());
        }
    }
}

// A host name that does not exist is a typo, not a peer that is late: say so now instead of
// retrying until the timeout. (A failing name server is left to ZeroMQ's retries.)
void check_host(const Endpoint& ep) {
    if (ep.transport != "tcp") return;
    unsigned char buf[sizeof(in6_addr)];
    if (inet_pton(AF_INET, ep.host.c_str(), buf) == 1 ||
        inet_pton(AF_INET6, ep.host.c_str(), buf) == 1)
        return;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(ep.host.c_str(), nullptr, &hints, &res);
    if (res) freeaddrinfo(res);
    if (rc == EAI_NONAME)
        throw EnvError("cannot connect to " + ep.text + ": unknown host '" + ep.host + "'");
}

void connect_or_throw(zmq::socket_t& s, const Endpoint& ep) {
    check_host(ep);
    allow_ipv6(s, ep);
    try {
        s.connect(ep.text);
    } catch (const zmq::error_t& e) {
        throw UsageError("cannot connect to " + ep.text + ": " + e.what());
    }
}

// Watches a socket's connections: their file descriptors (for SIOCOUTQ), finished
// handshakes and refused CURVE keys.
class Monitor {
public:
    Monitor(zmq::context_t& ctx, zmq::socket_t& s) : pair_(ctx, zmq::socket_type::pair) {
        static std::atomic<unsigned> counter{0};
        std::string addr = "inproc://n3-monitor-" + std::to_string(counter++);
        if (zmq_socket_monitor(s.handle(), addr.c_str(), ZMQ_EVENT_ALL) != 0)
            throw EnvError(std::string("cannot monitor socket: ") + zmq_strerror(zmq_errno()));
        pair_.set(zmq::sockopt::linger, 0);
        pair_.connect(addr);
    }

    void drain() {
        for (;;) {
            zmq::message_t head, addr;
            if (!pair_.recv(head, zmq::recv_flags::dontwait)) return;
            if (head.more()) (void)pair_.recv(addr, zmq::recv_flags::none);
            if (head.size() < 6) continue;
            uint16_t event = 0;
            uint32_t value = 0;
            std::memcpy(&event, head.data(), 2);
            std::memcpy(&value, static_cast<const uint8_t*>(head.data()) + 2, 4);
            switch (event) {
            case ZMQ_EVENT_CONNECTED:
            case ZMQ_EVENT_ACCEPTED:
                fds.insert(static_cast<int>(value));
                ++connections;
                break;
            case ZMQ_EVENT_DISCONNECTED: fds.erase(static_cast<int>(value)); break;
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: ++handshakes; break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: auth_status = static_cast<int>(value); break;
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
            case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL: ++failed_handshakes; break;
            default: break;
            }
        }
    }

    // Bytes the kernel still holds for the peers (sent but not acknowledged, or unread).
    uint64_t unsent() const {
        uint64_t total = 0;
        for (int fd : fds) {
            int n = 0;
            if (::ioctl(fd, SIOCOUTQ, &n) == 0 && n > 0) total += static_cast<uint64_t>(n);
        }
        return total;
    }

    void close() { pair_.close(); }

    std::set<int> fds;
    uint64_t connections = 0, handshakes = 0, failed_handshakes = 0;
    int auth_status = 0;

private:
    zmq::socket_t pair_;
};

// One socket in its own context, so that each endpoint's delivery is confirmed on its own.
struct Link {
    Link(const std::string& endpoint, zmq::socket_type type, bool connects)
        : text(endpoint), connecting(connects), ctx(1), sock(ctx, type) {}
    void check(const Deadline&) {
        mon->drain();
        // A listener sees refused clients here too; its ZAP handler reports those.
        if (connecting && mon->auth_status != 0)
            throw EnvError(
                text + " refused our CURVE key (ZAP status " + std::to_string(mon->auth_status) +
                    ")",
                "ask the receiver's operator to add our public key to its --curve-allow file");
    }
    std::string text;
    bool connecting;
    // Frames handed to ZeroMQ and not yet released by it. ZeroMQ releases a frame once its
    // bytes were written to the connection (or dropped with it), so 0 means ZeroMQ's queue for
    // this peer is empty. Declared before the context: released from its I/O thread.
    std::atomic<uint64_t> pending{0};
    uint64_t frames_sent = 0;
    zmq::context_t ctx;
    zmq::socket_t sock;
    std::unique_ptr<Monitor> mon;
    std::unique_ptr<ZapHandler> zap;
};

std::string waiting_hint(const Link& l, bool connecting) {
    if (l.mon->failed_handshakes > 0 || (l.mon->connections > 0 && l.mon->handshakes == 0))
        return "connections to " + l.text +
               " never completed their handshake: check --curve-server "
               "(the receiver's public key) and that both sides use CURVE";
    if (connecting && l.mon->handshakes == 0)
        return "is a receiver running? n3-send --recv " + l.text + " --count N";
    return "the peer is slow or stopped reading; raise --timeout";
}

void send_frame(Link& l, zmq::message_t& m, bool more, const Deadline& d, uint64_t record,
                bool connecting) {
    const auto flags =
        (more ? zmq::send_flags::sndmore : zmq::send_flags::none) | zmq::send_flags::dontwait;
    for (;;) {
        if (l.sock.send(m, flags)) {
            ++l.frames_sent;
            return;
        }
        l.check(d);
        if (d.expired())
            throw IncompleteError("timed out after " + d.text() + ": " + l.text +
                                      " did not take record " + std::to_string(record + 1),
                                  waiting_hint(l, connecting));
        zmq::pollitem_t item{l.sock.handle(), 0, ZMQ_POLLOUT, 0};
        zmq::poll(&item, 1, d.step(milliseconds(100)));
    }
}

// Waits until each link's records left every queue; throws IncompleteError naming the links
// that did not finish before the deadline.
void finish_links(std::vector<std::unique_ptr<Link>>& links, const Deadline& d, bool connecting) {
    // A link is done when ZeroMQ released every frame we gave it (its queue is empty and the
    // bytes were written to the connection) and the kernel's send queue is empty (the peer
    // acknowledged every byte), or the peer left after taking every frame. Frames still
    // pending wait, up to the deadline, for the peer to come (back).
    // ZeroMQ releases a small frame once it is copied into the engine's batch, a moment
    // before the batch is written, so the condition must hold three times, 2 ms apart.
    const size_t n = links.size();
    std::vector<char> done(n, 0);
    std::vector<int> quiet(n, 0);
    for (;;) {
        bool waiting = false;
        for (size_t i = 0; i < n; ++i) {
            if (done[i]) continue;
            Link& l = *links[i];
            l.check(d);
            // Frames released before any handshake were dropped, not delivered.
            const bool drained = l.pending.load() == 0 && l.mon->handshakes > 0;
            if (l.frames_sent == 0)
                done[i] = 1;
            else if (drained && (l.mon->fds.empty() || l.mon->unsent() == 0))
                done[i] = ++quiet[i] >= 3;
            else
                quiet[i] = 0;
            if (!done[i]) waiting = true;
        }
        if (!waiting || d.expired()) break;
        std::this_thread::sleep_for(d.step(milliseconds(2)));
    }
    std::vector<std::string> late;
    std::string hint;
    for (size_t i = 0; i < n; ++i) {
        Link& l = *links[i];
        l.check(d);
        if (!done[i]) {
            late.push_back(l.text);
            if (hint.empty()) hint = waiting_hint(l, connecting);
        }
        l.sock.set(zmq::sockopt::linger, 0); // nothing left, or the deadline passed
        l.mon->close();
        l.sock.close();
        l.zap.reset();
        l.ctx.close();
    }
    if (!late.empty()) {
        std::string names;
        for (auto& name : late) names += (names.empty() ? "" : ", ") + name;
        throw IncompleteError(
            "timed out after " + d.text() + ": " + names + " did not take every record", hint);
    }
}

// A frame read from a pipe lives in a buffer that every link's message references; the
// header before the bytes counts the references and the bytes for the send budget.
struct FrameBuffer {
    std::atomic<int> refs{1};
    size_t size = 0;
    std::atomic<uint64_t>* budget = nullptr;
};
constexpr size_t kFrameHeader = 64; // keeps the bytes 64-byte aligned

FrameBuffer* buffer_of(void* data) {
    return reinterpret_cast<FrameBuffer*>(static_cast<uint8_t*>(data) - kFrameHeader);
}

void drop_buffer_ref(FrameBuffer* b) {
    if (b->refs.fetch_sub(1) == 1) {
        *b->budget -= b->size;
        b->~FrameBuffer();
        std::free(b);
    }
}

// ZeroMQ's free functions: a link's frame was written (or dropped).
// A frame of a mapped input: once ZeroMQ let go of it, its pages leave the resident set (they
// stay in the page cache; another link still sending it faults them back in unchanged).
// Without it a sender of a 4 GiB file kept 4 GiB resident.
struct MappedFrame {
    std::atomic<uint64_t>* pending;
    std::atomic<uint64_t>* held; // the source's mapped bytes ZeroMQ holds
    size_t size;
};
void release_mapped(void* data, void* hint) {
    auto* f = static_cast<MappedFrame*>(hint);
    release_pages(ByteView(static_cast<const uint8_t*>(data), f->size));
    *f->held -= f->size;
    --*f->pending;
    delete f;
}
void release_owned(void* data, void* hint) {
    --*static_cast<std::atomic<uint64_t>*>(hint);
    drop_buffer_ref(buffer_of(data));
}

// One frame of a record: a view into the input's mapping, or an owned buffer.
struct Frame {
    const uint8_t* data = nullptr;
    size_t size = 0;
    bool owned = false;
    std::atomic<uint64_t>* mapped = nullptr; // not owned: the source's count of mapped bytes held
    Frame() = default;
    Frame(const Frame&) = delete;
    Frame& operator=(const Frame&) = delete;
    ~Frame() {
        if (owned) drop_buffer_ref(buffer_of(const_cast<uint8_t*>(data)));
    }
    // A message for one link, sharing the bytes; the link counts it until ZeroMQ lets go.
    zmq::message_t message_for(std::atomic<uint64_t>& pending) const {
        if (owned) ++buffer_of(const_cast<uint8_t*>(data))->refs;
        ++pending;
        if (owned)
            return zmq::message_t(const_cast<uint8_t*>(data), size, &release_owned, &pending);
        *mapped += size;
        return zmq::message_t(const_cast<uint8_t*>(data), size, &release_mapped,
                              new MappedFrame{&pending, mapped, size});
    }
};

// Cuts the records of an input into frames. A regular file is memory-mapped and its frames
// point into the mapping (no copy); a pipe is read into fresh frames. The last frame of a
// record is only produced once the record's checksum matched, so a corrupt record never
// completes on the wire.
class FrameSource {
public:
    explicit FrameSource(Input& in) : in_(in) {
        if (in.is_regular())
            map_ = in.map();
        else
            reader_.emplace(in);
    }

    bool next_record() {
        sent_ = 0;
        if (map_) {
            ByteView all = map_->bytes();
            if (offset_ >= all.size()) return false;
            rec_start_ = offset_;
            if (all.size() - offset_ < kPreambleSize)
                throw DataError(where() + ": truncated record header (" +
                                std::to_string(all.size() - offset_) + " of " +
                                std::to_string(kPreambleSize) + " bytes)");
            pre_ = decode_preamble(all.data() + offset_, where());
            if (all.size() - offset_ < pre_.record_size())
                throw DataError(where() + ": truncated record (" +
                                std::to_string(all.size() - offset_) + " of " +
                                std::to_string(pre_.record_size()) + " bytes)");
            crc_ = 0;
            return true;
        }
        auto pre = reader_->begin();
        if (!pre) return false;
        pre_ = *pre;
        encode_preamble(pre_, head_);
        crc_ = crc64(0, ByteView(head_, kPreambleSize));
        return true;
    }

    uint64_t record_size() const { return pre_.record_size(); }

    // Fills `frame` with the record's next frame; returns true when it is the last one.
    bool next_frame(Frame& frame) {
        const uint64_t total = pre_.record_size(), body_end = kPreambleSize + pre_.payload_len;
        const size_t n = static_cast<size_t>(std::min<uint64_t>(kFrameSize, total - sent_));
        const bool last = sent_ + n == total;
        if (map_) {
            const uint8_t* base = map_->bytes().data() + rec_start_;
            uint64_t body = std::min<uint64_t>(sent_ + n, body_end);
            if (body > sent_) crc_ = crc64(crc_, ByteView(base + sent_, body - sent_));
            if (last) {
                uint64_t want = 0;
                for (int i = 7; i >= 0; --i) want = (want << 8) | base[body_end + i];
                if (want != crc_)
                    throw DataError(where() + ": corrupted record (checksum mismatch)");
                offset_ = rec_start_ + total;
                ++index_;
            }
            // The mapping outlives every context (see send_records).
            frame.data = base + sent_;
            frame.size = n;
            frame.mapped = &mapped_;
            current_ += n;
            sent_ += n;
            return last;
        }
        void* raw = std::malloc(kFrameHeader + n);
        if (!raw) throw std::bad_alloc();
        auto* header = new (raw) FrameBuffer;
        header->size = n;
        header->budget = &budget_;
        budget_ += n;
        current_ += n;
        auto* out = static_cast<uint8_t*>(raw) + kFrameHeader;
        frame.data = out;
        frame.size = n;
        frame.owned = true;
        size_t pos = 0;
        if (sent_ < kPreambleSize) {
            size_t k = static_cast<size_t>(std::min<uint64_t>(n, kPreambleSize - sent_));
            std::memcpy(out, head_ + sent_, k);
            pos = k;
        }
        if (sent_ + pos < body_end && pos < n) {
            size_t want =
                static_cast<size_t>(std::min<uint64_t>(n - pos, body_end - (sent_ + pos)));
            size_t got = 0;
            while (got < want) {
                size_t r = reader_->read_payload(std::span<uint8_t>(out + pos + got, want - got));
                if (r == 0) break;
                got += r;
            }
            crc_ = crc64(crc_, ByteView(out + pos, want));
            pos += want;
        }
        if (pos < n) {
            // The trailer: the reader checks the input's own checksum first.
            reader_->end();
            uint8_t tail[kTrailerSize];
            for (int i = 0; i < 8; ++i) tail[i] = static_cast<uint8_t>(crc_ >> (8 * i));
            uint64_t at = sent_ + pos - body_end;
            std::memcpy(out + pos, tail + at, n - pos);
            pos = n;
        }
        sent_ += n;
        if (last) ++index_;
        return last;
    }

    uint64_t records() const { return index_; }

    // Bytes of earlier records that ZeroMQ has not written out yet (copied frames only; a
    // mapped file's frames point into the page cache and cost nothing).
    uint64_t backlog() const {
        uint64_t all = held();
        return all > current_ ? all - current_ : 0;
    }
    // Bytes of frames ZeroMQ still holds, this record's included: copied ones, and mapped
    // ones (whose pages are resident until it lets go of them).
    uint64_t held() const { return budget_.load() + mapped_.load(); }
    void start_record() { current_ = 0; }

private:
    std::string where() const {
        return in_.name() + ": record " + std::to_string(index_ + 1) + " at byte " +
               std::to_string(map_ ? rec_start_ : reader_->offset());
    }
    Input& in_;
    std::shared_ptr<Mapping> map_;
    std::optional<RecordReader> reader_;
    Preamble pre_{};
    uint8_t head_[kPreambleSize]{};
    uint64_t offset_ = 0, rec_start_ = 0, sent_ = 0, crc_ = 0, index_ = 0;
    uint64_t current_ = 0;            // bytes of the record being cut
    std::atomic<uint64_t> budget_{0}; // bytes of owned frames ZeroMQ still holds
    std::atomic<uint64_t> mapped_{0}; // bytes of mapped frames ZeroMQ still holds, per link
};

// Bounded memory: a sender holds at most the record it is cutting plus this much of earlier
// records that ZeroMQ has not written yet (read from a pipe: copies; from a file: mapped pages).
// The message high-water mark can then be large, which small records need for throughput.
constexpr uint64_t kSendBacklog = uint64_t(64) << 20;

// Waits while ZeroMQ holds more than `limit` bytes of copied frames.
void wait_backlog(const FrameSource& src, uint64_t held, uint64_t limit,
                  const std::vector<Link*>& to, const Deadline& d, uint64_t index,
                  bool connecting) {
    (void)src;
    while (held > limit) {
        for (Link* l : to) l->check(d);
        if (d.expired())
            throw IncompleteError("timed out after " + d.text() + ": " + to.front()->text +
                                      " did not take record " + std::to_string(index),
                                  waiting_hint(*to.front(), connecting));
        std::this_thread::sleep_for(milliseconds(1));
        held = src.held();
    }
}

// Sends one record to the given links (each gets its own reference to every frame): as one
// message, or above kChunkAbove as chunk messages (chunk.hpp), a header frame and one data
// frame each. Every record gets its own id from `ids`.
void send_record(FrameSource& src, const std::vector<Link*>& to, const Deadline& d, uint64_t index,
                 bool connecting, uint64_t id) {
    src.start_record();
    wait_backlog(src, src.backlog(), kSendBacklog, to, d, index + 1, connecting);
    const bool chunked = src.record_size() > kChunkAbove;
    uint64_t offset = 0;
    for (;;) {
        // A chunked record read from a pipe is not held whole either.
        if (chunked) wait_backlog(src, src.held(), kSendBacklog, to, d, index + 1, connecting);
        Frame frame;
        const bool last = src.next_frame(frame);
        uint8_t head[kChunkHeaderSize];
        if (chunked) encode_chunk_header(ChunkHeader{id, offset, src.record_size(), last}, head);
        for (Link* l : to) {
            if (chunked) {
                zmq::message_t h(head, kChunkHeaderSize);
                send_frame(*l, h, true, d, index, connecting);
            }
            zmq::message_t msg = frame.message_for(l->pending);
            send_frame(*l, msg, !last && !chunked, d, index, connecting);
        }
        offset += frame.size;
        if (last) return;
    }
}

// Record ids: random per sender, then counting, so that two senders (or one restarted) do
// not share them.
uint64_t first_record_id() {
    uint64_t id = 0;
    crypto::random_bytes(std::span<uint8_t>(reinterpret_cast<uint8_t*>(&id), sizeof id));
    return id;
}

std::string peer_of(zmq::message_t& m) {
    const char* p = zmq_msg_gets(m.handle(), "Peer-Address");
    return p ? p : "";
}

} // namespace

// Sending ----------------------------------------------------------------------------------------

SendStats send_records(Input& in, const SendOptions& o) {
    if (o.endpoints.empty()) throw UsageError("no endpoint to send to");
    if (o.fanout == Fanout::single && o.endpoints.size() > 1)
        throw UsageError("several endpoints need --scatter or --broadcast");
    std::vector<Endpoint> eps;
    for (auto& e : o.endpoints) eps.push_back(check_endpoint(e, EndpointRole::connect));
    keep_frame_memory();
    const Deadline d(o.timeout);
    // Declared before the links: zero-copy frames point into the input's mapping, which must
    // outlive every context.
    FrameSource src(in);
    if (o.curve) warn_exposed(o.curve->keys, o.warn);
    std::vector<std::unique_ptr<Link>> links;
    for (auto& ep : eps) {
        auto l = std::make_unique<Link>(ep.text, zmq::socket_type::push, true);
        l->sock.set(zmq::sockopt::sndhwm, o.hwm);
        l->sock.set(zmq::sockopt::linger, 0);
        if (o.curve) set_curve_client(l->sock, *o.curve);
        l->mon = std::make_unique<Monitor>(l->ctx, l->sock);
        connect_or_throw(l->sock, ep);
        links.push_back(std::move(l));
    }
    SendStats st;
    const uint64_t ids = first_record_id();
    try {
        while (src.next_record()) {
            std::vector<Link*> to;
            if (o.fanout == Fanout::broadcast)
                for (auto& l : links) to.push_back(l.get());
            else
                to.push_back(links[st.records % links.size()].get());
            send_record(src, to, d, st.records, true, ids + st.records);
            if (o.verbose)
                o.verbose("record " + std::to_string(st.records + 1) + " (" +
                          std::to_string(src.record_size()) + " bytes) queued for " +
                          to.front()->text +
                          (to.size() > 1 ? " and " + std::to_string(to.size() - 1) + " more" : ""));
            st.bytes += src.record_size();
            ++st.records;
        }
    } catch (const DataError&) {
        // Records before the bad one still go (briefly); the bad one's frames are rolled back.
        for (auto& l : links) {
            l->sock.set(zmq::sockopt::linger,
                        std::min(1000, d.linger_ms() < 0 ? 1000 : d.linger_ms()));
            l->mon->close();
            l->sock.close();
        }
        throw;
    }
    finish_links(links, d, true);
    return st;
}

// Receiving --------------------------------------------------------------------------------------

ReceiveStats receive_records(const ReceiveOptions& o, RecordOutlet& outlet,
                             const RecordHandler& on_record) {
    const bool pull = o.pattern == Pattern::pull;
    Endpoint ep = check_endpoint(o.endpoint, pull ? EndpointRole::bind : EndpointRole::connect);
    keep_frame_memory();
    reserve_frame_memory(o.reserve);
    // Two I/O threads where there are two cores: many senders at once are read in parallel
    // (8 senders of 256 MiB: 0.60 s against 0.69 s with one); one sender is no slower.
    zmq::context_t ctx(std::thread::hardware_concurrency() >= 2 ? 2 : 1);
    std::unique_ptr<ZapHandler> zap;
    if (pull && o.curve_server) warn_exposed(o.curve_server->keys, o.warn);
    if (!pull && o.curve_client) warn_exposed(o.curve_client->keys, o.warn);
    if (pull && o.curve_server) zap = std::make_unique<ZapHandler>(ctx, o.curve_server->allowed);
    zmq::socket_t sock(ctx, pull ? zmq::socket_type::pull : zmq::socket_type::sub);
    sock.set(zmq::sockopt::rcvhwm, o.hwm);
    sock.set(zmq::sockopt::linger, 0);
    sock.set(zmq::sockopt::handshake_ivl, kHandshakeMs);
    // A frame longer than any record could be is refused before ZeroMQ allocates it (a peer
    // declaring a 2^60-byte frame is cut off); a plain ZeroMQ peer may still send a large
    // record whole, as one frame, up to --max-size.
    const uint64_t frame_cap =
        std::min<uint64_t>(o.max_payload + kPreambleSize + kTrailerSize, uint64_t(INT64_MAX));
    sock.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(frame_cap));
    if (pull && o.curve_server) set_curve_server(sock, *o.curve_server);
    if (!pull && o.curve_client) set_curve_client(sock, *o.curve_client);
    if (pull) {
        bind_or_throw(sock, ep);
        if (o.verbose) o.verbose("listening on " + sock.get(zmq::sockopt::last_endpoint));
    }
    std::unique_ptr<Monitor> mon;
    if (!pull) {
        sock.set(zmq::sockopt::subscribe, "");
        mon = std::make_unique<Monitor>(ctx, sock);
        connect_or_throw(sock, ep);
    }

    const Deadline d(o.timeout);
    const auto stall = std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(o.stall > 0 ? o.stall : 1e9));
    ReceiveStats st;
    ChunkReassembler chunks(outlet, o.max_payload, o.warn);
    auto arrived = [&](const Preamble& pre, const std::string& peer, const std::string& where,
                       bool chunked) {
        if (on_record) on_record(Arrival{pre, peer, st.received, where, chunked});
        ++st.received;
    };
    std::vector<zmq::message_t> frames;
    std::vector<ByteView> views;
    auto last_expiry = Clock::now();
    while (o.count == 0 || st.received < o.count) {
        if (zap && o.warn)
            for (auto& r : zap->take_rejections()) o.warn(r);
        if (mon) {
            mon->drain();
            if (mon->auth_status != 0)
                throw EnvError(
                    ep.text + " refused our CURVE key (ZAP status " +
                        std::to_string(mon->auth_status) + ")",
                    "ask the publisher's operator to add our public key to its --curve-allow file");
        }
        if (d.expired()) {
            st.timed_out = true;
            break;
        }
        if (chunks.partial() > 0 && Clock::now() - last_expiry > milliseconds(500)) {
            last_expiry = Clock::now();
            chunks.expire(last_expiry, stall);
        }
        frames.clear();
        zmq::message_t first;
        if (!sock.recv(first, zmq::recv_flags::dontwait)) {
            if (o.on_idle) o.on_idle();
            zmq::pollitem_t item{sock.handle(), 0, ZMQ_POLLIN, 0};
            zmq::poll(&item, 1, d.step(milliseconds(200)));
            continue;
        }
        frames.push_back(std::move(first));
        // ZeroMQ hands over a multipart message only once all of it arrived.
        while (frames.back().more()) {
            zmq::message_t part;
            (void)sock.recv(part, zmq::recv_flags::none);
            frames.push_back(std::move(part));
        }
        std::string peer = peer_of(frames.front());
        const std::string from = peer.empty() ? ep.text : peer;
        views.clear();
        for (auto& f : frames) views.emplace_back(f.data<uint8_t>(), f.size());
        if (is_chunk_header(views.front())) {
            ChunkHeader h;
            try {
                h = decode_chunk_header(views.front(), "chunk from " + from);
            } catch (const DataError& e) {
                ++st.chunks_refused;
                if (o.warn) o.warn(std::string(e.what()) + "; dropped");
                continue;
            }
            // The connection the chunk came on: chunks of different senders never mix.
            const int conn = zmq_msg_get(frames.front().handle(), ZMQ_SRCFD);
            const uint64_t dropped = chunks.dropped(), refused = chunks.refused();
            auto done = chunks.add(conn, from, h, std::span<const ByteView>(views).subspan(1),
                                   Clock::now());
            st.dropped += chunks.dropped() - dropped;
            st.chunks_refused += chunks.refused() - refused;
            if (done) arrived(done->preamble, peer, done->where, true);
            continue;
        }
        RecordAssembler check(o.max_payload, "message from " + from);
        Preamble pre;
        try {
            pre = check.whole(views);
        } catch (const DataError& e) {
            ++st.dropped;
            if (o.warn) o.warn(std::string(e.what()) + "; dropped");
            continue;
        }
        auto out = outlet.begin(pre, peer);
        for (auto v : views) out->write(v);
        const std::string where = out->commit();
        arrived(pre, peer, where, false);
        frames.clear(); // give the memory back before waiting for the next record
    }
    // Records still partial will not complete: nothing of them stays behind.
    {
        const uint64_t dropped = chunks.dropped();
        chunks.clear();
        st.dropped += chunks.dropped() - dropped;
    }
    if (o.on_idle) o.on_idle();
    if (st.timed_out && st.received < o.quorum) {
        std::string got = std::to_string(st.received) + " of " +
                          (o.count ? std::to_string(o.count) : std::string("any")) + " records";
        throw IncompleteError(
            "timed out after " + d.text() + " with " + got + " (quorum " +
                std::to_string(o.quorum) + ")",
            st.dropped ? std::to_string(st.dropped) + " bad records were dropped"
                       : "the missing peers may have died; raise --timeout or lower --quorum");
    }
    return st;
}

// Publishing -------------------------------------------------------------------------------------

PublishStats publish_records(Input& in, const PublishOptions& o) {
    Endpoint ep = check_endpoint(o.endpoint, EndpointRole::bind);
    keep_frame_memory();
    const Deadline d(o.timeout);
    FrameSource src(in);
    std::vector<std::unique_ptr<Link>> links;
    links.push_back(std::make_unique<Link>(ep.text, zmq::socket_type::xpub, false));
    Link& l = *links.front();
    if (o.curve) warn_exposed(o.curve->keys, o.warn);
    if (o.curve) l.zap = std::make_unique<ZapHandler>(l.ctx, o.curve->allowed);
    l.sock.set(zmq::sockopt::sndhwm, o.hwm);
    l.sock.set(zmq::sockopt::linger, 0);
    l.sock.set(zmq::sockopt::xpub_verboser, 1);
    l.sock.set(zmq::sockopt::xpub_nodrop, 1);
    if (o.curve) set_curve_server(l.sock, *o.curve);
    l.mon = std::make_unique<Monitor>(l.ctx, l.sock);
    bind_or_throw(l.sock, ep);
    if (o.verbose) o.verbose("publishing on " + l.sock.get(zmq::sockopt::last_endpoint));

    PublishStats st;
    int64_t subscribers = 0;
    auto take_subscriptions = [&] {
        zmq::message_t m;
        while (l.sock.recv(m, zmq::recv_flags::dontwait))
            if (m.size() >= 1) subscribers += m.data<uint8_t>()[0] == 1 ? 1 : -1;
        if (l.zap && o.warn)
            for (auto& r : l.zap->take_rejections()) o.warn(r);
    };
    while (subscribers < static_cast<int64_t>(o.subscribers) && !d.expired()) {
        zmq::pollitem_t item{l.sock.handle(), 0, ZMQ_POLLIN, 0};
        zmq::poll(&item, 1, d.step(milliseconds(100)));
        take_subscriptions();
    }
    if (subscribers <= 0)
        throw IncompleteError("timed out after " + d.text() + ": no subscriber joined " + ep.text,
                              "nodes join with: n3-send --sub tcp://THIS-HOST:PORT --count 1");
    st.subscribers = static_cast<uint64_t>(subscribers);
    if (o.verbose) o.verbose(std::to_string(subscribers) + " subscribers joined");
    const uint64_t ids = first_record_id();
    while (src.next_record()) {
        send_record(src, {&l}, d, st.records, false, ids + st.records);
        st.bytes += src.record_size();
        ++st.records;
    }
    finish_links(links, d, false);
    if (st.subscribers < o.subscribers)
        throw IncompleteError(
            "timed out after " + d.text() + ": only " + std::to_string(st.subscribers) + " of " +
            std::to_string(o.subscribers) + " subscribers joined (they got every record)");
    return st;
}

} // namespace n3::net
