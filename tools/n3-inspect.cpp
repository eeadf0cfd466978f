// n3-inspect: print, check and convert n3 records (man/n3-inspect.1).
#include "codec/packed.hpp"
#include "codec/shard.hpp"
#include "common/tool.hpp"
#include "crypto/seal.hpp"
#include "record/format.hpp"
#include "record/number.hpp"
#include "record/safetensors.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

using namespace n3;

namespace {

const std::vector<DType> kImportable = {DType::F32, DType::F16, DType::BF16, DType::I8,
                                        DType::I32, DType::I64, DType::U8};

std::string shape_text(const std::vector<int64_t>& shape) {
    if (shape.empty()) return "scalar";
    std::string s;
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
    return s;
}

std::string number_text(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

// One-line rendering of a metadata value (long or multi-line values are summarised unless -v).
std::string meta_text(const std::string& v, bool full) {
    if (full) return v;
    size_t lines = static_cast<size_t>(std::count(v.begin(), v.end(), '\n'));
    if (lines == 0 && v.size() <= 72) return v;
    return "<" + std::to_string(v.size()) + " bytes" +
           (lines ? ", " + std::to_string(lines + (v.back() == '\n' ? 0 : 1)) + " lines" : "") +
           "; -v shows it>";
}

struct Description {
    nlohmann::ordered_json json;
    std::string text;
};

Description describe(const Record& rec, const std::string& input, int verbosity) {
    nlohmann::ordered_json j;
    std::ostringstream t;
    j["input"] = input;
    j["index"] = rec.index;
    j["offset"] = rec.offset;
    j["type"] = std::string(type_name(rec.type()));
    j["version"] = rec.version();
    j["size"] = rec.encoded_size();
    j["payload"] = rec.payload().size();
    t << input << ": record " << rec.index + 1 << ": " << type_name(rec.type()) << " (format v"
      << int(rec.version()) << "), " << rec.encoded_size() << " bytes\n";
    if (is_tensor_type(rec.type())) {
        std::string where = input + ": record " + std::to_string(rec.index + 1);
        TensorSet set = TensorSet::parse(rec.payload(), where);
        std::string hash = model_hash(rec.payload());
        j["hash"] = hash;
        t << "  hash        " << hash << "\n";
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (auto& [k, v] : set.metadata()) {
            meta[k] = v;
            t << "  " << k << std::string(k.size() < 12 ? 12 - k.size() : 1, ' ')
              << meta_text(v, verbosity > 0) << "\n";
        }
        j["metadata"] = meta;
        uint64_t bytes = 0;
        for (auto& ti : set.tensors()) bytes += ti.nbytes();
        j["elements"] = set.total_elements();
        t << "  tensors     " << set.tensors().size() << " (" << set.total_elements()
          << " elements, " << bytes << " bytes)\n";
        size_t wname = 4, wshape = 5;
        std::vector<double> norms;
        for (auto& ti : set.tensors()) {
            wname = std::max(wname, ti.name.size());
            wshape = std::max(wshape, shape_text(ti.shape).size());
        }
        auto pad = [](const std::string& s, size_t w) {
            return s + std::string(w - s.size() + 2, ' ');
        };
        if (!set.tensors().empty())
            t << "    " << pad("name", wname) << pad("dtype", 5) << pad("shape", wshape)
              << pad("elements", 10) << "l2\n";
        nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
        for (auto& ti : set.tensors()) {
            double l2 = tensor_l2(ti.dtype, set.data(ti));
            nlohmann::ordered_json tj;
            tj["name"] = ti.name;
            tj["dtype"] = std::string(dtype_name(ti.dtype));
            tj["shape"] = ti.shape;
            tj["elements"] = ti.numel();
            tj["bytes"] = ti.nbytes();
            if (std::isfinite(l2))
                tj["l2"] = l2;
            else
                tj["l2"] = nullptr; // JSON has no NaN or Inf
            tensors.push_back(std::move(tj));
            t << "    " << pad(ti.name, wname) << pad(std::string(dtype_name(ti.dtype)), 5)
              << pad(shape_text(ti.shape), wshape) << pad(std::to_string(ti.numel()), 10)
              << number_text(l2) << "\n";
        }
        j["tensors"] = std::move(tensors);
    }
    std::string where = input + ": record " + std::to_string(rec.index + 1);
    if (rec.type() == RecordType::packed) {
        auto p = codec::packed_info(rec.payload(), where);
        j["packed"] = {{"type", std::string(type_name(p.type))},
                       {"codec", p.chain},
                       {"payload", p.payload_len},
                       {"tensors", p.tensors}};
        t << "  packs       " << type_name(p.type) << " (" << p.payload_len << "-byte payload, "
          << p.tensors << " tensors)\n  codec       " << p.chain << "\n";
    } else if (rec.type() == RecordType::sealed) {
        auto h = crypto::sealed_header(rec.payload(), where);
        j["sealed"] = {{"version", h.version},
                       {"suite", std::string(crypto::suite_name(h.suite))},
                       {"stanzas", h.stanzas}};
        t << "  envelope    version " << int(h.version) << ", suite " << crypto::suite_name(h.suite)
          << ", " << h.stanzas << (h.stanzas == 1 ? " stanza" : " stanzas") << "\n";
    } else if (rec.type() == RecordType::shard) {
        auto h = codec::parse_shard(rec.payload(), where);
        j["shard"] = {{"group", codec::group_hex(h.group)},
                      {"index", h.index},
                      {"k", h.k},
                      {"m", h.m},
                      {"record", h.record_len}};
        t << "  group       " << codec::group_hex(h.group) << "\n  shard       " << h.index
          << " of " << h.k << "+" << h.m << (h.index < h.k ? " (data)" : " (parity)")
          << ", record of " << h.record_len << " bytes\n";
    }
    return {std::move(j), t.str()};
}

int inspect(Tool& tool, const std::vector<std::string>& inputs, bool json, bool check) {
    for (auto& path : inputs) {
        Input in(path);
        RecordReader reader(in);
        bool any = false;
        while (auto rec = reader.next()) {
            any = true;
            if (check) {
                if (is_tensor_type(rec->type()))
                    TensorSet::parse(rec->payload(),
                                     in.name() + ": record " + std::to_string(rec->index + 1));
                continue;
            }
            Description d = describe(*rec, in.name(), tool.verbosity());
            if (json)
                std::cout << d.json.dump() << "\n";
            else
                std::cout << d.text;
            std::cout.flush();
        }
        if (!any) throw DataError(in.name() + ": no records (empty input)");
    }
    return 0;
}

int to_safetensors(Tool& tool, const std::vector<std::string>& inputs, const std::string& out_path,
                   bool force, bool explicit_stdout) {
    if (inputs.size() != 1) throw UsageError("--to-safetensors takes one input");
    tool.check_not_same(inputs, out_path);
    Input in(inputs[0]);
    RecordReader reader(in);
    auto rec = reader.next();
    if (!rec) throw DataError(in.name() + ": no records (empty input)");
    if (!is_tensor_type(rec->type()))
        throw DataError(in.name() + ": record 1 is a " + std::string(type_name(rec->type())) +
                            " record, which holds no tensors",
                        rec->type() == RecordType::packed || rec->type() == RecordType::shard
                            ? "decode it first: n3-encode -d"
                            : "open it first: n3-seal --open");
    if (reader.next())
        throw DataError(in.name() + ": holds more than one record",
                        "--to-safetensors exports a single record");
    TensorSet::parse(rec->payload(), in.name() + ": record 1");
    auto out = tool.open_output(out_path, force, explicit_stdout);
    out->write(rec->payload());
    out->commit();
    return 0;
}

void check_meta_value(const std::string& key, const std::string& value) {
    if ((key == meta::samples || key == meta::round) && !parse_uint(value))
        throw UsageError("--meta " + key + " must be a non-negative integer, not '" + value + "'");
    if (key == meta::base &&
        (value.size() != 64 || value.find_first_not_of("0123456789abcdef") != std::string::npos))
        throw UsageError("--meta base must be a model hash (64 lower-case hex digits)");
    if (key == meta::loss) {
        char* end = nullptr;
        std::strtod(value.c_str(), &end);
        if (value.empty() || *end != '\0')
            throw UsageError("--meta loss must be a number, not '" + value + "'");
    }
}

int from_safetensors(Tool& tool, const std::string& in_path, const std::string& kind,
                     const std::vector<std::string>& metas, const std::string& out_path, bool force,
                     bool explicit_stdout) {
    auto type = parse_type(kind);
    if (!type || (*type != RecordType::model && *type != RecordType::update))
        throw UsageError("--kind must be model or update, not '" + kind + "'");
    Metadata extra;
    for (auto& m : metas) {
        auto [k, v] = parse_key_value(m, "--meta");
        check_meta_value(k, v);
        extra[k] = v;
    }
    tool.check_not_same({in_path}, out_path);
    Bytes bytes;
    {
        Input in(in_path);
        uint8_t buf[1 << 16];
        for (;;) {
            size_t n = in.read(buf);
            bytes.insert(bytes.end(), buf, buf + n);
            if (n < sizeof buf) break;
        }
    }
    std::string name = in_path == "-" ? "stdin" : in_path;
    if (bytes.size() >= 8 && std::equal(bytes.begin(), bytes.begin() + 4, kMagic))
        throw DataError(name + ": is already an n3 record", "export it with --to-safetensors");
    TensorSet set = TensorSet::parse(bytes, name);
    SafetensorsBuilder b;
    Metadata meta = set.metadata();
    for (auto& [k, v] : extra) meta[k] = v;
    b.set_metadata(meta);
    for (auto& t : set.tensors()) {
        if (std::find(kImportable.begin(), kImportable.end(), t.dtype) == kImportable.end())
            throw DataError(name + ": tensor '" + t.name + "' has dtype " +
                            std::string(dtype_name(t.dtype)) +
                            ", not one of F32 F16 BF16 I8 I32 I64 U8");
        b.add(t.name, t.dtype, t.shape, set.data(t));
    }
    auto out = tool.open_output(out_path, force, explicit_stdout);
    write_tensor_record(*out, *type, b);
    out->commit();
    return 0;
}

} // namespace

int main(int argc, char** argv) {
    Tool tool("n3-inspect", "Print, check and convert n3 records.\n\n"
                            "Reads records from the FILEs (or stdin, '-') and prints each: "
                            "type, version, sizes, metadata and a tensor table.");
    auto& app = tool.app();
    std::vector<std::string> inputs;
    bool json = false, check = false, to_st = false, force = false;
    std::string from_st, kind, out_path;
    std::vector<std::string> metas;
    app.add_option("FILE", inputs, "Inputs ('-' is stdin; default stdin)");
    auto* o_json = app.add_flag("--json", json, "One JSON object per record per line (JSON Lines)");
    auto* o_check =
        app.add_flag("--check", check, "Verify every record, print nothing; exit 0 or 1");
    auto* o_to = app.add_flag("--to-safetensors", to_st,
                              "Write the record's tensor payload as a .safetensors file");
    auto* o_from =
        app.add_option("--from-safetensors", from_st, "Wrap a .safetensors file as an n3 record")
            ->type_name("IN");
    auto* o_kind =
        app.add_option("--kind", kind, "Record kind for --from-safetensors: model or update");
    auto* o_meta =
        app.add_option("--meta", metas, "Metadata KEY=VALUE for --from-safetensors (repeatable)");
    app.add_option("-o,--output", out_path, "Output file for conversions ('-' is stdout)");
    app.add_flag("-f,--force", force, "Write binary output to a terminal");
    o_json->excludes(o_check);
    o_to->excludes(o_from)->excludes(o_json)->excludes(o_check);
    o_from->excludes(o_json)->excludes(o_check);
    o_kind->needs(o_from);
    o_meta->needs(o_from);
    o_from->needs(o_kind);

    return tool.run(argc, argv, [&] {
        bool explicit_stdout = out_path == "-";
        if (!out_path.empty() && !to_st && from_st.empty())
            throw UsageError("-o is for --to-safetensors and --from-safetensors",
                             "n3-inspect prints to stdout");
        if (out_path.empty()) out_path = "-";
        if (!from_st.empty()) {
            if (!inputs.empty())
                throw UsageError("--from-safetensors takes its input as its value, not as FILE");
            return from_safetensors(tool, from_st, kind, metas, out_path, force, explicit_stdout);
        }
        inputs = tool.normalize_inputs(inputs);
        if (to_st) return to_safetensors(tool, inputs, out_path, force, explicit_stdout);
        return inspect(tool, inputs, json, check);
    });
}
