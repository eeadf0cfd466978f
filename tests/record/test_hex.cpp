// to_hex / from_hex: the one spelling of hashes, fingerprints and group ids.
#include "record/hex.hpp"

#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <sodium.h>
#include <string>
#include <vector>

using namespace n3;

TEST_CASE("to_hex writes two lower-case digits a byte") {
    std::vector<uint8_t> b{0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    CHECK(to_hex(b) == "00017f80abff");
    CHECK(to_hex(std::vector<uint8_t>{}).empty());
}

TEST_CASE("from_hex fills exactly the bytes asked for") {
    std::array<uint8_t, 3> out{};
    CHECK(from_hex("00aBfF", out));
    CHECK(out == std::array<uint8_t, 3>{0x00, 0xab, 0xff});
    CHECK_FALSE(from_hex("00abf", out));    // short
    CHECK_FALSE(from_hex("00abff00", out)); // long
    CHECK_FALSE(from_hex("00abfg", out));   // not a digit
    CHECK_FALSE(from_hex("00ab f", out));
    CHECK_FALSE(from_hex("0xabff", out));
    CHECK_FALSE(from_hex(std::string_view("00ab\0f", 6), out));
}

TEST_CASE("from_hex without a size takes any even number of digits") {
    CHECK(from_hex("") == std::vector<uint8_t>{});
    CHECK(from_hex("0aff") == std::vector<uint8_t>{0x0a, 0xff});
    CHECK_FALSE(from_hex("0af"));
    CHECK_FALSE(from_hex("zz"));
}

TEST_CASE("from_hex agrees with sodium_hex2bin on every character pair") {
    for (int a = 0; a < 256; ++a)
        for (int b = 0; b < 256; ++b) {
            char text[2] = {static_cast<char>(a), static_cast<char>(b)};
            uint8_t mine = 0, theirs = 0;
            size_t len = 0;
            bool ok = from_hex(std::string_view(text, 2), std::span<uint8_t>(&mine, 1));
            bool sodium_ok =
                sodium_hex2bin(&theirs, 1, text, 2, nullptr, &len, nullptr) == 0 && len == 1;
            REQUIRE(ok == sodium_ok);
            if (ok) REQUIRE(mine == theirs);
        }
}

TEST_CASE("to_hex and from_hex round-trip") {
    std::vector<uint8_t> b(256);
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i);
    CHECK(from_hex(to_hex(b)) == b);
}
