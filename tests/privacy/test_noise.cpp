#include "privacy/noise.hpp"

#include <catch2/catch.hpp>
#include <cmath>

using namespace n3::privacy;

TEST_CASE("CSPRNG normals have mean 0 and variance 1, and two draws differ") {
    const size_t n = 200001; // odd: the last Box-Muller pair is cut
    std::vector<double> z = gaussian(n);
    double sum = 0, sq = 0, fourth = 0;
    for (double v : z) sum += v, sq += v * v, fourth += v * v * v * v;
    double mean = sum / double(n), var = sq / double(n) - mean * mean;
    // Standard errors: 1/sqrt(n) = 0.0022 for the mean, sqrt(2/n) = 0.0032 for the variance;
    // the bounds are more than 6 of them.
    CHECK(std::fabs(mean) < 0.015);
    CHECK(std::fabs(var - 1) < 0.02);
    CHECK(std::fabs(fourth / double(n) - 3) < 0.15); // Gaussian kurtosis
    CHECK(gaussian(8) != gaussian(8));
}

TEST_CASE("add_gaussian adds noise of the given standard deviation") {
    std::vector<double> acc(100000, 5.0);
    add_gaussian(acc.data(), acc.size(), 0.5);
    double sum = 0, sq = 0;
    for (double v : acc) sum += v - 5, sq += (v - 5) * (v - 5);
    CHECK(std::fabs(sum / 1e5) < 0.01);
    CHECK(std::sqrt(sq / 1e5) == Approx(0.5).epsilon(0.02));
    std::vector<float> x(1000, 1.0f);
    add_gaussian(x.data(), x.size(), 0.0);
    CHECK(x == std::vector<float>(1000, 1.0f));
}
