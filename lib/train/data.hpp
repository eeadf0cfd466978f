// n3/train/data.hpp — training and evaluation data: IDX folders, CSV files and plain text.
//
//   Dataset d = load_dataset("/usr/share/datasets/fashion-mnist", Format::automatic, Split::train);
//   Partition p = partition(d, PartitionSpec::parse("dirichlet:0.5"), 5, 2, seed); // partition.hpp
//   Examples e = d.gather(p.indices);           // features as float, labels as int64
//
// IDX: a folder holding train-images-idx3-ubyte and train-labels-idx1-ubyte (and t10k-* for
// the test split), gzipped or not; pixels are decoded once as bytes and scaled to [0, 1] only
// for the samples gathered. CSV: one sample per line, features then an integer label, an
// optional header line. Text: a byte-level corpus whose samples are its lines (the LM trains on
// the gathered lines joined in order); lines that start with a verse reference such as
// "Ge1:1 " or "1Co13:4 " (the bible-kjv format) name their book, which `natural` partitions use.
// Text and CSV files are split 9:1 for train/test by line number (every tenth line is test);
// `all` takes every line (a separate test file). IDX folders have their own test files.
//
// Failures: a missing path -> EnvError (exit 2); a folder without the IDX files, bad IDX magic,
// truncated or corrupt files, images/labels count mismatch, malformed CSV -> DataError (exit 1)
// naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace n3::train {

enum class Format { automatic, idx, csv, text };
enum class Split { train, test, all };

Format parse_format(const std::string& s); // "idx", "csv", "text"; throws UsageError
Split parse_split(const std::string& s);   // "train", "test", "all"

struct Examples {
    std::vector<int64_t> shape;  // per sample
    std::vector<float> features; // n * prod(shape)
    std::vector<int64_t> labels; // n
    std::string text;            // text data sets: the gathered lines joined with '\n'
    size_t size() const { return labels.size(); }
};

class Dataset {
public:
    std::string name; // the path, for messages
    Format format = Format::idx;
    std::vector<int64_t> shape;               // per sample (IDX: {1, H, W}; CSV: {features})
    std::vector<uint8_t> pixels;              // IDX, n * prod(shape) bytes
    std::vector<float> values;                // CSV, n * prod(shape)
    std::vector<int64_t> labels;              // IDX and CSV
    std::string text;                         // text
    std::vector<size_t> line_begin, line_end; // text: byte ranges of the samples (lines)
    std::vector<int32_t> book;                // text: book number of each line, -1 when it has none
    std::vector<std::string> book_names;

    bool is_text() const { return format == Format::text; }
    size_t size() const { return is_text() ? line_begin.size() : labels.size(); }
    int64_t classes() const; // max label + 1 (0 for text)
    size_t sample_size() const;
    // The samples at `indices`, in that order. Throws DataError for an index out of range.
    Examples gather(const std::vector<size_t>& indices) const;
};

// labels_only skips decoding IDX images (enough for --list-partition; gather() then fails).
Dataset load_dataset(const std::string& path, Format format, Split split, bool labels_only = false);

// Reads a whole file, gzip-compressed or not (zlib's gzread passes plain files through).
// Throws EnvError when it cannot be opened and DataError when the gzip stream is corrupt or cut.
std::vector<uint8_t> read_maybe_gzip(const std::string& path);

} // namespace n3::train
