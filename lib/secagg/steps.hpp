// n3/secagg/steps.hpp — the file-level steps of a secure-aggregation round, as the tools run
// them (n3-seal --advertise / --mask / --reveal, n3-merge --rule secure-sum).
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

// Reads every advert in a stream of records (file or "-"); refuses anything else.
std::vector<Advert> read_adverts(const std::string& path, const Round& r);

// n3-seal --advertise: creates the state file (refuses to overwrite it unless force) and
// writes the advert record.
void advertise(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
               bool force, Sink& out);
// n3-seal --mask: masks the single update record read from `update_path`.
void mask(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
          const std::string& adverts_path, const std::string& update_path, Sink& out);
// n3-seal --reveal: reveals shares for the survivor list in `survivors_path`.
void reveal(const crypto::MemberKey& me, const Round& r, const std::string& state_path,
            const std::string& survivors_path, Sink& out);

// The aggregator's side: reads masked inputs and reveals (any order, files or "-"), refusing
// records of any other kind by name.
struct Collected {
    std::vector<Record> inputs, reveals;
};
Collected collect(const std::vector<std::string>& paths);

} // namespace n3::secagg
