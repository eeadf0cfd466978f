// n3/secagg/steps.hpp — the file-level steps of a secure-aggregation round, as n3-secagg runs
// them (advertise, mask, reveal for a member; survivors and sum for the aggregator).
//
// Each member step loads and saves the member's 0600 state file atomically, and saves it
// BEFORE anything leaves the member: a crash between the two can never let a second, different
// reveal out. Round parameters (roster, authority, round, threshold, clip, max samples,
// neighbours) must be the same in every step; they are bound into every signature, so a
// mismatch is caught.
#pragma once

#include "secagg/protocol.hpp"

#include <string>

namespace n3::secagg {

struct RoundSpec {
    std::string roster, authority;
    uint64_t round = 0;
    uint32_t threshold = 0;
    double clip = 1.0;
    uint64_t max_samples = 1u << 20;
    uint32_t neighbours = 0; // SecAgg+: k neighbours per member; 0: the complete graph
};
Round load_round(const RoundSpec& spec);
// The warning for Round::weak(): what a threshold of at most half the holders gives away.
std::string weak_threshold_text(const Round& r);

// Reads every advert in a stream of records (file or "-"); refuses anything else.
// With `holder` (a member's index in a SecAgg+ round), only the adverts of the members whose
// shares it holds are verified and returned: the others' are not used, and checking them all
// would make each member's cost grow with the roster. 0: every advert.
std::vector<Advert> read_adverts(const std::string& path, const Round& r, uint32_t holder = 0);

// Where a member's adverts are recorded, so that it advertises once per round whatever
// --state path it is given: $N3_STATE_DIR/secagg, else $XDG_STATE_HOME/n3/secagg, else
// ~/.local/state/n3/secagg.
std::string advert_log_dir();
// Records member `me`'s advert for round `r` in `dir` (a 0600 file named after the round and
// the member, created with O_EXCL); DataError when it already advertised in this round.
void record_advert(const crypto::MemberKey& me, const Round& r, const std::string& dir);

// n3-secagg advertise: records the advert (record_advert), creates the state file (refuses to
// overwrite it unless force) and writes the advert record.
void advertise(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
               bool force, Sink& out);
// n3-secagg mask: masks the single update record read from `update_path`.
void mask(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
          const std::string& adverts_path, const std::string& update_path, Sink& out);
// n3-secagg reveal: checks the survivor list record in `survivors_path` (made by
// n3-secagg survivors) and reveals shares for it.
void reveal(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
            const std::string& survivors_path, Sink& out);

// The aggregator's side: reads masked inputs and reveals (any order, files or "-"), refusing
// records of any other kind by name.
struct Collected {
    std::vector<Record> inputs, reveals;
};
Collected collect(const std::vector<std::string>& paths);

// n3-secagg survivors: the survivor list record of the masked inputs in `paths`.
Record survivors(const Round& r, const std::vector<std::string>& paths);
// n3-secagg sum: the adverts, the masked inputs and the reveals in `paths` (any order), summed.
SumResult sum(const Round& r, const std::string& adverts_path,
              const std::vector<std::string>& paths, unsigned threads = 0);

} // namespace n3::secagg
