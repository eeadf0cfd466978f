#include "secagg/steps.hpp"

#include "record/error.hpp"
#include "record/safetensors.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sys/stat.h>

namespace n3::secagg {

namespace {

// mkdir -p, each new folder 0700 (the records name the federation's rounds).
void make_dirs(const std::string& dir) {
    for (size_t at = 1; at <= dir.size(); ++at) {
        if (at != dir.size() && dir[at] != '/') continue;
        std::string part = dir.substr(0, at);
        if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
            throw UsageError("cannot create " + part + ": " + std::strerror(errno));
    }
}

void save_state(const MemberState& st, const std::string& path, bool create, bool force) {
    OutputOptions o;
    o.secret = true;
    o.binary = false;
    o.force = force || !create; // later steps replace the file the first step created
    Output out(path, o);
    out.write(st.text());
    out.commit();
}

} // namespace

Round load_round(const RoundSpec& spec) {
    Round r;
    r.authority = crypto::AuthorityPublic::load(spec.authority);
    crypto::Roster roster = crypto::Roster::load(spec.roster);
    r.members = std::move(roster.members);
    for (auto& [fp, pos] : roster.index) r.positions.emplace(fp, static_cast<uint32_t>(pos + 1));
    r.round = spec.round;
    r.threshold = spec.threshold;
    r.clip = spec.clip;
    r.max_samples = spec.max_samples;
    r.neighbours = spec.neighbours;
    r.validate();
    for (auto& m : r.members)
        if (!crypto::equal(m.authority, r.authority.id))
            throw DataError(spec.roster + ": member '" + m.id + "' belongs to another federation");
    return r;
}

std::string weak_threshold_text(const Round& r) {
    return "--threshold " + std::to_string(r.t()) + " is at most half of the " +
           std::to_string(r.holders()) +
           " share holders: an aggregator that shows two halves of the members different survivor "
           "lists "
           "could unmask an input; use more than " +
           std::to_string(r.holders() / 2);
}

std::vector<Advert> read_adverts(const std::string& path, const Round& r, uint32_t holder) {
    Input in(path);
    RecordReader reader(in);
    std::vector<Advert> out;
    const bool filter = holder != 0 && holder <= r.n() && r.sparse();
    const Graph g = filter ? r.graph() : Graph::complete(1);
    while (auto rec = reader.next()) {
        std::string where = in.name() + ": record " + std::to_string(rec->index + 1);
        if (filter) {
            const uint32_t v = advert_member(*rec, r, where);
            if (v != holder && !g.adjacent(v, holder)) continue;
        }
        out.push_back(read_advert(*rec, r, where));
    }
    if (out.empty()) throw DataError(in.name() + ": no adverts (empty input)");
    return out;
}

std::string advert_log_dir() {
    if (const char* d = std::getenv("N3_STATE_DIR"); d && *d) return std::string(d) + "/secagg";
    if (const char* d = std::getenv("XDG_STATE_HOME"); d && *d)
        return std::string(d) + "/n3/secagg";
    if (const char* d = std::getenv("HOME"); d && *d)
        return std::string(d) + "/.local/state/n3/secagg";
    throw UsageError("no folder to record this member's adverts in", "set N3_STATE_DIR (or HOME)");
}

void record_advert(const crypto::MemberKey& me, const Round& r, const std::string& dir) {
    const crypto::Fingerprint fp = me.record.fingerprint();
    const std::string name =
        dir + "/advertised-" +
        to_hex(crypto::Hasher("n3/v1/sa-advertised").part(r.context()).part(fp).hash32());
    struct stat sb {};
    if (::stat(name.c_str(), &sb) == 0)
        throw DataError("member '" + me.record.id + "' already advertised in round " +
                            std::to_string(r.round) + " (recorded in " + name +
                            "); a second advert in one round could unmask its input",
                        "start the round again under a new round number");
    make_dirs(dir);
    OutputOptions o;
    o.secret = true; // created with O_EXCL: of two racing adverts, one fails
    o.binary = false;
    Output marker(name, o);
    char when[32];
    std::time_t now = std::time(nullptr);
    std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    marker.write("advertised round " + std::to_string(r.round) + " as member '" + me.record.id +
                 "' at " + when + "\n");
    marker.commit();
}

void advertise(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
               bool force, Sink& out) {
    MemberState st;
    Record adv = make_advert(me, r, st);
    // A state file in the way would fail save_state after the advert is recorded, spending the
    // member's one advert of the round on a run that sent nothing: refuse it first.
    struct stat sb {};
    if (!force && state_path != "-" && ::stat(state_path.c_str(), &sb) == 0)
        throw EnvError("refusing to overwrite " + state_path, "use --force to replace it");
    // Recorded before the advert or the state exists, so no failure after it can let a second
    // advert for this round out, whatever --state path or --force the next call uses.
    record_advert(me, r, advert_log_dir());
    save_state(st, state_path, true, force);
    write_record(out, adv);
}

void mask(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
          const std::string& adverts_path, const std::string& update_path, Sink& out) {
    MemberState st = MemberState::load(state_path);
    auto adverts = read_adverts(adverts_path, r, st.index);
    Input in(update_path);
    RecordReader reader(in);
    auto update = reader.next();
    if (!update) throw DataError(in.name() + ": no records (empty input)");
    if (reader.next()) throw DataError(in.name() + ": holds more than one record; mask one update");
    Record masked = mask_update(me, r, st, adverts, *update);
    save_state(st, state_path, false, false);
    write_record(out, masked);
}

void reveal(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
            const std::string& survivors_path, Sink& out) {
    MemberState st = MemberState::load(state_path);
    Input in(survivors_path);
    RecordReader reader(in);
    auto list = reader.next();
    if (!list) throw DataError(in.name() + ": no survivor list (empty input)");
    if (reader.next())
        throw DataError(in.name() + ": holds more than one record; give one survivor list");
    Survivors survivors = read_survivors(*list, r, in.name());
    Record rec = reveal(me, r, st, survivors);
    save_state(st, state_path, false, false); // remember what was revealed before it leaves
    write_record(out, rec);
}

Collected collect(const std::vector<std::string>& paths) {
    Collected c;
    for (auto& path : paths) {
        Input in(path);
        RecordReader reader(in);
        bool any = false;
        while (auto rec = reader.next()) {
            any = true;
            std::string where = in.name() + ": record " + std::to_string(rec->index + 1);
            switch (kind_of(*rec)) {
            case Kind::input: c.inputs.push_back(*rec); break;
            case Kind::reveal: c.reveals.push_back(*rec); break;
            case Kind::advert:
                throw DataError(where + ": is an advert", "give adverts with --adverts");
            case Kind::survivors:
                throw DataError(where + ": is a survivor list",
                                "survivor lists go to the members: n3-secagg reveal");
            case Kind::other:
                throw DataError(where + ": is a " + std::string(type_name(rec->type())) +
                                    " record, not a masked input or a reveal",
                                rec->type() == RecordType::sealed ? "open it first: n3-seal --open"
                                                                  : "");
            }
        }
        if (!any) throw DataError(in.name() + ": no records (empty input)");
    }
    return c;
}

Record survivors(const Round& r, const std::vector<std::string>& paths) {
    Collected got = collect(paths);
    if (!got.reveals.empty())
        throw DataError(
            "the inputs hold reveals; the survivor list is made from masked inputs only");
    return list_survivors(got.inputs, r);
}

SumResult sum(const Round& r, const std::string& adverts_path,
              const std::vector<std::string>& paths, unsigned threads) {
    auto adverts = read_adverts(adverts_path, r);
    Collected got = collect(paths);
    return secure_sum(r, adverts, got.inputs, got.reveals, threads);
}

} // namespace n3::secagg
