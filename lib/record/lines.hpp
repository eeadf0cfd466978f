// n3/record/lines.hpp — the line-oriented text files n3 keeps and checks (the issuance log, the
// receipt ledger): one entry per line, fields separated by white space, `#` comments.
//
//   for (const auto& [at, f] : text_lines(text, "issuance.log")) { ... f[0] ... throw DataError(at
//   + ": ...") }
//
// Pure; nothing here throws on data.
#pragma once

#include <string>
#include <vector>

namespace n3 {

struct TextLine {
    std::string at;                  // "<where>: line N", for messages
    std::vector<std::string> fields; // the line split at white space
};

// The lines of `text` that hold something (not blank, not a # comment; a CR before the newline
// is dropped), in order.
std::vector<TextLine> text_lines(const std::string& text, const std::string& where);

} // namespace n3
