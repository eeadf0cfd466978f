// n3/record/hex.hpp — lower-case hexadecimal, the one spelling of hashes, fingerprints and
// group ids in metadata, file names and messages.
//
//   std::string s = to_hex(bytes);                 // "00ff..."
//   std::array<uint8_t, 32> h;
//   if (!from_hex(s, h)) throw DataError(...);     // exactly 2 * h.size() hex digits
//
// from_hex never throws: it reports malformed text (odd length, wrong length, a non-hex
// character) by returning false or nullopt, and the caller says what was malformed. It reads
// upper-case digits too (as sodium_hex2bin does); to_hex writes lower case only.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace n3 {

std::string to_hex(std::span<const uint8_t> bytes);

// Fills `out` from exactly 2 * out.size() hex digits; false (out unspecified) otherwise.
bool from_hex(std::string_view text, std::span<uint8_t> out);
// Any even number of hex digits.
std::optional<std::vector<uint8_t>> from_hex(std::string_view text);

} // namespace n3
