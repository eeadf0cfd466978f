#include "record/number.hpp"

#include <charconv>

namespace n3 {

std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max) {
    // from_chars alone would take a leading '-' for an unsigned type on some libraries and
    // stops at the first non-digit; both are ruled out here.
    if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos)
        return std::nullopt;
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || end != text.data() + text.size() || v > max) return std::nullopt;
    return v;
}

} // namespace n3
