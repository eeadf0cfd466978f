// A regular file in memory (memfd_create) that every fuzz input overwrites, for the readers that
// take a path: they open /proc/self/fd/N as they would any file (Input maps it, it is a regular
// file), so an input costs two system calls instead of a file created on disk and removed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace n3::fuzz {

class MemFile {
public:
    explicit MemFile(const char* name) : fd_(::memfd_create(name, MFD_CLOEXEC)) {
        if (fd_ < 0) {
            // No memfd (an old kernel, a seccomp filter): an unlinked temporary file serves.
            std::string t = "/tmp/n3-fuzz.XXXXXX";
            fd_ = ::mkstemp(t.data());
            if (fd_ >= 0) ::unlink(t.c_str());
        }
        if (fd_ < 0) {
            // A target that cannot make its file would pass every input untested.
            std::perror("fuzz: cannot make an input file");
            std::abort();
        }
        path_ = "/proc/self/fd/" + std::to_string(fd_);
    }
    ~MemFile() {
        if (fd_ >= 0) ::close(fd_);
    }
    MemFile(const MemFile&) = delete;
    MemFile& operator=(const MemFile&) = delete;

    // Makes `data` the file's whole content; false when it could not be written (the caller
    // then skips the input, as it would a temporary file it could not write).
    bool set(const void* data, size_t size) {
        if (::ftruncate(fd_, 0) != 0) return false;
        const auto* p = static_cast<const uint8_t*>(data);
        for (size_t off = 0; off < size;) {
            ssize_t w = ::pwrite(fd_, p + off, size - off, static_cast<off_t>(off));
            if (w <= 0) return false;
            off += static_cast<size_t>(w);
        }
        return true;
    }
    const std::string& path() const { return path_; }

private:
    int fd_;
    std::string path_;
};

} // namespace n3::fuzz
