// n3-encode: lossy and lossless packing and Reed-Solomon shards; -d reverses any of it
// (man/n3-encode.1).
#include "codec/stream.hpp"
#include "common/tool.hpp"

#include <cstdio>

using namespace n3;

namespace {

std::string mib(uint64_t bytes) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / 1048576.0);
    return buf;
}

std::string rate(uint64_t bytes, double seconds) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3f s, %.0f MB/s", seconds,
                  seconds > 0 ? static_cast<double>(bytes) / seconds / 1e6 : 0.0);
    return buf;
}

} // namespace

int main(int argc, char** argv) {
    Tool tool("n3-encode",
              "Compress records for thin links and cut them into Reed-Solomon shards.\n\n"
              "Reads records from the FILEs (or stdin) and writes packed records or shard "
              "records to stdout; -d turns any mix of packed records, shards and plain records "
              "back into plain records.");
    auto& app = tool.app();
    std::vector<std::string> inputs;
    std::string quantize, shards, residual, shard_dir, out_path;
    int level = 1;
    unsigned block = 128, threads = 0;
    double topk = 0;
    bool stochastic = false, decode = false, force = false;
    app.add_option("FILE", inputs, "Inputs ('-' is stdin; default stdin)");
    auto* o_d = app.add_flag("-d,--decode", decode,
                             "Decode: rebuild shard groups, unpack packed records, pass the rest");
    auto* o_q = app.add_option("--quantize", quantize, "Lossy: fp16, bf16, int8 or int4")
                    ->check(CLI::IsMember({"fp16", "bf16", "int8", "int4"}));
    auto* o_block = app.add_option("--block", block, "Elements per scale for int8/int4 (128)");
    auto* o_st =
        app.add_flag("--stochastic", stochastic, "Unbiased stochastic rounding (int8/int4)");
    auto* o_topk =
        app.add_option("--topk", topk, "Lossy: keep this fraction of each tensor, e.g. 0.01");
    auto* o_res = app.add_option("--residual", residual,
                                 "Error feedback: state file, read and rewritten (atomically)")
                      ->type_name("FILE");
    auto* o_z = app.add_flag("--zstd{1}", level,
                             "Lossless: byte-plane shuffle then zstd (level 1, or --zstd=LEVEL)");
    auto* o_thr = app.add_option("--threads", threads,
                                 "Threads for zstd on large segments (default: all cores)");
    auto* o_sh =
        app.add_option("--shards", shards, "Reed-Solomon: K data + M parity shards, e.g. 10+4")
            ->type_name("K+M");
    auto* o_dir = app.add_option("--shard-dir", shard_dir, "Write one file per shard into DIR")
                      ->type_name("DIR");
    app.add_option("-o,--output", out_path, "Output file ('-' is stdout, the default)");
    app.add_flag("-f,--force", force, "Write binary output to a terminal");
    for (auto* o : {o_q, o_block, o_st, o_topk, o_res, o_z, o_thr, o_sh, o_dir}) o_d->excludes(o);
    o_st->needs(o_q);
    o_block->needs(o_q);
    o_dir->needs(o_sh);

    return tool.run(argc, argv, [&] {
        inputs = tool.normalize_inputs(inputs);
        bool explicit_stdout = out_path == "-";
        if (out_path.empty()) out_path = "-";
        if (out_path != "-") tool.check_not_same(inputs, out_path);

        if (decode) {
            auto out = tool.open_output(out_path, force, explicit_stdout);
            // An output file appears only if every record decoded: it may take them as they
            // are decoded. Stdout gets only records that decoded whole.
            codec::StreamDecoder dec(*out, !out->atomic());
            for (auto& path : inputs) {
                Input in(path);
                dec.read(in);
            }
            dec.finish();
            for (auto& w : dec.warnings()) tool.warn(w);
            auto& s = dec.stats();
            tool.verbose(std::to_string(s.records) + " records in, " + std::to_string(s.written) +
                         " out (" + std::to_string(s.unpacked) + " unpacked, " +
                         std::to_string(s.groups) + " groups rebuilt from " +
                         std::to_string(s.shards) + " shards, " + std::to_string(s.bad_shards) +
                         " bad)");
            if (!dec.errors().empty()) {
                // Records that decoded are on stdout already; a named output file is not created.
                for (auto& e : dec.errors()) tool.error(e);
                if (out->is_stdout())
                    out->commit(); // the records that decoded are whole and valid
                else
                    tool.hint("nothing was written to " + out_path);
                return static_cast<int>(Exit::data);
            }
            if (s.records == 0) throw DataError("no records (empty input)");
            out->commit();
            return 0;
        }

        codec::EncodeOptions o;
        if (!quantize.empty()) o.packing.quantize = *codec::parse_quantize(quantize);
        if (o_topk->count() && !(topk > 0 && topk <= 1))
            throw UsageError("--topk takes a fraction in (0, 1], e.g. 0.01");
        if (o_block->count() && (block == 0 || block > codec::kMaxBlock))
            throw UsageError("--block must be between 1 and " + std::to_string(codec::kMaxBlock));
        if (o_block->count() && o.packing.quantize != codec::Encoding::int8 &&
            o.packing.quantize != codec::Encoding::int4)
            throw UsageError("--block is for --quantize int8 or int4");
        if (stochastic && o.packing.quantize != codec::Encoding::int8 &&
            o.packing.quantize != codec::Encoding::int4)
            throw UsageError("--stochastic is for --quantize int8 or int4");
        if (o_z->count() && (level < -7 || level > 22))
            throw UsageError("--zstd level must be between -7 and 22");
        o.packing.topk = topk;
        o.packing.block = block;
        o.packing.stochastic = stochastic;
        o.packing.zstd = o_z->count() > 0;
        o.packing.level = level;
        o.packing.threads = threads;
        o.pack = o.packing.lossy() || o.packing.zstd;
        if (!shards.empty()) o.shards = codec::parse_shard_spec(shards);
        o.residual = residual;
        o.shard_dir = shard_dir;
        if (!shard_dir.empty() && !out_path.empty() && out_path != "-")
            throw UsageError("--shard-dir and -o both name outputs; give one");
        auto out = shard_dir.empty() ? tool.open_output(out_path, force, explicit_stdout) : nullptr;
        VectorSink none;
        codec::StreamEncoder encoder(o, out ? static_cast<Sink&>(*out) : none);
        for (auto& path : inputs) {
            Input in(path);
            encoder.read(in);
        }
        if (encoder.stats().records == 0) throw DataError("no records (empty input)");
        // The residual moves on only once what was sent is on disk whole, and an output file
        // appears only once the residual moved: a full disk leaves both as they were.
        if (out) out->sync();
        encoder.finish();
        if (out) out->commit();
        auto& s = encoder.stats();
        if (o.pack)
            tool.verbose("pack " + codec::chain_text(o.packing, !residual.empty()) + ": " +
                         rate(s.bytes_in, s.pack_seconds));
        if (o.shards)
            tool.verbose("shards " + shards + ": " + std::to_string(s.shards) + " shards, " +
                         rate(s.bytes_in, s.shard_seconds));
        if (out)
            tool.verbose(std::to_string(s.records) + " records, " + mib(s.bytes_in) + " in, " +
                         mib(s.bytes_out) + " out");
        for (auto& f : encoder.shard_files()) tool.verbose("wrote " + f);
        return 0;
    });
}
