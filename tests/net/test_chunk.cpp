#include "net/chunk.hpp"
#include "net/spool.hpp"
#include "record/error.hpp"
#include "record/format.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <mutex>
#include <random>
#include <thread>
#include <unistd.h>

using namespace n3;
using namespace n3::net;

namespace {

Bytes record_of(size_t payload, uint32_t seed) {
    Bytes p(payload);
    std::mt19937 rng(seed);
    for (auto& b : p) b = static_cast<uint8_t>(rng());
    return encode_record(RecordType::update, p);
}

struct Chunk {
    ChunkHeader h;
    Bytes data;
};

// The record cut as n3-send cuts it: chunks of `size` bytes, the last one flagged.
std::vector<Chunk> chunks_of(const Bytes& rec, uint64_t id, size_t size) {
    std::vector<Chunk> out;
    for (size_t at = 0; at < rec.size(); at += size) {
        size_t n = std::min(size, rec.size() - at);
        out.push_back({ChunkHeader{id, at, rec.size(), at + n == rec.size()},
                       Bytes(rec.begin() + static_cast<std::ptrdiff_t>(at),
                             rec.begin() + static_cast<std::ptrdiff_t>(at + n))});
    }
    return out;
}

// A pipe as stdout, drained by a thread: a pipe cannot take bytes back, so StdoutOutlet
// holds or streams chunked records on it (a regular file it writes in place).
class PipeOut {
public:
    PipeOut() {
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        r_ = p[0];
        w_ = p[1];
        t_ = std::thread([this] {
            uint8_t buf[65536];
            ssize_t n;
            while ((n = ::read(r_, buf, sizeof buf)) > 0) {
                std::lock_guard<std::mutex> l(m_);
                got_.insert(got_.end(), buf, buf + n);
            }
        });
    }
    ~PipeOut() { close(); }
    int fd() const { return w_; }
    // What came out once at least n bytes did (10 s at most).
    Bytes wait_for(size_t n) {
        for (int i = 0; i < 1000; ++i) {
            {
                std::lock_guard<std::mutex> l(m_);
                if (got_.size() >= n) return got_;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        std::lock_guard<std::mutex> l(m_);
        return got_;
    }
    // Everything, once the write end is closed.
    Bytes all() {
        close();
        return got_;
    }

private:
    void close() {
        if (w_ >= 0) ::close(w_);
        w_ = -1;
        if (t_.joinable()) t_.join();
        if (r_ >= 0) ::close(r_);
        r_ = -1;
    }
    int r_ = -1, w_ = -1;
    std::thread t_;
    std::mutex m_;
    Bytes got_;
};

Bytes file_contents(int fd) {
    Bytes b(static_cast<size_t>(::lseek(fd, 0, SEEK_END)));
    REQUIRE(::pread(fd, b.data(), b.size(), 0) == static_cast<ssize_t>(b.size()));
    return b;
}

// Records in memory; counts what was begun, committed and aborted.
struct Outlet final : RecordOutlet {
    struct Out final : RecordOut {
        explicit Out(Outlet& outlet) : o(outlet) {}
        ~Out() override { ++o.destroyed; }
        void write(ByteView b) override { bytes.insert(bytes.end(), b.begin(), b.end()); }
        std::string commit() override {
            o.committed.push_back(std::move(bytes));
            return "mem";
        }
        void abort(const std::string& why) override { o.aborted.push_back(why); }
        Outlet& o;
        Bytes bytes;
    };
    std::unique_ptr<RecordOut> begin(const Preamble&, const std::string&) override {
        ++begun;
        return std::make_unique<Out>(*this);
    }
    std::vector<Bytes> committed;
    std::vector<std::string> aborted;
    int begun = 0, destroyed = 0;
};

struct Fixture {
    Outlet out;
    std::vector<std::string> warnings;
    ChunkReassembler re{out, kDefaultMaxPayload,
                        [this](const std::string& m) { warnings.push_back(m); }};
    Clock::time_point now = Clock::now();
    std::optional<Reassembled> add(int conn, const Chunk& c) {
        ByteView v(c.data);
        return re.add(conn, "peer" + std::to_string(conn), c.h, {&v, 1}, now);
    }
    bool warned(const std::string& text) const {
        for (auto& w : warnings)
            if (w.find(text) != std::string::npos) return true;
        return false;
    }
};

} // namespace

TEST_CASE("chunk headers: 32 bytes, magic, version, flags, offset within the total") {
    uint8_t b[kChunkHeaderSize];
    encode_chunk_header(ChunkHeader{0x0102030405060708u, 1 << 20, 5u << 20, true}, b);
    CHECK(b[0] == 0x89);
    CHECK(b[3] == 'C');
    CHECK(b[4] == 1);
    CHECK(b[5] == 1);
    CHECK(b[8] == 0x08); // little-endian id
    ByteView v(b, sizeof b);
    REQUIRE(is_chunk_header(v));
    auto h = decode_chunk_header(v, "x");
    CHECK(h.id == 0x0102030405060708u);
    CHECK(h.offset == (1u << 20));
    CHECK(h.total == (5u << 20));
    CHECK(h.last);
    // A record's preamble is never taken for a chunk header, nor a frame of another size.
    Bytes rec = record_of(0, 1);
    CHECK_FALSE(is_chunk_header(ByteView(rec).first(kChunkHeaderSize)));
    CHECK_FALSE(is_chunk_header(v.first(31)));
    Bytes bad(b, b + sizeof b);
    bad[4] = 2;
    CHECK_THROWS_WITH(decode_chunk_header(bad, "x"), Catch::Contains("version 2"));
    bad[4] = 1;
    bad[5] = 2;
    CHECK_THROWS_WITH(decode_chunk_header(bad, "x"), Catch::Contains("unknown flags"));
    encode_chunk_header(ChunkHeader{1, 10, 10, false}, b);
    CHECK_THROWS_AS(decode_chunk_header(v, "x"), DataError);
}

TEST_CASE("chunks in order make the record, committed once whole") {
    Fixture f;
    Bytes rec = record_of(10000, 2);
    auto cs = chunks_of(rec, 7, 1000);
    for (size_t i = 0; i + 1 < cs.size(); ++i) {
        CHECK_FALSE(f.add(3, cs[i]));
        CHECK(f.out.committed.empty());
    }
    auto done = f.add(3, cs.back());
    REQUIRE(done);
    CHECK(done->where == "mem");
    CHECK(done->peer == "peer3");
    CHECK(done->preamble.payload_len == 10000);
    REQUIRE(f.out.committed.size() == 1);
    CHECK(f.out.committed[0] == rec);
    CHECK(f.re.partial() == 0);
    CHECK(f.warnings.empty());
}

TEST_CASE("a chunk out of order or duplicated drops its record") {
    Fixture f;
    Bytes rec = record_of(5000, 3);
    auto cs = chunks_of(rec, 9, 1000);
    f.add(1, cs[0]);
    SECTION("out of order") {
        f.add(1, cs[2]);
        CHECK(f.warned("out of order or duplicated"));
    }
    SECTION("duplicated") {
        f.add(1, cs[1]);
        f.add(1, cs[1]);
        CHECK(f.warned("out of order or duplicated"));
    }
    SECTION("the first chunk again") {
        f.add(1, cs[0]);
        CHECK(f.warned("first chunk arrived again"));
    }
    CHECK(f.re.partial() == 0);
    CHECK(f.re.dropped() == 1);
    CHECK(f.out.aborted.size() == 1);
    CHECK(f.out.destroyed == 1);
    // What follows of the record is refused, and it never completes.
    for (auto& c : cs) f.add(1, c.h.offset == 0 ? Chunk{} : c);
    CHECK(f.out.committed.empty());
}

TEST_CASE("a chunk of another record, or from another connection, never joins a record") {
    Fixture f;
    Bytes a = record_of(2960, 4), b = record_of(2960, 5);
    auto ca = chunks_of(a, 1, 1000), cb = chunks_of(b, 2, 1000);
    f.add(1, ca[0]);
    SECTION("another record's middle chunk") {
        CHECK_FALSE(f.add(1, cb[1]));
        CHECK(f.warned("did not start on this connection"));
    }
    SECTION("the same record id on another connection") {
        CHECK_FALSE(f.add(2, ca[1]));
        CHECK(f.warned("did not start on this connection"));
    }
    CHECK(f.re.refused() == 1);
    f.add(1, ca[1]);
    auto done = f.add(1, ca[2]);
    REQUIRE(done);
    REQUIRE(f.out.committed.size() == 1);
    CHECK(f.out.committed[0] == a);
}

TEST_CASE("a chunk that contradicts its record drops it") {
    Fixture f;
    Bytes rec = record_of(2960, 6);
    auto cs = chunks_of(rec, 1, 1000);
    f.add(1, cs[0]);
    Chunk c = cs[1];
    SECTION("a different total") {
        c.h.total += 1;
    }
    SECTION("flagged last too early") {
        c.h.last = true;
    }
    SECTION("longer than the record") {
        c.data.resize(5000);
    }
    SECTION("the end without the last flag") {
        f.add(1, c);
        c = cs[2];
        c.h.last = false;
    }
    f.add(1, c);
    CHECK(f.re.dropped() == 1);
    CHECK(f.out.committed.empty());
    CHECK(f.out.aborted.size() == 1);
}

TEST_CASE("a corrupted chunk fails the record's checksum at the end") {
    Fixture f;
    Bytes rec = record_of(2960, 7);
    auto cs = chunks_of(rec, 1, 1000);
    cs[1].data[10] ^= 1;
    for (auto& c : cs) CHECK_FALSE(f.add(1, c));
    CHECK(f.warned("checksum mismatch"));
    CHECK(f.out.committed.empty());
    CHECK(f.out.aborted.size() == 1);
}

TEST_CASE("a first chunk with a bad preamble or over the size limit is refused once") {
    Outlet out;
    std::vector<std::string> warnings;
    ChunkReassembler re(out, 2000, [&](const std::string& m) { warnings.push_back(m); });
    Bytes rec = record_of(2960, 8);
    auto cs = chunks_of(rec, 1, 1000);
    for (auto& c : cs) {
        ByteView v(c.data);
        CHECK_FALSE(re.add(1, "p", c.h, {&v, 1}, Clock::now()));
    }
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("too large") != std::string::npos);
    CHECK(out.begun == 0);
    // The next record on the same connection is taken again.
    Bytes small = record_of(1000, 9);
    auto next = chunks_of(small, 2, 600);
    std::optional<Reassembled> done;
    for (auto& c : next) {
        ByteView v(c.data);
        done = re.add(1, "p", c.h, {&v, 1}, Clock::now());
    }
    REQUIRE(done);
    CHECK(out.committed.at(0) == small);
}

TEST_CASE("the last chunk missing: the record is dropped at the end, or when it stalls") {
    Fixture f;
    Bytes rec = record_of(2960, 10);
    auto cs = chunks_of(rec, 1, 1000);
    f.add(1, cs[0]);
    f.add(1, cs[1]);
    SECTION("at the end of the run") {
        CHECK(f.re.clear() == 1);
    }
    SECTION("a sender that stopped sending") {
        CHECK(f.re.expire(f.now + std::chrono::seconds(5), std::chrono::seconds(10)) == 0);
        CHECK(f.re.partial() == 1);
        CHECK(f.re.expire(f.now + std::chrono::seconds(11), std::chrono::seconds(10)) == 1);
        CHECK(f.warned("no chunk for 10 s"));
    }
    CHECK(f.re.partial() == 0);
    CHECK(f.out.committed.empty());
    CHECK(f.out.aborted.size() == 1);
}

TEST_CASE("interleaved senders are reassembled each on its own") {
    Fixture f;
    std::vector<Bytes> recs;
    std::vector<std::vector<Chunk>> cs;
    for (int i = 0; i < 5; ++i) {
        recs.push_back(record_of(4000 + 333 * i, 20 + i));
        cs.push_back(chunks_of(recs.back(), 42, 700)); // the same id on every connection
    }
    std::mt19937 rng(1);
    std::vector<size_t> next(5, 0);
    size_t left = 0;
    for (auto& c : cs) left += c.size();
    for (; left > 0; --left) {
        int i;
        do i = static_cast<int>(rng() % 5);
        while (next[i] == cs[i].size());
        f.add(100 + i, cs[i][next[i]++]);
    }
    REQUIRE(f.out.committed.size() == 5);
    for (auto& r : recs)
        CHECK(std::find(f.out.committed.begin(), f.out.committed.end(), r) !=
              f.out.committed.end());
    CHECK(f.warnings.empty());
}

TEST_CASE("a sender killed mid-record leaves nothing in the spool") {
    char tmpl[] = "/tmp/n3-chunk-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    std::string dir = tmpl;
    {
        Spool spool(dir);
        ChunkReassembler re(spool, kDefaultMaxPayload, {});
        Bytes a = record_of(5000, 30), b = record_of(5000, 31);
        auto ca = chunks_of(a, 1, 1000), cb = chunks_of(b, 2, 1000);
        for (size_t i = 0; i < ca.size(); ++i) {
            ByteView va(ca[i].data), vb(cb[i].data);
            if (i < 3) re.add(2, "dead", cb[i].h, {&vb, 1}, Clock::now()); // dies after 3
            auto done = re.add(1, "alive", ca[i].h, {&va, 1}, Clock::now());
            if (done) CHECK(read_file(done->where) == a);
        }
        CHECK(re.partial() == 1);
        re.clear();
    }
    int files = 0;
    DIR* d = opendir(dir.c_str());
    REQUIRE(d != nullptr);
    while (dirent* e = readdir(d))
        if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") ++files;
    closedir(d);
    CHECK(files == 1); // the whole record; no temporary file of the other
    (void)!std::system(("rm -rf '" + dir + "'").c_str());
}

TEST_CASE("stdout: a chunked record leaves only whole and checked, nothing if it breaks off") {
    PipeOut pipe;
    BatchedFdSink sink(pipe.fd(), "test");
    StdoutOutlet out(sink);
    ChunkReassembler re(out, kDefaultMaxPayload, {});
    Bytes a = record_of(6u << 20, 50), b = record_of(5u << 20, 51);
    auto ca = chunks_of(a, 1, 1 << 20), cb = chunks_of(b, 2, 1 << 20);
    auto feed = [&](int conn, const Chunk& k) {
        ByteView v(k.data);
        return re.add(conn, "p", k.h, {&v, 1}, Clock::now());
    };
    feed(1, ca[0]);
    feed(1, ca[1]);
    for (auto& k : cb) feed(2, k);
    sink.flush();
    CHECK(pipe.wait_for(b.size()).size() == b.size());
    CHECK(re.clear() == 1); // a breaks off: no exception, nothing of it written
    sink.flush();
    CHECK(pipe.all() == b);
}

TEST_CASE("stdout a regular file: a chunked record goes in place, cut back if it breaks off") {
    char tmpl[] = "/tmp/n3-chunk-file.XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    Bytes a = record_of(6u << 20, 60), b = record_of(5u << 20, 61), c = record_of(100, 62);
    auto ca = chunks_of(a, 1, 1 << 20), cb = chunks_of(b, 2, 1 << 20);
    bool append = GENERATE(false, true);
    if (append) {
        // >>: earlier content stays, and the file's offset does not say where writes go
        REQUIRE(::write(fd, c.data(), c.size()) == static_cast<ssize_t>(c.size()));
        ::close(fd);
        fd = ::open(tmpl, O_RDWR | O_APPEND);
        REQUIRE(fd >= 0);
        REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
    }
    ::unlink(tmpl);
    Bytes before = append ? c : Bytes{};
    {
        BatchedFdSink sink(fd, "test");
        StdoutOutlet out(sink);
        ChunkReassembler re(out, kDefaultMaxPayload, {});
        auto feed = [&](int conn, const Chunk& k) {
            ByteView v(k.data);
            return re.add(conn, "p", k.h, {&v, 1}, Clock::now());
        };
        feed(1, ca[0]);
        feed(1, ca[1]);
        sink.flush();
        // in place as it arrives: no temporary file in between
        CHECK(file_contents(fd).size() == before.size() + (2u << 20));
        for (auto& k : cb) feed(2, k); // completes meanwhile: waits
        CHECK(out.queued() == b.size());
        CHECK(re.clear() == 1); // a breaks off: no exception, cut back, then b
        sink.flush();
        Bytes want = before;
        want.insert(want.end(), b.begin(), b.end());
        CHECK(file_contents(fd) == want);
        // and the next record goes in place after it
        for (auto& k : chunks_of(a, 3, 1 << 20)) feed(1, k);
        sink.flush();
        want.insert(want.end(), a.begin(), a.end());
        CHECK(file_contents(fd) == want);
    }
    ::close(fd);
}

TEST_CASE("stdout a file another writer appends to: a broken record is not cut back") {
    char tmpl[] = "/tmp/n3-chunk-file.XXXXXX";
    int made = mkstemp(tmpl);
    REQUIRE(made >= 0);
    ::close(made);
    int fd = ::open(tmpl, O_RDWR | O_APPEND), other = ::open(tmpl, O_WRONLY | O_APPEND);
    ::unlink(tmpl);
    REQUIRE(fd >= 0);
    REQUIRE(other >= 0);
    Bytes a = record_of(6u << 20, 70), c = record_of(100, 71);
    auto ca = chunks_of(a, 1, 1 << 20);
    {
        BatchedFdSink sink(fd, "out.n3");
        StdoutOutlet out(sink);
        ChunkReassembler re(out, kDefaultMaxPayload, {});
        for (int i = 0; i < 2; ++i) {
            ByteView v(ca[i].data);
            re.add(1, "p", ca[i].h, {&v, 1}, Clock::now());
        }
        sink.flush();
        REQUIRE(::write(other, c.data(), c.size()) == static_cast<ssize_t>(c.size()));
        CHECK_THROWS_WITH(re.clear(), Catch::Contains("out.n3 grew by another writer"));
    }
    CHECK(file_contents(fd).size() == (2u << 20) + c.size()); // the other writer's bytes stay
    ::close(other);
    ::close(fd);
}

TEST_CASE("stdout with stream: one record streams, the others wait, a broken stream ends the run") {
    PipeOut pipe;
    BatchedFdSink sink(pipe.fd(), "test");
    StdoutOutlet out(sink, true);
    ChunkReassembler re(out, kDefaultMaxPayload, {});
    Bytes a = record_of(6u << 20, 40), b = record_of(5u << 20, 41), c = record_of(100, 42);
    auto ca = chunks_of(a, 1, 1 << 20), cb = chunks_of(b, 2, 1 << 20);
    auto feed = [&](int conn, const Chunk& k) {
        ByteView v(k.data);
        return re.add(conn, "p", k.h, {&v, 1}, Clock::now());
    };
    SECTION("records leave whole, the streaming one first") {
        feed(1, ca[0]);                          // a streams
        for (auto& k : cb) feed(2, k);           // b completes meanwhile: it waits
        auto whole = out.begin(Preamble{}, "p"); // a small record sent whole waits too
        whole->write(c);
        whole->commit();
        CHECK(out.queued() == b.size() + c.size());
        for (size_t i = 1; i < ca.size(); ++i) feed(1, ca[i]);
        sink.flush();
        Bytes want = a;
        want.insert(want.end(), b.begin(), b.end());
        want.insert(want.end(), c.begin(), c.end());
        CHECK(pipe.wait_for(want.size()) == want);
        CHECK(out.queued() == 0);
    }
    SECTION("the streaming record breaking off throws IncompleteError") {
        feed(1, ca[0]);
        feed(1, ca[1]);
        CHECK_THROWS_AS(re.clear(), IncompleteError);
        // What stdout holds is refused by a record reader.
        sink.flush();
        Bytes got = pipe.wait_for(2u << 20);
        CHECK(got.size() == 2u << 20);
        char tmpl[] = "/tmp/n3-chunk-stdout.XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        ::close(fd);
        CHECK_THROWS_WITH(
            [&] {
                std::string path = tmpl;
                {
                    Output o(path, OutputOptions{.force = true});
                    o.write(got);
                    o.commit();
                }
                Input in(path);
                RecordReader r(in);
                ::unlink(path.c_str());
                while (r.next()) {
                }
            }(),
            Catch::Contains("truncated"));
        ::unlink(tmpl);
    }
}
