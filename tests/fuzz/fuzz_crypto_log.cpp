// Fuzzes the issuance log's reader (audit_log, the check behind `n3-keys audit` and every
// `n3-keys issue --log`) and the log position a partial key carries: any text must audit
// against the fixed authority or throw n3::Error; never crash or read out of bounds. A genuine
// three-entry log of that authority, made once per run, is spliced with the input (and its
// header line is put before the input), so mutations reach past the header to the entries'
// chain and signatures. The log is made once in a temporary file; the inputs are audited from a
// file in memory (memfile.hpp), which audit_log reads as it reads any path.
#include "crypto/keys.hpp"
#include "memfile.hpp"
#include "record/error.hpp"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

using namespace n3;
using namespace n3::crypto;

namespace {
struct Fixture {
    AuthoritySecret authority = AuthoritySecret::generate();
    std::string path = "/tmp/n3-fuzz-log." + std::to_string(::getpid());
    std::string genuine, header;
    Partial partial;
    fuzz::MemFile file{"n3-fuzz-log"};
    Fixture() {
        std::remove(path.c_str());
        for (int i = 0; i < 3; ++i) {
            MemberSecret s = MemberSecret::create("m" + std::to_string(i), 0, 0);
            log_append(path, authority, issue(authority, s.request, "fuzz").record,
                       1700000000 + uint64_t(i));
        }
        std::ifstream in(path, std::ios::binary);
        std::ostringstream ss;
        ss << in.rdbuf();
        genuine = ss.str();
        header = genuine.substr(0, genuine.find('\n') + 1);
        MemberSecret s = MemberSecret::create("p", 0, 0);
        partial = issue(authority, s.request, "fuzz");
        std::remove(path.c_str());
    }
};
Fixture& fx() {
    static Fixture f;
    return f;
}
void audit(const std::string& text) {
    Fixture& f = fx();
    if (!f.file.set(text.data(), text.size())) return;
    try {
        LogReport r = audit_log(f.file.path(), f.authority.public_key());
        LogExpectation want;
        want.count = 2;
        want.at = 1;
        want.head = r.heads.size() > 1 ? r.heads[1] : Hash32{};
        check_log(r, want, "fuzz");
    } catch (const Error&) {
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Fixture& f = fx();
    std::string text(reinterpret_cast<const char*>(data), size);
    audit(text);
    audit(f.header + text);
    if (size >= 4) {
        std::string s = f.genuine;
        size_t at = (size_t(data[0]) << 8 | data[1]) % s.size();
        if (data[2] & 1)
            s.replace(at, std::min(size - 3, s.size() - at), text.substr(3));
        else
            s.insert(at, text.substr(3));
        audit(s);
    }
    try {
        parse_head(text, "--expect-head");
    } catch (const Error&) {
    }
    // A partial key's log entry from the input's bytes: the signature check must refuse it.
    if (size >= 16 + 32 + 64) {
        Partial p = f.partial;
        LogEntry e;
        for (int i = 0; i < 8; ++i) e.index = e.index << 8 | data[i];
        for (int i = 8; i < 16; ++i) e.time = e.time << 8 | data[i];
        std::copy_n(data + 16, e.prev.size(), e.prev.begin());
        std::copy_n(data + 48, e.sig.size(), e.sig.begin());
        p.log = e;
        try {
            partial_log_head(p, "fuzz");
        } catch (const Error&) {
        }
    }
    return 0;
}
