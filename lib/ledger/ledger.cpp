// n3/ledger/ledger.cpp — reading, verifying and appending to the receipt ledger; claim proofs.
// The format and its checks are described in ledger.hpp and man/n3-record.5.
#include "ledger/ledger.hpp"

#include "record/error.hpp"
#include "record/hex.hpp"
#include "record/io.hpp"
#include "record/lines.hpp"
#include "record/number.hpp"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <set>
#include <sstream>
#include <sys/file.h>
#include <unistd.h>

namespace n3::ledger {

using namespace n3::crypto;

namespace {

constexpr std::string_view kMagic = "n3-receipt-ledger";
constexpr std::string_view kVersion = "1";
constexpr size_t kFields = 14;

Hash32 genesis(const AuthorityPublic& authority, const PublicRecord& merger) {
    return Hasher("n3/v1/rcpt-gen", {}, 32).part(authority.encode()).part(merger.encode()).hash32();
}
Hash32 chain(const Hash32& prev, uint64_t index, std::string_view body) {
    return Hasher("n3/v1/rcpt-chain", {}, 32).part(prev).part_u64(index).part(body).hash32();
}
Digest entry_message(const PublicRecord& merger, const Hash32& head) {
    return Hasher("n3/v1/rcpt-entry").part(merger.encode()).part(head).digest();
}

std::string num(double v) {
    char b[40];
    std::snprintf(b, sizeof b, "%.17g", v);
    return b;
}

std::optional<double> parse_num(const std::string& s) {
    if (s.empty()) return std::nullopt;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (errno != 0 || end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
    return v;
}

bool is_hash(const std::string& s) {
    Hash32 h{};
    return s.size() == 64 && from_hex(s, h) && to_hex(h) == s;
}

// Fields 2..12 of an entry: what its head commits to.
std::string body_of(const Receipt& r) {
    return std::to_string(r.round) + " " + r.base + " " + r.model + " " + r.record + " " +
           r.receipt_key + " " + num(r.weight) + " " + num(r.cosine) + " " + num(r.krum) + " " +
           num(r.norm_ratio) + " " + (r.holdout ? num(*r.holdout) : std::string("-")) + " " +
           num(r.score);
}

std::string header_line(const PublicRecord& merger, const AuthorityPublic& authority) {
    return std::string(kMagic) + " " + std::string(kVersion) + " " + merger.text() + " " +
           authority.text();
}

struct Parsed {
    bool has_header = false;
    Ledger ledger;
};

Parsed parse(const std::string& text, const PublicRecord& merger, const AuthorityPublic& authority,
             const std::string& where) {
    if (!equal(merger.authority, authority.id))
        throw DataError(where + ": merger '" + merger.id + "' is not a member of federation " +
                        to_hex(authority.id));
    // The merger's signing key, derived at the first signature: a file refused before its first
    // entry (not a ledger, another merger's) costs no point arithmetic.
    std::optional<Point> Y;
    Parsed out;
    Ledger& l = out.ledger;
    l.heads.push_back(genesis(authority, merger));
    std::set<std::string> records;
    for (const auto& [at, f] : text_lines(text, where)) {
        if (!out.has_header) {
            if (f.empty() || f[0] != kMagic)
                throw DataError(at + ": not a receipt ledger (no n3-receipt-ledger header)");
            if (f.size() != 4 || f[1] != kVersion)
                throw DataError(at + ": unsupported receipt ledger header (expected version " +
                                std::string(kVersion) + ")");
            if (f[2] != merger.text() || f[3] != authority.text())
                throw DataError(where + ": kept by another merger than '" + merger.id + "'",
                                "give the public record of the merger that keeps this ledger");
            out.has_header = true;
            continue;
        }
        if (f.size() != kFields)
            throw DataError(at + ": not a receipt entry (expected " + std::to_string(kFields) +
                            " fields)");
        const uint64_t index = l.heads.size();
        if (parse_uint(f[0]) != index)
            throw DataError(at + ": entry numbered " + f[0] + " where entry " +
                            std::to_string(index) +
                            " belongs (an entry was dropped, added or moved)");
        Entry e;
        e.index = index;
        Receipt& r = e.receipt;
        auto round = parse_uint(f[1]);
        if (!round) throw DataError(at + ": bad round '" + f[1] + "'");
        r.round = *round;
        for (size_t k : {2, 3, 4})
            if (!is_hash(f[k]))
                throw DataError(at + ": field " + std::to_string(k + 1) +
                                " is not a hash of 64 hex digits");
        r.base = f[2], r.model = f[3], r.record = f[4], r.receipt_key = f[5];
        e.key = decode_receipt_public(f[5], at);
        if (receipt_public_text(e.key) != f[5])
            throw DataError(at + ": receipt key is not in its canonical form");
        double* nums[] = {&r.weight, &r.cosine, &r.krum, &r.norm_ratio};
        for (size_t k = 0; k < 4; ++k) {
            auto v = parse_num(f[6 + k]);
            if (!v) throw DataError(at + ": bad number '" + f[6 + k] + "'");
            *nums[k] = *v;
        }
        if (f[10] != "-") {
            r.holdout = parse_num(f[10]);
            if (!r.holdout) throw DataError(at + ": bad number '" + f[10] + "'");
        }
        auto score = parse_num(f[11]);
        if (!score) throw DataError(at + ": bad number '" + f[11] + "'");
        r.score = *score;
        std::string body = f[1];
        for (size_t k = 2; k <= 11; ++k) body += " " + f[k];
        e.head = chain(l.heads.back(), index, body);
        if (f[12] != to_hex(e.head))
            throw DataError(at +
                            ": chain does not match (the ledger was edited, reordered or cut)");
        Signature sig{};
        if (!Y) Y = merger.Y_sig(authority.P);
        if (!from_hex(f[13], sig) || !schnorr_verify(*Y, entry_message(merger, e.head), sig))
            throw DataError(at + ": signature of entry " + std::to_string(index) +
                                " does not verify against merger '" + merger.id + "'",
                            "the ledger was written or changed by someone without its key");
        if (!l.entries.empty()) {
            const Receipt& p = l.entries.back().receipt;
            if (r.round < p.round)
                throw DataError(at + ": round " + f[1] + " after round " + std::to_string(p.round) +
                                " (rounds never go back)");
            if (r.round == p.round && (r.base != p.base || r.model != p.model))
                throw DataError(at + ": round " + f[1] +
                                " names a second base or model (a fork of the model history)");
            if (r.round == p.round + 1 && r.base != p.model)
                throw DataError(at + ": round " + f[1] + " starts from " + r.base.substr(0, 16) +
                                    ", not from round " + std::to_string(p.round) + "'s model " +
                                    p.model.substr(0, 16),
                                "the ledger forks the model history");
        }
        if (!records.insert(r.record).second)
            throw DataError(at + ": input " + r.record.substr(0, 16) + " is receipted twice");
        l.heads.push_back(e.head);
        l.entries.push_back(std::move(e));
    }
    return out;
}

struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

std::string folder_of(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

} // namespace

Ledger read_ledger(const std::string& path, const PublicRecord& merger,
                   const AuthorityPublic& authority) {
    if (::access(path.c_str(), F_OK) != 0) throw EnvError(path + ": no such file");
    Parsed p = parse(read_text_file(path), merger, authority, path);
    if (!p.has_header) throw DataError(path + ": not a receipt ledger (empty)");
    return std::move(p.ledger);
}

Hash32 append_receipts(const std::string& path, const MemberKey& merger,
                       const std::vector<Receipt>& receipts) {
    init();
    const AuthorityPublic authority = merger.authority();
    // The file is replaced by rename, so the lock is on its folder: two merges appending at
    // once would both chain to the same head.
    const std::string dir = folder_of(path);
    Fd lock{::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
    if (lock.fd < 0) throw_errno("cannot open " + dir);
    while (::flock(lock.fd, LOCK_EX) != 0)
        if (errno != EINTR) throw_errno("cannot lock " + dir);
    const bool exists = ::access(path.c_str(), F_OK) == 0;
    std::string text = exists ? read_text_file(path) : std::string();
    Parsed p = parse(text, merger.record, authority, path);
    if (!text.empty() && text.back() != '\n')
        throw DataError(path + ": last line is incomplete",
                        "check it with n3-keys ledger; the file was not written by n3-merge");
    if (!p.has_header)
        text += "# n3 receipt ledger; check with: n3-keys ledger --merger MERGER.pub "
                "--authority FED.pub " +
                path + "\n" + header_line(merger.record, authority) + "\n";
    Hash32 head = p.ledger.head();
    std::set<std::string> records;
    for (auto& e : p.ledger.entries) records.insert(e.receipt.record);
    uint64_t index = p.ledger.heads.size();
    for (const Receipt& r : receipts) {
        if (!is_hash(r.base) || !is_hash(r.model) || !is_hash(r.record))
            throw DataError("a receipt's hashes must be 64 hex digits");
        const std::string where = "receipt key of input " + r.record.substr(0, 16);
        if (receipt_public_text(decode_receipt_public(r.receipt_key, where)) != r.receipt_key)
            throw DataError(where + ": not one N3-RECEIPT- line");
        if (!records.insert(r.record).second)
            throw DataError(path + ": input " + r.record.substr(0, 16) +
                            " already has a receipt in the ledger");
        const std::string body = body_of(r);
        head = chain(head, index, body);
        const Signature sig =
            schnorr_sign(merger.y_sig, merger.Y_sig, entry_message(merger.record, head));
        text += std::to_string(index) + " " + body + " " + to_hex(head) + " " + to_hex(sig) + "\n";
        ++index;
    }
    // The new entries must pass the same checks a reader makes (rounds, model history).
    parse(text, merger.record, authority, path);
    OutputOptions o;
    o.binary = false;
    o.force = true;
    Output out(path, o);
    out.write(text);
    out.commit();
    return head;
}

void check_extends(const Ledger& ledger, const std::string& head, const std::string& where) {
    Hash32 want{};
    if (!from_hex(head, want))
        throw UsageError("--expect-head takes a ledger head of 64 hex digits, not '" + head + "'");
    for (size_t i = 0; i < ledger.heads.size(); ++i)
        if (equal(ledger.heads[i], want)) return;
    throw DataError(where + ": head " + head.substr(0, 16) +
                        " is not in this ledger: it was rewritten or forked since that head",
                    "a ledger that only grew keeps every earlier head");
}

Digest claim_message(const Point& receipt_key, std::string_view challenge) {
    return Hasher("n3/v1/rcpt-claim").part(receipt_key).part(challenge).digest();
}

Signature sign_claim(const ReceiptKey& key, std::string_view challenge) {
    return schnorr_sign(key.y, key.Y, claim_message(key.Y, challenge));
}

std::vector<const Entry*> verify_claim(const Ledger& ledger, const Point& receipt_key,
                                       std::string_view challenge, const Signature& proof,
                                       const std::string& where) {
    if (!schnorr_verify(receipt_key, claim_message(receipt_key, challenge), proof))
        throw DataError("the claim's proof does not verify with receipt key " +
                            receipt_public_text(receipt_key),
                        "it was made with another receipt key or for another challenge");
    std::vector<const Entry*> mine;
    for (auto& e : ledger.entries)
        if (equal(e.key, receipt_key)) mine.push_back(&e);
    if (mine.empty())
        throw DataError(where + ": holds no receipt for " + receipt_public_text(receipt_key));
    return mine;
}

} // namespace n3::ledger
