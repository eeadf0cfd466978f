// Line-oriented text files: see lines.hpp.
#include "record/lines.hpp"

#include <sstream>

namespace n3 {

std::vector<TextLine> text_lines(const std::string& text, const std::string& where) {
    std::vector<TextLine> out;
    std::istringstream in(text);
    std::string line;
    size_t n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || line[0] == '#') continue;
        TextLine t;
        t.at = where + ": line " + std::to_string(n);
        std::istringstream words(line);
        for (std::string w; words >> w;) t.fields.push_back(w);
        out.push_back(std::move(t));
    }
    return out;
}

} // namespace n3
