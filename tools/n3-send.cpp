// n3-send: move records over ZeroMQ (man/n3-send.1).
#include "common/tool.hpp"
#include "net/curve.hpp"
#include "net/spool.hpp"
#include "net/transport.hpp"
#include "record/format.hpp"
#include "record/io.hpp"
#include "record/number.hpp"

#include <cmath>
#include <optional>
#include <string_view>
#include <utility>

using namespace n3;

namespace {

constexpr uint64_t kDefaultMaxSize = uint64_t(8) << 30;

uint64_t parse_size(const std::string& flag, const std::string& s) {
    static const std::pair<std::string_view, int> units[] = {
        {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0},
        {"K", 10},   {"M", 20},   {"G", 30},   {"T", 40},   {"", 0}};
    for (auto [unit, shift] : units) {
        if (!s.ends_with(unit)) continue;
        auto v = parse_uint(std::string_view(s).substr(0, s.size() - unit.size()));
        if (!v) continue;
        if (*v == 0 || *v > (uint64_t(1) << (62 - shift)))
            throw UsageError(flag + " out of range: '" + s + "'");
        return *v << shift;
    }
    throw UsageError(flag + " takes a size like 512M or 4G, not '" + s + "'");
}

} // namespace

int main(int argc, char** argv) {
    Tool tool("n3-send", "Move n3 records over ZeroMQ.\n\n"
                         "  n3-send ENDPOINT... [IN]          send records (PUSH, connect)\n"
                         "  n3-send --recv ENDPOINT --count N receive records (PULL, bind)\n"
                         "  n3-send --pub ENDPOINT [IN]       broadcast a model (PUB, bind)\n"
                         "  n3-send --sub ENDPOINT --count N  take a broadcast (SUB, connect)\n\n"
                         "Endpoints are tcp://HOST:PORT (tcp://*:PORT to listen) or ipc://PATH.");
    auto& app = tool.app();
    std::vector<std::string> args;
    bool scatter = false, broadcast = false, force = false, stream = false;
    std::string recv_ep, pub_ep, sub_ep, spool_dir, out_path, max_size_text, reserve_text,
        curve_key, curve_server, curve_allow;
    uint64_t count = 0, quorum = 0, subscribers = 1;
    double timeout = 0;
    int hwm = 0;
    app.add_option("ENDPOINT/IN", args, "Endpoints to send to, then the input (default stdin)");
    auto* o_scatter =
        app.add_flag("--scatter", scatter, "Deal records round-robin over the endpoints");
    auto* o_broadcast =
        app.add_flag("--broadcast", broadcast, "Send every record to every endpoint");
    auto* o_recv =
        app.add_option("--recv", recv_ep, "Receive on ENDPOINT (bind)")->type_name("ENDPOINT");
    auto* o_pub = app.add_option("--pub", pub_ep, "Publish the input on ENDPOINT (bind)")
                      ->type_name("ENDPOINT");
    auto* o_sub = app.add_option("--sub", sub_ep, "Subscribe to a publisher at ENDPOINT")
                      ->type_name("ENDPOINT");
    auto* o_count =
        app.add_option("--count", count, "Records to receive (0: until stopped)")->type_name("N");
    auto* o_quorum =
        app.add_option("--quorum", quorum, "Records that suffice at the timeout")->type_name("Q");
    auto* o_subs = app.add_option("--subscribers", subscribers,
                                  "Subscribers to wait for before publishing (1)")
                       ->type_name("K");
    app.add_option("--timeout", timeout, "Give up after S seconds (0: never)")->type_name("S");
    auto* o_spool = app.add_option("--spool", spool_dir, "Write each record to its own file in DIR")
                        ->type_name("DIR");
    auto* o_out = app.add_option("-o,--output", out_path,
                                 "Receiving: write the records to FILE, which appears whole once "
                                 "the round is received")
                      ->type_name("FILE")
                      ->excludes(o_spool);
    auto* o_max =
        app.add_option("--max-size", max_size_text, "Refuse records larger than SIZE (8G)")
            ->type_name("SIZE");
    auto* o_reserve =
        app.add_option("--reserve", reserve_text,
                       "Fault in SIZE of memory before listening, for a large first record")
            ->type_name("SIZE");
    auto* o_stream = app.add_flag(
        "--stream", stream,
        "Write large records to stdout as they arrive, before their checksum (see n3-send(1))");
    app.add_option("--hwm", hwm, "Messages queued per peer (receiving 8, sending 1000)")
        ->type_name("N");
    auto* o_key =
        app.add_option("--curve-key", curve_key, "Our CURVE secret key file (n3-keys curve)")
            ->type_name("KEY");
    auto* o_server = app.add_option("--curve-server", curve_server,
                                    "The receiver's CURVE public key (file or N3CURVE-PUBLIC-...)")
                         ->type_name("PUB");
    auto* o_allow =
        app.add_option("--curve-allow", curve_allow, "Admit only the CURVE public keys in FILE")
            ->type_name("FILE");
    app.add_flag("-f,--force", force, "Write records to stdout even when it is a terminal");
    o_recv->excludes(o_pub)
        ->excludes(o_sub)
        ->excludes(o_scatter)
        ->excludes(o_broadcast)
        ->excludes(o_subs);
    o_sub->excludes(o_pub)
        ->excludes(o_scatter)
        ->excludes(o_broadcast)
        ->excludes(o_subs)
        ->excludes(o_allow);
    o_pub->excludes(o_scatter)
        ->excludes(o_broadcast)
        ->excludes(o_count)
        ->excludes(o_quorum)
        ->excludes(o_spool)
        ->excludes(o_max)
        ->excludes(o_reserve)
        ->excludes(o_stream)
        ->excludes(o_server);
    o_stream->excludes(o_spool);
    o_scatter->excludes(o_broadcast);
    o_server->needs(o_key);
    o_allow->needs(o_key);

    return tool.run(argc, argv, [&]() -> int {
        const bool receiving = !recv_ep.empty() || !sub_ep.empty();
        const bool server = !recv_ep.empty() || !pub_ep.empty();
        if (app.count("--hwm") && hwm < 1) throw UsageError("--hwm must be at least 1");
        if (!std::isfinite(timeout) || timeout < 0)
            throw UsageError("--timeout must be 0 or more seconds");
        if (!receiving &&
            (o_count->count() || o_quorum->count() || o_spool->count() || o_out->count() ||
             o_max->count() || o_reserve->count() || o_stream->count()))
            throw UsageError(
                "--count, --quorum, --spool, -o, --stream, --max-size and --reserve are for "
                "--recv and --sub",
                "receive with: n3-send --recv tcp://*:7000 --count N");
        if (o_quorum->count()) {
            if (timeout == 0)
                throw UsageError("--quorum matters only at a timeout", "add --timeout S");
            if (count && quorum > count)
                throw UsageError("--quorum " + std::to_string(quorum) + " is more than --count " +
                                 std::to_string(count));
        } else {
            quorum = count;
        }
        if (!curve_key.empty() && !server && curve_server.empty())
            throw UsageError("--curve-key needs --curve-server PUB (the receiver's public key)");
        if (!curve_key.empty() && server && curve_allow.empty())
            throw UsageError("--curve-key on a listening side needs --curve-allow FILE",
                             "list the clients' N3CURVE-PUBLIC-... lines in FILE");
        if (server && !curve_server.empty())
            throw UsageError(
                "--curve-server is for the connecting side; a listener uses --curve-allow");
        if (!server && !curve_allow.empty())
            throw UsageError("--curve-allow is for the listening side (--recv, --pub)");
        auto notify_warn = [&](const std::string& m) { tool.warn(m); };
        auto notify_verbose = [&](const std::string& m) { tool.verbose(m); };

        std::optional<net::CurveClient> cclient;
        std::optional<net::CurveServer> cserver;
        if (!curve_key.empty()) {
            if (server) {
                cserver.emplace();
                cserver->keys = net::load_secret_key(curve_key);
                cserver->allowed = net::load_allow_list(curve_allow);
            } else {
                cclient.emplace();
                cclient->keys = net::load_secret_key(curve_key);
                cclient->server = net::load_public_key(curve_server);
            }
        }

        if (receiving) {
            if (!args.empty())
                throw UsageError(
                    "unexpected argument '" + args.front() + "' with --" +
                        (recv_ep.empty() ? "sub" : "recv"),
                    "a receiver writes to stdout, -o FILE or --spool DIR and reads no input");
            net::ReceiveOptions ro;
            ro.endpoint = recv_ep.empty() ? sub_ep : recv_ep;
            ro.pattern = recv_ep.empty() ? net::Pattern::sub : net::Pattern::pull;
            ro.count = count;
            ro.quorum = quorum;
            ro.timeout = timeout;
            if (hwm) ro.hwm = hwm;
            ro.max_payload =
                max_size_text.empty() ? kDefaultMaxSize : parse_size("--max-size", max_size_text);
            if (!reserve_text.empty()) {
                ro.reserve = parse_size("--reserve", reserve_text);
                if (ro.reserve > net::kMaxReserve)
                    throw UsageError("--reserve " + reserve_text + " is more than " +
                                         std::to_string(net::kMaxReserve >> 30) + "G",
                                     "a record larger than the reserve still arrives, only "
                                     "the rest of it lands in fresh memory");
            }
            ro.curve_server = cserver ? &*cserver : nullptr;
            ro.curve_client = cclient ? &*cclient : nullptr;
            ro.warn = notify_warn;
            ro.verbose = notify_verbose;
            std::optional<net::Spool> spool;
            // -o FILE: the round's records in one file that appears only when the receiver
            // ends well (a timeout with the quorum met counts); a failure leaves no file.
            std::unique_ptr<Output> file;
            if (!spool_dir.empty())
                spool.emplace(spool_dir);
            else if (!out_path.empty() && out_path != "-")
                file = tool.open_output(out_path, force, false);
            else if (!force && out_path.empty() && is_terminal(1))
                throw UsageError("refusing to write binary records to a terminal",
                                 "redirect the output, use --spool DIR, or force it with -f");
            // Small records that arrive back to back leave in one write; nothing waits
            // in the buffer while the receiver waits for the network.
            // -o FILE takes them as stdout would, into the file's temporary name.
            BatchedFdSink out(file ? file->fd() : 1, file ? out_path : "stdout");
            // A subscriber has one sender, whose failure fails the run anyway: it streams.
            net::StdoutOutlet to_stdout(out, stream || !sub_ep.empty());
            ro.on_idle = [&] { out.flush(); };
            net::RecordOutlet& outlet = spool ? static_cast<net::RecordOutlet&>(*spool) : to_stdout;
            auto st = net::receive_records(ro, outlet, [&](const net::Arrival& a) {
                if (tool.verbosity() > 0)
                    tool.verbose("record " + std::to_string(a.index + 1) +
                                 (a.peer.empty() ? "" : " from " + a.peer) + " (" +
                                 std::to_string(a.preamble.record_size()) + " bytes" +
                                 (a.chunked ? ", chunked" : "") + ")" +
                                 (a.where.empty() ? "" : " -> " + a.where));
            });
            if (st.timed_out && count)
                tool.warn("timed out after " + std::to_string(static_cast<long long>(timeout)) +
                          " s with " + std::to_string(st.received) + " of " +
                          std::to_string(count) + " records; quorum " + std::to_string(quorum) +
                          " met");
            if (file) {
                out.flush();
                file->commit();
            }
            return 0;
        }

        // Sending: ENDPOINT... [IN]; an argument without "://" is the input.
        std::vector<std::string> endpoints;
        std::string input = "-";
        for (size_t i = 0; i < args.size(); ++i) {
            if (args[i].find("://") != std::string::npos) {
                endpoints.push_back(args[i]);
            } else if (i + 1 == args.size()) {
                input = args[i];
            } else {
                throw UsageError("'" + args[i] +
                                     "' is not an endpoint (tcp://HOST:PORT or ipc://PATH)",
                                 "the input file comes last");
            }
        }
        Input in(input);
        if (!pub_ep.empty()) {
            if (!endpoints.empty())
                throw UsageError("--pub publishes on one endpoint; '" + endpoints.front() +
                                 "' is extra");
            net::PublishOptions po;
            po.endpoint = pub_ep;
            po.subscribers = subscribers;
            po.timeout = timeout;
            if (hwm) po.hwm = hwm;
            po.curve = cserver ? &*cserver : nullptr;
            po.warn = notify_warn;
            po.verbose = notify_verbose;
            auto st = net::publish_records(in, po);
            tool.verbose("published " + std::to_string(st.records) + " records (" +
                         std::to_string(st.bytes) + " bytes) to " + std::to_string(st.subscribers) +
                         " subscribers");
            return 0;
        }
        if (endpoints.empty())
            throw UsageError("no endpoint to send to",
                             "n3-send tcp://HOST:PORT [IN], or --recv/--pub/--sub ENDPOINT");
        if (endpoints.size() > 1 && !scatter && !broadcast)
            throw UsageError(std::to_string(endpoints.size()) + " endpoints: say how to use them",
                             "--scatter deals records round-robin, --broadcast sends each to all");
        net::SendOptions so;
        so.endpoints = endpoints;
        so.fanout = scatter     ? net::Fanout::scatter
                    : broadcast ? net::Fanout::broadcast
                                : net::Fanout::single;
        so.timeout = timeout;
        if (hwm) so.hwm = hwm;
        so.curve = cclient ? &*cclient : nullptr;
        so.warn = notify_warn;
        so.verbose = notify_verbose;
        auto st = net::send_records(in, so);
        if (st.records == 0) throw DataError(in.name() + ": no records (empty input)");
        tool.verbose("sent " + std::to_string(st.records) + " records (" +
                     std::to_string(st.bytes) + " bytes)");
        return 0;
    });
}
