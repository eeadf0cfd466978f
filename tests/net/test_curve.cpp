#include "net/curve.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace n3;
using namespace n3::net;

namespace {

struct TempFile {
    explicit TempFile(const std::string& text) {
        char tmpl[] = "/tmp/n3-curve-test.XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
        path = tmpl;
        std::ofstream(path) << text;
    }
    ~TempFile() { std::remove(path.c_str()); }
    std::string path;
};

} // namespace

TEST_CASE("secret key files give the same public key as libzmq") {
    char pub_z85[41], sec_z85[41];
    REQUIRE(zmq_curve_keypair(pub_z85, sec_z85) == 0);
    TempFile f(std::string("# n3 CURVE transport key\n\nN3CURVE-SECRET-") + sec_z85 + "\n");
    CurveKeyPair kp = load_secret_key(f.path);
    CHECK(z85_encode(kp.public_key) == std::string(pub_z85));
    CHECK(public_key_line(kp.public_key) == std::string("N3CURVE-PUBLIC-") + pub_z85);
}

TEST_CASE("public keys come from a file or the key text") {
    char pub_z85[41], sec_z85[41];
    REQUIRE(zmq_curve_keypair(pub_z85, sec_z85) == 0);
    std::string line = std::string("N3CURVE-PUBLIC-") + pub_z85;
    TempFile f("# hub\n" + line + "\n");
    CHECK(z85_encode(load_public_key(f.path)) == pub_z85);
    CHECK(z85_encode(load_public_key(line)) == pub_z85);
    CHECK_THROWS_AS(load_public_key(std::string("N3CURVE-SECRET-") + sec_z85), UsageError);
    CHECK_THROWS_AS(load_public_key("/nonexistent/hub.pub"), EnvError);
}

TEST_CASE("bad key files are refused by line") {
    char pub_z85[41], sec_z85[41];
    REQUIRE(zmq_curve_keypair(pub_z85, sec_z85) == 0);
    SECTION("a public key given as the secret") {
        TempFile f(std::string("N3CURVE-PUBLIC-") + pub_z85 + "\n");
        CHECK_THROWS_WITH(load_secret_key(f.path), Catch::Contains("other half of a key pair"));
    }
    SECTION("bad Z85") {
        TempFile f("N3CURVE-SECRET-" + std::string(40, '"') + "\n");
        CHECK_THROWS_WITH(load_secret_key(f.path), Catch::Contains("malformed CURVE key"));
    }
    SECTION("short key") {
        TempFile f(std::string("N3CURVE-SECRET-") + std::string(sec_z85).substr(0, 39) + "\n");
        CHECK_THROWS_AS(load_secret_key(f.path), DataError);
    }
    SECTION("two secrets") {
        TempFile f(std::string("N3CURVE-SECRET-") + sec_z85 + "\nN3CURVE-SECRET-" + sec_z85 + "\n");
        CHECK_THROWS_WITH(load_secret_key(f.path), Catch::Contains("expected one"));
    }
    SECTION("empty") {
        TempFile f("# nothing\n");
        CHECK_THROWS_AS(load_secret_key(f.path), DataError);
        CHECK_THROWS_WITH(load_allow_list(f.path), Catch::Contains("lists no CURVE public keys"));
    }
    SECTION("junk line") {
        TempFile f("hello\n");
        CHECK_THROWS_WITH(load_allow_list(f.path), Catch::Contains("line 1 is not"));
    }
}

TEST_CASE("allow lists take comments and labels") {
    char p1[41], s1[41], p2[41], s2[41];
    REQUIRE(zmq_curve_keypair(p1, s1) == 0);
    REQUIRE(zmq_curve_keypair(p2, s2) == 0);
    TempFile f(std::string("# federation members\nN3CURVE-PUBLIC-") + p1 +
               " node-1\n\n  N3CURVE-PUBLIC-" + p2 + "\n");
    auto keys = load_allow_list(f.path);
    REQUIRE(keys.size() == 2);
    CHECK(z85_encode(keys[0]) == p1);
    CHECK(z85_encode(keys[1]) == p2);
}
