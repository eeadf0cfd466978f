// seal() and open() as compositions of the envelope's parts: envelope.hpp (clear header,
// stanzas, inner header, padding), transcript.hpp (what the signatures sign), chunks.hpp (the
// chunk stream on two threads). What stays here is the order of the steps, which is what the
// guarantees rest on: the sender is checked before a byte is released, and a record's trailer
// is written only after signature 2, the padding and the input's checksum verified.
#include "crypto/seal.hpp"
#include "record/hex.hpp"
#include "record/number.hpp"

#include "crypto/chunks.hpp"
#include "record/error.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

namespace n3::crypto {

using namespace envelope;
using chunks::ChunkOpener;
using chunks::ChunkSealer;
using chunks::HeldOutput;

namespace {

uint64_t clock_or(uint64_t now) {
    return now ? now : now_seconds();
}

// round/base from a tensor record's safetensors metadata (the JSON header).
void context_from_metadata(const std::string& json, SealContext& c, const std::string& where) {
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(json);
    } catch (const std::exception&) {
        throw DataError(where + ": safetensors header is not valid JSON");
    }
    if (!j.is_object() || !j.contains("__metadata__") || !j["__metadata__"].is_object()) return;
    auto& m = j["__metadata__"];
    if (m.contains(meta::round) && m[meta::round].is_string()) {
        std::string r = m[meta::round];
        const auto parsed = parse_uint(r);
        if (!parsed) throw DataError(where + ": metadata round '" + r + "' is not a number");
        const uint64_t v = *parsed;
        if (c.round && *c.round != v)
            throw DataError(where + ": record is for round " + r + ", not " +
                            std::to_string(*c.round));
        c.round = v;
    }
    if (m.contains(meta::base) && m[meta::base].is_string()) {
        std::string b = m[meta::base];
        Hash32 h;
        if (!from_hex(b, h))
            throw DataError(where + ": metadata base '" + b + "' is not a model hash");
        if (c.base && !equal(*c.base, h))
            throw DataError(where + ": record's base model differs from the one given");
        c.base = h;
    }
}

// The context: what the caller gave, completed from a tensor record's metadata. The bytes
// read to find it (length and JSON header) land in `prefix`, the start of the content.
SealContext read_context(PayloadSource& in, const SealContext& given, Bytes& prefix) {
    SealContext ctx = given;
    if (!is_tensor_type(in.type) || in.length < 8) return ctx;
    prefix.resize(8);
    read_exact(in, prefix);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | prefix[static_cast<size_t>(i)];
    if (n > in.length - 8 || n > (uint64_t(100) << 20))
        throw DataError(in.where + ": safetensors header length " + std::to_string(n) +
                        " out of range");
    prefix.resize(8 + n);
    read_exact(in, {prefix.data() + 8, static_cast<size_t>(n)});
    context_from_metadata(std::string(prefix.begin() + 8, prefix.end()), ctx, in.where);
    return ctx;
}

void check_sealing(const MemberKey& sender, std::span<const PublicRecord> recipients,
                   const AuthorityPublic& fed, uint64_t now) {
    if (recipients.empty()) throw UsageError("no recipients");
    if (recipients.size() > kMaxRecipients)
        throw UsageError("at most " + std::to_string(kMaxRecipients) + " recipients");
    if (sender.record.expired(now))
        throw DataError("the sender's key expired on " + format_time(sender.record.expiry),
                        "get a new key: n3-keys request / issue / complete");
    for (auto& r : recipients) check_member(r, fed, now, "recipient '" + r.id + "'");
}

// May this sender's record be opened here? Called once signature 1 verified.
void admit_sender(const Opened& info, const AuthorityPublic& authority, uint64_t now,
                  const OpenOptions& opts, const std::string& where) {
    check_member(info.sender, authority, now, where + ": sender");
    if (opts.roster && !opts.roster->find(info.sender_fingerprint))
        throw DataError(where + ": sender '" + info.sender.id + "' (" +
                        to_hex(info.sender_fingerprint).substr(0, 16) + ") is not in the roster");
    if (opts.senders_seen && opts.senders_seen->count(info.sender_fingerprint))
        throw DataError(where + ": a second record from sender '" + info.sender.id + "' (" +
                            to_hex(info.sender_fingerprint).substr(0, 16) + ")",
                        "one record per member per round; --allow-repeat-senders accepts more");
    if (opts.round) {
        if (!info.context.round)
            throw DataError(where + ": sealed without a round, expected round " +
                            std::to_string(*opts.round));
        if (*info.context.round != *opts.round)
            throw DataError(where + ": sealed for round " + std::to_string(*info.context.round) +
                                ", not round " + std::to_string(*opts.round),
                            "a replay from another round?");
    }
}

// A payload in memory as a source; `pos` is the caller's, so the source can be copied.
PayloadSource memory_source(RecordType type, ByteView payload, size_t& pos) {
    PayloadSource src;
    src.type = type;
    src.length = payload.size();
    src.read = [payload, &pos](std::span<uint8_t> outb) {
        size_t n = std::min(outb.size(), payload.size() - pos);
        if (n) std::memcpy(outb.data(), payload.data() + pos, n);
        pos += n;
        return n;
    };
    return src;
}

std::string no_records(std::span<const std::string> inputs) {
    bool stdin_only = inputs.empty() || (inputs.size() == 1 && inputs[0] == "-");
    return (stdin_only ? std::string("stdin") : inputs[0]) + ": no records (empty input)";
}

} // namespace

void seal(const MemberKey& sender, std::span<const PublicRecord> recipients, PayloadSource& in,
          Sink& out, const SealOptions& opts) {
    init();
    const uint64_t now = clock_or(opts.now);
    const AuthorityPublic fed = sender.authority();
    check_sealing(sender, recipients, fed, now);
    Bytes prefix; // the content's first bytes, read to find the metadata
    const SealContext ctx = read_context(in, opts.context, prefix);
    const Bytes context = encode_context(fed, ctx, in.type);

    Secret file_key(32);
    random_bytes({file_key.data(), 32});
    std::vector<Fingerprint> fps;
    if (opts.stanzas > kMaxRecipients)
        throw UsageError("at most " + std::to_string(kMaxRecipients) + " stanzas");
    const Suite suite = opts.suite.value_or(preferred_suite());
    const Bytes clear = make_clear(recipients, fed, file_key, fps, opts.stanzas, suite);
    const Secret key = payload_key(file_key, clear);
    const Hash32 commit = key_commitment(file_key, clear);

    // The inner header's size depends on the stanza count only (which the clear header shows
    // anyway), so it reveals neither the sender's id length nor how many stanzas are dummies.
    const size_t nstanzas = std::max(recipients.size(), opts.stanzas);
    Bytes inner = encode_inner(sender.record, context, fps, nstanzas, in.length);
    const Digest t1 = transcript::head(clear, commit, inner);
    const Signature s1 = schnorr_sign(sender.y_sig, sender.Y_sig, t1);
    put(inner, s1);

    const Layout lay = Layout::make(inner.size(), in.length);
    if (lay.header > kChunkSize) throw UsageError("too many recipients for one envelope");
    if (lay.chunks > kMaxChunks)
        throw UsageError("a record of " + std::to_string(in.length) +
                         " bytes is larger than an envelope holds (256 TiB)");
    RecordWriter w(out, RecordType::sealed, clear.size() + lay.ct_length());
    w.write(clear);
    ChunkSealer sealer(suite, key, lay, inner, prefix, in, w);
    const Bytes content = sealer.seal_content();
    sealer.seal_rest(schnorr_sign(sender.y_sig, sender.Y_sig, transcript::body(t1, s1, content)));
    w.end();
}

Opened open(const MemberKey& me, const AuthorityPublic& authority, PayloadSource& in, Sink& out,
            const OpenOptions& opts) {
    init();
    const uint64_t now = clock_or(opts.now);
    const std::string& where = in.where;
    if (!equal(me.record.authority, authority.id) || !equal(me.P, authority.P))
        throw DataError(where + ": the key of '" + me.record.id +
                        "' belongs to another federation than --authority");

    const Bytes clear = read_clear(in);
    const uint8_t version = clear[0];
    const size_t nstanzas = stanza_count(clear);
    const Fingerprint my_fp = me.record.fingerprint();
    Secret file_key(32);
    if (!open_stanza(clear, me, my_fp, authority, file_key))
        throw DataError(where + ": not sealed to '" + me.record.id +
                            "' (no recipient stanza opens with this key)",
                        "wrong recipient key, another federation, or a corrupted header");
    const Secret key = payload_key(file_key, clear);
    const Hash32 commit = key_commitment(file_key, clear);

    const Suite suite = clear_suite(clear);
    ChunkOpener opener(suite, key, in, in.length - clear.size());
    const ByteView chunk0 = opener.open_first();
    const Inner inner = parse_inner(chunk0, version, nstanzas, my_fp, authority, where);
    if (inner.length > opener.padded())
        throw DataError(where + ": sealed lengths do not agree (corrupted)");
    const Layout lay = Layout::make(inner.size, inner.length);
    if (lay.padded != opener.padded())
        throw DataError(where + ": sealed lengths do not agree (corrupted)");
    Opened info;
    info.sender = inner.sender;
    info.context = inner.context;
    info.type = inner.type;
    info.length = inner.length;
    info.recipients = inner.recipients;
    info.suite = suite;

    // Who sent it, and may they? All before a single byte is released.
    const Point Ysig = info.sender.Y_sig(authority.P);
    const Digest t1 = transcript::head(clear, commit, chunk0.first(inner.before_sig));
    if (!schnorr_verify(Ysig, t1, inner.s1))
        throw DataError(where +
                        ": signature does not verify (forged, or the sender's record was altered)");
    if (!inner.for_me)
        throw DataError(where + ": sealed for other recipients (forwarded by a recipient?)");
    info.sender_fingerprint = info.sender.fingerprint();
    admit_sender(info, authority, now, opts, where);

    // Every recipient knows the file key, so a co-recipient can re-encrypt the chunks after
    // the first with a payload of its own, which only signature 2 catches: with more than one
    // recipient nothing is released before it verified. Version 1 is held back whenever it
    // has several stanzas.
    const bool hold = version == kVersion1 ? nstanzas > 1 : inner.recipients > 1;
    HeldOutput held(hold ? opts.hold_in_memory : 0);
    RecordWriter w(hold ? static_cast<Sink&>(held) : out, info.type, info.length);
    transcript::ContentHash content_hash(suite, info.length);
    const Signature s2 = opener.stream(lay, w, content_hash);
    if (!schnorr_verify(Ysig, transcript::body(t1, inner.s1, content_hash.digest()), s2))
        throw DataError(where + ": payload signature does not verify (the payload was replaced)");
    opener.finish_input();
    w.end();
    if (hold) held.release(out);
    if (opts.senders_seen) opts.senders_seen->insert(info.sender_fingerprint);
    return info;
}

Bytes seal_record(const MemberKey& sender, std::span<const PublicRecord> recipients,
                  RecordType type, ByteView payload, const SealOptions& opts) {
    size_t pos = 0;
    PayloadSource src = memory_source(type, payload, pos);
    VectorSink sink;
    seal(sender, recipients, src, sink, opts);
    return std::move(sink.data);
}

OpenedRecord open_record(const MemberKey& me, const AuthorityPublic& authority, ByteView sealed,
                         const OpenOptions& opts) {
    Record r = decode_record(sealed, "sealed record");
    if (r.type() != RecordType::sealed)
        throw DataError("sealed record: is a " + std::string(type_name(r.type())) +
                        " record, not sealed");
    size_t pos = 0;
    PayloadSource src = memory_source(RecordType::sealed, r.payload(), pos);
    src.where = "sealed record";
    VectorSink sink;
    OpenedRecord o;
    o.info = open(me, authority, src, sink, opts);
    Record inner = decode_record(sink.data, "opened record");
    o.record = Record(inner.type(), Bytes(inner.payload().begin(), inner.payload().end()));
    return o;
}

SealedHeader sealed_header(ByteView payload, const std::string& where) {
    size_t pos = 0;
    PayloadSource src = memory_source(RecordType::sealed, payload, pos);
    src.where = where;
    const Bytes clear = read_clear(src);
    return {clear[0], clear_suite(clear), stanza_count(clear)};
}

PayloadSource payload_source(RecordReader& reader, const Preamble& p) {
    PayloadSource src;
    src.type = p.type;
    src.length = p.payload_len;
    src.read = [&reader](std::span<uint8_t> out) { return reader.read_payload(out); };
    src.finish = [&reader] { reader.end(); };
    src.take = [&reader] { return reader.take_payload(); };
    src.finish_taken = [&reader](uint64_t crc) { reader.end(crc); };
    src.copy_taken = [&reader](const uint8_t* from, std::span<uint8_t> out) {
        return reader.copy_taken(from, out);
    };
    src.where = reader.where();
    return src;
}

namespace {

// Calls fn(input, reader, preamble) for every record of every input, in order; returns how many.
template <class Fn> uint64_t for_each_record(std::span<const std::string> inputs, Fn&& fn) {
    uint64_t count = 0;
    for (auto& path : inputs) {
        Input in(path);
        RecordReader reader(in);
        while (auto p = reader.begin()) {
            fn(in, reader, *p);
            ++count;
        }
    }
    if (count == 0) throw DataError(no_records(inputs));
    return count;
}

} // namespace

uint64_t seal_stream(const MemberKey& sender, std::span<const PublicRecord> recipients,
                     std::span<const std::string> inputs, Sink& out, const SealOptions& opts) {
    return for_each_record(inputs, [&](Input&, RecordReader& reader, const Preamble& p) {
        PayloadSource src = payload_source(reader, p);
        seal(sender, recipients, src, out, opts);
    });
}

uint64_t open_stream(const MemberKey& me, const AuthorityPublic& authority,
                     std::span<const std::string> inputs, Sink& out, const OpenOptions& opts,
                     const OpenedCallback& opened) {
    return for_each_record(inputs, [&](Input& in, RecordReader& reader, const Preamble& p) {
        PayloadSource src = payload_source(reader, p);
        if (p.type != RecordType::sealed)
            throw DataError(reader.where() + ": is a " + std::string(type_name(p.type)) +
                                " record, not a sealed one",
                            "did you mean n3-seal without --open?");
        Opened o = open(me, authority, src, out, opts);
        if (opened) opened(in.name(), reader.records_read(), o);
    });
}

namespace detail {

RawEnvelope raw_decrypt(const MemberKey& me, const AuthorityPublic& authority, ByteView sealed) {
    Record r = decode_record(sealed, "sealed record");
    ByteView p = r.payload();
    RawEnvelope env;
    env.clear.assign(p.begin(),
                     p.begin() + static_cast<long>(kClearFixed + stanza_count(p) * kStanza));
    if (!open_stanza(env.clear, me, me.record.fingerprint(), authority, env.file_key))
        throw DataError("raw_decrypt: not a recipient");
    const Secret pk = payload_key(env.file_key, env.clear);
    const Suite suite = clear_suite(env.clear);
    ByteView ct = p.subspan(env.clear.size());
    uint64_t nchunks = (ct.size() + kCtChunk - 1) / kCtChunk;
    for (uint64_t i = 0; i < nchunks; ++i) {
        size_t len = std::min(kCtChunk, ct.size() - i * kCtChunk);
        Bytes out(len - kTag);
        if (!suite::open_chunk(suite, pk, i, i + 1 == nchunks, ct.data() + i * kCtChunk, len,
                               out.data()))
            throw DataError("raw_decrypt: chunk does not authenticate");
        put(env.stream, out);
    }
    return env;
}

RawEnvelope raw_wrap(std::span<const PublicRecord> recipients, const AuthorityPublic& fed,
                     Suite suite) {
    RawEnvelope env;
    random_bytes({env.file_key.data(), 32});
    std::vector<Fingerprint> fps;
    env.clear = make_clear(recipients, fed, env.file_key, fps, 0, suite);
    return env;
}

Bytes raw_encrypt(const RawEnvelope& env) {
    const Secret pk = payload_key(env.file_key, env.clear);
    Bytes payload = env.clear;
    uint64_t nchunks = (env.stream.size() + kChunkSize - 1) / kChunkSize;
    for (uint64_t i = 0; i < nchunks; ++i) {
        size_t len = std::min(kChunkSize, env.stream.size() - i * kChunkSize);
        Bytes out(len + kTag);
        suite::seal_chunk(clear_suite(env.clear), pk, i, i + 1 == nchunks,
                          env.stream.data() + i * kChunkSize, len, out.data());
        put(payload, out);
    }
    return encode_record(RecordType::sealed, payload);
}

} // namespace detail

} // namespace n3::crypto
