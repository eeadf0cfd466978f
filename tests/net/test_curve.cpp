#include "net/curve.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace n3;
using namespace n3::net;
using n3::crypto::curve_public_text;
using n3::crypto::z85_encode;

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
    CurveSecretFile kp = load_secret_key(f.path);
    CHECK(z85_encode(kp.key.public_key) == std::string(pub_z85));
    CHECK(curve_public_text(kp.key.public_key) == std::string("N3CURVE-PUBLIC-") + pub_z85);
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

TEST_CASE("a secret key file others can read is named for the transport's warning") {
    char pub_z85[41], sec_z85[41];
    REQUIRE(zmq_curve_keypair(pub_z85, sec_z85) == 0);
    TempFile f(std::string("N3CURVE-SECRET-") + sec_z85 + "\n");
    REQUIRE(chmod(f.path.c_str(), 0600) == 0);
    CHECK(load_secret_key(f.path).exposed.empty());
    REQUIRE(chmod(f.path.c_str(), 0644) == 0);
    CHECK(load_secret_key(f.path).exposed ==
          f.path + " is readable by others (mode 0644); chmod 600 " + f.path);
}

namespace {

struct Client {
    CurveKey keys;
    Client() {
        char pub_z85[41], sec_z85[41];
        REQUIRE(zmq_curve_keypair(pub_z85, sec_z85) == 0);
        keys = CurveKey::parse(std::string("N3CURVE-SECRET-") + sec_z85, "client");
        REQUIRE(z85_encode(keys.public_key) == std::string(pub_z85));
    }
};

// Sends one message from a CURVE client of its own context; true when `server` got it within
// `wait`.
bool delivered(zmq::socket_t& server, const std::string& endpoint, const CurvePublic& server_key,
               const Client& c, std::chrono::milliseconds wait) {
    zmq::context_t ctx(1);
    zmq::socket_t push(ctx, zmq::socket_type::push);
    push.set(zmq::sockopt::linger, 0);
    zmq_setsockopt(push.handle(), ZMQ_CURVE_SERVERKEY, server_key.data(), 32);
    zmq_setsockopt(push.handle(), ZMQ_CURVE_PUBLICKEY, c.keys.public_key.data(), 32);
    zmq_setsockopt(push.handle(), ZMQ_CURVE_SECRETKEY, c.keys.secret.data(), 32);
    push.connect(endpoint);
    // PUSH queues until a handshake completes; a refused one never takes the message.
    (void)push.send(zmq::str_buffer("hello"), zmq::send_flags::dontwait);
    zmq::pollitem_t item{server.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, wait) == 0) return false;
    zmq::message_t m;
    return server.recv(m, zmq::recv_flags::dontwait) && m.to_string() == "hello";
}

struct Server {
    zmq::context_t ctx{1};
    zmq::socket_t sock{ctx, zmq::socket_type::pull};
    Client keys;
    std::string endpoint;
    void bind() {
        sock.set(zmq::sockopt::linger, 0);
        sock.bind("tcp://127.0.0.1:*");
        endpoint = sock.get(zmq::sockopt::last_endpoint);
    }
};

} // namespace

TEST_CASE("a CURVE server with no ZAP handler admits no client") {
    // Without ZMQ_ZAP_ENFORCE_DOMAIN libzmq lets in anyone who knows the server key here.
    Server s;
    make_curve_server(s.sock, s.keys.keys);
    s.bind();
    Client stranger;
    CHECK_FALSE(delivered(s.sock, s.endpoint, s.keys.keys.public_key, stranger,
                          std::chrono::milliseconds(1500)));
}

TEST_CASE("the allow-list ZAP handler admits listed clients of its domain only") {
    Client friend_, stranger;
    Server s;
    ZapHandler zap(s.ctx, {friend_.keys.public_key});
    make_curve_server(s.sock, s.keys.keys);
    s.bind();
    CHECK(delivered(s.sock, s.endpoint, s.keys.keys.public_key, friend_,
                    std::chrono::milliseconds(5000)));
    CHECK_FALSE(delivered(s.sock, s.endpoint, s.keys.keys.public_key, stranger,
                          std::chrono::milliseconds(1000)));
    auto r = zap.take_rejections();
    REQUIRE(r.size() >= 1);
    CHECK_THAT(r[0], Catch::Contains("not in the allow list") &&
                         Catch::Contains(curve_public_text(stranger.keys.public_key)));

    // A socket of the same context in another domain does not borrow the allow list.
    zmq::socket_t other(s.ctx, zmq::socket_type::pull);
    other.set(zmq::sockopt::linger, 0);
    other.set(zmq::sockopt::curve_server, 1);
    zmq_setsockopt(other.handle(), ZMQ_CURVE_SECRETKEY, s.keys.keys.secret.data(), 32);
    other.set(zmq::sockopt::zap_domain, "elsewhere");
    other.bind("tcp://127.0.0.1:*");
    std::string ep = other.get(zmq::sockopt::last_endpoint);
    CHECK_FALSE(
        delivered(other, ep, s.keys.keys.public_key, friend_, std::chrono::milliseconds(1000)));
    auto r2 = zap.take_rejections();
    REQUIRE(r2.size() >= 1);
    CHECK_THAT(r2[0], Catch::Contains("ZAP domain 'elsewhere'"));
}
