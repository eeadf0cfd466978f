#include "record/error.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>

namespace n3 {

void throw_errno(const std::string& what, int err) {
    std::string reason = std::strerror(err);
    if (!reason.empty()) // strerror capitalises; house style is lower case
        reason[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
    throw EnvError(what + ": " + reason);
}

void throw_errno(const std::string& what) {
    throw_errno(what, errno);
}

} // namespace n3
