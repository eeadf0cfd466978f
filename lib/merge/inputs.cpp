// n3/merge/inputs.cpp — loading the records n3-merge aggregates (see inputs.hpp): mapping regular
// files, spooling streams to unlinked temporary files, the canonical order and the checksums.
#include "merge/inputs.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <mutex>
#include <span>
#include <sys/mman.h>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

namespace n3::merge {

namespace {

// Writes at an explicit offset: splice(2) with an offset does not move the file position.
void write_all(int fd, const uint8_t* p, size_t n, uint64_t at, const std::string& what) {
    while (n > 0) {
        ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(at));
        if (w < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + what);
        }
        p += w;
        at += static_cast<uint64_t>(w);
        n -= static_cast<size_t>(w);
    }
}

uint64_t read_le64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

struct Loaded {
    std::vector<LoadedRecord> records;
    std::vector<std::string> warnings;
    std::exception_ptr error;
};

// Names records "file" when the file holds one record, "file: record N" otherwise.
void name_records(std::vector<LoadedRecord>& recs, const std::string& input) {
    for (size_t i = 0; i < recs.size(); ++i)
        recs[i].name = recs.size() == 1 ? input : input + ": record " + std::to_string(i + 1);
}

// Finds the records of a mapped file without reading their payloads: the checksum is verified
// when the data is first used (LoadedRecord::verified).
void load_mapped(Input& in, Loaded& out, bool skip_bad) {
    auto map = in.map();
    ByteView all = map->bytes();
    // Keep a descriptor for pread() while plenty are left (other inputs, the spool and the
    // output still need some); past that, the data passes read the mapping instead.
    static const rlim_t limit = [] {
        rlimit rl{};
        return ::getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : rlim_t(1024);
    }();
    int fd = ::fcntl(in.fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0 && errno != EMFILE && errno != ENFILE)
        throw_errno("cannot duplicate the descriptor of " + in.name());
    if (fd >= 0 && limit != RLIM_INFINITY && rlim_t(fd) + 32 >= limit) {
        ::close(fd);
        fd = -1;
    }
    auto file = fd < 0 ? nullptr : std::make_shared<const FileRef>(fd);
    uint64_t base = in.file_size() - all.size(); // file offset of all[0]
    uint64_t off = 0, index = 0;
    try {
        while (off < all.size()) {
            std::string where = in.name() + ": record " + std::to_string(index + 1) + " at byte " +
                                std::to_string(off);
            uint64_t left = all.size() - off;
            if (left < kPreambleSize)
                throw DataError(where + ": truncated record header (" + std::to_string(left) +
                                " of " + std::to_string(kPreambleSize) + " bytes)");
            Preamble p = decode_preamble(all.data() + off, where);
            if (left < p.record_size())
                throw DataError(where + ": truncated record (" + std::to_string(left) + " of " +
                                std::to_string(p.record_size()) + " bytes)");
            ByteView payload = all.subspan(off + kPreambleSize, p.payload_len);
            LoadedRecord lr;
            lr.key = read_le64(payload.data() + payload.size());
            lr.record = Record(p.type, payload, map);
            lr.mapped = all;
            // The preamble's and trailer's pages, and those faulted in around them (64 KiB
            // each): without this, 1,000 records of a stream would hold 64 MiB for nothing.
            release_around(lr);
            lr.record.index = index;
            lr.record.offset = off;
            lr.verified = false;
            lr.file = file;
            lr.file_offset = base + off + kPreambleSize;
            out.records.push_back(std::move(lr));
            off += p.record_size();
            ++index;
        }
    } catch (const DataError& e) {
        if (!skip_bad) throw;
        out.warnings.push_back(std::string(e.what()) + " (skipped, with the rest of " + in.name() +
                               ")");
    }
}

// Copies a stream's records to an unlinked temporary file, each preamble at a multiple of 64
// bytes so that tensor data lands 64-byte aligned, then maps the file. Pipes move with
// splice(2), without passing through this process; checksums are verified later, like those
// of mapped files.
void load_spooled(Input& in, Loaded& out, const LoadOptions& opts) {
    std::string dir = opts.spool_dir;
    if (dir.empty()) {
        const char* t = std::getenv("TMPDIR");
        dir = t && *t ? t : "/tmp";
    }
    std::string tmpl = dir + "/n3-merge-spool.XXXXXX";
    auto file = std::make_shared<const FileRef>(::mkostemp(tmpl.data(), O_CLOEXEC));
    int fd = file->fd;
    if (fd < 0) throw_errno("cannot create a spool file for " + in.name() + " in " + dir);
    ::unlink(tmpl.c_str());
    std::string what = "the spool file for " + in.name() + " in " + dir;

    struct Placed {
        RecordType type;
        uint64_t offset, len, index, stream_offset;
    };
    std::vector<Placed> placed;
    std::vector<uint8_t> buf;
    bool can_splice = true;
    uint64_t pos = 0, stream_off = 0, index = 0;
    try {
        for (;; ++index) {
            std::string where = in.name() + ": record " + std::to_string(index + 1) + " at byte " +
                                std::to_string(stream_off);
            uint8_t head[kPreambleSize];
            size_t n = in.read(head);
            if (n == 0) break;
            if (n < kPreambleSize)
                throw DataError(where + ": truncated record header (" + std::to_string(n) + " of " +
                                std::to_string(kPreambleSize) + " bytes)");
            Preamble pre = decode_preamble(head, where);
            uint64_t start = (pos + 63) / 64 * 64;
            if (start != pos) {
                uint8_t pad[64] = {};
                write_all(fd, pad, start - pos, pos, what);
            }
            write_all(fd, head, kPreambleSize, start, what);
            pos = start + kPreambleSize;
            uint64_t left = pre.payload_len + kTrailerSize;
            while (left > 0) {
                ssize_t moved = -1;
                if (can_splice) {
                    loff_t o = static_cast<loff_t>(pos);
                    moved = ::splice(in.fd(), nullptr, fd, &o, std::min<uint64_t>(left, 1u << 30),
                                     SPLICE_F_MOVE);
                    if (moved < 0 && (errno == EINVAL || errno == ESPIPE || errno == EBADF)) {
                        can_splice = false;
                        continue;
                    }
                    if (moved < 0 && errno == EINTR) continue;
                    if (moved < 0) throw_errno("cannot write " + what);
                } else {
                    if (buf.empty()) buf.resize(size_t(1) << 20);
                    size_t got = in.read(
                        std::span<uint8_t>(buf).first(std::min<uint64_t>(left, buf.size())));
                    write_all(fd, buf.data(), got, pos, what);
                    moved = static_cast<ssize_t>(got);
                }
                if (moved == 0)
                    throw DataError(where +
                                    (left > kTrailerSize
                                         ? ": truncated record (payload ends " +
                                               std::to_string(left - kTrailerSize) + " bytes early)"
                                         : ": truncated record (checksum missing)"));
                pos += static_cast<uint64_t>(moved);
                left -= static_cast<uint64_t>(moved);
            }
            placed.push_back({pre.type, start + kPreambleSize, pre.payload_len, index, stream_off});
            stream_off += pre.record_size();
        }
    } catch (const DataError& e) {
        if (!opts.skip_bad) throw;
        out.warnings.push_back(std::string(e.what()) + " (skipped, with the rest of " + in.name() +
                               ")");
    }
    if (placed.empty()) return;
    void* addr = ::mmap(nullptr, pos, PROT_READ, MAP_SHARED, fd, 0);
    if (addr == MAP_FAILED) throw_errno("cannot map " + what);
    auto mapping = std::make_shared<Mapping>(addr, pos);
    ByteView all = mapping->bytes();
    for (auto& p : placed) {
        LoadedRecord lr;
        ByteView payload = all.subspan(p.offset, p.len);
        lr.key = read_le64(payload.data() + payload.size());
        lr.record = Record(p.type, payload, mapping);
        lr.mapped = all;
        release_around(lr); // the trailer's page and those faulted in around it
        lr.record.index = p.index;
        lr.record.offset = p.stream_offset;
        lr.verified = false;
        lr.file = file;
        lr.file_offset = p.offset;
        out.records.push_back(std::move(lr));
    }
}

void load_one(const std::string& path, Loaded& out, const LoadOptions& opts) {
    try {
        Input in(path);
        if (in.is_regular())
            load_mapped(in, out, opts.skip_bad);
        else
            load_spooled(in, out, opts);
        name_records(out.records, in.name());
        if (out.records.empty() && out.warnings.empty())
            throw DataError(in.name() + ": no records (empty input)");
    } catch (...) {
        out.error = std::current_exception();
    }
}

} // namespace

FileRef::~FileRef() {
    if (fd >= 0) ::close(fd);
}

unsigned default_threads() {
    unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : std::min(n, 64u);
}

void release_around(const LoadedRecord& r) {
    if (r.mapped.empty()) return;
    constexpr uint64_t kAround = 64 * 1024; // the kernel's fault_around_bytes, by default
    static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    // Offsets from the page the mapped bytes start in (a stdin mapped past its start does not
    // start on a page; the bytes before it are the same file's mapping).
    const uint8_t* lo = r.mapped.data() - reinterpret_cast<uintptr_t>(r.mapped.data()) % page;
    ByteView payload = r.record.payload();
    uint64_t b = static_cast<uint64_t>(payload.data() - lo);
    uint64_t e = b + payload.size() + kTrailerSize;
    uint64_t size = static_cast<uint64_t>(r.mapped.data() + r.mapped.size() - lo);
    // The pages holding the safetensors header stay: its metadata is read in place again and
    // again (every read of a dropped page would fault 64 KiB back in).
    uint64_t head = payload.size() >= 8
                        ? std::min<uint64_t>(read_le64(payload.data()), payload.size() - 8) + 8
                        : 0;
    uint64_t keep_b = b / page * page, keep_e = (b + head + page - 1) / page * page;
    // Whole pages only, but the mapping's own first and last pages count as whole: nothing
    // else shares them.
    uint64_t wb = b > kAround ? (b - kAround + page - 1) / page * page : 0;
    uint64_t we =
        size - e > kAround ? (e + kAround) / page * page : (size + page - 1) / page * page;
    auto drop = [&](uint64_t from, uint64_t to) {
        if (to > from) ::madvise(const_cast<uint8_t*>(lo) + from, to - from, MADV_DONTNEED);
    };
    if (head == 0) return drop(wb, we);
    drop(wb, keep_b);
    drop(keep_e, we);
}

LoadResult load_records(const std::vector<std::string>& paths, const LoadOptions& opts) {
    std::vector<Loaded> loaded(paths.size());
    unsigned threads = std::min<unsigned>(opts.threads ? opts.threads : default_threads(),
                                          static_cast<unsigned>(paths.size()));
    std::atomic<size_t> next{0};
    auto work = [&] {
        for (size_t i; (i = next.fetch_add(1)) < paths.size();) load_one(paths[i], loaded[i], opts);
    };
    if (threads <= 1) {
        work();
    } else {
        std::vector<std::jthread> pool;
        for (unsigned t = 0; t < threads; ++t) pool.emplace_back(work);
    }
    LoadResult r;
    for (auto& l : loaded) {
        // An input that cannot be opened is the user's mistake even with --skip-bad (exit 2).
        if (l.error) std::rethrow_exception(l.error);
        for (auto& w : l.warnings) r.warnings.push_back(std::move(w));
        for (auto& rec : l.records) {
            rec.position = r.records.size();
            r.records.push_back(std::move(rec));
        }
    }
    return r;
}

uint64_t crc_prefix(const LoadedRecord& r, uint64_t data_offset) {
    uint8_t head[kPreambleSize];
    encode_preamble(Preamble{r.record.version(), r.record.type(), r.record.payload().size()}, head);
    uint64_t crc = crc64(0, ByteView(head, kPreambleSize));
    return crc64(crc, r.record.payload().first(data_offset));
}

bool verify(const LoadedRecord& r) {
    uint64_t crc = crc_prefix(r, r.record.payload().size());
    release_around(r);
    return crc == r.key;
}

LoadedRecord load_single(const std::string& path, const std::string& what,
                         const LoadOptions& opts) {
    Loaded l;
    LoadOptions o = opts;
    o.skip_bad = false;
    load_one(path, l, o);
    if (l.error) std::rethrow_exception(l.error);
    if (l.records.size() != 1)
        throw DataError(what + " " + path + " holds " + std::to_string(l.records.size()) +
                        " records, not one");
    LoadedRecord& r = l.records[0];
    if (!r.verified && !verify(r))
        throw DataError(what + " " + r.name + ": corrupted record (checksum mismatch)");
    r.verified = true;
    return std::move(r);
}

int canonical_compare(const LoadedRecord& a, const LoadedRecord& b) {
    if (a.key != b.key) return a.key < b.key ? -1 : 1;
    if (a.record.type() != b.record.type()) return a.record.type() < b.record.type() ? -1 : 1;
    ByteView pa = a.record.payload(), pb = b.record.payload();
    if (pa.size() != pb.size()) return pa.size() < pb.size() ? -1 : 1;
    int c = pa.empty() ? 0 : std::memcmp(pa.data(), pb.data(), pa.size());
    return c < 0 ? -1 : c > 0 ? 1 : 0;
}

} // namespace n3::merge
