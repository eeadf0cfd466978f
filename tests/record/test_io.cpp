// Atomic output, secret files, input checks, signal cleanup.
#include "record/error.hpp"
#include "record/io.hpp"

#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>
#include <dirent.h>
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
        return static_cast<size_t>(std::distance(fs::directory_iterator(path), fs::directory_iterator{}));
    }
};

ByteView text(const char* s) { return ByteView(reinterpret_cast<const uint8_t*>(s), strlen(s)); }

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
