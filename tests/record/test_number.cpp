// parse_uint: the one decimal parser behind flags, metadata counts and text formats.
#include "record/number.hpp"

#include <catch2/catch.hpp>
#include <cstdint>

using n3::parse_uint;

TEST_CASE("parse_uint reads plain decimal digits") {
    CHECK(parse_uint("0") == 0u);
    CHECK(parse_uint("7") == 7u);
    CHECK(parse_uint("1234567890") == 1234567890u);
}

TEST_CASE("parse_uint refuses anything but digits") {
    CHECK_FALSE(parse_uint(""));
    CHECK_FALSE(parse_uint("-1"));
    CHECK_FALSE(parse_uint("+1"));
    CHECK_FALSE(parse_uint("-0"));
    CHECK_FALSE(parse_uint(" 1"));
    CHECK_FALSE(parse_uint("1 "));
    CHECK_FALSE(parse_uint("1\n"));
    CHECK_FALSE(parse_uint("0x10"));
    CHECK_FALSE(parse_uint("1e3"));
    CHECK_FALSE(parse_uint("1.0"));
    CHECK_FALSE(parse_uint("12K"));
    CHECK_FALSE(parse_uint(std::string_view("1\0", 2)));
}

TEST_CASE("parse_uint takes leading zeros at their value") {
    CHECK(parse_uint("007") == 7u);
    CHECK(parse_uint("00") == 0u);
    // Length is no limit in itself: only the value is.
    CHECK(parse_uint("000000000000000000000000000042") == 42u);
}

TEST_CASE("parse_uint checks the 64-bit range") {
    CHECK(parse_uint("18446744073709551615") == UINT64_MAX);
    CHECK_FALSE(parse_uint("18446744073709551616")); // max + 1
    CHECK_FALSE(parse_uint("18446744073709551617"));
    CHECK_FALSE(parse_uint("99999999999999999999"));                      // 20 digits, above max
    CHECK(parse_uint("10000000000000000000") == 10000000000000000000ull); // 20 digits, in range
    CHECK_FALSE(parse_uint("36893488147419103232"));                      // 2^65
    CHECK_FALSE(parse_uint("184467440737095516150"));                     // 21 digits
}

TEST_CASE("parse_uint checks the caller's maximum") {
    CHECK(parse_uint("999999999", 999999999) == 999999999u);
    CHECK_FALSE(parse_uint("1000000000", 999999999));
    CHECK(parse_uint("4294967295", UINT32_MAX) == UINT32_MAX);
    CHECK_FALSE(parse_uint("4294967296", UINT32_MAX));
    CHECK(parse_uint("0", 0) == 0u);
    CHECK_FALSE(parse_uint("1", 0));
}
