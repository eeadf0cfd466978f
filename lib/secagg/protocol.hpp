// n3/secagg/protocol.hpp — one round of secure aggregation (Bonawitz et al., CCS 2017) between
// the members of a roster and an aggregator that learns the sum of their updates and nothing
// else, and that still completes when members drop out after masking.
//
// The round, as records (all of type `masked`, safetensors payloads, metadata `secagg`):
//   1. advert   each member: fresh round secrets s_u (key agreement) and b_u (self-mask
//               seed); S_u = s_u G; Feldman-committed t-of-n Shamir shares of both, each
//               peer's pair encrypted to that peer (XChaCha20-Poly1305 under a key derived
//               from the members' long-term key agreement and S_u, with a random nonce, so a
//               second advert never reuses a key stream); signed with the member's signing key.
//   2. input    each member, given every advert: checks them, keeps its shares from peers,
//               and sends y_u = enc(p_u x_u) + PRG(b_u) + sum_v sign(u,v) PRG(k_uv) (Z_2^32),
//               where k_uv comes from s_u S_v and p_u = samples / max_samples. The input
//               carries the member's signed statement of the adverts it masked over (their
//               indices and digests), small enough for the aggregator to forward to everyone.
//               With SecAgg+ (Round::neighbours = k > 0) the sum over v runs over u's k
//               neighbours in the round's graph only (secagg/graph.hpp), and u's shares go to
//               its neighbours only, t of its k + 1 holders (itself included) to rebuild.
//   3. reveal   the aggregator forwards the survivors' statements (list_survivors); each
//               surviving member checks them (Bonawitz et al.'s consistency round, active
//               security): it is itself a survivor, every statement is signed by its member,
//               every survivor masked over the same adverts (SecAgg+: the same adverts within
//               its neighbourhood), and there are at least t survivors. Then, for every other
//               member (neighbour), it reveals the share of b_v if v survived, else the share
//               of s_v; never both for one member (the state file remembers what was revealed,
//               and refuses another survivor list).
//   4. sum      the aggregator rebuilds b_u of the survivors and s_v of the dropped from t
//               verified shares, removes the masks, and outputs the weighted mean.
// A member's private round state lives in a 0600 state file between the steps.
//
// Fewer than t adverts or survivors (SecAgg+: in the neighbourhood of a member whose masks must
// be removed): IncompleteError (exit 3), nothing revealed. Anything forged, replayed from
// another round, from a non-member, or inconsistent (a survivor list without this member, or
// whose survivors masked over different adverts): DataError, nothing revealed.
//
// What this holds against (n3-seal(1), SECURITY): an aggregator that deviates from the protocol
// in any way, alone or with fewer than 2t - n colluding members, learns no individual input,
// only sums over at least t members. With t <= n/2 two disjoint groups of honest members could
// each be shown a different survivor list, so Round::weak() is reported as a warning.
#pragma once

#include "crypto/keys.hpp"
#include "record/format.hpp"
#include "secagg/fixed.hpp"
#include "secagg/graph.hpp"
#include "secagg/shamir.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace n3::secagg {

struct Round {
    crypto::AuthorityPublic authority;
    std::vector<crypto::PublicRecord> members; // roster order: member i has index i + 1
    uint64_t round = 0;
    uint32_t threshold = 0;          // t; 0 picks the default, a majority of a member's holders
    double clip = 1.0;               // per-coordinate bound of p_u x_u
    uint64_t max_samples = 1u << 20; // p_u = samples / max_samples (clipped to 1)
    uint32_t neighbours = 0;         // SecAgg+: k neighbours per member; 0: every member (complete)
    // Fingerprint -> index, so that checking N records costs N look-ups, not N^2 hashes of
    // public records (load_round fills it; a Round built by hand is scanned).
    std::unordered_map<crypto::Fingerprint, uint32_t, crypto::FingerprintHash> positions{};

    uint32_t n() const { return static_cast<uint32_t>(members.size()); }
    bool sparse() const { return neighbours > 0; }
    // Who holds shares of one member's secrets: its closed neighbourhood (all n when complete).
    uint32_t holders() const { return sparse() ? neighbours + 1 : n(); }
    uint32_t t() const { return threshold ? threshold : holders() / 2 + 1; }
    // t at most half the holders: an aggregator that shows two halves of the members two
    // different survivor lists could get both kinds of shares of one member.
    bool weak() const { return t() <= holders() / 2; }
    // Binds the federation, round, roster and parameters into every key, mask and signature.
    std::string context() const;
    // The masking graph: complete, or SecAgg+'s Harary graph over a ring order derived from
    // (federation, round, roster, neighbours) alone.
    Graph graph() const;
    uint32_t index_of(const crypto::Fingerprint& fp) const; // 0 when not a member
    void
    validate() const; // UsageError for t out of range (t >= 2), an empty roster, a bad clip or k
};

struct MemberState {
    uint32_t index = 0;
    uint64_t round = 0;
    crypto::Hash32 context{};
    crypto::Secret s{32}, b{32};
    // Shares received from peers, verified: peer index -> (share of s_v, share of b_v).
    std::map<uint32_t, std::pair<Scalar, Scalar>> received;
    std::set<uint32_t> included;                // members whose adverts the input was masked with
    std::map<uint32_t, crypto::Hash32> digests; // their advert digests (the signed statement)
    std::set<uint32_t> advertised; // every advert this member was given (SecAgg+: to check that
                                   // each dropped member keeps t holders before revealing)
    std::optional<crypto::Hash32> revealed_for; // the survivor list shares went out for

    std::string text() const; // one line: N3-SECAGG-STATE-<base64>
    static MemberState parse(std::string_view text, const std::string& where);
    static MemberState load(const std::string& path);
};

struct Advert {
    uint32_t index = 0;
    Point S{};
    std::vector<Point> cs, cb; // commitments to the s and b polynomials (t points each)
    // Encrypted (s share, b share) per holder: complete graph, per member index - 1 (zeros for
    // self); SecAgg+, per neighbour in sorted order (Graph::slot).
    std::vector<Bytes> boxes;
    crypto::Signature sig{};
    crypto::Hash32 digest{}; // what the signature covers
};

// Step 1. Creates the member's round state and its advert record.
Record make_advert(const crypto::MemberKey& me, const Round& r, MemberState& state);
// Reads and verifies an advert (signature, membership, round, sizes, points).
Advert read_advert(const Record& rec, const Round& r, const std::string& where);
// The member an advert names, from its header alone (kind, round and fingerprint checked, no
// signature): a member of a SecAgg+ round verifies only its neighbours' adverts in full, so
// that its cost does not grow with the roster. DataError as read_advert's header checks.
uint32_t advert_member(const Record& rec, const Round& r, const std::string& where);

// Step 2. Verifies the adverts, keeps this member's shares, and masks `update` (an update or
// model record of F32 tensors with `samples` metadata). With SecAgg+ only the neighbours'
// adverts are used (others may be given and are ignored); an absent neighbour is left out.
Record mask_update(const crypto::MemberKey& me, const Round& r, MemberState& state,
                   const std::vector<Advert>& adverts, const Record& update);

// A member's signed statement of the adverts its input was masked over.
struct Statement {
    uint32_t member = 0;
    std::map<uint32_t, crypto::Hash32> adverts; // member index -> advert digest
    crypto::Signature sig{};
};
// The survivor list as the members receive it: the statements of the members whose inputs
// arrived, each checked against its member's signature.
struct Survivors {
    std::vector<Statement> statements; // by member index
    std::set<uint32_t> members() const;
};
// The aggregator's step 3a: a record (masked, secagg=survivors) of the statements carried by
// the inputs that arrived; refuses inputs whose statement does not verify.
Record list_survivors(const std::vector<Record>& inputs, const Round& r);
Survivors read_survivors(const Record& rec, const Round& r, const std::string& where);

// Step 3. Checks the survivors' statements (see above) and reveals shares for them.
Record reveal(const crypto::MemberKey& me, const Round& r, MemberState& state,
              const Survivors& survivors);

// A reveal record from explicit entries, signed by `me`, with none of reveal()'s checks: the
// aggregator's own checks are tested with it (a member revealing what it must not).
struct RevealEntry {
    uint32_t member = 0;
    bool survived = false; // true: share of b_member; false: share of s_member
    Scalar share{};
};
Record sign_reveal(const crypto::MemberKey& me, const Round& r, uint32_t index,
                   const std::set<uint32_t>& survivors, const std::vector<RevealEntry>& entries);

// A survivor list as text, as reveals name it.
std::string survivors_text(const std::set<uint32_t>& s); // "1 2 5\n"

struct SumResult {
    Record update; // the weighted mean as an update record (F32 tensors)
    std::set<uint32_t> survivors, dropped;
    double step = 0; // fixed-point precision of the mean
};
// Step 4. Inputs, adverts and reveals in any order; throws IncompleteError when fewer than t
// reveals verify (SecAgg+: for some member whose masks must be removed). The masks are
// expanded on `threads` threads (0: one per core).
SumResult secure_sum(const Round& r, const std::vector<Advert>& adverts,
                     const std::vector<Record>& inputs, const std::vector<Record>& reveals,
                     unsigned threads = 0);

// Signs a masked record (advert, input or reveal) again after its metadata or tensors were
// changed, with none of the checks of the steps: the aggregator's checks against a member who
// signs whatever it likes are tested with it.
Record resign(const crypto::MemberKey& me, const Round& r, const Record& rec);

// Record kinds by metadata, for tools that route a stream.
enum class Kind { advert, input, reveal, survivors, other };
Kind kind_of(const Record& rec);

} // namespace n3::secagg
