// ristretto255 known answers (RFC 9496 appendix A, via libsodium 1.0.18) and the 1.0.18 quirks
// that n3_crypto's own checks must cover.
#include "crypto/primitives.hpp"
#include "record/hex.hpp"

#include <catch2/catch.hpp>
#include <cstring>
#include <sodium.h>
#include <string>

using namespace n3::crypto;

namespace {

std::array<uint8_t, 32> from_hex32(const std::string& h) {
    std::array<uint8_t, 32> a{};
    size_t len = 0;
    REQUIRE(sodium_hex2bin(a.data(), 32, h.data(), h.size(), nullptr, &len, nullptr) == 0);
    REQUIRE(len == 32);
    return a;
}

// RFC 9496 A.1: encodings of [0]B .. [15]B.
const char* kMultiples[16] = {
    "0000000000000000000000000000000000000000000000000000000000000000",
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76",
    "6a493210f7499cd17fecb510ae0cea23a110e8d5b901f8acadd3095c73a3b919",
    "94741f5d5d52755ece4f23f044ee27d5d1ea1e2bd196b462166b16152a9d0259",
    "da80862773358b466ffadfe0b3293ab3d9fd53c5ea6c955358f568322daf6a57",
    "e882b131016b52c1d3337080187cf768423efccbb517bb495ab812c4160ff44e",
    "f64746d3c92b13050ed8d80236a7f0007c3b3f962f5ba793d19a601ebb1df403",
    "44f53520926ec81fbd5a387845beb7df85a96a24ece18738bdcfa6a7822a176d",
    "903293d8f2287ebe10e2374dc1a53e0bc887e592699f02d077d5263cdd55601c",
    "02622ace8f7303a31cafc63f8fc48fdc16e1c8c8d234b2f0d6685282a9076031",
    "20706fd788b2720a1ed2a5dad4952b01f413bcf0e7564de8cdc816689e2db95f",
    "bce83f8ba5dd2fa572864c24ba1810f9522bc6004afe95877ac73241cafdab42",
    "e4549ee16b9aa03099ca208c67adafcafa4c3f3e4e5303de6026e3ca8ff84460",
    "aa52e000df2e16f55fb1032fc33bc42742dad6bd5a8fc0be0167436c5948501f",
    "46376b80f409b29dc2b5f6f0c52591990896e5716f41477cd30085ab7f10301e",
    "e0c418f7c8d9c4cdd7395b93ea124f3ad99021bb681dfc3302a9d99a2e53e64e",
};

// RFC 9496 A.2: invalid encodings.
const char* kBad[] = {
    // non-canonical field encodings
    "00ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "f3ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    // negative field elements
    "0100000000000000000000000000000000000000000000000000000000000000",
    "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "ed57ffd8c914fb201471d1c3d245ce3c746fcbe63a3679d51b6a516ebebe0e20",
    "c34c4e1826e5d403b78e246e88aa051c36ccf0aafebffe137d148a2bf9104562",
    "c940e5a4404157cfb1628b108db051a8d439e1a421394ec4ebccb9ec92a8ac78",
    "47cfc5497c53dc8e61c91d17fd626ffb1c49e2bca94eed052281b510b1117a24",
    "f1c6165d33367351b0da8f6e4511010c68174a03b6581212c71c0e1d026c3c72",
    "87260f7a2f12495118360f02c26a470f450dadf34a413d21042b43b9d93e1309",
    // non-square x^2
    "26948d35ca62e643e26a83177332e6b6afeb9d08e4268b650f1f5bbd8d81d371",
    "4eac077a713c57b4f4397629a4145982c661f48044dd3f96427d40b147d9742f",
    "de6a7b00deadc788eb6b6c8d20c0ae96c2f2019078fa604fee5b87d6e989ad7b",
    "bcab477be20861e01e4a0e295284146a510150d9817763caf1a6f4b422d67042",
    "2a292df7e32cababbd9de088d1d1abec9fc0440f637ed2fba145094dc14bea08",
    "f4a9e534fc0d216c44b218fa0c42d99635a0127ee2e53c712f70609649fdff22",
    "8268436f8c4126196cf64b3c7ddbda90746a378625f9813dd9b8457077256731",
    "2810e5cbc2cc4d4eece54f61c6f69758e289aa7ab440b3cbeaa21995c2f4232b",
    // negative xy value
    "3eb858e78f5a7254d8c9731174a94f76755fd3941c0ac93735c07ba14579630e",
    "a45fdc55c76448c049a1ab33f17023edfb2be3581e9c7aade8a6125215e04220",
    "d483fe813c6ba647ebbfd3ec41adca1c6130c2beeee9d9bf065c8d151c5f396e",
    "8a2e1d30050198c65a54483123960ccc38aef6848e1ec8f5f780e8523769ba32",
    "32888462f8b486c68ad7dd9610be5192bbeaf3b443951ac1a8118419d9fa097b",
    "227142501b9d4355ccba290404bde41575b037693cef1f438c47f8fbf35d1165",
    "5c37cc491da847cfeb9281d407efc41e15144c876e0170b499a96a22ed31e01e",
    "445425117cb8c90edcbc7c1cc0e74f747f2c1efa5630a967c64f287792a48a4b",
    // s = -1, which causes y = 0
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
};

// RFC 9496 A.3: from_hash (the 64-byte inputs are the SHA-512 digests the RFC lists).
const char* kHashIn[7] = {
    "5d1be09e3d0c82fc538112490e35701979d99e06ca3e2b5b54bffe8b4dc772c14d98b696a1bbfb5ca32c436cc61c16"
    "563790306c79eaca7705668b47dffe5bb6",
    "f116b34b8f17ceb56e8732a60d913dd10cce47a6d53bee9204be8b44f6678b270102a56902e2488c46120e9276cfe5"
    "4638286b9e4b3cdb470b542d46c2068d38",
    "8422e1bbdaab52938b81fd602effb6f89110e1e57208ad12d9ad767e2e25510c27140775f9337088b982d83d7fcf0b"
    "2fa1edffe51952cbe7365e95c86eaf325c",
    "ac22415129b61427bf464e17baee8db65940c233b98afce8d17c57beeb7876c2150d15af1cb1fb824bbd14955f2b57"
    "d08d388aab431a391cfc33d5bafb5dbbaf",
    "165d697a1ef3d5cf3c38565beefcf88c0f282b8e7dbd28544c483432f1cec7675debea8ebb4e5fe7d6f6e5db15f155"
    "87ac4d4d4a1de7191e0c1ca6664abcc413",
    "a836e6c9a9ca9f1e8d486273ad56a78c70cf18f0ce10abb1c7172ddd605d7fd2979854f47ae1ccf204a33102095b42"
    "00e5befc0465accc263175485f0e17ea5c",
    "2cdc11eaeb95daf01189417cdddbf95952993aa9cb9c640eb5058d09702c74622c9965a697a3b345ec24ee56335b55"
    "6e677b30e6f90ac77d781064f866a3c982",
};
const char* kHashOut[7] = {
    "3066f82a1a747d45120d1740f14358531a8f04bbffe6a819f86dfe50f44a0a46",
    "f26e5b6f7d362d2d2a94c5d0e7602cb4773c95a2e5c31a64f133189fa76ed61b",
    "006ccd2a9e6867e6a2c5cea83d3302cc9de128dd2a9a57dd8ee7b9d7ffe02826",
    "f8f0c87cf237953c5890aec3998169005dae3eca1fbb04548c635953c817f92a",
    "ae81e7dedf20a497e10c304a765c1767a42d6e06029758d2d7e8ef7cc4c41179",
    "e2705652ff9f5e44d3e841bf1c251cf7dddb77d140870d1ab2ed64f1a9ce8628",
    "80bd07262511cdde4863f8a7434cef696750681cb9510eea557088f76d9e5065",
};

// l, the group order, little-endian.
const Scalar kL = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                   0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                   0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};

} // namespace

TEST_CASE("RFC 9496 A.1: small multiples of the generator") {
    init();
    Scalar n{};
    for (int i = 0; i < 16; ++i) {
        n[0] = static_cast<uint8_t>(i);
        Point want = from_hex32(kMultiples[i]);
        if (i == 0) {
            Point p;
            CHECK(crypto_scalarmult_ristretto255_base(p.data(), n.data()) == -1); // identity result
            CHECK_FALSE(point_valid(want));
            CHECK_THROWS(base_mul(n));
            continue;
        }
        CHECK(base_mul(n) == want);
        CHECK(point_valid(want));
        // and by repeated addition
        Point sum = from_hex32(kMultiples[1]);
        for (int k = 1; k < i; ++k) sum = add(sum, from_hex32(kMultiples[1]));
        CHECK(sum == want);
    }
}

TEST_CASE("RFC 9496 A.2: invalid encodings are rejected") {
    init();
    for (const char* h : kBad) {
        INFO(h);
        Point p = from_hex32(h);
        CHECK(crypto_core_ristretto255_is_valid_point(p.data()) == 0);
        CHECK_FALSE(point_valid(p));
        Point out;
        CHECK_FALSE(mul(out, from_hex32(kMultiples[3]), p));
    }
}

TEST_CASE("RFC 9496 A.3: from_hash") {
    init();
    for (int i = 0; i < 7; ++i) {
        uint8_t in[64];
        size_t len = 0;
        REQUIRE(sodium_hex2bin(in, 64, kHashIn[i], 128, nullptr, &len, nullptr) == 0);
        Point p;
        REQUIRE(crypto_core_ristretto255_from_hash(p.data(), in) == 0);
        CHECK(n3::to_hex(p) == kHashOut[i]);
    }
}

TEST_CASE("libsodium 1.0.18 quirks are covered by our own checks") {
    init();
    Point identity{};
    // is_valid_point accepts the identity; point_valid must not.
    CHECK(crypto_core_ristretto255_is_valid_point(identity.data()) == 1);
    CHECK_FALSE(point_valid(identity));
    // scalarmult returns -1 for an identity result (scalar 0 or l).
    Point B = from_hex32(kMultiples[1]), out;
    CHECK(crypto_scalarmult_ristretto255(out.data(), kL.data(), B.data()) == -1);
    CHECK_FALSE(mul(out, kL, B));
    // Scalars are not reduced and the top bit is ignored: (l+1)B == B, and 2^255 + 1 acts as 1.
    Scalar l1 = kL;
    l1[0] = static_cast<uint8_t>(l1[0] + 1);
    CHECK(base_mul(l1) == B);
    Scalar top{};
    top[0] = 1;
    top[31] = 0x80;
    CHECK(base_mul(top) == B);
    // ... so canonicity is ours to check.
    CHECK_FALSE(scalar_canonical(kL));
    CHECK_FALSE(scalar_canonical(l1));
    CHECK_FALSE(scalar_canonical(top));
    Scalar lm1 = kL;
    lm1[0] = static_cast<uint8_t>(lm1[0] - 1);
    CHECK(scalar_canonical(lm1));
    CHECK(scalar_valid(lm1));
    Scalar zero{};
    CHECK(scalar_canonical(zero));
    CHECK_FALSE(scalar_valid(zero));
}

TEST_CASE("Schnorr signatures reject identity U, non-canonical z and wrong keys") {
    init();
    Secret y(32);
    scalar_random({y.data(), 32});
    Point Y = base_mul(y.view());
    uint8_t msg[5] = {1, 2, 3, 4, 5};
    Signature s = schnorr_sign(y, Y, msg);
    CHECK(schnorr_verify(Y, msg, s));
    msg[0] ^= 1;
    CHECK_FALSE(schnorr_verify(Y, msg, s));
    msg[0] ^= 1;
    // z + l is the same scalar mod l but not canonical: must be rejected (malleability).
    Signature m = s;
    unsigned carry = 0;
    for (size_t i = 0; i < 32; ++i) {
        unsigned v = m[32 + i] + kL[i] + carry;
        m[32 + i] = static_cast<uint8_t>(v);
        carry = v >> 8;
    }
    if (carry == 0) CHECK_FALSE(schnorr_verify(Y, msg, m));
    // identity U
    Signature id = s;
    std::memset(id.data(), 0, 32);
    CHECK_FALSE(schnorr_verify(Y, msg, id));
    // zero z
    Signature z0 = s;
    std::memset(z0.data() + 32, 0, 32);
    CHECK_FALSE(schnorr_verify(Y, msg, z0));
    // identity key
    CHECK_FALSE(schnorr_verify(Point{}, msg, s));
    // another key
    Secret y2(32);
    scalar_random({y2.data(), 32});
    CHECK_FALSE(schnorr_verify(base_mul(y2.view()), msg, s));
    // hedged: two signatures of one message differ, both verify
    Signature s2 = schnorr_sign(y, Y, msg);
    CHECK(s2 != s);
    CHECK(schnorr_verify(Y, msg, s2));
}

TEST_CASE("hash personalisation separates domains") {
    uint8_t data[3] = {1, 2, 3};
    CHECK(Hasher("n3/v1/a").part(data).digest() != Hasher("n3/v1/b").part(data).digest());
    // length prefixes keep ("ab","c") and ("a","bc") apart
    CHECK(Hasher("n3/v1/a").part("ab").part("c").digest() !=
          Hasher("n3/v1/a").part("a").part("bc").digest());
}
