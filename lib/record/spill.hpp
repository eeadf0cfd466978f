// n3/record/spill.hpp — an unnamed temporary file for bytes a tool must keep but not hold.
//
// A TempFile is created in $TMPDIR (else /tmp) with O_TMPFILE, so it has no name and vanishes
// with the process, even under SIGKILL (where O_TMPFILE is not supported: a named file,
// unlinked at once). Its pages live in the page cache, not in the process: a record of any
// size costs the process a 1 MiB write buffer and whatever window the caller reads back.
//
//   TempFile t("packing " + where);
//   t.write(bytes); ...                        // appended, buffered
//   t.write_at(offset, patch);                 // a length that became known later
//   t.read_at(offset, window);                 // pread; the buffer is flushed first
//   t.copy_to(out, 0, t.size());               // out in 1 MiB pieces
//   t.clear();                                 // empty again, for the next record
//
// A ByteSource reads a payload at any offset without holding it: ViewSource over memory,
// FdSource over a range of a file (the input itself, or a TempFile), through pread, so the
// pages read never count against the process.
//
// Failures (disk full, a read that comes up short) throw EnvError naming what the file is
// for.
#pragma once

#include "record/io.hpp"

#include <cstdint>
#include <span>
#include <string>

namespace n3 {

// Reads exactly out.size() bytes of fd from `offset`; false if the file ends first.
bool pread_exact(int fd, uint64_t offset, std::span<uint8_t> out);

class ByteSource {
public:
    virtual ~ByteSource() = default;
    virtual uint64_t size() const = 0;
    // Exactly out.size() bytes from `offset`; offset + out.size() <= size().
    virtual void read_at(uint64_t offset, std::span<uint8_t> out) const = 0;
    // The bytes in place when the source is memory, else null.
    virtual const uint8_t* view(uint64_t, size_t) const { return nullptr; }
};

class ViewSource final : public ByteSource {
public:
    explicit ViewSource(ByteView v) : v_(v) {}
    uint64_t size() const override { return v_.size(); }
    void read_at(uint64_t offset, std::span<uint8_t> out) const override;
    const uint8_t* view(uint64_t offset, size_t) const override { return v_.data() + offset; }

private:
    ByteView v_;
};

// Bytes [base, base + len) of an open file; `name` for messages.
class FdSource final : public ByteSource {
public:
    FdSource(int fd, uint64_t base, uint64_t len, std::string name)
        : fd_(fd), base_(base), len_(len), name_(std::move(name)) {}
    uint64_t size() const override { return len_; }
    void read_at(uint64_t offset, std::span<uint8_t> out) const override;

private:
    int fd_;
    uint64_t base_, len_;
    std::string name_;
};

// Writes [offset, offset + len) of src to out in pieces of at most 1 MiB.
void copy_source(const ByteSource& src, uint64_t offset, uint64_t len, Sink& out);

class TempFile final : public Sink {
public:
    explicit TempFile(std::string purpose);
    ~TempFile() override;
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;

    void write(ByteView bytes) override; // appends
    void write_at(uint64_t offset, ByteView bytes);
    void read_at(uint64_t offset, std::span<uint8_t> out);
    // Writes [offset, offset + len) to out, in pieces of at most 1 MiB.
    void copy_to(Sink& out, uint64_t offset, uint64_t len);
    void flush();
    void clear();
    uint64_t size() const { return size_; }
    int fd() {
        flush();
        return fd_;
    }

private:
    std::string purpose_;
    int fd_ = -1;
    uint64_t size_ = 0;   // logical size, buffered bytes included
    uint64_t synced_ = 0; // bytes already in the file at the end
    Bytes buf_;
};

} // namespace n3
