// Record framing: round trips, truncation at every point, corruption of every byte, streams.
#include "record/error.hpp"
#include "record/format.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

using namespace n3;

namespace {

Bytes payload_of(size_t n, uint8_t seed = 7) {
    Bytes b(n);
    uint32_t x = seed;
    for (auto& v : b) {
        x = x * 1664525u + 1013904223u;
        v = static_cast<uint8_t>(x >> 24);
    }
    return b;
}

// A temporary file holding `bytes`, removed at scope exit.
struct TempFile {
    std::string path;
    explicit TempFile(const Bytes& bytes) {
        char tmpl[] = "/tmp/n3-test-XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        REQUIRE(write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
        close(fd);
        path = tmpl;
    }
    ~TempFile() { unlink(path.c_str()); }
};

// Reads every record of `bytes` through a pipe (the streaming path).
std::vector<Record> read_piped(const Bytes& bytes) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        size_t off = 0;
        while (off < bytes.size()) {
            ssize_t w = write(fds[1], bytes.data() + off, bytes.size() - off);
            if (w <= 0) _exit(1);
            off += static_cast<size_t>(w);
        }
        _exit(0);
    }
    close(fds[1]);
    std::vector<Record> out;
    std::string path = "/proc/self/fd/" + std::to_string(fds[0]);
    try {
        Input in(path, true);
        RecordReader r(in);
        while (auto rec = r.next()) out.push_back(*rec);
    } catch (...) {
        close(fds[0]);
        int st;
        waitpid(pid, &st, 0);
        throw;
    }
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    return out;
}

std::vector<Record> read_mapped(const Bytes& bytes) {
    TempFile f(bytes);
    Input in(f.path);
    RecordReader r(in);
    std::vector<Record> out;
    while (auto rec = r.next()) out.push_back(*rec);
    return out;
}

} // namespace

TEST_CASE("crc64 is CRC-64/XZ", "[format]") {
    const char* check = "123456789";
    REQUIRE(crc64(0, ByteView(reinterpret_cast<const uint8_t*>(check), 9)) ==
            0x995DC9BBDF1939FAull);
    REQUIRE(crc32(0, ByteView(reinterpret_cast<const uint8_t*>(check), 9)) == 0xCBF43926u);
}

TEST_CASE("a record round-trips through both readers", "[format]") {
    for (size_t n : {size_t(0), size_t(1), size_t(31), size_t(65536), size_t(200000)}) {
        Bytes p = payload_of(n);
        Bytes rec = encode_record(RecordType::update, p);
        REQUIRE(rec.size() == kPreambleSize + n + kTrailerSize);
        for (auto& got : {read_mapped(rec), read_piped(rec)}) {
            REQUIRE(got.size() == 1);
            REQUIRE(got[0].type() == RecordType::update);
            REQUIRE(Bytes(got[0].payload().begin(), got[0].payload().end()) == p);
        }
        Record d = decode_record(rec);
        REQUIRE(Bytes(d.payload().begin(), d.payload().end()) == p);
    }
}

TEST_CASE("the preamble has the documented layout", "[format]") {
    Bytes rec = encode_record(RecordType::shard, payload_of(5));
    const uint8_t magic[8] = {0x89, 'N', '3', 'R', '\r', '\n', 0x1a, '\n'};
    REQUIRE(std::equal(magic, magic + 8, rec.begin()));
    REQUIRE(rec[8] == 1);
    REQUIRE(rec[9] == 4);
    REQUIRE(rec[16] == 5);
    for (int i = 17; i < 24; ++i) REQUIRE(rec[i] == 0);
}

TEST_CASE("a stream of many records reads back in order", "[format]") {
    Bytes stream;
    std::vector<Bytes> payloads;
    for (int i = 0; i < 300; ++i) {
        payloads.push_back(payload_of(static_cast<size_t>(i * 37 % 1000), static_cast<uint8_t>(i)));
        Bytes r = encode_record(static_cast<RecordType>(1 + i % 6), payloads.back());
        stream.insert(stream.end(), r.begin(), r.end());
    }
    for (auto& got : {read_mapped(stream), read_piped(stream)}) {
        REQUIRE(got.size() == payloads.size());
        for (size_t i = 0; i < got.size(); ++i) {
            REQUIRE(got[i].index == i);
            REQUIRE(static_cast<int>(got[i].type()) == 1 + static_cast<int>(i % 6));
            REQUIRE(Bytes(got[i].payload().begin(), got[i].payload().end()) == payloads[i]);
        }
    }
}

TEST_CASE("every truncation point of a record is an error", "[format]") {
    Bytes rec = encode_record(RecordType::model, payload_of(100));
    for (size_t cut = 1; cut < rec.size(); ++cut) {
        Bytes part(rec.begin(), rec.begin() + static_cast<long>(cut));
        INFO("cut at " << cut);
        REQUIRE_THROWS_AS(read_mapped(part), DataError);
        REQUIRE_THROWS_AS(read_piped(part), DataError);
        REQUIRE_THROWS_AS(decode_record(part), DataError);
    }
    // A truncated second record in a stream is an error too, not a shorter stream.
    Bytes two = rec;
    two.insert(two.end(), rec.begin(), rec.end() - 1);
    REQUIRE_THROWS_AS(read_mapped(two), DataError);
}

TEST_CASE("every single-byte corruption is detected", "[format]") {
    Bytes rec = encode_record(RecordType::update, payload_of(64));
    for (size_t i = 0; i < rec.size(); ++i) {
        for (uint8_t flip : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
            Bytes bad = rec;
            bad[i] ^= flip;
            INFO("byte " << i << " xor " << int(flip));
            // Either refused outright, or (length grew/shrank) refused as truncated or trailing.
            REQUIRE_THROWS_AS(read_mapped(bad), DataError);
            REQUIRE_THROWS_AS(decode_record(bad), DataError);
        }
    }
}

TEST_CASE("bad headers are refused by name", "[format]") {
    Bytes rec = encode_record(RecordType::model, payload_of(8));
    auto message = [](const Bytes& b) {
        try {
            read_mapped(b);
        } catch (const DataError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    auto with = [&](size_t off, uint8_t v) {
        Bytes b = rec;
        b[off] = v;
        uint32_t c = crc32(0, ByteView(b.data(), 24));
        for (int i = 0; i < 4; ++i) b[24 + i] = static_cast<uint8_t>(c >> (8 * i));
        return b;
    };
    REQUIRE_THAT(message(with(8, 2)), Catch::Contains("unsupported record format version 2"));
    REQUIRE_THAT(message(with(9, 42)), Catch::Contains("unknown record type 42"));
    REQUIRE_THAT(message(with(10, 1)), Catch::Contains("flags"));
    Bytes text = rec;
    text.erase(text.begin() + 4); // CR LF -> LF, as a text-mode transfer does
    REQUIRE_THAT(message(text), Catch::Contains("text-mode"));
    Bytes junk(64, 'x');
    REQUIRE_THAT(message(junk), Catch::Contains("not an n3 record"));
}

TEST_CASE("a hostile length is refused before any allocation", "[format]") {
    Bytes rec = encode_record(RecordType::model, payload_of(8));
    uint8_t pre[kPreambleSize];
    encode_preamble(Preamble{1, RecordType::model, uint64_t(1) << 50}, pre);
    std::copy(pre, pre + kPreambleSize, rec.begin());
    REQUIRE_THROWS_WITH(read_piped(rec), Catch::Contains("too large"));
    encode_preamble(Preamble{1, RecordType::model, uint64_t(1) << 30}, pre);
    std::copy(pre, pre + kPreambleSize, rec.begin());
    REQUIRE_THROWS_WITH(read_mapped(rec), Catch::Contains("truncated"));
}

namespace {
// The process's peak resident set so far (VmHWM), in bytes.
uint64_t peak_resident() {
    std::ifstream f("/proc/self/status");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
    return 0;
}
} // namespace

TEST_CASE("a piped record declaring 2 GiB costs memory for the bytes that came, not the claim",
          "[format]") {
    uint8_t pre[kPreambleSize];
    encode_preamble(Preamble{1, RecordType::update, uint64_t(2) << 30}, pre);
    Bytes rec(pre, pre + kPreambleSize);
    Bytes tail = payload_of(100);
    rec.insert(rec.end(), tail.begin(), tail.end());
    uint64_t before = peak_resident();
    REQUIRE(before > 0);
    REQUIRE_THROWS_WITH(read_piped(rec), Catch::Contains("truncated"));
    // (AddressSanitizer's allocator and shadow memory make resident sizes meaningless.)
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(peak_resident() - before < (uint64_t(64) << 20));
#endif
    // and 20 MiB that do arrive (several extents, the mapping grown) are read whole
    Bytes big = encode_record(RecordType::update, payload_of(20 << 20));
    auto got = read_piped(big);
    REQUIRE(got.size() == 1);
    CHECK(encode_record(got[0].type(), got[0].payload()) == big);
    Bytes cut(big.begin(), big.begin() + (13 << 20));
    CHECK_THROWS_WITH(read_piped(cut), Catch::Contains("truncated"));
}

TEST_CASE("read_rest gives the payload of the record begun, in place or piped", "[format]") {
    Bytes rec = encode_record(RecordType::packed, payload_of(3 << 20));
    TempFile f(rec);
    Input in(f.path);
    RecordReader r(in);
    REQUIRE(r.begin());
    uint8_t first[10];
    REQUIRE(r.read_payload(first) == 10);
    Record rest = r.read_rest();
    CHECK(rest.payload().size() == (3u << 20) - 10);
    CHECK(
        std::equal(rest.payload().begin(), rest.payload().end(), rec.begin() + kPreambleSize + 10));
    CHECK_NOTHROW(r.end());
    CHECK_THROWS_AS(r.read_rest(), std::logic_error);
}

TEST_CASE("chunked reading and writing", "[format]") {
    Bytes p = payload_of(300000);
    VectorSink sink;
    {
        RecordWriter w(sink, RecordType::sealed, p.size());
        for (size_t off = 0; off < p.size(); off += 7000)
            w.write(ByteView(p).subspan(off, std::min<size_t>(7000, p.size() - off)));
        w.end();
    }
    REQUIRE(sink.data == encode_record(RecordType::sealed, p));
    TempFile f(sink.data);
    Input in(f.path);
    RecordReader r(in);
    auto pre = r.begin();
    REQUIRE(pre);
    REQUIRE(pre->payload_len == p.size());
    Bytes got;
    uint8_t buf[4096];
    while (size_t n = r.read_payload(buf)) got.insert(got.end(), buf, buf + n);
    r.end();
    REQUIRE(got == p);
    REQUIRE_FALSE(r.begin());

    VectorSink short_sink;
    RecordWriter w2(short_sink, RecordType::model, 10);
    w2.write(ByteView(p).first(5));
    REQUIRE_THROWS_AS(w2.end(), DataError);
    REQUIRE_THROWS_AS(w2.write(ByteView(p).first(6)), DataError);
}

TEST_CASE("a payload taken in place is checked with the caller's checksum", "[format]") {
    Bytes a = payload_of(200000, 1), b = payload_of(5000, 2);
    Bytes two = encode_record(RecordType::update, a);
    Bytes rb = encode_record(RecordType::shard, b);
    two.insert(two.end(), rb.begin(), rb.end());
    TempFile f(two);
    Input in(f.path);
    RecordReader r(in);
    // Some bytes read the usual way, the rest in place, checksummed in two pieces.
    REQUIRE(r.begin());
    uint8_t head[100];
    REQUIRE(r.read_payload(head) == sizeof head);
    auto view = r.take_payload();
    REQUIRE(view);
    REQUIRE(view->size() == a.size() - sizeof head);
    REQUIRE(std::equal(view->begin(), view->end(), a.begin() + sizeof head));
    ByteView v = *view;
    uint64_t crc =
        crc64_combine(crc64(0, v.first(1000)), crc64(0, v.subspan(1000)), v.size() - 1000);
    REQUIRE(crc == crc64(0, v));
    SECTION("the right checksum passes and the next record follows") {
        r.end(crc);
        REQUIRE(r.begin());
        REQUIRE(r.take_payload()->size() == b.size());
        r.end(crc64(0, b));
        REQUIRE_FALSE(r.begin());
    }
    SECTION("a wrong one is a checksum mismatch") {
        REQUIRE_THROWS_WITH(r.end(crc ^ 1), Catch::Contains("checksum mismatch"));
    }
    SECTION("end() without the checksum of what was taken is a programming error") {
        REQUIRE_THROWS_AS(r.end(), std::logic_error);
    }
}

TEST_CASE("a taken payload is copied through the file, not the mapping", "[format]") {
    Bytes a = payload_of(300000, 3);
    TempFile f(encode_record(RecordType::update, a));
    Input in(f.path);
    RecordReader r(in);
    REQUIRE(r.begin());
    auto view = r.take_payload();
    REQUIRE(view);
    Bytes got(70000);
    REQUIRE(r.copy_taken(view->data() + 1000, got));
    REQUIRE(std::equal(got.begin(), got.end(), a.begin() + 1000));
    SECTION("the copy is the file's bytes, read when copied") {
        // A byte changed in the file after the mapping was made shows in the next copy.
        std::FILE* w = std::fopen(f.path.c_str(), "r+b");
        REQUIRE(w);
        REQUIRE(std::fseek(w, static_cast<long>(kPreambleSize + 1000), SEEK_SET) == 0);
        const uint8_t x = static_cast<uint8_t>(a[1000] ^ 0xff);
        REQUIRE(std::fwrite(&x, 1, 1, w) == 1);
        std::fclose(w);
        REQUIRE(r.copy_taken(view->data() + 1000, got));
        REQUIRE(got[0] == x);
    }
    SECTION("a file truncated under the reader gives no copy") {
        REQUIRE(truncate(f.path.c_str(), static_cast<off_t>(kPreambleSize + 2000)) == 0);
        REQUIRE_FALSE(r.copy_taken(view->data() + 1000, got));
        Bytes small(1000);
        REQUIRE(r.copy_taken(view->data() + 1000, small));
    }
}

TEST_CASE("a piped payload is never taken in place", "[format]") {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    Bytes rec = encode_record(RecordType::update, payload_of(100));
    REQUIRE(write(fds[1], rec.data(), rec.size()) == static_cast<ssize_t>(rec.size()));
    close(fds[1]);
    {
        Input in("/proc/self/fd/" + std::to_string(fds[0]), true);
        RecordReader r(in);
        REQUIRE(r.begin());
        REQUIRE_FALSE(r.take_payload());
        Bytes got(100);
        REQUIRE(r.read_payload(got) == 100);
        r.end();
    }
    close(fds[0]);
}

TEST_CASE("a writer takes checksums computed elsewhere", "[format]") {
    Bytes p = payload_of(70000);
    VectorSink sink;
    RecordWriter w(sink, RecordType::sealed, p.size());
    w.write(ByteView(p).first(30000), crc64(0, ByteView(p).first(30000)));
    w.write(ByteView(p).subspan(30000));
    w.end();
    REQUIRE(sink.data == encode_record(RecordType::sealed, p));
}

TEST_CASE("type names", "[format]") {
    for (uint8_t t = 1; t <= 6; ++t) {
        auto rt = static_cast<RecordType>(t);
        REQUIRE(parse_type(type_name(rt)) == rt);
    }
    REQUIRE_FALSE(parse_type("nonsense"));
}
