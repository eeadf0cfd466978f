// Fuzzes the receipt-ledger reader: any text must verify as a ledger of the fixed merger or
// throw n3::Error; never crash or read out of bounds. The merger's key is made once per run,
// so no input can carry a valid signature of its own: a genuine three-entry ledger of that
// merger, written once per run by append_receipts, is spliced with the input (and its header
// line is put before the input), so mutations reach past the header to the entries' fields,
// chain, signatures and model history. The inputs are read from a file in memory
// (memfile.hpp), which read_ledger reads as it reads any path.
#include "ledger/ledger.hpp"
#include "memfile.hpp"
#include "record/error.hpp"
#include "record/io.hpp"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

using namespace n3;
using namespace n3::crypto;

namespace {
struct Merger {
    AuthoritySecret authority = AuthoritySecret::generate();
    MemberKey key;
    std::string genuine, header;
    fuzz::MemFile file{"n3-fuzz-ledger"};
    Merger() : key(make()) {
        std::string dir = "/tmp/n3-fuzz-ledger.XXXXXX";
        if (!::mkdtemp(dir.data())) return;
        const std::string path = dir + "/rewards.ledger";
        try {
            // Two receipts of round 1 and one of round 2, which starts from round 1's model.
            const std::string base(64, 'a'), model(64, 'b'), next(64, 'c');
            std::vector<ledger::Receipt> receipts(3);
            for (size_t i = 0; i < receipts.size(); ++i) {
                ledger::Receipt& r = receipts[i];
                r.round = i < 2 ? 1 : 2;
                r.base = i < 2 ? base : model;
                r.model = i < 2 ? model : next;
                r.record = std::string(63, 'd') + char('0' + i);
                r.receipt_key = ReceiptKey::generate().public_text();
                r.weight = 10.0 * double(i + 1);
                r.cosine = 0.5;
                r.krum = 1.25;
                r.norm_ratio = 1;
                if (i == 1) r.holdout = 0.75;
                r.score = 0.5;
            }
            ledger::append_receipts(path, key, receipts);
            genuine = read_text_file(path);
        } catch (const Error&) {
        }
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
        size_t at = genuine.find("n3-receipt-ledger");
        if (at != std::string::npos) header = genuine.substr(at, genuine.find('\n', at) + 1 - at);
    }
    MemberKey make() {
        MemberSecret s = MemberSecret::create("hub", 0, 0);
        return complete(s, issue(authority, s.request, "fuzz"), "fuzz");
    }
};
Merger& merger() {
    static Merger m;
    return m;
}
void read(const std::string& text) {
    Merger& m = merger();
    if (!m.file.set(text.data(), text.size())) return;
    try {
        ledger::read_ledger(m.file.path(), m.key.record, m.authority.public_key());
    } catch (const Error&) {
    }
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Merger& m = merger();
    std::string text(reinterpret_cast<const char*>(data), size);
    read(text);
    if (m.genuine.empty()) return 0;
    read(m.header + text);
    if (size >= 4) {
        std::string s = m.genuine;
        size_t at = (size_t(data[0]) << 8 | data[1]) % s.size();
        if (data[2] & 1)
            s.replace(at, std::min(size - 3, s.size() - at), text.substr(3));
        else
            s.insert(at, text.substr(3));
        read(s);
    }
    return 0;
}
