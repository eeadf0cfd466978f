// n3/record/number.hpp — decimal numbers in flags, metadata and text files.
//
//   if (auto v = parse_uint(text, 999999999)) use(*v);   // else: the caller's own message
//
// parse_uint accepts ASCII digits and nothing else: no sign, no space, no empty string, no
// "0x". Leading zeros are allowed ("007" is 7). A value above `max`, or one that does not fit
// in 64 bits, is refused like any other malformed text: it returns nullopt and never throws,
// so each caller keeps its own message.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace n3 {

std::optional<uint64_t> parse_uint(std::string_view text, uint64_t max = UINT64_MAX);

} // namespace n3
