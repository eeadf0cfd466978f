// PageBuffer: anonymous memory that arrives zeroed, grows without copying, and moves.
#include "record/pages.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <new>
#include <utility>

using namespace n3;

TEST_CASE("PageBuffer is zeroed and writable") {
    for (Commit c : {Commit::on_touch, Commit::up_front}) {
        PageBuffer b(size_t(3) << 20, c); // past the huge-page threshold
        REQUIRE(b.size() == size_t(3) << 20);
        REQUIRE(b.data() != nullptr);
        bool zero = true;
        for (size_t i = 0; i < b.size(); i += 4096) zero = zero && b.data()[i] == 0;
        CHECK(zero);
        b.data()[b.size() - 1] = 7;
        CHECK(b.view().back() == 7);
    }
}

TEST_CASE("PageBuffer of no bytes maps nothing") {
    PageBuffer b(0);
    CHECK(b.size() == 0);
    CHECK(b.data() == nullptr);
    CHECK(b.view().empty());
}

TEST_CASE("PageBuffer grows from empty and keeps its bytes") {
    PageBuffer b(Commit::up_front);
    b.grow(5000);
    REQUIRE(b.size() == 5000);
    std::memset(b.data(), 0xab, b.size());
    b.populate(0, 4096);
    b.grow(size_t(16) << 20);
    REQUIRE(b.size() == size_t(16) << 20);
    CHECK(b.data()[0] == 0xab);
    CHECK(b.data()[4999] == 0xab);
    CHECK(b.data()[5000] == 0); // new bytes are zero
    b.populate(size_t(8) << 20, size_t(8) << 20);
    b.data()[b.size() - 1] = 1;
    b.grow(100); // never shrinks
    CHECK(b.size() == size_t(16) << 20);
}

TEST_CASE("PageBuffer moves") {
    PageBuffer a(4096);
    a.data()[0] = 9;
    PageBuffer b(std::move(a));
    CHECK(a.data() == nullptr);
    CHECK(a.size() == 0);
    CHECK(b.data()[0] == 9);
    PageBuffer c(100);
    c = std::move(b);
    CHECK(c.size() == 4096);
    CHECK(c.data()[0] == 9);
}

TEST_CASE("PageBuffer reports memory it cannot map") {
    CHECK_THROWS(PageBuffer(size_t(1) << 62, Commit::up_front));
    PageBuffer b(Commit::up_front);
    CHECK_THROWS_AS(b.grow(size_t(1) << 62), std::bad_alloc);
}
