// n3/net/curve.hpp — CURVE transport keys (made by `n3-keys curve`) and the ZAP handler that
// admits only listed clients.
//
// Key text, one line each, '#' starts a comment line:
//   N3CURVE-SECRET-<40 Z85 characters>   the 32-byte Curve25519 secret (a 0600 file)
//   N3CURVE-PUBLIC-<40 Z85 characters>   its public key, crypto_scalarmult_base(secret)
// An allow file lists public key lines; text after the key on the same line is a label.
//
// The key type and its Z85 codec are lib/crypto's (crypto::CurveKey, keys.hpp), shared with
// n3-keys, which writes these files.
//
//   CurveSecretFile me = load_secret_key("node.key");        // derives the public half
//   CurvePublic hub = load_public_key("hub.pub");            // a file or the key line itself
//   std::vector<CurvePublic> allowed = load_allow_list("clients.allow");
//   ZapHandler zap(ctx, allowed);   // before the server socket binds; destroy before ctx
//   make_curve_server(sock, me.key);                         // then bind
//
// A CURVE server socket enforces the ZAP domain kZapDomain: libzmq otherwise admits every
// client that knows the server's public key whenever no ZAP handler answers (no handler
// bound, or its thread gone), which is encryption without authentication. With enforcement,
// no handler means no client.
//
// Bad key files throw DataError (exit 1) naming the file and line; missing files EnvError.
#pragma once

#include "crypto/keys.hpp"

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

namespace n3::net {

using crypto::CurveKey;
using crypto::CurvePublic;

inline constexpr const char* kZapDomain = "n3";

// A CURVE secret key file as loaded: its key pair and, when the file was open to its group or
// others, "FILE is readable by others (mode 0644); chmod 600 FILE" for the transport's warn
// (lib/ does not print); else "".
struct CurveSecretFile {
    CurveKey key;
    std::string exposed;
};

CurveSecretFile load_secret_key(const std::string& path);
// `spec` is a key line "N3CURVE-PUBLIC-..." or a file holding one.
CurvePublic load_public_key(const std::string& spec);
std::vector<CurvePublic> load_allow_list(const std::string& path);

// Makes `s` a CURVE server with `key`, in ZAP domain kZapDomain, enforced. Throws EnvError
// when libzmq cannot enforce the domain (older than 4.3).
void make_curve_server(zmq::socket_t& s, const CurveKey& key);

// Answers ZAP requests (RFC 27) for sockets of `ctx`: CURVE clients of domain kZapDomain
// whose public key is in `allowed` get 200, everyone else 400. Rejections are queued for the
// caller to report.
class ZapHandler {
public:
    ZapHandler(zmq::context_t& ctx, std::vector<CurvePublic> allowed);
    ~ZapHandler();
    ZapHandler(const ZapHandler&) = delete;
    ZapHandler& operator=(const ZapHandler&) = delete;
    // Messages about rejected clients since the last call ("rejected CURVE client ... from ...").
    std::vector<std::string> take_rejections();

private:
    void serve();
    zmq::socket_t socket_;
    std::vector<CurvePublic> allowed_;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::vector<std::string> rejections_;
    std::thread thread_;
};

} // namespace n3::net
