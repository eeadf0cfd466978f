#include "common/tool.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace n3 {

namespace {

std::string house_style(std::string msg) {
    while (!msg.empty() && (msg.back() == '.' || msg.back() == '\n' || msg.back() == ' '))
        msg.pop_back();
    if (msg.size() > 1 && std::isupper(static_cast<unsigned char>(msg[0])) &&
        !std::isupper(static_cast<unsigned char>(msg[1])))
        msg[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(msg[0])));
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    return msg;
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j)
            cur[j] = std::min(
                {prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

// "did you mean --open?" for a mistyped long option.
std::string suggest(const CLI::App& app, const std::vector<std::string>& extras) {
    for (auto& extra : extras) {
        if (extra.rfind("--", 0) != 0) continue;
        std::string word = extra.substr(0, extra.find('='));
        std::string best;
        size_t best_d = 3;
        for (const CLI::Option* opt : app.get_options()) {
            for (auto& ln : opt->get_lnames()) {
                size_t d = edit_distance(word, "--" + ln);
                if (d < best_d) {
                    best_d = d;
                    best = "--" + ln;
                }
            }
        }
        if (!best.empty()) return "did you mean " + best + "?";
    }
    return {};
}

} // namespace

Tool::Tool(std::string name, const std::string& description)
    : name_(std::move(name)), app_(description, name_) {
    app_.add_flag("-q,--quiet", quiet_, "Print no warnings or notes, only errors");
    app_.add_flag("-v,--verbose", verbosity_, "Say more (repeat for more)");
    app_.set_version_flag("--version", std::string("n3 ") + N3_VERSION);
    app_.get_formatter()->column_width(30);
}

bool Tool::stderr_is_terminal() const {
    return is_terminal(2);
}

void Tool::warn(const std::string& msg) const {
    if (!quiet_) std::cerr << name_ << ": warning: " << msg << "\n";
}
void Tool::error(const std::string& msg) const {
    std::cerr << name_ << ": error: " << house_style(msg) << "\n";
}
void Tool::hint(const std::string& msg) const {
    if (!quiet_) std::cerr << name_ << ": hint: " << msg << "\n";
}
void Tool::note(const std::string& msg) const {
    if (!quiet_) std::cerr << name_ << ": " << msg << "\n";
}
void Tool::verbose(const std::string& msg) const {
    if (verbosity_ > 0 && !quiet_) std::cerr << name_ << ": " << msg << "\n";
}

int Tool::run(int argc, char** argv, const std::function<int()>& body) {
    install_signal_cleanup();
    try {
        app_.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        std::cout << app_.help();
        return 0;
    } catch (const CLI::CallForAllHelp& e) {
        std::cout << app_.help("", CLI::AppFormatMode::All);
        return 0;
    } catch (const CLI::CallForVersion& e) {
        std::cout << e.what() << "\n";
        return 0;
    } catch (const CLI::ParseError& e) {
        error(e.what());
        std::string h;
        if (dynamic_cast<const CLI::ExtrasError*>(&e)) h = suggest(app_, app_.remaining());
        std::cerr << name_ << ": hint: " << (h.empty() ? "see '" + name_ + " --help'" : h) << "\n";
        return static_cast<int>(Exit::usage);
    }
    try {
        return body();
    } catch (const CLI::ParseError& e) {
        error(e.what());
        return static_cast<int>(Exit::usage);
    } catch (const Error& e) {
        error(e.what());
        if (!e.hint().empty()) std::cerr << name_ << ": hint: " << e.hint() << "\n";
        return static_cast<int>(e.code());
    } catch (const std::bad_alloc&) {
        std::cerr << name_ << ": error: out of memory\n";
        return static_cast<int>(Exit::usage);
    } catch (const std::exception& e) {
        error(e.what());
        return static_cast<int>(Exit::usage);
    }
}

std::vector<std::string> Tool::normalize_inputs(std::vector<std::string> inputs) const {
    if (inputs.empty()) inputs.push_back("-");
    if (std::count(inputs.begin(), inputs.end(), "-") > 1)
        throw UsageError("stdin ('-') may be given only once");
    return inputs;
}

void Tool::check_not_same(const std::vector<std::string>& inputs, const std::string& output) const {
    if (output == "-") return; // stdin and stdout are different streams
    for (auto& in : inputs)
        if (in == output || same_file(in, output))
            throw UsageError("output " + output + " is also an input",
                             "write to another file, then rename it");
}

std::unique_ptr<Output> Tool::open_output(const std::string& path, bool force,
                                          bool explicit_stdout) const {
    OutputOptions o;
    o.force = force || (explicit_stdout && path == "-");
    return std::make_unique<Output>(path.empty() ? "-" : path, o);
}

std::pair<std::string, std::string> parse_key_value(const std::string& s, const std::string& flag) {
    auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
        throw UsageError(flag + " takes KEY=VALUE, not '" + s + "'");
    return {s.substr(0, eq), s.substr(eq + 1)};
}

} // namespace n3
