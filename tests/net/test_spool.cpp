#include "net/spool.hpp"
#include "record/error.hpp"
#include "record/format.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <set>
#include <unistd.h>

using namespace n3;
using namespace n3::net;

namespace {

std::set<std::string> list(const std::string& dir) {
    std::set<std::string> names;
    DIR* d = opendir(dir.c_str());
    REQUIRE(d != nullptr);
    while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') names.insert(e->d_name);
    closedir(d);
    return names;
}

} // namespace

TEST_CASE("a spool holds one whole file per record, named in arrival order") {
    char tmpl[] = "/tmp/n3-spool-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    std::string dir = tmpl;
    Spool spool(dir + "/");
    Bytes a = encode_record(RecordType::shard, Bytes(100, 1));
    Bytes b = encode_record(RecordType::update, Bytes(5000, 2));
    std::vector<ByteView> fa = {ByteView(a).first(10), ByteView(a).subspan(10)};
    std::vector<ByteView> fb = {ByteView(b)};
    std::string pa = spool.write(fa);
    std::string pb = spool.write(fb);
    CHECK(pa < pb);
    CHECK(pa.rfind(dir + "/", 0) == 0);
    CHECK(pa.size() > 3);
    CHECK(pa.substr(pa.size() - 3) == ".n3");
    CHECK(read_file(pa) == a);
    CHECK(read_file(pb) == b);
    CHECK(list(dir).size() == 2); // no temporary files left behind
    (void)!std::system(("rm -rf '" + dir + "'").c_str());
}

TEST_CASE("a spool must be a writable directory") {
    CHECK_THROWS_AS(Spool("/nonexistent/spool"), EnvError);
    CHECK_THROWS_WITH(Spool("/etc/hostname"), Catch::Contains("not a directory"));
}
