#include "privacy/accountant.hpp"
#include "record/error.hpp"

#include <catch2/catch.hpp>
#include <cmath>

using namespace n3;
using namespace n3::privacy;

namespace {

// Rounds to two significant digits, as the published tables are compared.
double sig2(double x) {
    double e = std::floor(std::log10(std::fabs(x)));
    double f = std::pow(10.0, e - 1);
    return std::round(x / f) * f;
}

double dp_sgd_classic(double n, double batch, double z, double epochs, double delta) {
    Rdp r = gaussian_rdp(batch / n, z);
    r *= std::ceil(epochs * n / batch);
    return epsilon_classic(r, delta);
}

} // namespace

TEST_CASE("the plain Gaussian mechanism: alpha / (2 z^2) at every order") {
    Rdp r = gaussian_rdp(1.0, 2.0);
    for (size_t i = 0; i < kOrders.size(); ++i)
        CHECK(r.value[i] == Approx(kOrders[i] / 8.0).epsilon(1e-12));
    CHECK(gaussian_rdp(0.0, 1.0).value[5] == 0.0);
}

TEST_CASE("integer and fractional orders agree where they meet") {
    // The fractional series at alpha = 3 +- tiny must approach the exact binomial sum at 3.
    for (double q : {0.01, 0.1, 0.5})
        for (double z : {0.8, 1.1, 4.0}) {
            INFO("q " << q << " z " << z);
            double exact = sampled_gaussian_rdp(q, z, 3.0);
            CHECK(sampled_gaussian_rdp(q, z, 3.0 + 1e-7) == Approx(exact).epsilon(1e-4));
            CHECK(sampled_gaussian_rdp(q, z, 2.5) < exact); // RDP grows with the order
            CHECK(sampled_gaussian_rdp(q, z, 2.5) > sampled_gaussian_rdp(q, z, 2.0));
            // Subsampling amplifies privacy: never more than the plain mechanism.
            CHECK(exact <= 3.0 / (2 * z * z));
        }
}

TEST_CASE("TensorFlow Privacy's published DP-SGD figures, to 2 significant digits") {
    // tensorflow/privacy README (tutorials, "Select Parameters"): MNIST, N = 60000, batch 256,
    // delta = 1e-5, epsilon from compute_rdp and the conversion eps = rdp - log(delta)/(a-1).
    CHECK(sig2(dp_sgd_classic(60000, 256, 1.1, 60, 1e-5)) == Approx(3.0)); // published 3.01
    CHECK(sig2(dp_sgd_classic(60000, 256, 1.3, 15, 1e-5)) == Approx(1.2)); // published 1.19
    CHECK(sig2(dp_sgd_classic(60000, 256, 0.7, 45, 1e-5)) == Approx(7.1)); // published 7.10
}

TEST_CASE("Abadi et al. 2016: q = 0.01, sigma = 4, 10000 steps, delta 1e-5 gives about 1.26") {
    Rdp r = gaussian_rdp(0.01, 4.0);
    r *= 10000;
    CHECK(sig2(epsilon_classic(r, 1e-5)) == Approx(1.3));
}

TEST_CASE("the tighter conversion never exceeds the classic one, and composition adds") {
    Rdp one = gaussian_rdp(0.1, 1.0);
    Rdp fifty = one;
    fifty *= 50;
    Rdp sum;
    for (int i = 0; i < 50; ++i) sum += one;
    for (size_t i = 0; i < kOrders.size(); ++i)
        CHECK(sum.value[i] == Approx(fifty.value[i]).epsilon(1e-12));
    Spent s = epsilon(fifty, 1e-5);
    CHECK(s.epsilon < epsilon_classic(fifty, 1e-5));
    CHECK(s.epsilon > 0.5 * epsilon_classic(fifty, 1e-5));
    CHECK(s.order > 1);
    // More rounds spend more; a smaller delta costs more epsilon.
    Rdp more = one;
    more *= 51;
    CHECK(epsilon(more, 1e-5).epsilon > s.epsilon);
    CHECK(epsilon(fifty, 1e-6).epsilon > s.epsilon);
}

TEST_CASE("RDP vectors round-trip through metadata text, and bad text and bad values are refused") {
    Rdp r = gaussian_rdp(0.3, 1.7);
    r *= 7;
    Rdp back = Rdp::parse(r.text(), "dp_rdp");
    CHECK(back.value == r.value);
    CHECK_THROWS_AS(Rdp::parse("1,2,3", "dp_rdp"), UsageError);
    CHECK_THROWS_AS(Rdp::parse("", "dp_rdp"), UsageError);
    std::string t = r.text();
    CHECK_THROWS_AS(Rdp::parse(t + ",", "dp_rdp"), UsageError);
    CHECK_THROWS_AS(Rdp::parse("-1" + t.substr(t.find(',')), "dp_rdp"), UsageError);
    CHECK_THROWS_AS(sampled_gaussian_rdp(1.5, 1, 2), UsageError);
    CHECK_THROWS_AS(sampled_gaussian_rdp(0.5, 0, 2), UsageError);
    CHECK_THROWS_AS(epsilon(r, 0), UsageError);
    CHECK_THROWS_AS(epsilon(r, 1), UsageError);
}
