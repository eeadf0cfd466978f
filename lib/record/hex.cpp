#include "record/hex.hpp"

namespace n3 {

namespace {

// The value of a hex digit in the low four bits, and 0xff00 set when `ch` is not one; without
// branches on the data (as sodium_hex2bin), since some of what is decoded is secret.
uint32_t digit_value(char ch) {
    uint32_t c = static_cast<unsigned char>(ch);
    uint32_t num = c ^ 48u;                       // '0'..'9' -> 0..9
    uint32_t num_ok = ((num - 10u) >> 8) & 0xffu; // 0xff when num < 10
    uint32_t alpha = ((c & ~32u) - 55u) & 0xffu;  // 'A'..'F', 'a'..'f' -> 10..15
    uint32_t alpha_ok = (((alpha - 10u) ^ (alpha - 16u)) >> 8) & 0xffu;
    uint32_t bad = ((num_ok | alpha_ok) ^ 0xffu) << 8; // 0xff00 when neither
    return (((num_ok & num) | (alpha_ok & alpha)) & 0x0fu) | bad;
}

} // namespace

std::string to_hex(std::span<const uint8_t> bytes) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    s.reserve(bytes.size() * 2);
    for (uint8_t b : bytes) {
        s.push_back(digits[b >> 4]);
        s.push_back(digits[b & 15]);
    }
    return s;
}

bool from_hex(std::string_view text, std::span<uint8_t> out) {
    if (text.size() != 2 * out.size()) return false;
    uint32_t bad = 0;
    for (size_t i = 0; i < out.size(); ++i) {
        uint32_t hi = digit_value(text[2 * i]), lo = digit_value(text[2 * i + 1]);
        bad |= (hi | lo) & 0xff00u;
        out[i] = static_cast<uint8_t>((hi & 0x0fu) << 4 | (lo & 0x0fu));
    }
    return bad == 0;
}

std::optional<std::vector<uint8_t>> from_hex(std::string_view text) {
    if (text.size() % 2 != 0) return std::nullopt;
    std::vector<uint8_t> out(text.size() / 2);
    if (!from_hex(text, out)) return std::nullopt;
    return out;
}

} // namespace n3
