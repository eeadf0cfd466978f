#include "record/spill.hpp"

#include "record/error.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <vector>

namespace n3 {

namespace {
constexpr size_t kBuffer = size_t(1) << 20;
}

bool pread_exact(int fd, uint64_t offset, std::span<uint8_t> out) {
    for (size_t got = 0; got < out.size();) {
        ssize_t r =
            ::pread(fd, out.data() + got, out.size() - got, static_cast<off_t>(offset + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        got += static_cast<size_t>(r);
    }
    return true;
}

void ViewSource::read_at(uint64_t offset, std::span<uint8_t> out) const {
    if (!out.empty()) std::memcpy(out.data(), v_.data() + offset, out.size());
}

void FdSource::read_at(uint64_t offset, std::span<uint8_t> out) const {
    if (!pread_exact(fd_, base_ + offset, out))
        throw EnvError("cannot read " + name_ + " (the file became shorter)");
}

void copy_source(const ByteSource& src, uint64_t offset, uint64_t len, Sink& out) {
    Bytes piece(static_cast<size_t>(std::min<uint64_t>(len, kBuffer)));
    while (len > 0) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(len, piece.size()));
        src.read_at(offset, std::span<uint8_t>(piece.data(), n));
        out.write(ByteView(piece.data(), n));
        offset += n;
        len -= n;
    }
}

TempFile::TempFile(std::string purpose) : purpose_(std::move(purpose)) {
    const char* t = std::getenv("TMPDIR");
    std::string dir = t && *t ? t : "/tmp";
    fd_ = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0) {
        // A file system without O_TMPFILE: a named file, unlinked at once.
        std::string path = dir + "/.n3-spill.XXXXXX";
        std::vector<char> name(path.begin(), path.end());
        name.push_back('\0');
        fd_ = ::mkostemp(name.data(), O_CLOEXEC);
        if (fd_ >= 0) ::unlink(name.data());
    }
    if (fd_ < 0) throw_errno("cannot create a temporary file in " + dir + " for " + purpose_);
}

TempFile::~TempFile() {
    if (fd_ >= 0) ::close(fd_);
}

void TempFile::flush() {
    const uint8_t* p = buf_.data();
    size_t n = buf_.size();
    while (n > 0) {
        ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(synced_));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw_errno("cannot write the temporary file for " + purpose_);
        p += w;
        n -= static_cast<size_t>(w);
        synced_ += static_cast<uint64_t>(w);
    }
    buf_.clear();
}

void TempFile::write(ByteView bytes) {
    if (buf_.capacity() < kBuffer) buf_.reserve(kBuffer);
    size_ += bytes.size();
    if (buf_.size() + bytes.size() > kBuffer) flush();
    if (bytes.size() >= kBuffer) {
        buf_.assign(bytes.begin(), bytes.end()); // one write(2), then the buffer is small again
        flush();
        Bytes().swap(buf_);
        return;
    }
    buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

void TempFile::write_at(uint64_t offset, ByteView bytes) {
    flush();
    const uint8_t* p = bytes.data();
    uint64_t at = offset;
    size_t n = bytes.size();
    while (n > 0) {
        ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(at));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw_errno("cannot write the temporary file for " + purpose_);
        p += w;
        n -= static_cast<size_t>(w);
        at += static_cast<uint64_t>(w);
    }
    size_ = std::max(size_, at);
    synced_ = std::max(synced_, at);
}

void TempFile::read_at(uint64_t offset, std::span<uint8_t> out) {
    flush();
    if (!pread_exact(fd_, offset, out))
        throw EnvError("cannot read back the temporary file for " + purpose_);
}

void TempFile::copy_to(Sink& out, uint64_t offset, uint64_t len) {
    flush();
    Bytes piece(static_cast<size_t>(std::min<uint64_t>(len, kBuffer)));
    while (len > 0) {
        size_t n = static_cast<size_t>(std::min<uint64_t>(len, piece.size()));
        read_at(offset, std::span<uint8_t>(piece.data(), n));
        out.write(ByteView(piece.data(), n));
        offset += n;
        len -= n;
    }
}

void TempFile::clear() {
    buf_.clear();
    if (::ftruncate(fd_, 0) != 0) throw_errno("cannot truncate the temporary file for " + purpose_);
    size_ = synced_ = 0;
}

} // namespace n3
