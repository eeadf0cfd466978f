// n3-bench-rs FILE K M: times Reed-Solomon encoding and rebuilding of the first record of FILE
// through n3 (shard records with CRCs and framing, written to a sink that drops them) against
// raw ISA-L (ec_encode_data over the same bytes, already laid out as K shards) in this process.
// Prints one line per measurement with GB/s of record bytes and the ratio n3 / ISA-L.
#include "codec/buffer.hpp"
#include "codec/shard.hpp"
#include "record/format.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <isa-l/erasure_code.h>
#include <optional>
#include <string>
#include <vector>

using namespace n3;

namespace {

class Discard final : public Sink {
public:
    void write(ByteView b) override { n += b.size(); }
    uint64_t n = 0;
};

class Keep final : public codec::ShardSink {
public:
    Sink& open(const codec::ShardHeader&) override { return shards.emplace_back(); }
    void close(const codec::ShardHeader&) override {}
    std::deque<VectorSink> shards;
};

class DropAll final : public codec::ShardSink {
public:
    Sink& open(const codec::ShardHeader&) override { return sink; }
    void close(const codec::ShardHeader&) override {}
    Discard sink;
};

template <class F> double best_of(int reps, F&& f) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        f();
        best = std::min(
            best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: n3-bench-rs FILE K M\n");
        return 2;
    }
    Input in(argv[1]);
    RecordReader reader(in);
    auto rec = reader.next();
    if (!rec) return 1;
    unsigned k = static_cast<unsigned>(std::stoul(argv[2])),
             m = static_cast<unsigned>(std::stoul(argv[3]));
    Bytes whole = encode_record(rec->type(), rec->payload());
    uint64_t L = whole.size(), S = (L + k - 1) / k;
    double gb = static_cast<double>(L) / 1e9;
    const int reps = 5;

    // Raw ISA-L: the record already cut into K zero-padded shards; M parity rows.
    std::vector<uint8_t> data(k * S, 0), parity(m * S);
    std::memcpy(data.data(), whole.data(), L);
    std::vector<uint8_t*> src(k), dst(m);
    for (unsigned i = 0; i < k; ++i) src[i] = data.data() + i * S;
    for (unsigned j = 0; j < m; ++j) dst[j] = parity.data() + j * S;
    std::vector<uint8_t> a((k + m) * k), tables(k * m * 32);
    double raw_enc = best_of(reps, [&] {
        gf_gen_cauchy1_matrix(a.data(), int(k + m), int(k));
        ec_init_tables(int(k), int(m), a.data() + k * k, tables.data());
        ec_encode_data(int(S), int(k), int(m), tables.data(), src.data(), dst.data());
    });

    // The same with the parity memory allocated fresh each time, as any tool must.
    double raw_enc_alloc = best_of(reps, [&] {
        codec::PageBuffer fresh(static_cast<size_t>(m * S));
        std::vector<uint8_t*> out(m);
        for (unsigned j = 0; j < m; ++j) out[j] = fresh.data() + j * S;
        gf_gen_cauchy1_matrix(a.data(), int(k + m), int(k));
        ec_init_tables(int(k), int(m), a.data() + k * k, tables.data());
        ec_encode_data(int(S), int(k), int(m), tables.data(), src.data(), out.data());
    });

    // n3: shard records with headers, CRC-64 of each shard's data and record checksums; the
    // record's stored checksum is verified in the same pass, as n3-encode does for a file.
    uint64_t stored = 0;
    for (int i = 7; i >= 0; --i) stored = (stored << 8) | whole[L - 8 + i];
    DropAll drop;
    double n3_enc1 = best_of(reps, [&] {
        codec::write_shards(rec->type(), rec->payload(), {k, m}, drop, stored, 1);
    });
    double n3_enc = best_of(reps, [&] {
        codec::write_shards(rec->type(), rec->payload(), {k, m}, drop, stored, 2);
    });

    // Rebuild with the first M data shards lost (the most work a group can need).
    unsigned lost = std::min(m, k);
    std::vector<uint8_t> b(k * k), inv(k * k), rows(lost * k), dtab(k * lost * 32);
    std::vector<uint8_t*> have(k), out(lost);
    for (unsigned r = 0; r < k; ++r) have[r] = r + lost < k ? src[r + lost] : dst[r + lost - k];
    std::vector<uint8_t> rebuilt(lost * S);
    for (unsigned r = 0; r < lost; ++r) out[r] = rebuilt.data() + r * S;
    double raw_dec = best_of(reps, [&] {
        for (unsigned r = 0; r < k; ++r) {
            unsigned row = r + lost;
            std::memcpy(b.data() + r * k, a.data() + row * k, k);
        }
        gf_invert_matrix(b.data(), inv.data(), int(k));
        for (unsigned r = 0; r < lost; ++r) std::memcpy(rows.data() + r * k, inv.data() + r * k, k);
        ec_init_tables(int(k), int(lost), rows.data(), dtab.data());
        ec_encode_data(int(S), int(k), int(lost), dtab.data(), have.data(), out.data());
    });
    if (std::memcmp(rebuilt.data(), data.data(), lost * S) != 0) {
        std::fprintf(stderr, "n3-bench-rs: raw ISA-L rebuild differs\n");
        return 1;
    }

    Keep keep;
    codec::write_shards(rec->type(), rec->payload(), {k, m}, keep);
    std::vector<Record> shards;
    for (auto& s : keep.shards) shards.push_back(decode_record(s.data));
    std::optional<Record> got;
    double n3_dec = best_of(reps, [&] {
        got.reset();
        codec::ShardAssembler assembler;
        for (unsigned i = lost; i < k + m; ++i) {
            auto h = codec::parse_shard(shards[i].payload(), "bench");
            if (auto r = assembler.add(h, shards[i].payload(), "bench")) got = std::move(r);
        }
    });
    if (!got || encode_record(got->type(), got->payload()) != whole) {
        std::fprintf(stderr, "n3-bench-rs: n3 rebuild differs\n");
        return 1;
    }
    std::printf(
        "rs %u+%u encode: n3 %.2f GB/s (1 thread), raw ISA-L %.2f GB/s (1 thread): ratio %.2fx\n",
        k, m, gb / n3_enc1, gb / raw_enc, raw_enc / n3_enc1);
    std::printf("rs %u+%u encode: n3 %.2f GB/s (1 thread), raw ISA-L with a fresh parity buffer "
                "%.2f GB/s: ratio %.2fx\n",
                k, m, gb / n3_enc1, gb / raw_enc_alloc, raw_enc_alloc / n3_enc1);
    std::printf("rs %u+%u encode: n3 %.2f GB/s (2 threads, --threads 2), raw ISA-L %.2f GB/s (1 "
                "thread): ratio %.2fx\n",
                k, m, gb / n3_enc, gb / raw_enc, raw_enc / n3_enc);
    std::printf("rs %u+%u rebuild (%u lost): n3 %.2f GB/s (parse + CRC + copy + decode), raw ISA-L "
                "%.2f GB/s, ratio %.2fx\n",
                k, m, lost, gb / n3_dec, gb / raw_dec, raw_dec / n3_dec);
    return 0;
}
