#include "secagg/steps.hpp"

#include "record/error.hpp"

namespace n3::secagg {

namespace {

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
    r.members = crypto::Roster::load(spec.roster).members;
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

std::vector<Advert> read_adverts(const std::string& path, const Round& r) {
    Input in(path);
    RecordReader reader(in);
    std::vector<Advert> out;
    while (auto rec = reader.next()) {
        std::string where = in.name() + ": record " + std::to_string(rec->index + 1);
        out.push_back(read_advert(*rec, r, where));
    }
    if (out.empty()) throw DataError(in.name() + ": no adverts (empty input)");
    return out;
}

void advertise(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
               bool force, Sink& out) {
    MemberState st;
    Record adv = make_advert(me, r, st);
    save_state(st, state_path, true, force);
    write_record(out, adv);
}

void mask(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
          const std::string& adverts_path, const std::string& update_path, Sink& out) {
    MemberState st = MemberState::load(state_path);
    auto adverts = read_adverts(adverts_path, r);
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
    auto survivors = parse_survivors(read_text_file(survivors_path), r, survivors_path);
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
            case Kind::other:
                throw DataError(where + ": is a " + std::string(type_name(rec->type())) +
                                    " record, not a masked input or a reveal",
                                rec->type() == RecordType::sealed ? "open it first: n3-seal --open" : "");
            }
        }
        if (!any) throw DataError(in.name() + ": no records (empty input)");
    }
    return c;
}

} // namespace n3::secagg
