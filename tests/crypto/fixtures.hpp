// Shared test fixtures: a federation with members, built through the real issuance flow.
#pragma once

#include "crypto/keys.hpp"
#include "crypto/seal.hpp"
#include "record/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

namespace n3::crypto::test {

struct Federation {
    AuthoritySecret authority = AuthoritySecret::generate();
    AuthorityPublic pub() const { return authority.public_key(); }
    MemberKey member(const std::string& id, uint32_t epoch = 0, uint64_t expiry = 0) const {
        MemberSecret s = MemberSecret::create(id, epoch, expiry);
        Partial p = issue(authority, s.request, "request");
        return complete(s, p, "partial");
    }
};

// A PayloadSource over bytes in memory (declaring `length` bytes, all of them by default);
// `pos` counts what was read.
struct MemorySource {
    ByteView bytes;
    size_t pos = 0;
    PayloadSource source(RecordType type, std::optional<uint64_t> length = std::nullopt) {
        PayloadSource src;
        src.type = type;
        src.length = length.value_or(bytes.size());
        src.read = [this](std::span<uint8_t> out) {
            size_t n = std::min(out.size(), bytes.size() - pos);
            if (n) std::memcpy(out.data(), bytes.data() + pos, n);
            pos += n;
            return n;
        };
        return src;
    }
};

// A small update record payload with round and base metadata.
inline Bytes update_payload(size_t floats, uint64_t round, uint8_t fill = 7) {
    SafetensorsBuilder b;
    b.set_meta(meta::round, std::to_string(round));
    b.set_meta(meta::base, std::string(64, 'a'));
    Bytes data(floats * 4, fill);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + fill);
    b.add("w", DType::F32, {static_cast<int64_t>(floats)}, data);
    VectorSink s;
    b.write(s);
    return s.data;
}

} // namespace n3::crypto::test
