#include "train/data.hpp"

#include "record/error.hpp"
#include "record/io.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <map>
#include <zlib.h>

namespace fs = std::filesystem;

namespace n3::train {

Format parse_format(const std::string& s) {
    if (s == "idx") return Format::idx;
    if (s == "csv") return Format::csv;
    if (s == "text") return Format::text;
    throw UsageError("--format must be idx, csv or text, not '" + s + "'");
}

Split parse_split(const std::string& s) {
    if (s == "train") return Split::train;
    if (s == "test") return Split::test;
    if (s == "all") return Split::all;
    throw UsageError("--split must be train, test or all, not '" + s + "'");
}

std::vector<uint8_t> read_maybe_gzip(const std::string& path) {
    // Open through n3::Input first so a missing file or a folder gets the house message.
    Input probe(path, true);
    gzFile f = gzopen(path.c_str(), "rb");
    if (!f) throw_errno(path);
    gzbuffer(f, 1 << 17);
    // Read straight into `out`, in pieces that grow with it (64 KiB, then its size, at most
    // 64 MiB): a small file (a CSV, a tokenizer model) costs no 1 MiB buffer, a large one no copy.
    std::vector<uint8_t> out;
    size_t piece = size_t(1) << 16;
    for (;;) {
        const size_t have = out.size();
        out.resize(have + piece);
        int n = gzread(f, out.data() + have, static_cast<unsigned>(piece));
        if (n < 0) {
            int err = 0;
            std::string msg = gzerror(f, &err);
            gzclose(f);
            throw DataError(path + ": corrupt gzip data (" + msg + ")");
        }
        out.resize(have + static_cast<size_t>(n));
        if (n == 0) break;
        piece = std::clamp(out.size(), piece, size_t(1) << 26);
    }
    int err = 0;
    const char* msg = gzerror(f, &err);
    std::string text = msg ? msg : "";
    gzclose(f);
    // A gzip stream cut short reads as a clean end with Z_BUF_ERROR pending.
    if (err != Z_OK && err != Z_STREAM_END)
        throw DataError(path + ": truncated or corrupt gzip data (" + text + ")");
    return out;
}

namespace {

uint32_t be32(const uint8_t* p) {
    return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// Finds "<prefix>-<kind>-idx<dims>-ubyte" or ".gz" in a folder (also the MNIST spelling with a
// dot, "train-images.idx3-ubyte").
std::string find_idx(const fs::path& dir, const std::vector<std::string>& prefixes,
                     const std::string& kind, int dims) {
    for (auto& pre : prefixes)
        for (auto sep : {"-", "."})
            for (auto ext : {"", ".gz"}) {
                fs::path p =
                    dir / (pre + "-" + kind + sep + "idx" + std::to_string(dims) + "-ubyte" + ext);
                if (fs::is_regular_file(p)) return p.string();
            }
    return {};
}

struct Idx {
    std::vector<uint32_t> dims;
    std::vector<uint8_t> bytes; // whole file
    size_t header = 0;
};

Idx read_idx(const std::string& path, int want_dims) {
    Idx idx;
    idx.bytes = read_maybe_gzip(path);
    const auto& b = idx.bytes;
    if (b.size() < 4)
        throw DataError(path + ": truncated IDX file (" + std::to_string(b.size()) +
                        " bytes, no header)");
    if (b[0] != 0 || b[1] != 0 || b[2] != 0x08)
        throw DataError(path + ": bad IDX magic " + std::to_string(be32(b.data())) +
                            " (expected unsigned bytes, 0x0000080" + std::to_string(want_dims) +
                            ")",
                        "is this an IDX file from the MNIST or Fashion-MNIST distribution?");
    if (b[3] != want_dims)
        throw DataError(path + ": IDX file has " + std::to_string(b[3]) + " dimensions, expected " +
                        std::to_string(want_dims));
    idx.header = 4 + 4 * size_t(want_dims);
    if (b.size() < idx.header) throw DataError(path + ": truncated IDX header");
    uint64_t total = 1;
    for (int d = 0; d < want_dims; ++d) {
        uint32_t v = be32(b.data() + 4 + 4 * d);
        if (v == 0 || v > (1u << 28))
            throw DataError(path + ": IDX dimension " + std::to_string(d) + " is " +
                            std::to_string(v));
        idx.dims.push_back(v);
        total *= v;
    }
    if (total > (uint64_t(1) << 34)) throw DataError(path + ": IDX dimensions too large");
    if (b.size() - idx.header != total)
        throw DataError(path + ": " + (b.size() - idx.header < total ? "truncated" : "oversized") +
                        " IDX data: the header promises " + std::to_string(total) +
                        " bytes, the file holds " + std::to_string(b.size() - idx.header));
    return idx;
}

Dataset load_idx(const std::string& path, Split split, bool labels_only) {
    if (split == Split::all)
        throw UsageError(path + ": an IDX folder has its own train and test files",
                         "use --split train or --split test");
    fs::path dir(path);
    std::vector<std::string> prefixes = split == Split::train
                                            ? std::vector<std::string>{"train"}
                                            : std::vector<std::string>{"t10k", "test"};
    std::string images = find_idx(dir, prefixes, "images", 3);
    std::string labels = find_idx(dir, prefixes, "labels", 1);
    if (images.empty() || labels.empty())
        throw DataError(path + ": no " + prefixes[0] + "-" +
                            (images.empty() ? "images-idx3" : "labels-idx1") +
                            "-ubyte[.gz] file in this folder",
                        "an IDX folder holds train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                        "t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte, gzipped or not");
    Idx lb = read_idx(labels, 1);
    Dataset d;
    d.name = path;
    d.format = Format::idx;
    d.labels.reserve(lb.dims[0]);
    for (size_t i = lb.header; i < lb.bytes.size(); ++i) d.labels.push_back(lb.bytes[i]);
    if (labels_only) return d;
    Idx im = read_idx(images, 3);
    if (im.dims[0] != lb.dims[0])
        throw DataError(path + ": " + fs::path(images).filename().string() + " holds " +
                        std::to_string(im.dims[0]) + " images but " +
                        fs::path(labels).filename().string() + " holds " +
                        std::to_string(lb.dims[0]) + " labels");
    d.shape = {1, int64_t(im.dims[1]), int64_t(im.dims[2])};
    d.pixels.assign(im.bytes.begin() + static_cast<std::ptrdiff_t>(im.header), im.bytes.end());
    return d;
}

bool keep_line(size_t line, Split split) {
    if (split == Split::all) return true;
    return (line % 10 == 9) == (split == Split::test);
}

Dataset load_csv(const std::string& path, Split split) {
    std::string text = read_text_file(path);
    Dataset d;
    d.name = path;
    d.format = Format::csv;
    size_t pos = 0, line = 0, sample_line = 0;
    int64_t width = -1;
    std::vector<float> row;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        if (nl == std::string::npos) nl = text.size();
        std::string_view s(text.data() + pos, nl - pos);
        pos = nl + 1;
        ++line;
        if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
        if (s.empty()) continue;
        row.clear();
        bool numeric = true;
        size_t a = 0;
        while (a <= s.size()) {
            size_t c = s.find(',', a);
            if (c == std::string_view::npos) c = s.size();
            std::string_view f = s.substr(a, c - a);
            while (!f.empty() && f.front() == ' ') f.remove_prefix(1);
            while (!f.empty() && f.back() == ' ') f.remove_suffix(1);
            float v = 0;
            auto r = std::from_chars(f.data(), f.data() + f.size(), v);
            if (f.empty() || r.ec != std::errc() || r.ptr != f.data() + f.size()) numeric = false;
            row.push_back(v);
            a = c + 1;
        }
        if (!numeric) {
            if (width < 0 && sample_line == 0 && d.labels.empty() && line == 1) continue; // header
            throw DataError(path + ":" + std::to_string(line) + ": not a row of numbers");
        }
        if (row.size() < 2)
            throw DataError(path + ":" + std::to_string(line) + ": needs features and a label");
        if (width < 0) width = int64_t(row.size());
        if (int64_t(row.size()) != width)
            throw DataError(path + ":" + std::to_string(line) + ": has " +
                            std::to_string(row.size()) + " fields, the first row has " +
                            std::to_string(width));
        float label = row.back();
        // The range first: converting NaN, infinity or 1e30 to an integer is undefined.
        if (!(label >= 0 && label <= 1e6f) || label != float(int64_t(label)))
            throw DataError(path + ":" + std::to_string(line) + ": label '" +
                            std::to_string(label) + "' is not a non-negative integer");
        if (keep_line(sample_line++, split)) {
            d.values.insert(d.values.end(), row.begin(), row.end() - 1);
            d.labels.push_back(int64_t(label));
        }
    }
    if (d.labels.empty()) throw DataError(path + ": no samples (empty CSV file)");
    d.shape = {width - 1};
    return d;
}

// "Ge1:1 ", "1Cor13:4 ", "SSol2:1 ": a book abbreviation, chapter:verse and a space.
std::string_view book_of(std::string_view line) {
    size_t i = 0;
    if (i < line.size() && line[i] >= '1' && line[i] <= '9') ++i;
    size_t letters = i;
    while (i < line.size() &&
           ((line[i] >= 'A' && line[i] <= 'Z') || (line[i] >= 'a' && line[i] <= 'z')))
        ++i;
    if (i == letters) return {};
    size_t name_end = i, digits = i;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9') ++i;
    if (i == digits || i >= line.size() || line[i] != ':') return {};
    ++i;
    size_t vd = i;
    while (i < line.size() && line[i] >= '0' && line[i] <= '9') ++i;
    if (i == vd) return {};
    return line.substr(0, name_end);
}

Dataset load_text(const std::string& path, Split split) {
    Dataset d;
    d.name = path;
    d.format = Format::text;
    d.text = read_text_file(path);
    if (d.text.empty()) throw DataError(path + ": empty text file");
    std::map<std::string, int32_t, std::less<>> books;
    size_t pos = 0, line = 0;
    while (pos < d.text.size()) {
        size_t nl = d.text.find('\n', pos);
        if (nl == std::string::npos) nl = d.text.size();
        if (nl > pos && keep_line(line, split)) {
            d.line_begin.push_back(pos);
            d.line_end.push_back(nl);
            std::string_view b = book_of(std::string_view(d.text).substr(pos, nl - pos));
            int32_t id = -1;
            if (!b.empty()) {
                auto it = books.find(b);
                if (it == books.end()) {
                    id = int32_t(d.book_names.size());
                    books.emplace(std::string(b), id);
                    d.book_names.emplace_back(b);
                } else {
                    id = it->second;
                }
            }
            d.book.push_back(id);
        }
        if (nl > pos) ++line;
        pos = nl + 1;
    }
    if (d.line_begin.empty()) throw DataError(path + ": no text lines in this split");
    return d;
}

} // namespace

int64_t Dataset::classes() const {
    int64_t m = -1;
    for (auto l : labels) m = std::max(m, l);
    return m + 1;
}

size_t Dataset::sample_size() const {
    size_t n = 1;
    for (auto s : shape) n *= size_t(s);
    return n;
}

Examples Dataset::gather(const std::vector<size_t>& indices) const {
    Examples e;
    const size_t n = size();
    for (size_t i : indices)
        if (i >= n)
            throw DataError(name + ": sample index " + std::to_string(i) + " is out of range (" +
                            std::to_string(n) + " samples)");
    if (format == Format::idx && pixels.empty() && !indices.empty())
        throw DataError(name + ": images were not loaded");
    if (is_text()) {
        for (size_t i : indices) {
            e.text.append(text, line_begin[i], line_end[i] - line_begin[i]);
            e.text.push_back('\n');
        }
        e.labels.assign(indices.size(), 0);
        return e;
    }
    e.shape = shape;
    const size_t k = sample_size();
    e.features.resize(indices.size() * k);
    e.labels.reserve(indices.size());
    float* out = e.features.data();
    for (size_t i : indices) {
        if (format == Format::idx) {
            const uint8_t* p = pixels.data() + i * k;
            for (size_t j = 0; j < k; ++j) out[j] = float(p[j]) * (1.0f / 255.0f);
        } else {
            std::memcpy(out, values.data() + i * k, k * sizeof(float));
        }
        out += k;
        e.labels.push_back(labels[i]);
    }
    return e;
}

Dataset load_dataset(const std::string& path, Format format, Split split, bool labels_only) {
    std::error_code ec;
    auto st = fs::status(path, ec);
    if (ec || !fs::exists(st)) throw EnvError(path + ": no such file or folder");
    if (format == Format::automatic) {
        if (fs::is_directory(st)) {
            format = Format::idx;
        } else {
            std::string ext = fs::path(path).extension().string();
            std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
            if (ext == ".csv")
                format = Format::csv;
            else if (ext == ".txt" || ext == ".text")
                format = Format::text;
            else
                throw UsageError(path + ": cannot tell the data format from the name",
                                 "add --format idx, csv or text");
        }
    }
    if (format == Format::idx) {
        if (!fs::is_directory(st))
            throw UsageError(path + ": IDX data is a folder (train-images-idx3-ubyte.gz, ...)");
        return load_idx(path, split, labels_only);
    }
    if (fs::is_directory(st))
        throw UsageError(path + ": is a folder, --format " +
                         (format == Format::csv ? "csv" : "text") + " reads a file");
    return format == Format::csv ? load_csv(path, split) : load_text(path, split);
}

} // namespace n3::train
