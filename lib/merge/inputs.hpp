// n3/merge/inputs.hpp — reading the records n3-merge aggregates, without holding them in RAM.
//
//   LoadResult r = load_records({"a.n3", "-"}, {.skip_bad = false});
//   for (auto& rec : r.records) ... rec.record.payload() ...
//
// Regular files are memory-mapped: a record is a view into the mapping and only its header is
// read while loading. Stdin and other streams are spooled record by record (with splice(2) for
// pipes) to a temporary file that is unlinked as soon as it is created, then mapped, so a
// stream of N updates costs disk or page cache, never N records of anonymous memory. The
// checksums are left for the first pass over the data to verify, chunk by chunk on every core
// (LoadedRecord::verified, crc64_combine), instead of a separate pass that would double the
// memory traffic; verify() checks a record on its own. Data passes read tensor data with
// pread() (LoadedRecord::file), and release_pages() (record/io.hpp) drops mapped pages a pass has
// finished with, so the resident set stays small however many inputs there are.
//
// Inputs are put in a canonical order that depends only on their bytes (the record's CRC-64,
// then the payload itself), so the same set of inputs in any order is processed identically.
//
// Failures: EnvError for a missing or unreadable file or a spool that cannot be written;
// DataError naming the input, record and byte offset for a truncated record or a corrupted
// preamble (with skip_bad: a warning, and the records read before it are kept). A corrupted
// payload is found by the caller (verify() or the fused check) and named there.
#pragma once

#include "record/format.hpp"

#include <memory>
#include <string>
#include <vector>

namespace n3::merge {

// An open file descriptor shared by the records read from one file (closed with the last).
struct FileRef {
    int fd = -1;
    explicit FileRef(int f) : fd(f) {}
    ~FileRef();
    FileRef(const FileRef&) = delete;
    FileRef& operator=(const FileRef&) = delete;
};

struct LoadedRecord {
    std::string name;    // "a.n3" when the file holds one record, else "a.n3: record 3"
    Record record;       // the payload views a mapping kept alive by the record
    uint64_t key = 0;    // CRC-64 of the record as written in its trailer
    size_t position = 0; // 0-based position in command-line and stream order
    // False for records of mapped files: their checksum is verified later, during the first
    // pass over the data (see crc64_combine), or by verify() when a check fails first.
    bool verified = true;
    // The file the payload lies in, and its offset there: data passes read tensor data with
    // pread() into cache-sized buffers, which costs less than faulting the mapping in and out.
    std::shared_ptr<const FileRef> file;
    uint64_t file_offset = 0;
    // The whole mapping the payload lies in (empty for records held in memory): the bounds
    // within which release_around() may drop pages.
    ByteView mapped;
};

struct LoadOptions {
    bool skip_bad = false;
    unsigned threads = 0;  // 0: one per core
    std::string spool_dir; // empty: $TMPDIR, else /tmp
};

struct LoadResult {
    std::vector<LoadedRecord> records; // in command-line and stream order
    std::vector<std::string> warnings;
};

LoadResult load_records(const std::vector<std::string>& paths, const LoadOptions& opts = {});

// Loads one regular file or stream holding exactly one record (a base model).
LoadedRecord load_single(const std::string& path, const std::string& what,
                         const LoadOptions& opts = {});

// Total order on record contents: key, then type and size, then the payload bytes.
int canonical_compare(const LoadedRecord& a, const LoadedRecord& b);

// Verifies the record's CRC-64 against its trailer; true when it matches.
bool verify(const LoadedRecord& r);
// The CRC-64 of the record's bytes before its tensor data (preamble and safetensors header),
// to be continued with crc64_combine over the data in order.
uint64_t crc_prefix(const LoadedRecord& r, uint64_t data_offset);

// Drops the pages of the record's mapping that reading its preamble, header or trailer can have
// brought in, but those holding its safetensors header (read in place again by every metadata
// look-up): its own pages, partial ones included, and the kernel's fault-around (up to 64 KiB
// either side, into the neighbouring records of a stream). Dropping only the whole pages inside
// the payload left 1,000 records of one stream about 18 KiB each resident; this leaves one page.
void release_around(const LoadedRecord& r);

unsigned default_threads();

} // namespace n3::merge
