// n3-secagg: the steps of a secure-aggregation round (man/n3-secagg.1). A member advertises,
// masks its update and reveals shares; the aggregator forwards the survivor list and sums.
// The protocol lives in lib/secagg/protocol.hpp, its file-level steps in lib/secagg/steps.hpp;
// this file is flags and files.
#include "common/tool.hpp"
#include "crypto/passphrase.hpp"
#include "record/number.hpp"
#include "secagg/steps.hpp"

using namespace n3;

namespace {

// The round's parameters: the same on every subcommand, bound into every signature.
struct RoundFlags {
    secagg::RoundSpec spec;
    std::string round;
};

void add_round(CLI::App* c, RoundFlags& f) {
    c->add_option("--roster", f.spec.roster, "The round's members, in roster order")
        ->type_name("FILE")
        ->required();
    c->add_option("--authority", f.spec.authority, "The federation authority's public key")
        ->type_name("PUB")
        ->required();
    c->add_option("--round", f.round, "The round number")->type_name("N")->required();
    c->add_option("--threshold", f.spec.threshold,
                  "Shares needed to unmask, at least 2 (default n/2+1)")
        ->type_name("T");
    c->add_option("--clip", f.spec.clip, "Bound on each weighted coordinate (default 1)")
        ->type_name("C");
    c->add_option("--max-samples", f.spec.max_samples,
                  "Weights are samples / N, at most 1 (default 1048576)")
        ->type_name("N");
    c->add_option("--neighbours", f.spec.neighbours,
                  "SecAgg+: mask with K neighbours only (default 0: every member)")
        ->type_name("K");
}

// A member's flags: its key and its round state.
struct MemberFlags {
    std::string key, passphrase_file, state;
};

void add_member(CLI::App* c, MemberFlags& m) {
    c->add_option("--key", m.key, "Your member key")->type_name("KEY")->required();
    c->add_option("--passphrase-file", m.passphrase_file,
                  "Read the passphrase of an encrypted --key from the first line of FILE")
        ->type_name("FILE");
    c->add_option("--state", m.state, "Your secret state for the round (0600)")
        ->type_name("FILE")
        ->required();
}

secagg::Round load(const Tool& tool, RoundFlags& f) {
    auto round = parse_uint(f.round);
    if (!round) throw UsageError("--round must be a non-negative integer, not '" + f.round + "'");
    f.spec.round = *round;
    secagg::Round r = secagg::load_round(f.spec);
    if (r.weak()) tool.warn(secagg::weak_threshold_text(r));
    return r;
}

} // namespace

int main(int argc, char** argv) {
    Tool tool("n3-secagg",
              "Secure aggregation: the aggregator learns only the weighted mean of the members' "
              "updates.\n\n"
              "A member runs advertise, mask and reveal; the aggregator runs survivors and sum.\n"
              "Every step takes the same round flags (--roster, --authority, --round, ...).");
    auto& app = tool.app();
    app.require_subcommand(1);
    app.fallthrough(); // -q and -v also after the subcommand
    RoundFlags rf;
    MemberFlags mf;
    std::string out_path, adverts, survivors_path;
    std::vector<std::string> inputs;
    bool force = false;
    unsigned threads = 0;
    auto add_output = [&](CLI::App* c) {
        c->add_option("-o,--output", out_path, "Output file, written atomically ('-' is stdout)")
            ->type_name("FILE");
        c->add_flag("-f,--force", force,
                    "Write binary output to a terminal; --state: overwrite (advertise)");
    };

    auto* c_adv = app.add_subcommand("advertise",
                                     "Start a round: this member's state file and advert record");
    add_round(c_adv, rf);
    add_member(c_adv, mf);
    add_output(c_adv);

    auto* c_mask = app.add_subcommand("mask", "Mask an update with every member's advert");
    add_round(c_mask, rf);
    add_member(c_mask, mf);
    c_mask->add_option("--adverts", adverts, "Every member's advert record, concatenated")
        ->type_name("FILE")
        ->required();
    c_mask->add_option("UPDATE", inputs, "The update record ('-' is stdin; default stdin)")
        ->type_name("");
    add_output(c_mask);

    auto* c_surv = app.add_subcommand(
        "survivors", "Aggregator: the survivor list of the masked inputs that arrived");
    add_round(c_surv, rf);
    c_surv->add_option("INPUT", inputs, "Masked inputs ('-' is stdin; default stdin)")
        ->type_name("");
    add_output(c_surv);

    auto* c_rev = app.add_subcommand(
        "reveal", "Check the survivor list, then reveal this member's shares for it");
    add_round(c_rev, rf);
    add_member(c_rev, mf);
    c_rev
        ->add_option("--survivors", survivors_path,
                     "The survivor list record the aggregator forwards")
        ->type_name("FILE")
        ->required();
    add_output(c_rev);

    auto* c_sum =
        app.add_subcommand("sum", "Aggregator: the weighted mean of the survivors' updates");
    add_round(c_sum, rf);
    c_sum->add_option("--adverts", adverts, "Every member's advert record, concatenated")
        ->type_name("FILE")
        ->required();
    c_sum
        ->add_option("INPUT", inputs,
                     "Masked inputs and reveals, any order ('-' is stdin; default stdin)")
        ->type_name("");
    c_sum->add_option("-j,--threads", threads, "Threads (default: one per core)")->type_name("N");
    add_output(c_sum);

    return tool.run(argc, argv, [&] {
        secagg::Round round = load(tool, rf);
        const bool explicit_stdout = out_path == "-";
        if (out_path.empty()) out_path = "-";
        if (c_surv->parsed() || c_sum->parsed()) {
            inputs = tool.normalize_inputs(inputs);
            tool.check_not_same(inputs, out_path);
            auto out = tool.open_output(out_path, force, explicit_stdout);
            if (c_surv->parsed()) {
                write_record(*out, secagg::survivors(round, inputs));
            } else {
                secagg::SumResult sum = secagg::sum(round, adverts, inputs, threads);
                tool.verbose(std::to_string(sum.survivors.size()) + " inputs summed, " +
                             std::to_string(sum.dropped.size()) + " members dropped; error bound " +
                             std::to_string(sum.step * double(sum.survivors.size())) +
                             " per coordinate");
                write_record(*out, sum.update);
            }
            out->commit();
            return 0;
        }
        if (c_mask->parsed() && inputs.size() > 1) throw UsageError("mask takes one update");
        if (!mf.passphrase_file.empty()) crypto::set_passphrase_file(mf.passphrase_file);
        crypto::set_key_file_warning([&](const std::string& m) { tool.warn(m); });
        crypto::MemberKey me = crypto::MemberKey::load(mf.key);
        auto out = tool.open_output(out_path, force, explicit_stdout);
        if (c_adv->parsed()) secagg::advertise(me, round, mf.state, force, *out);
        if (c_mask->parsed())
            secagg::mask(me, round, mf.state, adverts, inputs.empty() ? "-" : inputs[0], *out);
        if (c_rev->parsed()) secagg::reveal(me, round, mf.state, survivors_path, *out);
        out->commit();
        return 0;
    });
}
