#include "crypto/keyfile.hpp"
#include "record/hex.hpp"

#include "crypto/passphrase.hpp"
#include "record/error.hpp"
#include "record/io.hpp"

#include <unistd.h>

namespace n3::crypto {

namespace {

std::string comment_time() {
    return format_time(now_seconds());
}

std::string record_comment(const PublicRecord& r) {
    return "# " + r.id + "  epoch " + std::to_string(r.epoch) + "  expires " +
           format_time(r.expiry) + "  fingerprint " + to_hex(r.fingerprint()) + "\n";
}

// The issuance-log position a member keeps, as comment lines of its key file.
std::string head_comment(const LogHead& h) {
    return "# issuance log: entry " + std::to_string(h.count) + ", head " + to_hex(h.head) +
           "\n# check a later log with: n3-keys audit --authority FED.pub --expect-head " +
           to_hex(h.head) + " --at " + std::to_string(h.count) + " LOG\n";
}

// A new secret key line, encrypted under a new passphrase when asked.
std::string protect(const std::string& line, bool encrypt, const std::string& what) {
    if (!encrypt) return line;
    KeyText kt = decode_key_text(line, what);
    return encrypt_key_text(kt, passphrase(what, true));
}

// The comment lines of a key file, kept when its key line is rewritten.
std::string comments_of(const std::string& path) {
    std::string text = read_text_file(path), out;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t nl = text.find('\n', pos);
        std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? text.size() : nl + 1;
        if (!line.empty() && line[0] == '#') out += line + "\n";
    }
    sodium_memzero(text.data(), text.size());
    return out;
}

} // namespace

std::string public_key_text(const KeyText& kt, const std::string& where) {
    switch (kt.kind) {
    case KeyKind::authority_secret:
        return AuthoritySecret::decode(kt.body, where).public_key().text();
    case KeyKind::authority_public: return AuthorityPublic::decode(kt.body, where).text();
    case KeyKind::member_key: return MemberKey::decode(kt.body, where).record.text();
    case KeyKind::partial: return Partial::decode(kt.body, where).record.text();
    case KeyKind::member_public: return PublicRecord::decode(kt.body, where).text();
    case KeyKind::member_secret: return MemberSecret::decode(kt.body, where).request.text();
    case KeyKind::request: return Request::decode(kt.body, where).text();
    case KeyKind::encrypted_key: break; // read_key_file decrypts
    case KeyKind::curve_secret: return CurveKey::from_secret(kt.body, where).public_text();
    case KeyKind::curve_public: return encode_key_text(kt.kind, kt.body);
    case KeyKind::receipt_secret: return ReceiptKey::decode(kt.body, where).public_text();
    case KeyKind::receipt_public: return encode_key_text(kt.kind, kt.body);
    }
    throw DataError(where + ": unknown key kind");
}

Fingerprint key_fingerprint(const KeyText& kt, const std::string& where) {
    switch (kt.kind) {
    case KeyKind::authority_secret:
        return AuthoritySecret::decode(kt.body, where).public_key().fingerprint();
    case KeyKind::authority_public: return AuthorityPublic::decode(kt.body, where).fingerprint();
    case KeyKind::member_key: return MemberKey::decode(kt.body, where).record.fingerprint();
    case KeyKind::partial: return Partial::decode(kt.body, where).record.fingerprint();
    case KeyKind::member_public: return PublicRecord::decode(kt.body, where).fingerprint();
    default:
        throw DataError(where + ": " + std::string(key_description(kt.kind)) +
                        " has no fingerprint (it is not an identity)");
    }
}

void write_key_file(const std::string& path, const std::string& text, bool secret, bool force) {
    OutputOptions o;
    o.secret = secret && path != "-";
    o.force = force;
    o.binary = false;
    Output out(path, o);
    out.write(text);
    out.commit();
}

void write_authority_file(const std::string& path, const AuthoritySecret& authority,
                          const KeyFileOptions& opts) {
    write_key_file(path,
                   "# n3 federation authority secret key, created " + comment_time() +
                       "\n# public key: " + authority.public_key().text() + "\n" +
                       protect(authority.text(), opts.encrypt, path) + "\n",
                   true, opts.force);
}

void write_member_secret_file(const std::string& path, const MemberSecret& secret,
                              const KeyFileOptions& opts) {
    write_key_file(path,
                   "# n3 member secret for '" + secret.request.id +
                       "' (before completion), created " + comment_time() + "\n" +
                       protect(secret.text(), opts.encrypt, path) + "\n",
                   true, opts.force);
}

std::string request_text(const Request& request) {
    return "# n3 key request for '" + request.id + "'\n" + request.text() + "\n";
}

void write_partial_file(const std::string& path, Partial& partial, const AuthoritySecret& authority,
                        const std::string& log_path, uint64_t now, bool force,
                        const std::string& where) {
    if (path != "-" && !force && ::access(path.c_str(), F_OK) == 0)
        throw EnvError("refusing to overwrite " + path, "use --force to replace it");
    std::string head;
    if (!log_path.empty()) {
        partial.log = log_append(log_path, authority, partial.record, now);
        head = "# issuance log " + log_path + ": entry " + std::to_string(partial.log->index) +
               ", head " + to_hex(partial_log_head(partial, where)->head) + "\n";
    }
    write_key_file(path,
                   "# n3 partial key for '" + partial.record.id + "'\n" +
                       record_comment(partial.record) + head + partial.text() + "\n",
                   true, force);
}

void write_member_key_file(const std::string& path, const MemberKey& key,
                           const std::optional<LogHead>& head, const KeyFileOptions& opts) {
    write_key_file(path,
                   "# n3 member key\n" + record_comment(key.record) +
                       (head ? head_comment(*head) : "") + "# public record: " + key.record.text() +
                       "\n" + protect(key.text(), opts.encrypt, path) + "\n",
                   true, opts.force);
}

void write_curve_file(const std::string& path, const CurveKey& key, bool force) {
    write_key_file(path,
                   "# n3 ZeroMQ CURVE secret key, created " + comment_time() +
                       "\n# public key: " + key.public_text() + "\n" + key.secret_text() + "\n",
                   true, force);
}

void write_roster_file(const std::string& path, const std::vector<std::string>& files,
                       const AuthorityPublic* authority, uint64_t now) {
    std::string text = "# n3 roster, " + std::to_string(files.size()) + " members, written " +
                       comment_time() + "\n";
    std::vector<Fingerprint> seen;
    for (auto& f : files) {
        const std::string where = f == "-" ? "stdin" : f;
        PublicRecord r = PublicRecord::load(f);
        if (authority) check_member(r, *authority, now, where);
        Fingerprint fp = r.fingerprint();
        for (auto& s : seen)
            if (equal(s, fp)) throw DataError(where + ": member '" + r.id + "' is listed twice");
        seen.push_back(fp);
        text += record_comment(r) + r.text() + "\n";
    }
    write_key_file(path, text, false, true);
}

PassphraseChange change_passphrase(const std::string& path, bool remove,
                                   const std::string& new_passphrase_file) {
    KeyText raw = read_key_file(path, false);
    const bool was = raw.kind == KeyKind::encrypted_key;
    if (!was && !is_secret(raw.kind))
        throw DataError(path + ": is " + std::string(key_description(raw.kind)) +
                            ", not a secret key",
                        "only secret key files take a passphrase");
    if (remove && !was) throw DataError(path + ": has no passphrase to remove");
    KeyText inner = was ? decrypt_key_text(raw, passphrase(path, false), path) : raw;
    std::string line;
    if (remove)
        line = encode_key_text(inner.kind, inner.body);
    else if (!new_passphrase_file.empty())
        line = encrypt_key_text(inner, read_passphrase_file(new_passphrase_file));
    else // terminal only: the file sources gave the old passphrase
        line = encrypt_key_text(inner, passphrase(path, true, was));
    write_key_file(path, comments_of(path) + line + "\n", true, true);
    return remove ? PassphraseChange::removed
           : was  ? PassphraseChange::changed
                  : PassphraseChange::added;
}

} // namespace n3::crypto
