#include "net/spool.hpp"

#include "record/error.hpp"

#include <chrono>
#include <cstdio>
#include <sys/stat.h>
#include <unistd.h>

namespace n3::net {

Spool::Spool(std::string dir) : dir_(std::move(dir)) {
    while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
    struct stat st {};
    if (::stat(dir_.c_str(), &st) != 0) throw_errno("spool directory " + dir_);
    if (!S_ISDIR(st.st_mode)) throw EnvError("spool directory " + dir_ + ": not a directory");
    if (::access(dir_.c_str(), W_OK | X_OK) != 0) throw_errno("spool directory " + dir_);
}

std::string Spool::write(std::span<const ByteView> frames) {
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
    char name[96];
    std::snprintf(name, sizeof name, "%019lld-%d-%06llu.n3", static_cast<long long>(ns),
                  static_cast<int>(::getpid()), static_cast<unsigned long long>(++seq_));
    std::string path = dir_ + "/" + name;
    OutputOptions opts;
    opts.binary = false;
    Output out(path, opts);
    for (auto f : frames) out.write(f);
    out.commit();
    return path;
}

} // namespace n3::net
