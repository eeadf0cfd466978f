// Atomic output, secret files, input checks, signal cleanup, temporary files.
#include "record/error.hpp"
#include "record/io.hpp"
#include "record/spill.hpp"

#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace n3;
namespace fs = std::filesystem;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/n3-io-XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        path = tmpl;
    }
    ~TempDir() { fs::remove_all(path); }
    size_t entries() const {
        return static_cast<size_t>(
            std::distance(fs::directory_iterator(path), fs::directory_iterator{}));
    }
};

ByteView text(const char* s) {
    return ByteView(reinterpret_cast<const uint8_t*>(s), strlen(s));
}

} // namespace

TEST_CASE("output appears only on commit", "[io]") {
    TempDir d;
    std::string p = (d.path / "out.n3").string();
    {
        Output o(p);
        o.write(text("hello"));
        REQUIRE_FALSE(fs::exists(p));
        REQUIRE(d.entries() == 1); // the temporary file
        o.commit();
    }
    REQUIRE(read_text_file(p) == "hello");
    REQUIRE(d.entries() == 1);
}

TEST_CASE("an uncommitted output leaves nothing behind", "[io]") {
    TempDir d;
    std::string p = (d.path / "out.n3").string();
    {
        Output o(p);
        o.write(text("partial"));
    }
    REQUIRE(d.entries() == 0);
    // An existing file is not touched by a failed run.
    {
        Output o(p);
        o.write(text("first"));
        o.commit();
    }
    {
        Output o(p);
        o.write(text("second, failed"));
    }
    REQUIRE(read_text_file(p) == "first");
}

TEST_CASE("sync writes the bytes but only commit makes them visible", "[io]") {
    TempDir d;
    std::string p = (d.path / "out.n3").string();
    {
        Output o(p);
        o.write(text("synced, never committed"));
        o.sync();
        REQUIRE_FALSE(fs::exists(p));
        REQUIRE(d.entries() == 1);
        REQUIRE(fs::file_size(d.path / fs::directory_iterator(d.path)->path().filename()) == 23);
    }
    REQUIRE(d.entries() == 0); // a failure after sync() still removes the temporary file
    {
        Output o(p);
        o.write(text("both"));
        o.sync();
        o.commit();
    }
    REQUIRE(read_text_file(p) == "both");
}

TEST_CASE("secret files are 0600 and never overwritten without force", "[io]") {
    TempDir d;
    std::string p = (d.path / "me.key").string();
    OutputOptions secret;
    secret.secret = true;
    {
        Output o(p, secret);
        o.write(text("s1"));
        o.commit();
    }
    struct stat st {};
    REQUIRE(stat(p.c_str(), &st) == 0);
    REQUIRE((st.st_mode & 0777) == 0600);
    REQUIRE_THROWS_AS(Output(p, secret), EnvError);
    secret.force = true;
    {
        Output o(p, secret);
        o.write(text("s2"));
        o.commit();
    }
    REQUIRE(read_text_file(p) == "s2");
}

TEST_CASE("a signal removes the temporary file", "[io]") {
    TempDir d;
    std::string p = (d.path / "big.n3").string();
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        install_signal_cleanup();
        Output o(p);
        o.write(ByteView(std::vector<uint8_t>(3 << 20, 1)));
        raise(SIGTERM);
        _exit(0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status));
    REQUIRE(WTERMSIG(status) == SIGTERM);
    REQUIRE(d.entries() == 0);
}

TEST_CASE("inputs: missing files and directories are environment errors", "[io]") {
    TempDir d;
    REQUIRE_THROWS_AS(Input((d.path / "nope").string()), EnvError);
    REQUIRE_THROWS_WITH(Input(d.path.string()), Catch::Contains("is a directory"));
    REQUIRE_THROWS_AS(Output(d.path.string()), EnvError);
    REQUIRE_THROWS_AS(Output((d.path / "no/such/dir/x").string()), EnvError);
}

TEST_CASE("same_file sees through different names", "[io]") {
    TempDir d;
    std::string a = (d.path / "a").string();
    {
        Output o(a);
        o.commit();
    }
    REQUIRE(same_file(a, (d.path / "." / "a").string()));
    REQUIRE_FALSE(same_file(a, (d.path / "b").string()));
    REQUIRE_FALSE(same_file("-", a));
}

TEST_CASE("a device or FIFO is written in place, never replaced", "[io]") {
    {
        Output o("/dev/null");
        o.write(text("discarded"));
        o.commit();
    }
    struct stat st {};
    REQUIRE(stat("/dev/null", &st) == 0);
    REQUIRE(S_ISCHR(st.st_mode));
    TempDir d;
    std::string fifo = (d.path / "pipe").string();
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        Output o(fifo);
        o.write(text("through the fifo"));
        o.commit();
        _exit(0);
    }
    REQUIRE(read_text_file(fifo) == "through the fifo");
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(stat(fifo.c_str(), &st) == 0);
    REQUIRE(S_ISFIFO(st.st_mode));
    OutputOptions secret;
    secret.secret = true;
    REQUIRE_THROWS_AS(Output("/dev/null", secret), EnvError);
}

// BatchedFdSink ---------------------------------------------------------------------------------

namespace {

// An unlinked temporary file: what reached it so far is what the sink wrote.
struct Written {
    int fd;
    Written() {
        char tmpl[] = "/tmp/n3-batch-XXXXXX";
        fd = ::mkstemp(tmpl);
        REQUIRE(fd >= 0);
        ::unlink(tmpl);
    }
    ~Written() { ::close(fd); }
    Bytes bytes() const {
        struct stat st {};
        REQUIRE(::fstat(fd, &st) == 0);
        Bytes out(static_cast<size_t>(st.st_size));
        REQUIRE(::pread(fd, out.data(), out.size(), 0) == static_cast<ssize_t>(out.size()));
        return out;
    }
};

Bytes filled(size_t n, uint8_t v) {
    return Bytes(n, v);
}

} // namespace

TEST_CASE("BatchedFdSink gathers small records until flush") {
    Written w;
    BatchedFdSink out(w.fd, "the file");
    Bytes a = filled(100, 1), b = filled(200, 2), c = filled(50, 3);
    out.write(a);
    ByteView pieces[] = {b, c}; // one record in two pieces
    out.write_record(pieces);
    CHECK(out.pending() == 350);
    CHECK(w.bytes().empty()); // nothing left yet
    out.flush();
    CHECK(out.pending() == 0);
    Bytes want = a;
    want.insert(want.end(), b.begin(), b.end());
    want.insert(want.end(), c.begin(), c.end());
    CHECK(w.bytes() == want);
    out.flush(); // idle again: nothing more to write
    CHECK(w.bytes().size() == want.size());
}

TEST_CASE("BatchedFdSink writes a full batch without waiting for flush") {
    Written w;
    BatchedFdSink out(w.fd);
    Bytes small = filled(BatchedFdSink::kSmallRecord - 1, 5);
    size_t n = 0;
    while (out.pending() + small.size() < BatchedFdSink::kBatch) {
        out.write(small);
        ++n;
    }
    CHECK(w.bytes().empty());
    out.write(small); // reaches the batch size
    ++n;
    CHECK(out.pending() == 0);
    CHECK(w.bytes().size() == n * small.size());
}

TEST_CASE("BatchedFdSink sends a large record straight, after what had gathered") {
    Written w;
    BatchedFdSink out(w.fd);
    Bytes small = filled(10, 1), big = filled(BatchedFdSink::kSmallRecord, 2);
    out.write(small);
    out.write(big);
    CHECK(out.pending() == 0);
    Bytes got = w.bytes();
    REQUIRE(got.size() == small.size() + big.size());
    CHECK(got.front() == 1);
    CHECK(got[small.size()] == 2);
    CHECK(got.back() == 2);
}

TEST_CASE("BatchedFdSink names its output when a write fails") {
    int fd = ::open("/dev/null", O_RDONLY); // writes fail with EBADF
    REQUIRE(fd >= 0);
    BatchedFdSink out(fd, "stdout");
    out.write(filled(10, 1));
    CHECK_THROWS_WITH(out.flush(), Catch::Contains("cannot write stdout"));
    CHECK_THROWS_AS(out.write(filled(BatchedFdSink::kSmallRecord, 1)), EnvError);
    ::close(fd);
}

TEST_CASE("a temporary file keeps, patches and reads back bytes") {
    TempFile t("test");
    Bytes a(3 << 20), b(1000);
    for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i);
    t.write(b);
    t.write(a); // larger than the buffer: one write
    t.write(b);
    REQUIRE(t.size() == a.size() + 2 * b.size());
    t.write_at(10, ByteView(a.data(), 5));
    Bytes back(t.size());
    t.read_at(0, back);
    Bytes want = b;
    want.insert(want.end(), a.begin(), a.end());
    want.insert(want.end(), b.begin(), b.end());
    std::copy(a.begin(), a.begin() + 5, want.begin() + 10);
    REQUIRE(back == want);
    VectorSink out;
    t.copy_to(out, 1000, a.size());
    REQUIRE(out.data == a);
    FdSource src(t.fd(), 1000, a.size(), "test");
    Bytes piece(100);
    src.read_at(a.size() - 100, piece);
    REQUIRE(std::equal(piece.begin(), piece.end(), a.end() - 100));
    REQUIRE_THROWS_AS(FdSource(t.fd(), t.size() - 10, 100, "test").read_at(0, piece), EnvError);
    t.clear();
    REQUIRE(t.size() == 0);
    t.write(b);
    Bytes again(b.size());
    t.read_at(0, again);
    REQUIRE(again == b);
}
