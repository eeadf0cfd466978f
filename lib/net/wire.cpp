#include "net/wire.hpp"
#include "record/number.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <cstring>
#include <sys/un.h>
#include <thread>

namespace n3::net {

RecordAssembler::RecordAssembler(uint64_t max_payload, std::string where)
    : max_payload_(max_payload), where_(std::move(where)) {}

void RecordAssembler::add(ByteView frame) {
    consume(frame, true);
}

void RecordAssembler::consume(ByteView frame, bool crc) {
    size_t pos = 0;
    if (!have_pre_) {
        size_t take = std::min<size_t>(frame.size(), kPreambleSize - seen_);
        if (take > 0)
            std::memcpy(head_ + seen_, frame.data(), take); // data() of an empty frame may be null
        seen_ += take;
        pos = take;
        if (seen_ < kPreambleSize) return;
        pre_ = decode_preamble(head_, where_, max_payload_);
        have_pre_ = true;
        crc_ = crc64(0, ByteView(head_, kPreambleSize));
    }
    const uint64_t body_end = kPreambleSize + pre_.payload_len;
    const uint64_t total = pre_.record_size();
    size_t rest = frame.size() - pos;
    if (seen_ + rest > total)
        throw DataError(where_ + ": holds more bytes than its record declares (" +
                            std::to_string(total) + ")",
                        "send one record per message");
    if (seen_ < body_end) {
        size_t body = static_cast<size_t>(std::min<uint64_t>(rest, body_end - seen_));
        if (crc) crc_ = crc64(crc_, frame.subspan(pos, body));
        seen_ += body;
        pos += body;
        rest -= body;
    }
    if (rest > 0) {
        std::memcpy(tail_ + (seen_ - body_end), frame.data() + pos, rest);
        seen_ += rest;
    }
}

Preamble RecordAssembler::whole(std::span<const ByteView> frames) {
    size_t i = 0;
    while (i < frames.size() && !have_pre_) add(frames[i++]);
    uint64_t rest = 0;
    for (size_t j = i; j < frames.size(); ++j) rest += frames[j].size();
    constexpr uint64_t kSplit = uint64_t(16) << 20; // below this a second thread costs more
    if (!have_pre_ || rest < kSplit || frames.size() - i < 2) {
        for (; i < frames.size(); ++i) add(frames[i]);
        return finish();
    }
    const uint64_t total = pre_.record_size();
    if (seen_ + rest > total)
        throw DataError(where_ + ": holds more bytes than its record declares (" +
                            std::to_string(total) + ")",
                        "send one record per message");
    // Frames [i, mid) on this thread, [mid, end) on a helper, split near the middle byte. The
    // helper only computes the CRC of its frames' payload bytes; this thread then takes them
    // as add() would, without the CRC, and joins the two.
    size_t mid = i;
    for (uint64_t half = 0; mid + 1 < frames.size() && half < rest / 2; ++mid)
        half += frames[mid].size();
    const uint64_t body_end = kPreambleSize + pre_.payload_len;
    uint64_t at = seen_;
    for (size_t j = i; j < mid; ++j) at += frames[j].size();
    uint64_t crc_b = 0, len_b = 0;
    std::thread helper([&, at]() mutable {
        for (size_t j = mid; j < frames.size() && at < body_end; ++j) {
            size_t body = static_cast<size_t>(std::min<uint64_t>(frames[j].size(), body_end - at));
            crc_b = crc64(crc_b, frames[j].first(body));
            len_b += body;
            at += frames[j].size();
        }
    });
    for (size_t j = i; j < mid; ++j)
        consume(frames[j], true); // cannot throw: the length was checked above
    for (size_t j = mid; j < frames.size(); ++j) consume(frames[j], false);
    helper.join();
    crc_ = crc64_combine(crc_, crc_b, len_b);
    return finish();
}

Preamble RecordAssembler::finish() {
    if (!have_pre_)
        throw DataError(where_ + ": truncated record header (" + std::to_string(seen_) + " of " +
                        std::to_string(kPreambleSize) + " bytes)");
    if (seen_ != pre_.record_size())
        throw DataError(where_ + ": truncated record (" + std::to_string(seen_) + " of " +
                        std::to_string(pre_.record_size()) + " bytes)");
    uint64_t want = 0;
    for (int i = 7; i >= 0; --i) want = (want << 8) | tail_[i];
    if (want != crc_) throw DataError(where_ + ": corrupted record (checksum mismatch)");
    return pre_;
}

Endpoint check_endpoint(const std::string& text, EndpointRole role) {
    const std::string hint_tcp = role == EndpointRole::bind
                                     ? "write tcp://*:7000, tcp://127.0.0.1:7000 or ipc:///path"
                                     : "write tcp://host:7000 or ipc:///path";
    auto sep = text.find("://");
    if (sep == std::string::npos || sep == 0)
        throw UsageError("endpoint '" + text + "' has no transport", hint_tcp);
    Endpoint ep;
    ep.text = text;
    ep.transport = text.substr(0, sep);
    std::string rest = text.substr(sep + 3);
    if (ep.transport == "ipc") {
        if (rest.empty())
            throw UsageError("endpoint '" + text + "' names no socket path", hint_tcp);
        if (rest == "*")
            throw UsageError("endpoint '" + text + "': name the socket path", "ipc:///tmp/n3.sock");
        if (rest.size() >= sizeof(sockaddr_un::sun_path))
            throw UsageError("endpoint '" + text + "': socket path longer than " +
                             std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
        ep.host = rest;
        return ep;
    }
    if (ep.transport != "tcp")
        throw UsageError("endpoint '" + text + "': unsupported transport '" + ep.transport +
                             "' (n3-send speaks tcp:// and ipc://)",
                         hint_tcp);
    auto colon = rest.rfind(':');
    if (colon == std::string::npos)
        throw UsageError("endpoint '" + text + "' has no port", hint_tcp);
    std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        host = host.substr(1, host.size() - 2);
        if (host.find(':') == std::string::npos)
            throw UsageError("endpoint '" + text + "': brackets are for IPv6 addresses", hint_tcp);
    } else if (host.find(':') != std::string::npos) {
        throw UsageError("endpoint '" + text + "': write an IPv6 address in brackets",
                         "tcp://[::1]:7000");
    }
    if (host.empty()) throw UsageError("endpoint '" + text + "' has no host", hint_tcp);
    for (char c : host)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
              c == ':' || c == '*' || c == '%'))
            throw UsageError("endpoint '" + text + "': bad character '" + std::string(1, c) +
                                 "' in host",
                             hint_tcp);
    if (host.find('*') != std::string::npos && host != "*")
        throw UsageError("endpoint '" + text + "': '*' stands alone as the host", hint_tcp);
    if (role == EndpointRole::connect && host == "*")
        throw UsageError("endpoint '" + text + "': '*' is for listening, name the host to send to",
                         hint_tcp);
    if (role == EndpointRole::bind && port == "*") {
        ep.host = host;
        ep.port = 0;
        return ep;
    }
    const auto number = parse_uint(port, 65535);
    if (!number || port.size() > 5 || (*number == 0 && role == EndpointRole::connect))
        throw UsageError("endpoint '" + text + "': bad port '" + port + "' (1 to 65535)", hint_tcp);
    ep.host = host;
    ep.port = static_cast<int>(*number);
    return ep;
}

} // namespace n3::net
