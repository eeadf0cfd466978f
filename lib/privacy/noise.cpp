// n3/privacy/noise.cpp — standard normals from CSPRNG bytes (Box-Muller), in blocks.
#include "privacy/noise.hpp"

#include "crypto/primitives.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace n3::privacy {

namespace {

// Fills out[0..n) with N(0, 1) draws.
void fill_normal(double* out, size_t n) {
    constexpr size_t kBlock = 512; // normals per call to the CSPRNG
    uint64_t words[kBlock];
    for (size_t done = 0; done < n; done += kBlock) {
        size_t m = std::min(kBlock, n - done);
        size_t pairs = (m + 1) / 2;
        crypto::random_bytes(
            std::span<uint8_t>(reinterpret_cast<uint8_t*>(words), pairs * 2 * sizeof(uint64_t)));
        for (size_t p = 0; p < pairs; ++p) {
            // u1 in (0, 1] so the log is finite; u2 in [0, 1).
            double u1 = (double(words[2 * p] >> 11) + 1) * 0x1.0p-53;
            double u2 = double(words[2 * p + 1] >> 11) * 0x1.0p-53;
            double r = std::sqrt(-2 * std::log(u1));
            out[done + 2 * p] = r * std::cos(2 * M_PI * u2);
            if (2 * p + 1 < m) out[done + 2 * p + 1] = r * std::sin(2 * M_PI * u2);
        }
    }
    sodium_memzero(words, sizeof words);
}

} // namespace

std::vector<double> gaussian(size_t n) {
    std::vector<double> z(n);
    fill_normal(z.data(), n);
    return z;
}

void add_gaussian(double* acc, size_t n, double sd) {
    double z[512];
    for (size_t done = 0; done < n; done += 512) {
        size_t m = std::min<size_t>(512, n - done);
        fill_normal(z, m);
        for (size_t j = 0; j < m; ++j) acc[done + j] += sd * z[j];
    }
}

void add_gaussian(float* x, size_t n, double sd) {
    double z[512];
    for (size_t done = 0; done < n; done += 512) {
        size_t m = std::min<size_t>(512, n - done);
        fill_normal(z, m);
        for (size_t j = 0; j < m; ++j) x[done + j] = float(double(x[done + j]) + sd * z[j]);
    }
}

} // namespace n3::privacy
