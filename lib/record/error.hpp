// n3/record/error.hpp — the typed errors every part of libn3 throws.
//
// lib/ never prints and never exits: it throws one of these, and the tool layer
// (tools/common/tool.hpp) turns it into `n3-<verb>: error: <message>` plus an optional
// `hint: ...` line, and the exit code that STYLE.md fixes for every tool:
//   0 success, 1 bad data or failed verification, 2 usage or environment,
//   3 incomplete round (quorum not reached, timeout), 130 interrupted (128+signal).
// Messages are lower case, without a final period, and name the input they are about.
#pragma once

#include <stdexcept>
#include <string>

namespace n3 {

enum class Exit : int { ok = 0, data = 1, usage = 2, incomplete = 3, interrupted = 130 };

class Error : public std::runtime_error {
public:
    Error(Exit code, const std::string& message, std::string hint = {})
        : std::runtime_error(message), code_(code), hint_(std::move(hint)) {}
    Exit code() const noexcept { return code_; }
    const std::string& hint() const noexcept { return hint_; }

private:
    Exit code_;
    std::string hint_;
};

// Bad data: corrupt, truncated, forged, wrong key, wrong shape (exit 1).
struct DataError : Error {
    explicit DataError(const std::string& m, std::string hint = {})
        : Error(Exit::data, m, std::move(hint)) {}
};
// Wrong flags or arguments (exit 2).
struct UsageError : Error {
    explicit UsageError(const std::string& m, std::string hint = {})
        : Error(Exit::usage, m, std::move(hint)) {}
};
// The environment failed us: missing file, permission, disk full, address in use (exit 2).
struct EnvError : Error {
    explicit EnvError(const std::string& m, std::string hint = {})
        : Error(Exit::usage, m, std::move(hint)) {}
};
// A round could not complete: quorum not reached, timeout (exit 3).
struct IncompleteError : Error {
    explicit IncompleteError(const std::string& m, std::string hint = {})
        : Error(Exit::incomplete, m, std::move(hint)) {}
};

// Throws EnvError "<what>: <strerror(errno)>".
[[noreturn]] void throw_errno(const std::string& what);
[[noreturn]] void throw_errno(const std::string& what, int err);

} // namespace n3
