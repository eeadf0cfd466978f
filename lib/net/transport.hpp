// n3/net/transport.hpp — moving records over ZeroMQ: push/pull, scatter/broadcast, pub/sub.
//
//   SendOptions so; so.endpoints = {"tcp://hub:7000"}; so.timeout = 60;
//   send_records(input, so);                        // PUSH, connect; returns when handed over
//
//   ReceiveOptions ro; ro.endpoint = "tcp://*:7000"; ro.count = 8; ro.quorum = 6; ro.timeout = 300;
//   Spool spool("inbox");                           // or StdoutOutlet (spool.hpp)
//   receive_records(ro, spool, [&](const Arrival& a) { log(a.where); });
//
//   PublishOptions po; po.endpoint = "tcp://*:7001"; po.subscribers = 4;
//   publish_records(input, po);                     // XPUB, bind; waits for the subscribers
//
// Wire format: a record of at most kChunkAbove bytes is one multipart message of ~1 MiB frames
// (wire.hpp); a larger one is a sequence of chunk messages of at most kChunkSize bytes
// (chunk.hpp), reassembled per connection and written to the outlet as they arrive. A
// receiver checks every record (preamble, length, CRC, --max-size); a bad one is reported
// through `warn` and dropped, and the outlet commits only records that arrived whole and
// checked. A record whose sender died mid-record is dropped when its connection has sent
// nothing for `stall` seconds, and at the end of the run (count, timeout) at the latest.
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

#include "net/chunk.hpp"
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

// Bounded memory. A receiver queues at most `hwm` messages per peer: whole records of at most
// kChunkAbove bytes, or chunks of at most kChunkSize, so about hwm x 1 MiB per sender of large
// records (hwm x 4 MiB at worst, for records just under kChunkAbove), whatever
// the records' size (a peer that sends a large record as one message, as n3-send before
// chunking did, is still taken, held whole by ZeroMQ). A sender queues up to `hwm` messages
// per peer but holds at most 64 MiB of copied frames (frames of a mapped file are not copied).
constexpr int kDefaultRecvHwm = 8;
// A connection to a receiver that has not finished its ZMTP handshake (greeting, READY, and
// CURVE's when used) after this long is closed, so that silent or trickling peers cannot hold
// connections open (ZeroMQ's own default is 30 s). A handshake is a few hundred bytes: 10 s
// is many round trips even over a lossy link. Hostile peers and the bounds they meet:
// man/n3-send.1, HOSTILE PEERS; tests/cli/send-hostile.sh.
constexpr int kHandshakeMs = 10000;
constexpr int kDefaultSendHwm = 1000;
// A receiver of records sent whole lands the first large one in fresh memory, whose page
// faults cost as much as the transfer (about 0.15 s for 256 MiB). ReceiveOptions::reserve
// faults that much memory in before listening; the memory stays with the receiver. Chunked
// records reuse the same few MiB, so n3-send's own records no longer need it. At most
// kMaxReserve (glibc would give more back at once).
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
    double stall = 60;    // seconds without a chunk before a partial record is dropped
    const CurveServer* curve_server = nullptr; // pull: bind as CURVE server
    const CurveClient* curve_client = nullptr; // sub: connect as CURVE client
    Notify warn, verbose;
    // Called when no record is waiting (before sleeping) and at the end: flush buffers here.
    std::function<void()> on_idle;
};
// A record the outlet committed.
struct Arrival {
    Preamble preamble;
    std::string peer; // "10.0.0.2" for tcp, empty when unknown
    uint64_t index = 0;
    std::string where; // what the outlet's commit() returned (a spool file's path)
    bool chunked = false;
};
using RecordHandler = std::function<void(const Arrival&)>;
struct ReceiveStats {
    uint64_t received = 0, dropped = 0, chunks_refused = 0;
    bool timed_out = false;
};
// Writes every record that arrives whole and checked to `outlet`, then calls `on_record`.
// Returns when `count` records arrived, or at the timeout with at least `quorum`; throws
// IncompleteError at the timeout with fewer. Errors of the outlet propagate (EnvError, and
// StdoutOutlet's IncompleteError when a record streaming to stdout broke off).
ReceiveStats receive_records(const ReceiveOptions& opts, RecordOutlet& outlet,
                             const RecordHandler& on_record = {});

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
