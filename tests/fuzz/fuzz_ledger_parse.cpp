// Fuzzes the receipt-ledger reader: any text must verify as a ledger of the fixed merger or
// throw n3::Error; never crash or read out of bounds. The merger's key is made once per run,
// so no input can carry a valid signature: the fuzzer exercises everything up to the checks
// of the chain and the signatures.
#include "ledger/ledger.hpp"
#include "record/error.hpp"

#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

using namespace n3;
using namespace n3::crypto;

namespace {
struct Merger {
    AuthoritySecret authority = AuthoritySecret::generate();
    MemberKey key;
    std::string path = "/tmp/n3-fuzz-ledger." + std::to_string(::getpid());
    Merger() : key(make()) {}
    MemberKey make() {
        MemberSecret s = MemberSecret::create("hub", 0, 0);
        return complete(s, issue(authority, s.request, "fuzz"), "fuzz");
    }
    ~Merger() { std::remove(path.c_str()); }
};
Merger& merger() {
    static Merger m;
    return m;
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Merger& m = merger();
    FILE* f = std::fopen(m.path.c_str(), "wb");
    if (!f) return 0;
    std::fwrite(data, 1, size, f);
    std::fclose(f);
    try {
        ledger::read_ledger(m.path, m.key.record, m.authority.public_key());
    } catch (const Error&) {
    }
    return 0;
}
