#include "codec/shard.hpp"
#include "record/bytes.hpp"

#include "codec/buffer.hpp"
#include "record/error.hpp"
#include "record/number.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <exception>
#include <isa-l/erasure_code.h>
#include <sys/random.h>
#include <thread>

namespace n3::codec {

namespace {

constexpr uint8_t kShardMagic[4] = {'N', '3', 'S', 'H'};
constexpr uint8_t kShardVersion = 1;
constexpr size_t kStripe = size_t(1) << 20;
constexpr size_t kEncodeStripe = size_t(64) << 10;
constexpr uint64_t kParallelShards = uint64_t(16) << 20; // records this large use two threads
constexpr uint64_t kMinRecord = kPreambleSize + kTrailerSize;

GroupId random_group() {
    GroupId g;
    if (getrandom(g.data(), g.size(), 0) != static_cast<ssize_t>(g.size()))
        throw_errno("getrandom");
    return g;
}

std::vector<uint8_t> cauchy(unsigned k, unsigned m) {
    std::vector<uint8_t> a((k + m) * k);
    gf_gen_cauchy1_matrix(a.data(), static_cast<int>(k + m), static_cast<int>(k));
    return a;
}

// ec_encode_data takes an int length: run it over stripes.
void ec_run(uint64_t len, unsigned k, unsigned rows, uint8_t* tables, uint8_t** src,
            uint8_t** dst) {
    std::vector<uint8_t*> s(src, src + k), d(dst, dst + rows);
    for (uint64_t off = 0; off < len; off += kStripe) {
        int n = static_cast<int>(std::min<uint64_t>(kStripe, len - off));
        for (unsigned i = 0; i < k; ++i) s[i] = src[i] + off;
        for (unsigned i = 0; i < rows; ++i) d[i] = dst[i] + off;
        ec_encode_data(n, static_cast<int>(k), static_cast<int>(rows), tables, s.data(), d.data());
    }
}

// The bytes a record's shards cover: preamble, payload, trailer, then zeros up to K * S.
class RecordImage {
public:
    RecordImage(RecordType type, ByteView payload, std::optional<uint64_t> known_crc)
        : payload_(payload) {
        encode_preamble(Preamble{kFormatVersion, type, payload.size()}, pre_);
        uint64_t crc =
            known_crc ? *known_crc : crc64(crc64(0, ByteView(pre_, kPreambleSize)), payload);
        put_le(trailer_, crc, 8);
        len_ = kPreambleSize + payload.size() + kTrailerSize;
    }
    uint64_t size() const { return len_; }
    // Calls f on consecutive views covering [off, off + len).
    template <class F> void pieces(uint64_t off, uint64_t len, F&& f) const {
        static const uint8_t zeros[65536] = {};
        uint64_t end = off + len, p_end = kPreambleSize + payload_.size();
        while (off < end) {
            uint64_t n;
            if (off < kPreambleSize) {
                n = std::min(end, uint64_t(kPreambleSize)) - off;
                f(ByteView(pre_ + off, n));
            } else if (off < p_end) {
                n = std::min(end, p_end) - off;
                f(payload_.subspan(off - kPreambleSize, n));
            } else if (off < len_) {
                n = std::min(end, len_) - off;
                f(ByteView(trailer_ + (off - p_end), n));
            } else {
                n = std::min<uint64_t>(end - off, sizeof zeros);
                f(ByteView(zeros, n));
            }
            off += n;
        }
    }
    // A pointer to [off, off + len) inside the payload, or null when the range leaves it.
    const uint8_t* direct(uint64_t off, uint64_t len) const {
        if (off >= kPreambleSize && off + len <= kPreambleSize + payload_.size())
            return payload_.data() + (off - kPreambleSize);
        return nullptr;
    }

private:
    ByteView payload_;
    uint8_t pre_[kPreambleSize];
    uint8_t trailer_[kTrailerSize];
    uint64_t len_;
};

} // namespace

ShardSpec parse_shard_spec(std::string_view text) {
    auto bad = [&] {
        return UsageError("--shards takes K+M (e.g. 10+4), not '" + std::string(text) + "'",
                          "K data shards, M parity shards: any K of the K+M rebuild the record");
    };
    auto plus = text.find('+');
    if (plus == std::string_view::npos) throw bad();
    ShardSpec s;
    auto a = text.substr(0, plus), b = text.substr(plus + 1);
    if (a.empty() || b.empty()) throw bad();
    auto k = parse_uint(a, UINT_MAX), m = parse_uint(b, UINT_MAX);
    if (!k || !m) throw bad();
    s.k = static_cast<unsigned>(*k);
    s.m = static_cast<unsigned>(*m);
    if (s.k < 1 || s.k + s.m > kMaxShards)
        throw UsageError("--shards " + std::string(text) +
                         ": need K >= 1 and K+M <= " + std::to_string(kMaxShards));
    return s;
}

std::string group_hex(const GroupId& g) {
    return to_hex(ByteView(g.data(), g.size()));
}

namespace {

// What rebuilding a group takes once K shards are in: the first K present shards, the data
// shards missing, and ISA-L's decode tables for them (none when no data shard is missing).
struct Rebuild {
    std::vector<unsigned> present, missing;
    std::vector<uint8_t> tables;
};

Rebuild plan_rebuild(const std::vector<bool>& have, unsigned k, unsigned m,
                     const std::string& where) {
    Rebuild r;
    for (unsigned i = 0; i < k + m && r.present.size() < k; ++i)
        if (have[i]) r.present.push_back(i);
    for (unsigned i = 0; i < k; ++i)
        if (!have[i]) r.missing.push_back(i);
    if (r.missing.empty()) return r;
    auto a = cauchy(k, m);
    std::vector<uint8_t> b(k * k), inv(k * k);
    for (unsigned i = 0; i < k; ++i) std::memcpy(b.data() + i * k, a.data() + r.present[i] * k, k);
    if (gf_invert_matrix(b.data(), inv.data(), static_cast<int>(k)) != 0)
        throw DataError(where + ": shard matrix is singular");
    auto nmiss = static_cast<unsigned>(r.missing.size());
    std::vector<uint8_t> rows(nmiss * k);
    r.tables.resize(k * nmiss * 32);
    for (unsigned i = 0; i < nmiss; ++i)
        std::memcpy(rows.data() + i * k, inv.data() + r.missing[i] * k, k);
    ec_init_tables(static_cast<int>(k), static_cast<int>(nmiss), rows.data(), r.tables.data());
    return r;
}

} // namespace

Bytes encode_shard_header(const ShardHeader& h) {
    Bytes b(kShardHeaderSize, 0);
    std::memcpy(b.data(), kShardMagic, 4);
    b[4] = kShardVersion;
    std::memcpy(b.data() + 8, h.group.data(), 16);
    put_le(b.data() + 24, h.index, 2);
    put_le(b.data() + 26, h.k, 2);
    put_le(b.data() + 28, h.m, 2);
    put_le(b.data() + 32, h.record_len, 8);
    put_le(b.data() + 40, h.shard_len, 8);
    put_le(b.data() + 48, h.data_crc, 8);
    return b;
}

ShardHeader parse_shard(ByteView payload, const std::string& where) {
    return parse_shard(ViewSource(payload), where);
}

ShardHeader parse_shard(const ByteSource& src, const std::string& where) {
    if (src.size() < kShardHeaderSize)
        throw DataError(where + ": truncated shard (" + std::to_string(src.size()) + " bytes)");
    std::array<uint8_t, kShardHeaderSize> p;
    src.read_at(0, p);
    if (std::memcmp(p.data(), kShardMagic, 4) != 0)
        throw DataError(where + ": not a shard payload (bad magic)");
    if (p[4] != kShardVersion)
        throw DataError(where + ": unsupported shard format version " + std::to_string(p[4]) +
                            " (this n3 reads version 1)",
                        "a newer n3 wrote this shard; upgrade n3 to read it");
    if (p[5] || p[6] || p[7] || p[30] || p[31])
        throw DataError(where + ": shard reserved bytes are set");
    ShardHeader h;
    std::memcpy(h.group.data(), p.data() + 8, 16);
    h.index = static_cast<unsigned>(get_le(p.data() + 24, 2));
    h.k = static_cast<unsigned>(get_le(p.data() + 26, 2));
    h.m = static_cast<unsigned>(get_le(p.data() + 28, 2));
    h.record_len = get_le(p.data() + 32, 8);
    h.shard_len = get_le(p.data() + 40, 8);
    h.data_crc = get_le(p.data() + 48, 8);
    std::string g = "shard " + std::to_string(h.index) + " of group " + group_hex(h.group);
    if (h.k < 1 || h.k + h.m > kMaxShards)
        throw DataError(where + ": " + g + " claims " + std::to_string(h.k) + "+" +
                        std::to_string(h.m) + " shards (need K >= 1, K+M <= 255)");
    if (h.index >= h.k + h.m)
        throw DataError(where + ": " + g + " has an index beyond " + std::to_string(h.k) + "+" +
                        std::to_string(h.m));
    if (h.record_len < kMinRecord || h.record_len > kDefaultMaxPayload + kMinRecord)
        throw DataError(where + ": " + g + " claims a record of " + std::to_string(h.record_len) +
                        " bytes");
    if (h.shard_len != (h.record_len + h.k - 1) / h.k)
        throw DataError(where + ": " + g +
                        " has a shard length that does not match K and the "
                        "record length");
    if (src.size() - kShardHeaderSize != h.shard_len)
        throw DataError(where + ": " + g + " holds " +
                        std::to_string(src.size() - kShardHeaderSize) + " bytes, not " +
                        std::to_string(h.shard_len));
    uint64_t crc = 0;
    std::vector<uint8_t> piece(static_cast<size_t>(std::min<uint64_t>(h.shard_len, kStripe)));
    for (uint64_t off = 0; off < h.shard_len; off += piece.size()) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(piece.size(), h.shard_len - off));
        if (const uint8_t* direct = src.view(kShardHeaderSize + off, len)) {
            crc = crc64(crc, ByteView(direct, len));
            continue;
        }
        src.read_at(kShardHeaderSize + off, std::span<uint8_t>(piece.data(), len));
        crc = crc64(crc, ByteView(piece.data(), len));
    }
    if (crc != h.data_crc)
        throw DataError(where + ": " + g + " is corrupted (data checksum mismatch)");
    return h;
}

GroupId write_shards(RecordType type, ByteView payload, ShardSpec spec, ShardSink& sink,
                     std::optional<uint64_t> record_crc, unsigned threads) {
    RecordImage img(type, payload, record_crc);
    unsigned k = spec.k, m = spec.m;
    uint64_t L = img.size(), S = (L + k - 1) / k, body = L - kTrailerSize;
    GroupId group = random_group();
    // crc[i]: CRC-64 of shard i's data. before[i]: of its part inside the record's checksummed
    // bytes [0, L - 8); joined, they give the record checksum without another pass.
    PageBuffer parity(static_cast<size_t>(m * S));

    std::vector<uint8_t> tables(static_cast<size_t>(k) * m * 32);
    if (m > 0) {
        auto a = cauchy(k, m);
        ec_init_tables(static_cast<int>(k), static_cast<int>(m), a.data() + k * k, tables.data());
    }
    // One pass over [from, to) of every shard: parity and CRCs, in stripes small enough that
    // the CRCs read the data while ISA-L left it in cache. Large records run as two halves on
    // two threads; their CRCs are joined with crc64_combine.
    struct Part {
        uint64_t from = 0, to = 0;
        std::vector<uint64_t> crc, inside; // per shard: all bytes; bytes inside [0, body)
        std::vector<uint64_t> inside_len;
    };
    auto run = [&](Part& p) {
        p.crc.assign(k + m, 0);
        p.inside.assign(k, 0);
        p.inside_len.assign(k, 0);
        uint64_t stripe = std::min<uint64_t>(kEncodeStripe, std::max<uint64_t>(p.to - p.from, 1));
        std::vector<uint8_t> scratch(k * stripe);
        std::vector<uint8_t*> src(k), dst(m);
        for (uint64_t off = p.from; off < p.to; off += stripe) {
            uint64_t len = std::min<uint64_t>(stripe, p.to - off);
            for (unsigned i = 0; i < k; ++i) {
                uint64_t at = i * S + off;
                const uint8_t* d = img.direct(at, len);
                if (!d) {
                    uint8_t* s = scratch.data() + i * stripe;
                    size_t pos = 0;
                    img.pieces(at, len, [&](ByteView v) {
                        std::memcpy(s + pos, v.data(), v.size());
                        pos += v.size();
                    });
                    d = s;
                }
                src[i] = const_cast<uint8_t*>(d); // ISA-L is not const-correct; it only reads
                uint64_t in = at >= body ? 0 : std::min(len, body - at);
                if (in == len) {
                    p.crc[i] = crc64(p.crc[i], ByteView(d, len));
                    p.inside[i] = p.crc[i];
                } else {
                    p.crc[i] = crc64(p.crc[i], ByteView(d, in));
                    if (in) p.inside[i] = p.crc[i];
                    p.crc[i] = crc64(p.crc[i], ByteView(d + in, len - in));
                }
                p.inside_len[i] += in;
            }
            if (m == 0) continue;
            for (unsigned j = 0; j < m; ++j) dst[j] = parity.data() + j * S + off;
            ec_encode_data(static_cast<int>(len), static_cast<int>(k), static_cast<int>(m),
                           tables.data(), src.data(), dst.data());
            for (unsigned j = 0; j < m; ++j)
                p.crc[k + j] = crc64(p.crc[k + j], ByteView(dst[j], len));
        }
    };
    std::vector<Part> parts(S * k >= kParallelShards && threads > 1 ? 2 : 1);
    for (size_t t = 0; t < parts.size(); ++t) {
        parts[t].from = S * t / parts.size();
        parts[t].to = S * (t + 1) / parts.size();
    }
    if (parts.size() == 2) {
        std::exception_ptr failed;
        std::thread second([&] {
            try {
                run(parts[1]);
            } catch (...) {
                failed = std::current_exception();
            }
        });
        run(parts[0]);
        second.join();
        if (failed) std::rethrow_exception(failed);
    } else {
        run(parts[0]);
    }
    std::vector<uint64_t> crc = parts[0].crc, before = parts[0].inside;
    for (size_t t = 1; t < parts.size(); ++t) {
        uint64_t len = parts[t].to - parts[t].from;
        for (unsigned i = 0; i < k + m; ++i) crc[i] = crc64_combine(crc[i], parts[t].crc[i], len);
        for (unsigned i = 0; i < k; ++i)
            before[i] = crc64_combine(before[i], parts[t].inside[i], parts[t].inside_len[i]);
    }
    if (record_crc) {
        // The caller gave the record's stored checksum without checking it: check it now,
        // before any shard is written.
        uint64_t whole = 0;
        for (unsigned i = 0; i < k; ++i) {
            uint64_t part = i * S >= body ? 0 : std::min<uint64_t>(S, body - i * S);
            whole = crc64_combine(whole, before[i], part);
        }
        if (whole != *record_crc) throw DataError("corrupted record (checksum mismatch)");
    }

    uint8_t pre[kPreambleSize];
    encode_preamble(Preamble{kFormatVersion, RecordType::shard, kShardHeaderSize + S}, pre);
    for (unsigned i = 0; i < k + m; ++i) {
        ShardHeader h{group, i, k, m, L, S, crc[i]};
        Bytes head = encode_shard_header(h);
        uint64_t rc = crc64(crc64(0, ByteView(pre, kPreambleSize)), head);
        rc = crc64_combine(rc, crc[i], S);
        uint8_t trailer[kTrailerSize];
        put_le(trailer, rc, 8);
        Sink& out = sink.open(h);
        out.write(ByteView(pre, kPreambleSize));
        out.write(head);
        if (i < k)
            img.pieces(i * S, S, [&](ByteView v) { out.write(v); });
        else
            out.write(ByteView(parity.data() + (i - k) * S, S));
        out.write(ByteView(trailer, kTrailerSize));
        sink.close(h);
    }
    return group;
}

GroupId write_shards_file(int fd, uint64_t base, const Preamble& pre, ShardSpec spec,
                          ShardSink& sink, bool verify, const std::string& name) {
    unsigned k = spec.k, m = spec.m;
    uint64_t L = pre.record_size(), S = (L + k - 1) / k, body = L - kTrailerSize;
    GroupId group = random_group();
    FdSource rec(fd, base, L, name);
    // Shard i's bytes [off, off + len): the record's, then zeros past its end.
    auto read_shard = [&](unsigned i, uint64_t off, std::span<uint8_t> out) {
        uint64_t at = i * S + off;
        size_t in = at >= L ? 0 : static_cast<size_t>(std::min<uint64_t>(out.size(), L - at));
        if (in) rec.read_at(at, out.first(in));
        if (in < out.size()) std::memset(out.data() + in, 0, out.size() - in);
    };
    uint64_t stripe = std::clamp<uint64_t>((uint64_t(32) << 20) / (k + m), kEncodeStripe, kStripe);
    stripe = std::max<uint64_t>(1, std::min(stripe, S));
    std::vector<uint8_t> tables(static_cast<size_t>(k) * m * 32);
    if (m > 0) {
        auto a = cauchy(k, m);
        ec_init_tables(static_cast<int>(k), static_cast<int>(m), a.data() + k * k, tables.data());
    }
    std::vector<uint8_t> data(static_cast<size_t>(k * stripe)),
        par(static_cast<size_t>(m * stripe));
    std::vector<uint8_t*> src(k), dst(m);
    for (unsigned i = 0; i < k; ++i) src[i] = data.data() + i * stripe;
    for (unsigned j = 0; j < m; ++j) dst[j] = par.data() + j * stripe;
    std::optional<TempFile> parity;
    if (m > 0) parity.emplace("the parity shards of " + name);
    std::vector<uint64_t> crc(k + m, 0), before(k, 0), before_len(k, 0);
    for (uint64_t off = 0; off < S; off += stripe) {
        uint64_t len = std::min<uint64_t>(stripe, S - off);
        for (unsigned i = 0; i < k; ++i) {
            uint8_t* d = src[i];
            read_shard(i, off, std::span<uint8_t>(d, static_cast<size_t>(len)));
            uint64_t at = i * S + off;
            uint64_t in = at >= body ? 0 : std::min(len, body - at);
            if (in) before[i] = crc64(before[i], ByteView(d, static_cast<size_t>(in)));
            before_len[i] += in;
            crc[i] = crc64(crc[i], ByteView(d, static_cast<size_t>(len)));
        }
        if (m == 0) continue;
        ec_encode_data(static_cast<int>(len), static_cast<int>(k), static_cast<int>(m),
                       tables.data(), src.data(), dst.data());
        for (unsigned j = 0; j < m; ++j) {
            ByteView p(dst[j], static_cast<size_t>(len));
            crc[k + j] = crc64(crc[k + j], p);
            parity->write_at(j * S + off, p);
        }
    }
    if (verify) {
        uint64_t whole = 0;
        for (unsigned i = 0; i < k; ++i) whole = crc64_combine(whole, before[i], before_len[i]);
        uint8_t t[kTrailerSize];
        rec.read_at(body, t);
        if (whole != get_le(t, 8)) throw DataError("corrupted record (checksum mismatch)");
    }

    uint8_t spre[kPreambleSize];
    encode_preamble(Preamble{kFormatVersion, RecordType::shard, kShardHeaderSize + S}, spre);
    std::vector<uint8_t> piece(static_cast<size_t>(std::min<uint64_t>(S, kStripe)));
    for (unsigned i = 0; i < k + m; ++i) {
        ShardHeader h{group, i, k, m, L, S, crc[i]};
        Bytes head = encode_shard_header(h);
        uint64_t rc = crc64(crc64(0, ByteView(spre, kPreambleSize)), head);
        rc = crc64_combine(rc, crc[i], S);
        uint8_t trailer[kTrailerSize];
        put_le(trailer, rc, 8);
        Sink& out = sink.open(h);
        out.write(ByteView(spre, kPreambleSize));
        out.write(head);
        for (uint64_t off = 0; off < S; off += piece.size()) {
            size_t len = static_cast<size_t>(std::min<uint64_t>(piece.size(), S - off));
            std::span<uint8_t> p(piece.data(), len);
            if (i < k)
                read_shard(i, off, p);
            else
                parity->read_at((i - k) * S + off, p);
            out.write(p);
        }
        out.write(ByteView(trailer, kTrailerSize));
        sink.close(h);
    }
    return group;
}

// ShardAssembler -----------------------------------------------------------------------------

struct ShardAssembler::Group {
    ShardHeader claim;
    std::shared_ptr<PageBuffer> data; // K * S: the record, once complete
    std::vector<PageBuffer> parity;
    std::vector<bool> have;
    std::vector<uint64_t> crc; // data CRC of each shard that is in (checked by parse_shard)
    unsigned count = 0;
    std::unique_ptr<TempFile> file; // add_spilled: shard i's data at i * S
};

ShardAssembler::ShardAssembler() = default;
ShardAssembler::~ShardAssembler() = default;

std::optional<Record> ShardAssembler::add(const ShardHeader& h, ByteView payload,
                                          const std::string& where) {
    Key key{h.group, h.k, h.m, h.record_len};
    claims_[h.group].insert(key);
    if (done_.count(key)) return std::nullopt;
    auto& slot = open_[key];
    if (!slot) {
        slot = std::make_unique<Group>();
        slot->claim = h;
        slot->data = std::make_shared<PageBuffer>(static_cast<size_t>(h.k * h.shard_len));
        slot->parity.resize(h.m);
        slot->have.assign(h.k + h.m, false);
        slot->crc.assign(h.k + h.m, 0);
    }
    Group& g = *slot;
    if (g.have[h.index]) return std::nullopt;
    ByteView data = payload.subspan(kShardHeaderSize);
    uint64_t S = h.shard_len;
    if (h.index < h.k) {
        std::memcpy(g.data->data() + h.index * S, data.data(), S);
    } else {
        g.parity[h.index - h.k] = PageBuffer(static_cast<size_t>(S));
        std::memcpy(g.parity[h.index - h.k].data(), data.data(), S);
    }
    g.have[h.index] = true;
    g.crc[h.index] = h.data_crc;
    if (++g.count < h.k) return std::nullopt;

    // K shards are in: rebuild the missing data shards from the first K present ones.
    unsigned k = h.k;
    std::string name = "group " + group_hex(h.group);
    Rebuild plan = plan_rebuild(g.have, k, h.m, where + ": " + name);
    const auto& present = plan.present;
    const auto& missing = plan.missing;
    if (!missing.empty()) {
        auto nmiss = static_cast<unsigned>(missing.size());
        auto& tables = plan.tables;
        std::vector<uint8_t*> src(k), dst(nmiss);
        for (unsigned r = 0; r < k; ++r)
            src[r] =
                present[r] < k ? g.data->data() + present[r] * S : g.parity[present[r] - k].data();
        for (unsigned r = 0; r < nmiss; ++r) dst[r] = g.data->data() + missing[r] * S;
        ec_run(S, k, nmiss, tables.data(), src.data(), dst.data());
    }
    std::shared_ptr<PageBuffer> buf = std::move(g.data);
    std::vector<bool> have = g.have;
    std::vector<uint64_t> crcs = g.crc;
    open_.erase(key);
    done_.insert(key);

    // The record's checksum, from the shards' CRCs: only rebuilt shards and the one holding
    // the trailer are read again.
    ByteView rec(buf->data(), h.record_len);
    Preamble pre = decode_preamble(rec.data(), where + ": " + name + ": rebuilt record");
    uint64_t body = h.record_len - kTrailerSize, whole = 0;
    for (unsigned i = 0; i < k && i * S < body; ++i) {
        uint64_t part = std::min<uint64_t>(S, body - i * S);
        uint64_t c = part < S || !have[i] ? crc64(0, rec.subspan(i * S, part)) : crcs[i];
        whole = crc64_combine(whole, c, part);
    }
    uint64_t want = get_le(rec.data() + body, 8);
    if (pre.record_size() != rec.size() || whole != want)
        throw DataError(name + ": the rebuilt record fails its checksum",
                        "shards of different records share this group id");
    ++rebuilt_;
    Record r(pre.type, rec.subspan(kPreambleSize, pre.payload_len),
             std::shared_ptr<const void>(buf));
    return r;
}

std::optional<ShardAssembler::Rebuilt> ShardAssembler::add_spilled(const ShardHeader& h,
                                                                   const ByteSource& payload,
                                                                   const std::string& where) {
    Key key{h.group, h.k, h.m, h.record_len};
    claims_[h.group].insert(key);
    if (done_.count(key)) return std::nullopt;
    auto& slot = open_[key];
    if (!slot) {
        slot = std::make_unique<Group>();
        slot->claim = h;
        slot->have.assign(h.k + h.m, false);
        slot->crc.assign(h.k + h.m, 0);
        slot->file = std::make_unique<TempFile>("shard group " + group_hex(h.group));
    }
    Group& g = *slot;
    if (g.have[h.index]) return std::nullopt;
    uint64_t S = h.shard_len;
    TempFile& f = *g.file;
    {
        std::vector<uint8_t> piece(static_cast<size_t>(std::min<uint64_t>(S, kStripe)));
        for (uint64_t off = 0; off < S; off += piece.size()) {
            size_t len = static_cast<size_t>(std::min<uint64_t>(piece.size(), S - off));
            std::span<uint8_t> p(piece.data(), len);
            payload.read_at(kShardHeaderSize + off, p);
            f.write_at(h.index * S + off, p);
        }
    }
    g.have[h.index] = true;
    g.crc[h.index] = h.data_crc;
    if (++g.count < h.k) return std::nullopt;

    unsigned k = h.k;
    std::string name = "group " + group_hex(h.group);
    Rebuild plan = plan_rebuild(g.have, k, h.m, where + ": " + name);
    const auto& present = plan.present;
    const auto& missing = plan.missing;
    if (!missing.empty()) {
        auto nmiss = static_cast<unsigned>(missing.size());
        auto& tables = plan.tables;
        uint64_t stripe =
            std::clamp<uint64_t>((uint64_t(32) << 20) / (k + nmiss), kEncodeStripe, kStripe);
        stripe = std::min(stripe, S);
        std::vector<uint8_t> in(static_cast<size_t>(k * stripe)), out(nmiss * stripe);
        std::vector<uint8_t*> src(k), dst(nmiss);
        for (unsigned r = 0; r < k; ++r) src[r] = in.data() + r * stripe;
        for (unsigned r = 0; r < nmiss; ++r) dst[r] = out.data() + r * stripe;
        for (uint64_t off = 0; off < S; off += stripe) {
            uint64_t len = std::min(stripe, S - off);
            for (unsigned r = 0; r < k; ++r)
                f.read_at(present[r] * S + off, std::span<uint8_t>(src[r], len));
            ec_encode_data(static_cast<int>(len), static_cast<int>(k), static_cast<int>(nmiss),
                           tables.data(), src.data(), dst.data());
            for (unsigned r = 0; r < nmiss; ++r)
                f.write_at(missing[r] * S + off, ByteView(dst[r], len));
        }
    }
    std::unique_ptr<TempFile> file = std::move(g.file);
    std::vector<bool> have = g.have;
    std::vector<uint64_t> crcs = g.crc;
    open_.erase(key);
    done_.insert(key);

    // The record's checksum, from the shards' CRCs: only rebuilt shards and the one holding
    // the trailer are read again.
    FdSource rec(file->fd(), 0, h.record_len, name);
    uint8_t pre_bytes[kPreambleSize];
    rec.read_at(0, pre_bytes);
    Preamble pre = decode_preamble(pre_bytes, where + ": " + name + ": rebuilt record");
    uint64_t body = h.record_len - kTrailerSize, whole = 0;
    std::vector<uint8_t> piece(kStripe);
    for (unsigned i = 0; i < k && i * S < body; ++i) {
        uint64_t part = std::min<uint64_t>(S, body - i * S);
        uint64_t c = 0;
        if (part < S || !have[i]) {
            for (uint64_t off = 0; off < part; off += piece.size()) {
                size_t len = static_cast<size_t>(std::min<uint64_t>(piece.size(), part - off));
                rec.read_at(i * S + off, std::span<uint8_t>(piece.data(), len));
                c = crc64(c, ByteView(piece.data(), len));
            }
        } else {
            c = crcs[i];
        }
        whole = crc64_combine(whole, c, part);
    }
    uint8_t t[kTrailerSize];
    rec.read_at(body, t);
    if (pre.record_size() != h.record_len || whole != get_le(t, 8))
        throw DataError(name + ": the rebuilt record fails its checksum",
                        "shards of different records share this group id");
    ++rebuilt_;
    return Rebuilt{pre.type, pre.payload_len, std::move(file)};
}

std::vector<std::string> ShardAssembler::incomplete() const {
    std::vector<std::string> out;
    for (auto& [key, g] : open_) {
        const ShardHeader& h = g->claim;
        std::string msg = "group " + group_hex(h.group) + ": only " + std::to_string(g->count) +
                          " of the " + std::to_string(h.k) + " shards needed (" +
                          std::to_string(h.k) + "+" + std::to_string(h.m) +
                          "); cannot rebuild its record";
        auto c = claims_.find(h.group);
        if (c != claims_.end() && c->second.size() > 1)
            msg += " (shards under this group id disagree on K, M or length)";
        out.push_back(msg);
    }
    return out;
}

} // namespace n3::codec
