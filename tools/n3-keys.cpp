// n3-keys: federation authority, member keys, partial keys, rosters, transport keys
// (man/n3-keys.1). The constructions live in lib/crypto/keys.hpp, the key files it writes in
// lib/crypto/keyfile.hpp; this file is flags and files.
#include "common/tool.hpp"
#include "crypto/keyfile.hpp"
#include "crypto/keys.hpp"
#include "crypto/passphrase.hpp"
#include "ledger/ledger.hpp"
#include "record/hex.hpp"
#include "record/number.hpp"

#include <iostream>
#include <sys/stat.h>

using namespace n3;
using namespace n3::crypto;

namespace {

std::string name_of(const std::string& path) {
    return path == "-" ? "stdin" : path;
}

uint64_t parse_count(const std::string& s, const std::string& flag) {
    const auto v = parse_uint(s, 999999999999999999ull);
    if (!v) throw UsageError(flag + " must be a non-negative integer, not '" + s + "'");
    return *v;
}

uint32_t parse_epoch(const std::string& s) {
    const auto v = parse_uint(s, 999999999);
    if (!v) throw UsageError("--epoch must be a non-negative integer, not '" + s + "'");
    return static_cast<uint32_t>(*v);
}

} // namespace

int main(int argc, char** argv) {
    Tool tool("n3-keys",
              "Federation authority, member keys, partial keys, rosters and transport keys.\n\n"
              "Certificateless identities on ristretto255: the authority binds a member's\n"
              "name to the member's own public values and never learns the member's secrets.");
    auto& app = tool.app();
    app.require_subcommand(1);
    bool force = false;
    std::string out_path, id, epoch_s, expires_s, authority_path, log_path, secret_path,
        partial_path;
    std::vector<std::string> files;
    std::string pass_file, new_pass_file, expect_head_s, expect_count_s, at_s;
    bool encrypt = false, remove = false, keep_secret = false;
    app.add_option("--passphrase-file", pass_file,
                   "Read the passphrase of encrypted key files from the first line of FILE")
        ->type_name("FILE");
    app.fallthrough();

    auto* c_auth = app.add_subcommand("authority", "Create a federation authority's secret key");
    c_auth->add_option("-o,--output", out_path, "Secret key file (created 0600; '-' is stdout)")
        ->type_name("FILE")
        ->required();
    c_auth->add_flag("-f,--force", force, "Overwrite an existing file");
    c_auth->add_flag("--passphrase", encrypt, "Encrypt the secret key under a passphrase");

    auto* c_pub = app.add_subcommand("public", "Print the public part of a key file");
    c_pub->add_option("FILE", files, "Key file ('-' is stdin)")->type_name("")->required();

    auto* c_req =
        app.add_subcommand("request", "Create a member's secrets and a request for a partial key");
    c_req->add_option("--id", id, "The member's name in the federation")
        ->type_name("NAME")
        ->required();
    c_req->add_option("-o,--output", out_path, "Secret file (created 0600)")
        ->type_name("FILE")
        ->required();
    c_req->add_option("--epoch", epoch_s, "Key epoch (default 0)")->type_name("N");
    c_req
        ->add_option("--expires", expires_s,
                     "Expiry: YYYY-MM-DD, +DAYSd, @UNIX or never (default +365d)")
        ->type_name("WHEN");
    c_req->add_flag("-f,--force", force, "Overwrite an existing secret file");
    c_req->add_flag("--passphrase", encrypt, "Encrypt the secret file under a passphrase");

    auto* c_issue = app.add_subcommand("issue", "Check a request and issue its partial key");
    c_issue->add_option("--authority", authority_path, "The authority's secret key file")
        ->type_name("FILE")
        ->required();
    c_issue->add_option("--log", log_path, "Append the issued public record to this issuance log")
        ->type_name("FILE");
    c_issue->add_option("--epoch", epoch_s, "Override the requested epoch")->type_name("N");
    c_issue->add_option("--expires", expires_s, "Override the requested expiry")->type_name("WHEN");
    c_issue->add_option("REQUEST", files, "Request file (default stdin)")->type_name("");
    c_issue->add_option("-o,--output", out_path, "Partial key file (created 0600; default stdout)")
        ->type_name("FILE");
    c_issue->add_flag("-f,--force", force, "Overwrite an existing partial key file");

    auto* c_complete =
        app.add_subcommand("complete", "Check a partial key and write the member key");
    c_complete->add_option("--secret", secret_path, "The member's secret file from 'request'")
        ->type_name("FILE")
        ->required();
    c_complete->add_option("--partial", partial_path, "The partial key from 'issue'")
        ->type_name("FILE")
        ->required();
    c_complete
        ->add_option("--authority", authority_path, "Also require this authority (public key file)")
        ->type_name("FILE");
    c_complete->add_option("-o,--output", out_path, "Member key file (created 0600)")
        ->type_name("FILE")
        ->required();
    c_complete->add_flag("-f,--force", force, "Overwrite an existing key file");
    c_complete->add_flag("--passphrase", encrypt, "Encrypt the member key under a passphrase");
    c_complete->add_flag(
        "--keep-secret", keep_secret,
        "Keep the secret file (by default it is removed once the member key is written)");

    auto* c_passwd =
        app.add_subcommand("passwd", "Add, change or remove a secret key file's passphrase");
    c_passwd->add_option("FILE", files, "Secret key file, rewritten in place")
        ->type_name("")
        ->required();
    c_passwd->add_flag("--remove", remove, "Store the key unencrypted");
    c_passwd
        ->add_option("--new-passphrase-file", new_pass_file,
                     "Read the new passphrase from the first line of FILE")
        ->type_name("FILE");

    auto* c_fp = app.add_subcommand("fingerprint", "Print the fingerprint of a key file");
    c_fp->add_option("FILE", files, "Key files ('-' is stdin)")->type_name("")->required();

    auto* c_roster = app.add_subcommand("roster", "Build a roster from members' public records");
    c_roster->add_option("FILE", files, "Public records or member keys")->type_name("")->required();
    c_roster->add_option("--authority", authority_path, "Require members of this federation")
        ->type_name("FILE");
    c_roster->add_option("-o,--output", out_path, "Roster file (default stdout)")
        ->type_name("FILE");

    auto* c_audit =
        app.add_subcommand("audit", "Check an issuance log: signatures, chain, names issued twice");
    c_audit->add_option("LOG", log_path, "The issuance log")->type_name("FILE")->required();
    c_audit
        ->add_option("--authority", authority_path,
                     "The authority that keeps the log (public key file)")
        ->type_name("FILE")
        ->required();
    c_audit
        ->add_option("--expect-head", expect_head_s,
                     "Fail unless the log's head is HASH (64 hex digits)")
        ->type_name("HASH");
    auto* o_at =
        c_audit->add_option("--at", at_s, "With --expect-head: the head after entry N is HASH")
            ->type_name("N");
    c_audit
        ->add_option("--expect-count", expect_count_s,
                     "Fail unless the log holds exactly N issuances")
        ->type_name("N");

    auto* c_curve = app.add_subcommand("curve", "Create a ZeroMQ CURVE transport key pair");
    c_curve->add_option("-o,--output", out_path, "Secret key file (created 0600)")
        ->type_name("FILE")
        ->required();
    c_curve->add_flag("-f,--force", force, "Overwrite an existing file");

    auto* c_receipt = app.add_subcommand(
        "receipt", "Create a one-time receipt key for an update (its public line: 'public')");
    c_receipt->add_option("-o,--output", out_path, "Secret key file (created 0600)")
        ->type_name("FILE")
        ->required();
    c_receipt->add_flag("-f,--force", force, "Overwrite an existing file");

    std::string merger_path, challenge, proof, receipt_path;
    auto* c_ledger = app.add_subcommand(
        "ledger", "Check a receipt ledger: every signature, the chain, no gap, no fork");
    c_ledger->add_option("LEDGER", log_path, "The merger's receipt ledger")
        ->type_name("FILE")
        ->required();
    c_ledger->add_option("--merger", merger_path, "The merger's public record (or member key file)")
        ->type_name("FILE")
        ->required();
    c_ledger->add_option("--authority", authority_path, "The federation's public key file")
        ->type_name("FILE")
        ->required();
    c_ledger
        ->add_option("--expect-head", expect_head_s,
                     "Fail unless the ledger extends the one whose head was HASH")
        ->type_name("HASH");

    auto* c_claim = app.add_subcommand(
        "claim", "Prove a receipt is yours: sign a verifier's challenge with the receipt key");
    c_claim->add_option("--key", receipt_path, "The receipt secret key file")
        ->type_name("FILE")
        ->required();
    c_claim->add_option("--challenge", challenge, "The verifier's challenge (any text)")
        ->type_name("TEXT")
        ->required();

    auto* c_vclaim =
        app.add_subcommand("verify-claim", "Check a claim proof and print the receipts it claims");
    c_vclaim->add_option("LEDGER", log_path, "The merger's receipt ledger")
        ->type_name("FILE")
        ->required();
    c_vclaim->add_option("--merger", merger_path, "The merger's public record")
        ->type_name("FILE")
        ->required();
    c_vclaim->add_option("--authority", authority_path, "The federation's public key file")
        ->type_name("FILE")
        ->required();
    c_vclaim->add_option("--receipt", receipt_path, "The claimed receipt key (N3-RECEIPT- file)")
        ->type_name("FILE")
        ->required();
    c_vclaim->add_option("--challenge", challenge, "The challenge the claimant signed")
        ->type_name("TEXT")
        ->required();
    c_vclaim->add_option("--proof", proof, "The proof 'claim' printed (128 hex digits)")
        ->type_name("HEX")
        ->required();

    return tool.run(argc, argv, [&] {
        init();
        set_key_file_warning([&](const std::string& m) { tool.warn(m); });
        uint64_t now = now_seconds();
        if (!pass_file.empty()) set_passphrase_file(pass_file);
        if (c_auth->parsed()) {
            AuthoritySecret a = AuthoritySecret::generate();
            write_authority_file(out_path, a, {encrypt, force});
            tool.note("authority " + to_hex(a.id) + "; public key: n3-keys public " + out_path);
            return 0;
        }
        if (c_pub->parsed()) {
            if (files.size() != 1) throw UsageError("public takes one key file");
            std::cout << public_key_text(read_key_file(files[0]), name_of(files[0])) << "\n";
            return 0;
        }
        if (c_req->parsed()) {
            if (out_path == "-")
                throw UsageError("the secret file cannot go to stdout",
                                 "stdout carries the request");
            uint32_t epoch = epoch_s.empty() ? 0 : parse_epoch(epoch_s);
            uint64_t expiry = parse_expiry(expires_s.empty() ? "+365d" : expires_s, now);
            MemberSecret m = MemberSecret::create(id, epoch, expiry);
            write_member_secret_file(out_path, m, {encrypt, force});
            std::cout << request_text(m.request);
            return 0;
        }
        if (c_issue->parsed()) {
            if (files.size() > 1) throw UsageError("issue takes one request");
            std::string req_path = files.empty() ? "-" : files[0];
            AuthoritySecret a = AuthoritySecret::load(authority_path);
            Request r = Request::load(req_path);
            IssueOptions o;
            if (!epoch_s.empty()) o.epoch = parse_epoch(epoch_s);
            if (!expires_s.empty()) o.expiry = parse_expiry(expires_s, now);
            Partial p = issue(a, r, name_of(req_path), o);
            if (p.record.expired(now)) tool.warn("the issued key has already expired");
            const std::string dest = out_path.empty() ? "-" : out_path;
            write_partial_file(dest, p, a, log_path, now, force, name_of(req_path));
            struct stat st {};
            if (dest == "-" && ::fstat(1, &st) == 0 && S_ISREG(st.st_mode) &&
                (st.st_mode & 066) != 0)
                tool.warn("stdout is a file others can read; give the partial key -o FILE (created "
                          "0600)");
            return 0;
        }
        if (c_complete->parsed()) {
            MemberSecret s = MemberSecret::load(secret_path);
            Partial p = Partial::load(partial_path);
            if (!authority_path.empty()) {
                AuthorityPublic a = AuthorityPublic::load(authority_path);
                if (!equal(a.id, p.record.authority) || !equal(a.P, p.P))
                    throw DataError(partial_path + ": issued by another authority than " +
                                    authority_path);
            }
            MemberKey k = complete(s, p, partial_path);
            std::optional<LogHead> head = partial_log_head(p, partial_path);
            if (!head)
                tool.warn(partial_path +
                          " names no issuance-log entry (issued without --log): there is no "
                          "head to check the authority's log against later");
            // Decided before the key file replaces it: -o SECRET --force writes over the secret.
            const bool in_place = secret_path == "-" || same_file(secret_path, out_path);
            write_member_key_file(out_path, k, head, {encrypt, force});
            tool.note("member key for '" + k.record.id + "', fingerprint " +
                      to_hex(k.record.fingerprint()));
            if (head)
                tool.note("issued at log entry " + std::to_string(head->count) + ", head " +
                          to_hex(head->head) + " (kept in " + out_path + ")");
            if (!keep_secret && !in_place) {
                // With x from the secret file and a copy of d from the partial key, anyone has
                // y = x + d.
                try {
                    remove_secret_file(secret_path);
                    tool.note("removed " + secret_path + " (the member key replaces it)");
                } catch (const Error& e) {
                    tool.warn(std::string(e.what()) + "; remove it by hand");
                }
            }
            return 0;
        }
        if (c_fp->parsed()) {
            for (auto& f : files) {
                std::cout << to_hex(key_fingerprint(read_key_file(f), name_of(f)))
                          << (files.size() > 1 ? "  " + f : "") << "\n";
            }
            return 0;
        }
        if (c_roster->parsed()) {
            std::optional<AuthorityPublic> a;
            if (!authority_path.empty()) a = AuthorityPublic::load(authority_path);
            write_roster_file(out_path.empty() ? "-" : out_path, files, a ? &*a : nullptr, now);
            return 0;
        }
        if (c_audit->parsed()) {
            if (*o_at && expect_head_s.empty())
                throw UsageError("--at N needs --expect-head HASH (the head after entry N)");
            LogExpectation want;
            if (!expect_head_s.empty()) want.head = parse_head(expect_head_s, "--expect-head");
            if (!at_s.empty()) want.at = parse_count(at_s, "--at");
            if (!expect_count_s.empty()) want.count = parse_count(expect_count_s, "--expect-count");
            AuthorityPublic a = AuthorityPublic::load(authority_path);
            LogReport rep = audit_log(log_path, a);
            tool.note(log_path + ": " + std::to_string(rep.entries) + " issuances, head " +
                      to_hex(rep.head()));
            check_log(rep, want, log_path);
            for (auto& d : rep.duplicates) tool.warn("issued twice: " + d);
            if (!rep.duplicates.empty())
                throw DataError(
                    log_path + ": the authority issued " + std::to_string(rep.duplicates.size()) +
                        " name(s) more than one key in one epoch",
                    "an authority that issues a second key for a name can impersonate it");
            tool.note(log_path + ": every entry signed by authority " + to_hex(a.id) +
                      ", chain intact, no name issued twice");
            return 0;
        }
        if (c_passwd->parsed()) {
            if (files.size() != 1) throw UsageError("passwd takes one key file");
            const std::string& f = files[0];
            if (f == "-") throw UsageError("passwd rewrites a file in place, not stdin");
            PassphraseChange done = change_passphrase(f, remove, new_pass_file);
            tool.note(f + (done == PassphraseChange::removed   ? ": passphrase removed"
                           : done == PassphraseChange::changed ? ": passphrase changed"
                                                               : ": passphrase added"));
            return 0;
        }
        if (c_receipt->parsed()) {
            ReceiptKey k = ReceiptKey::generate();
            write_key_file(out_path,
                           "# n3 one-time receipt key; put its public line into one update:\n"
                           "#   n3-train --receipt-key " +
                               out_path + ".pub ...\n# public: " + k.public_text() + "\n" +
                               k.text() + "\n",
                           true, force);
            std::cout << k.public_text() << "\n";
            return 0;
        }
        if (c_ledger->parsed() || c_vclaim->parsed()) {
            PublicRecord merger = PublicRecord::load(merger_path);
            AuthorityPublic a = AuthorityPublic::load(authority_path);
            ledger::Ledger l = ledger::read_ledger(log_path, merger, a);
            if (c_ledger->parsed()) {
                std::cout << "head\t" << to_hex(l.head()) << "\n";
                if (!expect_head_s.empty()) ledger::check_extends(l, expect_head_s, log_path);
                tool.note(log_path + ": " + std::to_string(l.entries.size()) +
                          " receipts, every one signed by '" + merger.id +
                          "', chain intact, no gap, no fork");
                return 0;
            }
            Signature sig{};
            if (!from_hex(proof, sig))
                throw UsageError("--proof takes the 128 hex digits 'n3-keys claim' prints");
            std::string text = read_text_file(receipt_path);
            Point Y = decode_receipt_public(text, name_of(receipt_path));
            auto mine = ledger::verify_claim(l, Y, challenge, sig, log_path);
            std::cout << "entry\tround\tweight\tscore\n";
            for (auto* e : mine) {
                char line[128];
                std::snprintf(line, sizeof line, "%llu\t%llu\t%.9g\t%.9g\n",
                              static_cast<unsigned long long>(e->index),
                              static_cast<unsigned long long>(e->receipt.round), e->receipt.weight,
                              e->receipt.score);
                std::cout << line;
            }
            tool.note("the claimant holds the receipt key of " + std::to_string(mine.size()) +
                      " receipt(s) in " + log_path);
            return 0;
        }
        if (c_claim->parsed()) {
            ReceiptKey k = ReceiptKey::load(receipt_path);
            std::cout << to_hex(ledger::sign_claim(k, challenge)) << "\n";
            return 0;
        }
        if (c_curve->parsed()) {
            CurveKey k = CurveKey::generate();
            write_curve_file(out_path, k, force);
            tool.note("public key: " + k.public_text());
            return 0;
        }
        return 2;
    });
}
