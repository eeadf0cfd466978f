// n3/privacy/accountant.hpp — the privacy cost of the (subsampled) Gaussian mechanism, in Rényi
// differential privacy (Mironov 2017), and its conversion to (epsilon, delta).
//
//   Rdp r = gaussian_rdp(q, z);            // one step: sampling rate q, noise multiplier z
//   r *= 50;  r += other;                  // composition: RDP adds up, order by order
//   Spent s = epsilon(r, 1e-5);            // s.epsilon, s.order (the order that gave it)
//   double e = epsilon_classic(r, 1e-5);   // the conversion TF Privacy's first tables used
//
// The RDP of the sampled Gaussian mechanism at each order follows Mironov, Talwar, Zhang,
// "Rényi Differential Privacy of the Sampled Gaussian Mechanism" (2019): the exact binomial sum
// for integer orders, the two-sided series with erfc terms for fractional ones (q = 1 is the
// plain Gaussian, alpha / (2 z^2)). Orders are 1.25 to 256 (kOrders). epsilon() converts with
// Balle et al. 2020 / Canonne, Kamath, Steinke 2020, eps = rdp + log((a-1)/a) - (log delta +
// log a) / (a-1), minimised over the orders; epsilon_classic() with Mironov's eps = rdp -
// log(delta) / (a-1). Pure C++, no libtorch, no randomness.
//
// Failures: UsageError for q outside [0, 1], z not positive, delta outside (0, 1), or RDP
// vectors of another length.
#pragma once

#include <array>
#include <string>
#include <vector>

namespace n3::privacy {

inline constexpr std::array<double, 71> kOrders = {
    1.25, 1.5, 1.75, 2,  2.25, 2.5, 3,  3.5, 4,  4.5, 5,  6,  7,  8,  9,  10,  11, 12,
    13,   14,  15,   16, 17,   18,  19, 20,  21, 22,  23, 24, 25, 26, 27, 28,  29, 30,
    31,   32,  33,   34, 35,   36,  37, 38,  39, 40,  41, 42, 43, 44, 45, 46,  47, 48,
    49,   50,  51,   52, 53,   54,  55, 56,  57, 58,  59, 60, 61, 62, 63, 128, 256};

// RDP at every order of kOrders.
struct Rdp {
    std::vector<double> value = std::vector<double>(kOrders.size(), 0.0);
    Rdp& operator+=(const Rdp& o);
    Rdp& operator*=(double steps);
    // "v1,v2,...": every order's value, for a record's metadata; parse() throws UsageError
    // naming `what` for text that is not kOrders.size() non-negative numbers.
    std::string text() const;
    static Rdp parse(const std::string& text, const std::string& what);
};

// RDP at order `alpha` of the Gaussian mechanism with noise multiplier z (noise std over the
// sensitivity), applied to a Poisson sample of rate q.
double sampled_gaussian_rdp(double q, double z, double alpha);
Rdp gaussian_rdp(double q, double z);

struct Spent {
    double epsilon = 0;
    double order = 0;
};
Spent epsilon(const Rdp& r, double delta);
double epsilon_classic(const Rdp& r, double delta);

} // namespace n3::privacy
