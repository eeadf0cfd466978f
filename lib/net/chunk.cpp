#include "net/chunk.hpp"

#include "net/wire.hpp"
#include "record/bytes.hpp"
#include "record/error.hpp"
#include "record/hex.hpp"

#include <algorithm>
#include <cstring>

namespace n3::net {

void encode_chunk_header(const ChunkHeader& h, uint8_t out[kChunkHeaderSize]) {
    std::memset(out, 0, kChunkHeaderSize);
    std::memcpy(out, kChunkMagic, sizeof kChunkMagic);
    out[4] = kChunkVersion;
    out[5] = h.last ? 1 : 0;
    put_le(out + 8, h.id, 8);
    put_le(out + 16, h.offset, 8);
    put_le(out + 24, h.total, 8);
}

bool is_chunk_header(ByteView frame) {
    return frame.size() == kChunkHeaderSize &&
           std::memcmp(frame.data(), kChunkMagic, sizeof kChunkMagic) == 0;
}

ChunkHeader decode_chunk_header(ByteView frame, const std::string& where) {
    if (!is_chunk_header(frame)) throw DataError(where + ": not a chunk header");
    const uint8_t* p = frame.data();
    if (p[4] != kChunkVersion)
        throw DataError(where + ": chunk header version " + std::to_string(p[4]) +
                            " (this n3-send speaks version 1)",
                        "upgrade n3-send on both ends");
    if ((p[5] & ~1u) != 0 || p[6] != 0 || p[7] != 0)
        throw DataError(where + ": chunk header with unknown flags");
    ChunkHeader h;
    h.last = p[5] & 1;
    h.id = get_le(p + 8, 8);
    h.offset = get_le(p + 16, 8);
    h.total = get_le(p + 24, 8);
    if (h.offset >= h.total)
        throw DataError(where + ": chunk at offset " + std::to_string(h.offset) +
                        " of a record of " + std::to_string(h.total) + " bytes");
    return h;
}

struct ChunkReassembler::Partial {
    Partial(uint64_t max_payload, const std::string& at) : check(max_payload, at) {}
    RecordAssembler check;
    std::unique_ptr<RecordOut> out;
    Preamble preamble{};
    std::string peer, where;
    uint64_t total = 0, next = 0, started = 0;
    Clock::time_point last_seen{};
};

ChunkReassembler::ChunkReassembler(RecordOutlet& outlet, uint64_t max_payload,
                                   std::function<void(const std::string&)> warn)
    : outlet_(outlet), max_payload_(max_payload), warn_(std::move(warn)) {}

ChunkReassembler::~ChunkReassembler() = default;

void ChunkReassembler::refuse(const std::string& why) {
    ++refused_;
    if (warn_) warn_(why + "; dropped");
}

void ChunkReassembler::drop(std::map<Key, std::unique_ptr<Partial>>::iterator it,
                            const std::string& why) {
    std::unique_ptr<Partial> p = std::move(it->second);
    partials_.erase(it);
    ++dropped_;
    const std::string msg = p->where + ": " + why + " after " + std::to_string(p->next) + " of " +
                            std::to_string(p->total) + " bytes";
    if (warn_) warn_(msg + "; record dropped");
    p->out->abort(msg); // may throw (stdout); the record is gone from the map either way
}

uint64_t ChunkReassembler::pending_bytes() const {
    uint64_t n = 0;
    for (auto& [key, p] : partials_) n += p->next;
    return n;
}

static std::string id_text(uint64_t id) {
    uint8_t b[8];
    put_le(b, id, 8);
    return to_hex(ByteView(b, 8));
}

std::optional<Reassembled> ChunkReassembler::add(int conn, const std::string& peer,
                                                 const ChunkHeader& h,
                                                 std::span<const ByteView> data,
                                                 Clock::time_point now) {
    uint64_t size = 0;
    for (auto f : data) size += f.size();
    const std::string where = "record " + id_text(h.id) + " from " + peer;
    const Key key{conn, h.id};
    auto it = partials_.find(key);

    if (auto ig = ignored_.find(conn); ig != ignored_.end() && ig->second == h.id) {
        if (h.last) ignored_.erase(ig);
        return std::nullopt; // the rest of a record already refused and reported
    }
    if (h.offset == 0) {
        if (it != partials_.end()) {
            drop(it, "its first chunk arrived again (duplicated)");
            return std::nullopt;
        }
        // A record's first chunk holds at least its preamble.
        uint8_t head[kPreambleSize];
        size_t got = 0;
        for (auto f : data) {
            size_t take = std::min(f.size(), kPreambleSize - got);
            if (take == 0) continue; // an empty frame: its data() may be null
            std::memcpy(head + got, f.data(), take);
            got += take;
            if (got == kPreambleSize) break;
        }
        auto refuse_record = [&](const std::string& why) {
            if (!h.last) ignored_[conn] = h.id;
            refuse(why);
        };
        if (got < kPreambleSize) {
            refuse_record(where + ": first chunk shorter than a record preamble");
            return std::nullopt;
        }
        Preamble pre;
        try {
            pre = decode_preamble(head, where, max_payload_);
        } catch (const DataError& e) {
            refuse_record(e.what());
            return std::nullopt;
        }
        if (pre.record_size() != h.total) {
            refuse_record(where + ": chunks declare " + std::to_string(h.total) +
                          " bytes, its preamble " + std::to_string(pre.record_size()));
            return std::nullopt;
        }
        // A sender that starts a new record while older ones stay partial broke them off.
        size_t mine = 0;
        auto oldest = partials_.end();
        for (auto j = partials_.lower_bound(Key{conn, 0});
             j != partials_.end() && j->first.first == conn; ++j) {
            ++mine;
            if (oldest == partials_.end() || j->second->started < oldest->second->started)
                oldest = j;
        }
        if (mine >= kPerConnection) drop(oldest, "its sender started too many other records");
        auto p = std::make_unique<Partial>(max_payload_, where);
        p->preamble = pre;
        p->peer = peer;
        p->where = where;
        p->total = h.total;
        p->started = ++started_;
        p->out = outlet_.begin(pre, peer);
        it = partials_.emplace(key, std::move(p)).first;
    } else if (it == partials_.end()) {
        refuse(where + ": chunk at offset " + std::to_string(h.offset) +
               " of a record that did not start on this connection (out of order, duplicated "
               "or from another sender)");
        return std::nullopt;
    }

    Partial& p = *it->second;
    if (h.offset != p.next) {
        drop(it, "chunk at offset " + std::to_string(h.offset) + " where " +
                     std::to_string(p.next) + " was due (out of order or duplicated)");
        return std::nullopt;
    }
    if (h.total != p.total) {
        drop(it, "chunk declaring " + std::to_string(h.total) + " bytes in all");
        return std::nullopt;
    }
    if (size == 0 || size > p.total - p.next) {
        drop(it,
             "chunk of " + std::to_string(size) + " bytes at offset " + std::to_string(h.offset));
        return std::nullopt;
    }
    if (h.last != (p.next + size == p.total)) {
        drop(it, h.last ? "last chunk before the end"
                        : "the end of the record without a last "
                          "chunk");
        return std::nullopt;
    }
    try {
        for (auto f : data) p.check.add(f);
    } catch (const DataError& e) {
        drop(it, e.what());
        return std::nullopt;
    }
    for (auto f : data)
        if (!f.empty()) p.out->write(f);
    p.next += size;
    p.last_seen = now;
    if (!h.last) return std::nullopt;
    try {
        (void)p.check.finish();
    } catch (const DataError&) {
        drop(it, "checksum mismatch");
        return std::nullopt;
    }
    Reassembled r{p.preamble, p.peer, {}};
    std::unique_ptr<Partial> done = std::move(it->second);
    partials_.erase(it);
    r.where = done->out->commit();
    return r;
}

size_t ChunkReassembler::expire(Clock::time_point now, Clock::duration stall) {
    size_t n = 0;
    for (auto it = partials_.begin(); it != partials_.end();) {
        auto next = std::next(it);
        if (now - it->second->last_seen >= stall) {
            const auto secs = std::chrono::duration_cast<std::chrono::seconds>(stall).count();
            drop(it, "no chunk for " + std::to_string(secs) + " s (its sender stopped)");
            ++n;
        }
        it = next;
    }
    return n;
}

size_t ChunkReassembler::clear() {
    size_t n = 0;
    while (!partials_.empty()) {
        drop(partials_.begin(), "the receiver stopped");
        ++n;
    }
    ignored_.clear();
    return n;
}

} // namespace n3::net
