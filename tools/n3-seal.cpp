// n3-seal: anonymous certificateless signcryption of records; --open verifies and decrypts
// (man/n3-seal.1). The envelope lives in lib/crypto/seal.hpp; this file is flags and files.
#include "common/tool.hpp"
#include "crypto/passphrase.hpp"
#include "crypto/seal.hpp"
#include "record/format.hpp"
#include "record/hex.hpp"
#include "record/number.hpp"

#include <iostream>
#include <set>

using namespace n3;
using namespace n3::crypto;

namespace {

uint64_t parse_round(const std::string& s) {
    const auto v = parse_uint(s);
    if (!v) throw UsageError("--round must be a non-negative integer, not '" + s + "'");
    return *v;
}

Hash32 parse_base(const std::string& s) {
    Hash32 h;
    if (!from_hex(s, h)) throw UsageError("--base must be a model hash (64 hex digits)");
    return h;
}

// What --open reports of each sender: on stderr, or one line each in the --sender file.
std::string sender_line(const Opened& o) {
    return o.sender.id + " " + to_hex(o.sender_fingerprint) + " epoch " +
           std::to_string(o.sender.epoch) + " round " +
           (o.context.round ? std::to_string(*o.context.round) : "-");
}

struct Flags {
    std::vector<std::string> inputs, to;
    std::string key_path, out_path, authority_path, roster_path, round_s, base_s, sender_path;
    std::string pass_file, suite;
    bool open_mode = false, force = false, one_per_sender = false, allow_repeat = false;
    bool sa_step = false;
    size_t pad_to = 0;
};

void add_flags(CLI::App& app, Flags& f) {
    app.add_option("FILE", f.inputs, "Input records ('-' is stdin; default stdin)")->type_name("");
    auto* o_to =
        app.add_option("--to", f.to, "Recipient's public record (repeatable)")->type_name("PUB");
    app.add_option("--key", f.key_path,
                   "Your member key (sender when sealing, recipient with --open)")
        ->required()
        ->type_name("KEY");
    auto* o_open = app.add_flag("-d,--open", f.open_mode, "Verify and decrypt sealed records");
    app.add_option("--authority", f.authority_path,
                   "The federation authority's public key (--open)")
        ->type_name("PUB");
    app.add_option("--roster", f.roster_path, "--open: accept only senders in this roster")
        ->type_name("FILE");
    app.add_option(
           "--round", f.round_s,
           "Sealing: the round, for records without round metadata; --open: reject other rounds")
        ->type_name("N");
    auto* o_base =
        app.add_option("--base", f.base_s, "Sealing: base-model hash, for records without one")
            ->type_name("HASH");
    auto* o_sender = app.add_option("--sender", f.sender_path,
                                    "--open: write each sender's identity to this file, not stderr")
                         ->type_name("FILE");
    auto* o_one =
        app.add_flag("--one-per-sender", f.one_per_sender,
                     "--open: refuse a second record from the same sender (default with --roster)");
    auto* o_repeat =
        app.add_flag("--allow-repeat-senders", f.allow_repeat,
                     "--open: accept several records from one sender, even with --roster");
    auto* o_pad =
        app.add_option("--pad-recipients", f.pad_to,
                       "Sealing: add dummy stanzas up to N, hiding how many recipients there are")
            ->type_name("N")
            ->check(CLI::Range(size_t(1), kMaxRecipients));
    auto* o_suite =
        app.add_option("--suite", f.suite,
                       "Sealing: auto (default: the fastest this CPU accelerates), aes-256-gcm or "
                       "xchacha20-poly1305")
            ->type_name("NAME");
    // The secure-aggregation steps moved to n3-secagg; the old flags say where, unlisted.
    for (const char* name : {"--advertise", "--mask", "--reveal"})
        app.add_flag(name, f.sa_step)->group("");
    app.add_option("--passphrase-file", f.pass_file,
                   "Read the passphrase of an encrypted --key from the first line of FILE")
        ->type_name("FILE");
    app.add_option("-o,--output", f.out_path, "Output file ('-' is stdout)")->type_name("FILE");
    app.add_flag("-f,--force", f.force, "Write binary output to a terminal");
    o_to->excludes(o_open);
    o_sender->needs(o_open);
    o_one->needs(o_open)->excludes(o_repeat);
    o_repeat->needs(o_open);
    o_base->excludes(o_open);
    o_pad->excludes(o_open);
    o_suite->excludes(o_open);
}

// What CLI11 cannot say about the flags, before any file is read.
void check_flags(const Flags& f) {
    if (f.sa_step)
        throw UsageError("secure aggregation has its own tool",
                         "n3-secagg advertise|mask|reveal (man n3-secagg)");
    if (!f.open_mode && f.to.empty())
        throw UsageError("sealing needs at least one --to recipient", "did you mean --open?");
    if (!f.open_mode && !f.roster_path.empty()) throw UsageError("--roster is for --open");
    if (!f.open_mode && !f.authority_path.empty()) throw UsageError("--authority is for --open");
    if (f.open_mode && f.authority_path.empty())
        throw UsageError("--open needs --authority FILE (the federation's public key)");
}

} // namespace

int main(int argc, char** argv) {
    Tool tool("n3-seal",
              "Sign and encrypt records for members of a federation; --open reverses.\n\n"
              "Sealed records name neither sender nor recipients outside the ciphertext.\n"
              "--open releases nothing from a sender whose signature did not verify.");
    Flags f;
    add_flags(tool.app(), f);

    return tool.run(argc, argv, [&] {
        init();
        if (!f.pass_file.empty()) set_passphrase_file(f.pass_file);
        set_key_file_warning([&](const std::string& m) { tool.warn(m); });
        check_flags(f);
        bool explicit_stdout = f.out_path == "-";
        if (f.out_path.empty()) f.out_path = "-";
        f.inputs = tool.normalize_inputs(f.inputs);
        if (f.out_path != "-") tool.check_not_same(f.inputs, f.out_path);
        std::optional<uint64_t> round;
        if (!f.round_s.empty()) round = parse_round(f.round_s);

        MemberKey key = MemberKey::load(f.key_path);
        std::vector<PublicRecord> recipients;
        for (auto& t : f.to) recipients.push_back(PublicRecord::load(t));
        std::optional<AuthorityPublic> authority;
        std::optional<Roster> roster;
        if (f.open_mode) {
            authority = AuthorityPublic::load(f.authority_path);
            if (!f.roster_path.empty()) roster = Roster::load(f.roster_path);
        }
        SealOptions sopts;
        if (!f.open_mode)
            sopts.suite = f.suite.empty() ? preferred_suite() : parse_suite(f.suite, "--suite");
        sopts.context.round = round;
        sopts.stanzas = f.pad_to;
        if (!f.base_s.empty()) sopts.context.base = parse_base(f.base_s);
        OpenOptions oopts;
        oopts.round = round;
        oopts.roster = roster ? &*roster : nullptr;
        // A roster means a round's members: one update each, or one member's weight doubles.
        std::set<Fingerprint> senders_seen;
        if (f.one_per_sender || (roster && !f.allow_repeat)) oopts.senders_seen = &senders_seen;

        auto out = tool.open_output(f.out_path, f.force, explicit_stdout);
        std::string senders;
        auto report = [&](const std::string& input, uint64_t record, const Opened& o) {
            if (f.sender_path.empty() && !tool.quiet())
                std::cerr << "n3-seal: " << input << ": record " << record << " from "
                          << sender_line(o) << "\n";
            else
                senders += sender_line(o) + "\n";
        };
        const uint64_t count = f.open_mode
                                   ? open_stream(key, *authority, f.inputs, *out, oopts, report)
                                   : seal_stream(key, recipients, f.inputs, *out, sopts);
        if (!f.sender_path.empty()) {
            OutputOptions so;
            so.binary = false;
            Output s(f.sender_path, so);
            s.write(senders);
            s.commit();
        }
        out->commit();
        tool.verbose(std::to_string(count) +
                     (f.open_mode
                          ? " record(s) opened"
                          : " record(s) sealed, suite " + std::string(suite_name(*sopts.suite))));
        return 0;
    });
}
