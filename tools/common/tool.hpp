// tools/common/tool.hpp — what every n3 tool shares: the one place where errors become
// messages and exit codes, and the conventions of STYLE.md for inputs, outputs and messages.
//
//   int main(int argc, char** argv) {
//       n3::Tool tool("n3-inspect", "print, check and convert n3 records");
//       auto& app = tool.app();           // add CLI11 options
//       return tool.run(argc, argv, [&] { ...; return 0; });
//   }
//
// run() parses (CLI11 errors become exit 2 with a "did you mean" hint where one fits), installs
// the signal handlers that remove unfinished output files, runs the body, and maps n3::Error
// to `n3-<verb>: error: <message>` (+ `hint: ...`) and its exit code. -q and -v are added to
// every tool.
#pragma once

#include "record/error.hpp"
#include "record/io.hpp"

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace n3 {

class Tool {
public:
    Tool(std::string name, const std::string& description);
    CLI::App& app() { return app_; }
    const std::string& name() const { return name_; }

    int run(int argc, char** argv, const std::function<int()>& body);

    // Messages on stderr, in house style. warn/note are silenced by -q; verbose needs -v.
    void warn(const std::string& msg) const;
    // An error that does not end the run (a tool that reports every bad record, then exits 1);
    // the same line run() prints for an n3::Error.
    void error(const std::string& msg) const;
    void hint(const std::string& msg) const;
    void note(const std::string& msg) const;    // plain informational line, "n3-x: msg"
    void verbose(const std::string& msg) const; // only with -v
    bool quiet() const { return quiet_; }
    int verbosity() const { return verbosity_; }
    bool stderr_is_terminal() const;

    // Input paths: "-" is stdin and may appear once; an empty list means stdin.
    std::vector<std::string> normalize_inputs(std::vector<std::string> inputs) const;
    // Refuses an output that is also an input (same file).
    void check_not_same(const std::vector<std::string>& inputs, const std::string& output) const;
    // Opens the output for binary records: "-" (or none) is stdout, refused on a terminal unless
    // forced or asked for explicitly with "-o -".
    std::unique_ptr<Output> open_output(const std::string& path, bool force,
                                        bool explicit_stdout) const;

private:
    std::string name_;
    CLI::App app_;
    bool quiet_ = false;
    int verbosity_ = 0;
};

// Parses "K=V"; throws UsageError naming the flag.
std::pair<std::string, std::string> parse_key_value(const std::string& s, const std::string& flag);

} // namespace n3
