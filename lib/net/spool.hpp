// n3/net/spool.hpp — a spool directory: each received record becomes its own file.
//
//   Spool spool("inbox");                     // EnvError unless a writable directory
//   std::string path = spool.write(frames);   // inbox/<arrival ns>-<pid>-<seq>.n3
//
// Every file is written through n3::Output: a hidden temporary file in the same directory,
// fsynced, then renamed, so a reader that globs DIR/*.n3 only ever sees whole records, even
// when the receiver is killed with SIGKILL (which can leave a hidden .*.tmp.* file behind).
// Names sort in arrival order. Failures (disk full, permissions) throw EnvError.
#pragma once

#include "record/io.hpp"

#include <cstdint>
#include <span>
#include <string>

namespace n3::net {

class Spool {
public:
    explicit Spool(std::string dir);
    // Writes the record whose bytes are the concatenated frames; returns the file's path.
    std::string write(std::span<const ByteView> frames);
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
    uint64_t seq_ = 0;
};

} // namespace n3::net
