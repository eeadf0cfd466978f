// n3/net/transport.hpp — moving records over ZeroMQ: push/pull, scatter/broadcast, pub/sub.
//
//   SendOptions so; so.endpoints = {"tcp://hub:7000"}; so.timeout = 60;
//   send_records(input, so);                        // PUSH, connect; returns when handed over
//
//   ReceiveOptions ro; ro.endpoint = "tcp://*:7000"; ro.count = 8; ro.quorum = 6; ro.timeout = 300;
//   receive_records(ro, [&](const Arrival& a) { for (auto f : a.frames) out.write(f); });
//
//   PublishOptions po; po.endpoint = "tcp://*:7001"; po.subscribers = 4;
//   publish_records(input, po);                     // XPUB, bind; waits for the subscribers
//
// Wire format: wire.hpp (one record = one multipart message of ~1 MiB frames). A receiver
// checks every record (preamble, length, CRC, --max-size) before handing it on; a bad one is
// reported through `warn` and dropped. ZeroMQ delivers a multipart message only when all of
// it arrived, so a sender that dies mid-record never produces a partial record.
//
// Sending: one PUSH socket (and context) per endpoint; --scatter deals record i to endpoint
// i mod n, --broadcast sends every record to every endpoint. A sender is done with a peer
// when ZeroMQ released every frame queued for it (each frame carries a free function that
// counts it out once its bytes were written to the connection) and the kernel's send queue
// is empty (SIOCOUTQ: the receiving host acknowledged every byte); frames still queued wait
// for the peer, up to the timeout, also across a reconnect.
//
// Failures: UsageError for a malformed endpoint or a reserve over kMaxReserve; EnvError for
// an address in use, a refused CURVE key, a missing file, memory that cannot be reserved;
// DataError for a corrupt input record (records before it are still sent, the bad one never
// leaves); IncompleteError (exit 3) when the timeout ran out before the peers took every
// record, or a receiver got fewer than its quorum.
#pragma once

#include "net/curve.hpp"
#include "net/wire.hpp"
#include "record/format.hpp"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace n3::net {

using Notify = std::function<void(const std::string&)>;

struct CurveClient {
    CurveSecretFile keys;
    CurvePublic server{};
};
struct CurveServer {
    CurveSecretFile keys;
    std::vector<CurvePublic> allowed;
};

// Bounded memory. A receiver queues at most `hwm` whole records per peer (ZeroMQ holds a
// record whole until it is complete, so memory is about hwm x the largest record). A sender
// queues up to `hwm` records per peer but holds at most 64 MiB of copied frames besides the
// record it is cutting (frames of a mapped file are not copied).
constexpr int kDefaultRecvHwm = 16;
// A connection to a receiver that has not finished its ZMTP handshake (greeting, READY, and
// CURVE's when used) after this long is closed, so that silent or trickling peers cannot hold
// connections open (ZeroMQ's own default is 30 s). A handshake is a few hundred bytes: 10 s
// is many round trips even over a lossy link. Hostile peers and the bounds they meet:
// man/n3-send.1, HOSTILE PEERS; tests/cli/send-hostile.sh.
constexpr int kHandshakeMs = 10000;
constexpr int kDefaultSendHwm = 1000;
// A receiver's first large record lands in fresh memory, whose page faults cost as much as
// the transfer (about 0.15 s for 256 MiB). ReceiveOptions::reserve faults that much memory in
// before listening, so that the first record arrives as fast as the ones after it; the
// memory stays with the receiver. At most kMaxReserve (glibc would give more back at once).
constexpr uint64_t kMaxReserve = uint64_t(1) << 30;

enum class Fanout { single, scatter, broadcast };

struct SendOptions {
    std::vector<std::string> endpoints;
    Fanout fanout = Fanout::single;
    double timeout = 0; // seconds; 0 waits as long as it takes
    int hwm = kDefaultSendHwm;
    const CurveClient* curve = nullptr;
    Notify warn, verbose;
};
struct SendStats {
    uint64_t records = 0, bytes = 0;
};
SendStats send_records(Input& in, const SendOptions& opts);

enum class Pattern { pull, sub };

struct ReceiveOptions {
    std::string endpoint;
    Pattern pattern = Pattern::pull;
    uint64_t count = 0;  // 0: until the timeout or a signal
    uint64_t quorum = 0; // records needed at the timeout
    double timeout = 0;  // seconds; 0 waits as long as it takes
    int hwm = kDefaultRecvHwm;
    uint64_t max_payload = kDefaultMaxPayload;
    uint64_t reserve = 0; // bytes of frame memory faulted in before listening (kMaxReserve)
    const CurveServer* curve_server = nullptr; // pull: bind as CURVE server
    const CurveClient* curve_client = nullptr; // sub: connect as CURVE client
    Notify warn, verbose;
    // Called when no record is waiting (before sleeping) and at the end: flush buffers here.
    std::function<void()> on_idle;
};
struct Arrival {
    std::span<const ByteView> frames; // concatenated, the record's bytes
    Preamble preamble;
    std::string peer; // "10.0.0.2" for tcp, empty when unknown
    uint64_t index = 0;
};
using RecordHandler = std::function<void(const Arrival&)>;
struct ReceiveStats {
    uint64_t received = 0, dropped = 0;
    bool timed_out = false;
};
// Returns when `count` records arrived, or at the timeout with at least `quorum`; throws
// IncompleteError at the timeout with fewer.
ReceiveStats receive_records(const ReceiveOptions& opts, const RecordHandler& on_record);

struct PublishOptions {
    std::string endpoint;
    uint64_t subscribers = 1; // wait for this many before publishing
    double timeout = 0;
    int hwm = kDefaultSendHwm;
    const CurveServer* curve = nullptr;
    Notify warn, verbose;
};
struct PublishStats {
    uint64_t records = 0, bytes = 0, subscribers = 0;
};
// Waits (bounded by the timeout) for `subscribers` subscribers, then sends every record to
// all of them without dropping any (ZMQ_XPUB_NODROP). Throws IncompleteError when fewer
// joined (after serving those who did) or none did.
PublishStats publish_records(Input& in, const PublishOptions& opts);

} // namespace n3::net
