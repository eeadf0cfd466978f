#include "record/io.hpp"

#include "record/error.hpp"

#include <atomic>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace n3 {

namespace {

// Temporary files that a signal must remove. Fixed storage: the handler may only touch
// async-signal-safe state.
constexpr int kSlots = 64;
char g_temp_paths[kSlots][PATH_MAX];
std::atomic<bool> g_temp_used[kSlots];
std::atomic<int> g_cut_fd{-1};
std::atomic<int64_t> g_cut_size{0};

int claim_slot(const std::string& path) {
    if (path.size() >= PATH_MAX) return -1;
    for (int i = 0; i < kSlots; ++i) {
        bool expected = false;
        if (g_temp_used[i].compare_exchange_strong(expected, true)) {
            std::memcpy(g_temp_paths[i], path.c_str(), path.size() + 1);
            return i;
        }
    }
    return -1;
}

void release_slot(int slot) {
    if (slot >= 0) g_temp_used[slot].store(false);
}

extern "C" void cleanup_and_reraise(int sig) {
    if (int fd = g_cut_fd.load(); fd >= 0)
        (void)::ftruncate(fd, static_cast<off_t>(g_cut_size.load()));
    for (int i = 0; i < kSlots; ++i)
        if (g_temp_used[i].load()) ::unlink(g_temp_paths[i]);
    ::signal(sig, SIG_DFL);
    ::raise(sig);
}

mode_t current_umask() {
    static const mode_t mask = [] {
        mode_t m = ::umask(022);
        ::umask(m);
        return m;
    }();
    return mask;
}

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
    auto slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

void write_all(int fd, const uint8_t* p, size_t n, const std::string& name) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot write " + name);
        }
        p += w;
        n -= static_cast<size_t>(w);
    }
}

} // namespace

bool is_terminal(int fd) {
    return ::isatty(fd) == 1;
}

void BatchedFdSink::write_record(std::span<const ByteView> pieces) {
    size_t size = 0;
    for (ByteView p : pieces) size += p.size();
    if (size < kSmallRecord) {
        for (ByteView p : pieces) pending_.insert(pending_.end(), p.begin(), p.end());
        if (pending_.size() >= kBatch) flush();
        return;
    }
    flush();
    for (ByteView p : pieces) write_all(fd_, p.data(), p.size(), name_);
}

void BatchedFdSink::flush() {
    if (!pending_.empty()) write_all(fd_, pending_.data(), pending_.size(), name_);
    pending_.clear();
}

void cut_back_on_signal(int fd, int64_t size) {
    g_cut_fd.store(-1);
    g_cut_size.store(size);
    g_cut_fd.store(fd);
}

void install_signal_cleanup() {
    current_umask();
    struct sigaction sa {};
    sa.sa_handler = cleanup_and_reraise;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESETHAND;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

// Mapping -------------------------------------------------------------------------------------

Mapping::~Mapping() {
    if (addr_ && size_) ::munmap(const_cast<void*>(addr_), size_);
}

void release_pages(ByteView bytes) {
    static const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    uintptr_t b = reinterpret_cast<uintptr_t>(bytes.data());
    uintptr_t e = b + bytes.size();
    b = (b + page - 1) & ~(page - 1);
    e &= ~(page - 1);
    if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

// Input ---------------------------------------------------------------------------------------

Input::Input(const std::string& path, bool allow_terminal) : path_(path) {
    if (path.empty()) throw UsageError("empty input path");
    if (path == "-") {
        name_ = "stdin";
        fd_ = 0;
        if (!allow_terminal && is_terminal(0))
            throw UsageError("refusing to read binary records from a terminal",
                             "pipe records in or name an input file");
    } else {
        name_ = path;
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw_errno("cannot open " + path);
        owned_ = true;
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw_errno("cannot stat " + name_);
    if (S_ISDIR(st.st_mode)) {
        if (owned_) ::close(fd_);
        fd_ = -1;
        throw EnvError(name_ + ": is a directory");
    }
    regular_ = S_ISREG(st.st_mode);
    size_ = regular_ ? static_cast<uint64_t>(st.st_size) : 0;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
}

Input::~Input() {
    if (owned_ && fd_ >= 0) ::close(fd_);
}

size_t Input::read(std::span<uint8_t> out) {
    size_t got = 0;
    while (got < out.size()) {
        ssize_t r = ::read(fd_, out.data() + got, out.size() - got);
        if (r < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read " + name_);
        }
        if (r == 0) break;
        got += static_cast<size_t>(r);
    }
    return got;
}

std::shared_ptr<Mapping> Input::map() {
    if (!regular_) throw EnvError(name_ + ": not a regular file, cannot be mapped");
    off_t pos = ::lseek(fd_, 0, SEEK_CUR);
    if (pos < 0) pos = 0;
    if (size_ == 0 || static_cast<uint64_t>(pos) >= size_)
        return std::make_shared<Mapping>(nullptr, 0);
    void* addr = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
    if (addr == MAP_FAILED) throw_errno("cannot map " + name_);
    ::madvise(addr, size_, MADV_SEQUENTIAL);
    ::lseek(fd_, static_cast<off_t>(size_), SEEK_SET);
    // A stdin redirected from a file may already have been read past its start.
    return std::make_shared<Mapping>(addr, size_, static_cast<size_t>(pos));
}

// Output --------------------------------------------------------------------------------------

Output::Output(const std::string& path, OutputOptions opts) : path_(path), opts_(opts) {
    if (path.empty()) throw UsageError("empty output path");
    if (path == "-") {
        name_ = "stdout";
        fd_ = 1;
        if (opts.binary && !opts.force && is_terminal(1))
            throw UsageError("refusing to write binary records to a terminal",
                             "redirect the output, use -o FILE, or force it with -o -");
        return;
    }
    name_ = path;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0) {
        if (S_ISDIR(st.st_mode)) throw EnvError(path + ": is a directory");
        if (!S_ISREG(st.st_mode)) {
            // A device, FIFO or socket (/dev/null, a named pipe): write to it in place. A
            // temporary file renamed over it would replace the device with a regular file.
            if (opts.secret)
                throw EnvError("refusing to write a secret to " + path + ", not a regular file");
            fd_ = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
            if (fd_ < 0) throw_errno("cannot open " + path);
            special_ = true;
            return;
        }
        if (opts.secret && !opts.force)
            throw EnvError("refusing to overwrite " + path, "use --force to replace it");
    }
    if (opts.append) {
        fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                     opts.secret ? 0600 : 0666);
        if (fd_ < 0) throw_errno("cannot open " + path);
        return;
    }
    std::string tmpl = dir_of(path) + "/." + base_of(path) + ".tmp.XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    fd_ = ::mkostemp(buf.data(), O_CLOEXEC);
    if (fd_ < 0) throw_errno("cannot create " + path);
    temp_ = buf.data();
    slot_ = claim_slot(temp_);
    mode_t mode = opts.secret ? 0600 : (0666 & ~current_umask());
    if (::fchmod(fd_, mode) != 0) throw_errno("cannot set mode of " + path);
}

Output::~Output() {
    if (special_) {
        if (fd_ >= 0) ::close(fd_);
        return;
    }
    if (!path_.empty() && path_ != "-" && !committed_) {
        if (fd_ >= 0) ::close(fd_);
        if (!temp_.empty()) ::unlink(temp_.c_str());
        release_slot(slot_);
    } else if (fd_ > 2) {
        ::close(fd_);
    }
}

void Output::flush() {
    if (!buf_.empty()) {
        write_all(fd_, buf_.data(), buf_.size(), name_);
        buf_.clear();
    }
}

void Output::write(ByteView bytes) {
    if (committed_) throw UsageError("write to " + name_ + " after commit");
    written_ += bytes.size();
    constexpr size_t kBuf = 1 << 20;
    if (buf_.size() + bytes.size() <= kBuf) {
        buf_.insert(buf_.end(), bytes.begin(), bytes.end());
        return;
    }
    flush();
    if (bytes.size() >= kBuf) {
        write_all(fd_, bytes.data(), bytes.size(), name_);
    } else {
        buf_.insert(buf_.end(), bytes.begin(), bytes.end());
    }
}

void Output::sync() {
    if (committed_) return;
    flush();
    if (path_ != "-" && !special_ && ::fsync(fd_) != 0) throw_errno("cannot sync " + name_);
}

void Output::commit() {
    if (committed_) return;
    flush();
    if (path_ == "-" || special_) {
        committed_ = true;
        return;
    }
    if (::fsync(fd_) != 0) throw_errno("cannot sync " + name_);
    if (opts_.append) {
        committed_ = true;
        return;
    }
    if (::close(fd_) != 0) {
        fd_ = -1;
        throw_errno("cannot close " + name_);
    }
    fd_ = -1;
    if (opts_.secret && !opts_.force) {
        // link() fails if the name appeared meanwhile: a secret is never overwritten by accident.
        if (::link(temp_.c_str(), path_.c_str()) != 0) throw_errno("cannot create " + path_);
        ::unlink(temp_.c_str());
    } else if (::rename(temp_.c_str(), path_.c_str()) != 0) {
        throw_errno("cannot rename into " + path_);
    }
    committed_ = true;
    release_slot(slot_);
    int dfd = ::open(dir_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

// Helpers -------------------------------------------------------------------------------------

bool same_file(const std::string& a, const std::string& b) {
    if (a == "-" || b == "-") return false;
    struct stat sa {
    }, sb{};
    if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

Bytes read_file(const std::string& path) {
    Input in(path, true);
    Bytes out;
    uint8_t buf[65536];
    for (;;) {
        size_t n = in.read(buf);
        out.insert(out.end(), buf, buf + n);
        if (n < sizeof buf) break;
    }
    return out;
}

std::string read_text_file(const std::string& path) {
    Bytes b = read_file(path);
    return std::string(b.begin(), b.end());
}

} // namespace n3
