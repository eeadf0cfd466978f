// n3/record/io.hpp — files, pipes and atomic output.
//
// Input opens a path or "-" (stdin). A regular file can be memory-mapped (Input::map);
// anything else is read as a stream. Output writes to stdout or, for a path, to a temporary
// file in the same folder that commit() fsyncs and renames into place; an Output destroyed
// without commit() (an error unwound the stack) removes its temporary file, and so does
// SIGINT/SIGTERM once install_signal_cleanup() ran. So an output file appears whole or not
// at all. Secret files are created 0600 with O_EXCL (OutputOptions::secret). An existing
// device or FIFO (-o /dev/null, a named pipe) is written in place, never replaced.
//
// Failures throw EnvError (missing file, a directory, permission, disk full) naming the path.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace n3 {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

// Where bytes go. Output, VectorSink and the record writer all take a Sink.
class Sink {
public:
    virtual ~Sink() = default;
    virtual void write(ByteView bytes) = 0;
};

class VectorSink final : public Sink {
public:
    void write(ByteView bytes) override { data.insert(data.end(), bytes.begin(), bytes.end()); }
    Bytes data;
};

// Records bound for a file descriptor as they arrive (n3-send's receiver writing stdout).
// Records smaller than 64 KiB that arrive back to back gather in a buffer that leaves in one
// write(2) once it holds 1 MiB; larger records are written straight from their pieces, after
// what had gathered. The caller calls flush() whenever it goes idle, so nothing waits in the
// buffer while the reader waits for the next record. The destructor does not flush: bytes of
// a run that failed stay unwritten. Throws EnvError ("cannot write NAME") when a write fails.
class BatchedFdSink final : public Sink {
public:
    static constexpr size_t kSmallRecord = size_t(64) << 10;
    static constexpr size_t kBatch = size_t(1) << 20;

    explicit BatchedFdSink(int fd, std::string name = "stdout") : fd_(fd), name_(std::move(name)) {}
    // One whole record, in as many pieces as it arrived in.
    void write_record(std::span<const ByteView> pieces);
    void write(ByteView record) override { write_record({&record, 1}); }
    void flush();
    size_t pending() const { return pending_.size(); }
    int fd() const { return fd_; }
    const std::string& name() const { return name_; }

private:
    int fd_;
    std::string name_;
    Bytes pending_;
};

// A read-only memory mapping of a whole file (RAII).
class Mapping {
public:
    // Takes ownership of a mapping of `size` bytes at `addr`; bytes() starts at `offset`.
    Mapping(const void* addr, size_t size, size_t offset = 0)
        : addr_(addr), size_(size), offset_(offset) {}
    ~Mapping();
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ByteView bytes() const {
        return {static_cast<const uint8_t*>(addr_) + offset_, size_ - offset_};
    }
    // The file offset of a byte of bytes() (the mapping starts at the file's first byte).
    uint64_t file_offset(const uint8_t* p) const {
        return static_cast<uint64_t>(p - static_cast<const uint8_t*>(addr_));
    }

private:
    const void* addr_;
    size_t size_, offset_;
};

// Drops the whole pages inside `bytes` from this process's resident set (a read-only mapping
// of a file: the pages stay in the page cache and fault back in if read again).
void release_pages(ByteView bytes);

class Input {
public:
    // path "-" is stdin. Throws EnvError for a missing file, a directory, no permission, and
    // (unless allow_terminal) a terminal: binary records are never read from a terminal.
    explicit Input(const std::string& path, bool allow_terminal = false);
    ~Input();
    Input(const Input&) = delete;
    Input& operator=(const Input&) = delete;

    // The name used in messages: the path, or "stdin".
    const std::string& name() const { return name_; }
    const std::string& path() const { return path_; }
    bool is_stdin() const { return path_ == "-"; }
    bool is_regular() const { return regular_; }
    uint64_t file_size() const { return size_; } // regular files only
    int fd() const { return fd_; }
    uint64_t device() const { return dev_; }
    uint64_t inode() const { return ino_; }

    // Reads up to out.size() bytes, looping over short reads; returns fewer only at EOF.
    size_t read(std::span<uint8_t> out);
    // Maps the whole regular file (empty files map to an empty view).
    std::shared_ptr<Mapping> map();

private:
    std::string path_, name_;
    int fd_ = -1;
    bool regular_ = false, owned_ = false;
    uint64_t size_ = 0, dev_ = 0, ino_ = 0;
};

struct OutputOptions {
    bool secret = false; // create 0600 with O_EXCL semantics (refuse to overwrite unless force)
    bool force = false;  // overwrite an existing secret file; write binary to a terminal
    bool binary = true;  // refuse a terminal unless force (or the user asked for "-o -")
    bool append = false; // append to the file in place (logs); no temporary file
};

class Output final : public Sink {
public:
    // path "-" is stdout. For a path, nothing is visible until commit().
    Output(const std::string& path, OutputOptions opts = {});
    ~Output() override;
    Output(const Output&) = delete;
    Output& operator=(const Output&) = delete;

    void write(ByteView bytes) override;
    void write(const std::string& text) {
        write(ByteView(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    }
    // Flushes, fsyncs and renames into place (files); flushes stdout. Idempotent.
    void commit();
    // Flushes and fsyncs without renaming: after sync() the bytes are on disk, so a commit()
    // that follows fails only if the rename does. A tool that writes two files that must
    // appear together (an output and a state file) syncs the first, commits the second, then
    // commits the first: a full disk then leaves neither.
    void sync();
    const std::string& name() const { return name_; }
    bool is_stdout() const { return path_ == "-"; }
    // True when nothing written is visible before commit() (a temporary file renamed into
    // place): not stdout, a device or FIFO, or a file appended to.
    bool atomic() const { return !is_stdout() && !special_ && !opts_.append; }
    uint64_t bytes_written() const { return written_; }
    int fd() const { return fd_; }

private:
    void flush();
    std::string path_, name_, temp_;
    int fd_ = -1;
    int slot_ = -1;
    bool committed_ = false;
    bool special_ = false; // a device or FIFO, written in place
    OutputOptions opts_;
    std::vector<uint8_t> buf_;
    uint64_t written_ = 0;
};

// Installs SIGINT/SIGTERM/SIGHUP handlers that remove every uncommitted temporary output file
// and exit with 128+signal. Tools call it once at start.
void install_signal_cleanup();

// While set, those handlers first cut `fd` back to `size` bytes (ftruncate, which is
// async-signal-safe): for an output written in place whose last record is not whole yet
// (n3-send --recv with stdout a regular file). One at a time; clear with fd -1.
void cut_back_on_signal(int fd, int64_t size);

// True when the two paths name the same existing file (same device and inode).
bool same_file(const std::string& a, const std::string& b);

// Whole-file helpers for small files (keys, specs). read_file throws EnvError.
Bytes read_file(const std::string& path);
std::string read_text_file(const std::string& path);

bool is_terminal(int fd);

} // namespace n3
