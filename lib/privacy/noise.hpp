// n3/privacy/noise.hpp — Gaussian noise for differential privacy, from the operating system's
// CSPRNG (libsodium's randombytes, through lib/crypto/primitives), never from a seeded
// training generator: whoever knows a seed could subtract seeded noise again.
//
//   add_gaussian(acc.data(), acc.size(), sd);   // acc[j] += N(0, sd^2), independently
//   std::vector<double> z = gaussian(n);        // n draws of N(0, 1)
//
// Each normal comes from two 53-bit uniforms (Box-Muller, both outputs used). Thread-safe.
// Failures: EnvError when libsodium cannot initialise.
#pragma once

#include <cstddef>
#include <vector>

namespace n3::privacy {

void add_gaussian(double* acc, size_t n, double sd);
void add_gaussian(float* x, size_t n, double sd);
std::vector<double> gaussian(size_t n);

} // namespace n3::privacy
