#include "net/transport.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <future>
#include <random>
#include <sys/stat.h>
#include <unistd.h>

using namespace n3;
using namespace n3::net;

namespace {

struct TempDir {
    TempDir() {
        char tmpl[] = "/tmp/n3-net-test.XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() { (void)!std::system(("rm -rf '" + path + "'").c_str()); }
    std::string ipc(const std::string& name) const { return "ipc://" + path + "/" + name; }
    std::string path;
};

Bytes record_bytes(size_t payload, uint32_t seed) {
    Bytes p(payload);
    std::mt19937 rng(seed);
    for (auto& b : p) b = static_cast<uint8_t>(rng());
    return encode_record(RecordType::packed, p);
}

std::string write_file(const std::string& path, const std::vector<Bytes>& recs) {
    std::ofstream f(path, std::ios::binary);
    for (auto& r : recs)
        f.write(reinterpret_cast<const char*>(r.data()), static_cast<std::streamsize>(r.size()));
    return path;
}

// Collects committed records in memory, in commit order.
struct MemoryOutlet final : RecordOutlet {
    struct Out final : RecordOut {
        explicit Out(MemoryOutlet& outlet) : o(outlet) {}
        void write(ByteView b) override { bytes.insert(bytes.end(), b.begin(), b.end()); }
        std::string commit() override {
            o.records.push_back(std::move(bytes));
            return "";
        }
        MemoryOutlet& o;
        Bytes bytes;
    };
    std::unique_ptr<RecordOut> begin(const Preamble&, const std::string&) override {
        return std::make_unique<Out>(*this);
    }
    std::vector<Bytes> records;
};

// Receives in a thread; the records come back as whole byte strings.
std::future<std::vector<Bytes>> receive_async(ReceiveOptions o) {
    return std::async(std::launch::async, [o] {
        MemoryOutlet out;
        receive_records(o, out);
        return out.records;
    });
}

} // namespace

TEST_CASE("records arrive intact and in order, small, larger than a frame, and chunked") {
    TempDir dir;
    std::vector<Bytes> recs;
    for (uint32_t i = 0; i < 20; ++i)
        recs.push_back(record_bytes(i == 7   ? 3 * kFrameSize + 5
                                    : i == 9 ? 6 * kChunkSize + 7
                                             : 100 * i,
                                    i));
    ReceiveOptions ro;
    ro.endpoint = dir.ipc("in");
    ro.count = recs.size();
    ro.timeout = 20;
    auto got = receive_async(ro);
    SECTION("from a mapped file") {
        Input in(write_file(dir.path + "/recs.n3", recs));
        SendOptions so;
        so.endpoints = {ro.endpoint};
        so.timeout = 20;
        CHECK(send_records(in, so).records == recs.size());
    }
    SECTION("from a pipe") {
        int fds[2];
        REQUIRE(pipe(fds) == 0);
        std::thread writer([&] {
            for (auto& r : recs)
                REQUIRE(write(fds[1], r.data(), r.size()) == static_cast<ssize_t>(r.size()));
            close(fds[1]);
        });
        Input in("/proc/self/fd/" + std::to_string(fds[0]));
        SendOptions so;
        so.endpoints = {ro.endpoint};
        so.timeout = 20;
        CHECK(send_records(in, so).records == recs.size());
        writer.join();
        close(fds[0]);
    }
    CHECK(got.get() == recs);
}

TEST_CASE("scatter deals records round-robin, broadcast sends all to all") {
    TempDir dir;
    std::vector<Bytes> recs;
    for (uint32_t i = 0; i < 6; ++i) recs.push_back(record_bytes(1000 + i, i));
    Input in(write_file(dir.path + "/recs.n3", recs));
    const bool scatter = GENERATE(true, false);
    ReceiveOptions a, b;
    a.endpoint = dir.ipc("a");
    b.endpoint = dir.ipc("b");
    a.count = b.count = scatter ? 3 : 6;
    a.timeout = b.timeout = 20;
    auto got_a = receive_async(a);
    auto got_b = receive_async(b);
    SendOptions so;
    so.endpoints = {a.endpoint, b.endpoint};
    so.fanout = scatter ? Fanout::scatter : Fanout::broadcast;
    so.timeout = 20;
    send_records(in, so);
    if (scatter) {
        CHECK(got_a.get() == std::vector<Bytes>{recs[0], recs[2], recs[4]});
        CHECK(got_b.get() == std::vector<Bytes>{recs[1], recs[3], recs[5]});
    } else {
        CHECK(got_a.get() == recs);
        CHECK(got_b.get() == recs);
    }
}

TEST_CASE("a corrupt input record never leaves, the ones before it do") {
    TempDir dir;
    std::vector<Bytes> recs = {record_bytes(500, 1), record_bytes(2 * kFrameSize, 2),
                               record_bytes(10, 3)};
    recs[1][kFrameSize + 100] ^= 1;
    Input in(write_file(dir.path + "/recs.n3", recs));
    ReceiveOptions ro;
    ro.endpoint = dir.ipc("in");
    ro.count = 1;
    ro.timeout = 10;
    auto got = receive_async(ro);
    SendOptions so;
    so.endpoints = {ro.endpoint};
    so.timeout = 10;
    CHECK_THROWS_WITH(send_records(in, so),
                      Catch::Contains("record 2") && Catch::Contains("checksum mismatch"));
    CHECK(got.get() == std::vector<Bytes>{recs[0]});
}

TEST_CASE("a quorum missed at the timeout is an incomplete round") {
    TempDir dir;
    ReceiveOptions ro;
    ro.endpoint = dir.ipc("in");
    ro.count = 3;
    ro.timeout = 0.5;
    SECTION("none arrived") {
        ro.quorum = 1;
        MemoryOutlet sink;
        CHECK_THROWS_AS(receive_records(ro, sink), IncompleteError);
    }
    SECTION("quorum 0 is met by nothing") {
        ro.quorum = 0;
        MemoryOutlet sink;
        auto st = receive_records(ro, sink);
        CHECK(st.timed_out);
        CHECK(st.received == 0);
    }
}

TEST_CASE("a sender without a receiver times out") {
    TempDir dir;
    std::vector<Bytes> recs = {record_bytes(50, 1)};
    Input in(write_file(dir.path + "/recs.n3", recs));
    SendOptions so;
    so.endpoints = {dir.ipc("nobody")};
    so.timeout = 0.3;
    CHECK_THROWS_AS(send_records(in, so), IncompleteError);
}

TEST_CASE("a second listener on the same address is refused") {
    TempDir dir;
    ReceiveOptions ro;
    ro.endpoint = dir.ipc("in");
    ro.timeout = 0.6;
    auto first = receive_async(ro);
    usleep(200000);
    ReceiveOptions again = ro;
    again.timeout = 0.2;
    MemoryOutlet sink;
    CHECK_THROWS_WITH(receive_records(again, sink), Catch::Contains("address already in use"));
    first.get();
}

namespace {
[[maybe_unused]] uint64_t resident_bytes() {
    std::ifstream f("/proc/self/statm");
    uint64_t size = 0, resident = 0;
    f >> size >> resident;
    return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}
} // namespace

TEST_CASE("a receiver keeps its reserve faulted in, records larger and smaller arrive") {
    TempDir dir;
    std::vector<Bytes> recs = {record_bytes(3 * kFrameSize, 1), record_bytes(40 * kFrameSize, 2),
                               record_bytes(100, 3)};
    Input in(write_file(dir.path + "/recs.n3", recs));
    ReceiveOptions ro;
    ro.endpoint = dir.ipc("in");
    ro.count = recs.size();
    ro.timeout = 20;
    ro.reserve = uint64_t(256) << 20;
    // The receiver on the main thread, whose allocations come from glibc's main arena (a
    // thread that allocated before the receiver's settings would get an arena of its own).
    auto sent = std::async(std::launch::async, [&] {
        SendOptions so;
        so.endpoints = {ro.endpoint};
        so.timeout = 20;
        return send_records(in, so).records;
    });
    MemoryOutlet out;
    receive_records(ro, out);
    CHECK(sent.get() == recs.size());
    CHECK(out.records == recs);
    // The memory stays with the process (glibc does not hand it back), for the next record.
    // (AddressSanitizer's allocator replaces glibc's and ignores its settings; under qemu-user
    // /proc/self/statm is the emulator's.)
#if !defined(__SANITIZE_ADDRESS__)
    const char* emulated = std::getenv("N3_EMULATED");
    if (!emulated || std::string(emulated) != "1") CHECK(resident_bytes() >= (uint64_t(256) << 20));
#endif
}

TEST_CASE("a reserve over the limit is refused before listening") {
    TempDir dir;
    ReceiveOptions ro;
    ro.endpoint = dir.ipc("in");
    ro.timeout = 0.1;
    ro.reserve = kMaxReserve + 1;
    MemoryOutlet sink;
    CHECK_THROWS_AS(receive_records(ro, sink), UsageError);
    struct stat st {};
    CHECK(::stat((dir.path + "/in").c_str(), &st) != 0);
}
