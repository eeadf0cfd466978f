#include "net/curve.hpp"

#include "record/error.hpp"
#include "record/io.hpp"

#include <algorithm>
#include <cstring>
#include <sodium.h>
#include <sstream>
#include <utility>

namespace n3::net {

namespace {

const std::string kCurveSecretPrefix(crypto::key_prefix(crypto::KeyKind::curve_secret));
const std::string kCurvePublicPrefix(crypto::key_prefix(crypto::KeyKind::curve_public));

std::string trim(const std::string& s) {
    size_t a = s.find_first_not_of(" \t\r\n");
    if (a == std::string::npos) return {};
    size_t b = s.find_last_not_of(" \t\r\n");
    return s.substr(a, b - a + 1);
}

struct KeyLine {
    std::string key; // the Z85 part
    size_t line = 0;
};

// Every non-comment line must start with `prefix`; returns the Z85 parts.
std::vector<KeyLine> key_lines(const std::string& text, const std::string& prefix,
                               const std::string& where, const std::string& what) {
    std::vector<KeyLine> out;
    std::istringstream in(text);
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        std::string t = trim(line);
        if (t.empty() || t[0] == '#') continue;
        if (t.rfind(prefix, 0) != 0) {
            const bool other =
                t.rfind(kCurveSecretPrefix, 0) == 0 || t.rfind(kCurvePublicPrefix, 0) == 0;
            throw DataError(where + ": line " + std::to_string(n) + " is not " + what +
                                (other ? " (it holds the other half of a key pair)" : ""),
                            "make keys with: n3-keys curve");
        }
        std::string key = t.substr(prefix.size());
        key = key.substr(0, key.find_first_of(" \t"));
        out.push_back({key, n});
    }
    return out;
}

// 40 Z85 characters -> 32 bytes, with the transport's message (the key files' own parser,
// crypto::decode_key_text, says "corrupted"; these lines may also come from a command line).
Bytes curve_bytes(const std::string& text, const std::string& where) {
    std::optional<Bytes> raw;
    if (text.size() == 40) raw = crypto::z85_decode(text);
    if (!raw)
        throw DataError(where + ": malformed CURVE key (expected 40 Z85 characters)",
                        "make keys with: n3-keys curve");
    return std::move(*raw);
}

CurvePublic public_key_of(const std::string& text, const std::string& where) {
    Bytes raw = curve_bytes(text, where);
    CurvePublic pub{};
    std::memcpy(pub.data(), raw.data(), pub.size());
    return pub;
}

// ZMQ_ZAP_ENFORCE_DOMAIN is a draft option in zmq.h 4.3 (defined only with the draft API),
// yet stable libzmq 4.3 builds accept it; the number is fixed by libzmq.
#ifdef ZMQ_ZAP_ENFORCE_DOMAIN
constexpr int kZapEnforceDomain = ZMQ_ZAP_ENFORCE_DOMAIN;
#else
constexpr int kZapEnforceDomain = 93;
#endif

} // namespace

CurveSecretFile load_secret_key(const std::string& path) {
    std::string text = read_text_file(path);
    auto lines =
        key_lines(text, kCurveSecretPrefix, path, "a CURVE secret key line (N3CURVE-SECRET-...)");
    sodium_memzero(text.data(), text.size());
    if (lines.size() != 1)
        throw DataError(path + ": holds " + std::to_string(lines.size()) +
                            " CURVE secret keys, expected one",
                        "--curve-key takes the secret key file written by n3-keys curve");
    const std::string where = path + ": line " + std::to_string(lines[0].line);
    Bytes secret = curve_bytes(lines[0].key, where);
    sodium_memzero(lines[0].key.data(), lines[0].key.size());
    CurveSecretFile f{CurveKey::from_secret(secret, where), crypto::exposed_secret_file(path)};
    sodium_memzero(secret.data(), secret.size());
    return f;
}

CurvePublic load_public_key(const std::string& spec) {
    std::string t = trim(spec);
    if (t.rfind(kCurvePublicPrefix, 0) == 0)
        return public_key_of(t.substr(kCurvePublicPrefix.size()), "public key '" + t + "'");
    if (t.rfind(kCurveSecretPrefix, 0) == 0)
        throw UsageError("that is a secret key; give the server's public key (N3CURVE-PUBLIC-...)");
    auto lines = key_lines(read_text_file(spec), kCurvePublicPrefix, spec,
                           "a CURVE public key line (N3CURVE-PUBLIC-...)");
    if (lines.size() != 1)
        throw DataError(spec + ": holds " + std::to_string(lines.size()) +
                        " CURVE public keys, expected one");
    return public_key_of(lines[0].key, spec + ": line " + std::to_string(lines[0].line));
}

std::vector<CurvePublic> load_allow_list(const std::string& path) {
    auto lines = key_lines(read_text_file(path), kCurvePublicPrefix, path,
                           "a CURVE public key line (N3CURVE-PUBLIC-...)");
    std::vector<CurvePublic> keys;
    for (auto& l : lines)
        keys.push_back(public_key_of(l.key, path + ": line " + std::to_string(l.line)));
    if (keys.empty())
        throw DataError(path + ": lists no CURVE public keys, so no client could connect");
    return keys;
}

// ZAP -----------------------------------------------------------------------------------------

void make_curve_server(zmq::socket_t& s, const CurveKey& key) {
    s.set(zmq::sockopt::curve_server, 1);
    zmq_setsockopt(s.handle(), ZMQ_CURVE_SECRETKEY, key.secret.data(), key.secret.size());
    s.set(zmq::sockopt::zap_domain, kZapDomain);
    const int on = 1;
    if (zmq_setsockopt(s.handle(), kZapEnforceDomain, &on, sizeof on) != 0)
        throw EnvError("this libzmq cannot enforce CURVE authentication (ZMQ_ZAP_ENFORCE_DOMAIN)",
                       "n3-send needs libzmq 4.3 or later for --curve-key on a listening side");
}

ZapHandler::ZapHandler(zmq::context_t& ctx, std::vector<CurvePublic> allowed)
    : socket_(ctx, zmq::socket_type::rep), allowed_(std::move(allowed)) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("inproc://zeromq.zap.01");
    thread_ = std::thread([this] { serve(); });
}

ZapHandler::~ZapHandler() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
}

std::vector<std::string> ZapHandler::take_rejections() {
    std::lock_guard<std::mutex> lock(mutex_);
    return std::exchange(rejections_, {});
}

void ZapHandler::serve() {
    try {
        while (!stop_) {
            zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
            if (zmq::poll(&item, 1, std::chrono::milliseconds(100)) == 0) continue;
            // version, request id, domain, address, identity, mechanism, credentials...
            std::vector<zmq::message_t> req;
            do {
                zmq::message_t part;
                if (!socket_.recv(part, zmq::recv_flags::none)) break;
                req.push_back(std::move(part));
            } while (req.back().more());
            if (req.size() < 6) continue; // not a ZAP request; REP needs no reply to garbage
            std::string mechanism = req[5].to_string();
            bool ok = false;
            std::string who = req[3].to_string();
            const std::string domain = req[2].to_string();
            if (domain != kZapDomain) {
                // Another socket of this context asked: the allow list is not its policy.
                std::lock_guard<std::mutex> lock(mutex_);
                rejections_.push_back("rejected a client of ZAP domain '" + domain + "'" +
                                      (who.empty() ? "" : " from " + who));
            } else if (mechanism == "CURVE" && req.size() >= 7 && req[6].size() == 32) {
                CurvePublic key{};
                std::memcpy(key.data(), req[6].data(), 32);
                ok = std::find(allowed_.begin(), allowed_.end(), key) != allowed_.end();
                if (!ok) {
                    std::lock_guard<std::mutex> lock(mutex_);
                    rejections_.push_back(
                        "rejected CURVE client " + crypto::curve_public_text(key) +
                        (who.empty() ? "" : " from " + who) + " (not in the allow list)");
                }
            } else {
                std::lock_guard<std::mutex> lock(mutex_);
                rejections_.push_back("rejected a " + mechanism + " client" +
                                      (who.empty() ? "" : " from " + who));
            }
            const std::string code = ok ? "200" : "400";
            const std::string text = ok ? "OK" : "not allowed";
            socket_.send(zmq::buffer(std::string("1.0")), zmq::send_flags::sndmore);
            socket_.send(req[1], zmq::send_flags::sndmore);
            socket_.send(zmq::buffer(code), zmq::send_flags::sndmore);
            socket_.send(zmq::buffer(text), zmq::send_flags::sndmore);
            socket_.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
            socket_.send(zmq::str_buffer(""), zmq::send_flags::none);
        }
    } catch (const zmq::error_t&) {
        // The context is terminating: nothing left to authenticate.
    }
    socket_.close();
}

} // namespace n3::net
