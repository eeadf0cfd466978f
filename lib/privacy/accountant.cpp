// n3/privacy/accountant.cpp — the RDP of the sampled Gaussian mechanism in log space (sums of
// exponentials of very different sizes), and the conversions to (epsilon, delta).
#include "privacy/accountant.hpp"

#include "record/error.hpp"

#include <cmath>
#include <cstdio>
#include <limits>

namespace n3::privacy {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// log(exp(a) + exp(b))
double log_add(double a, double b) {
    if (a == -kInf) return b;
    if (b == -kInf) return a;
    double hi = std::max(a, b), lo = std::min(a, b);
    return hi + std::log1p(std::exp(lo - hi));
}

// log(exp(a) - exp(b)), a >= b
double log_sub(double a, double b) {
    if (b == -kInf) return a;
    if (a <= b) return -kInf; // rounding: the difference vanished
    return a + std::log1p(-std::exp(b - a));
}

// log(erfc(x)), also where erfc underflows (the asymptotic series of erfc for large x).
double log_erfc(double x) {
    if (x < 25) return std::log(std::erfc(x));
    double r = 1 / (x * x);
    return -x * x - std::log(x) - 0.5 * std::log(M_PI) +
           std::log1p(-0.5 * r + 0.75 * r * r - 1.875 * r * r * r);
}

// log A_alpha for integer alpha: sum_i binom(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / 2z^2).
double log_a_int(double q, double z, long alpha) {
    double log_a = -kInf;
    for (long i = 0; i <= alpha; ++i) {
        double log_binom = std::lgamma(double(alpha) + 1) - std::lgamma(double(i) + 1) -
                           std::lgamma(double(alpha - i) + 1);
        double s = log_binom + double(i) * std::log(q) + double(alpha - i) * std::log1p(-q) +
                   double(i * i - i) / (2 * z * z);
        log_a = log_add(log_a, s);
    }
    return log_a;
}

// log A_alpha for fractional alpha: the series of Mironov, Talwar, Zhang (2019), section 3.3,
// split at z0 where the two Gaussians' densities cross, summed until both terms are negligible.
double log_a_frac(double q, double z, double alpha) {
    double log_a0 = -kInf, log_a1 = -kInf;
    double z0 = z * z * std::log(1 / q - 1) + 0.5;
    double log_coef = 0; // log |binom(alpha, i)|
    double sign = 1;
    for (long i = 0;; ++i) {
        if (i > 0) {
            double f = (alpha - double(i - 1)) / double(i);
            sign *= f < 0 ? -1 : 1;
            log_coef += std::log(std::fabs(f));
        }
        double j = alpha - double(i);
        double log_t0 = log_coef + double(i) * std::log(q) + j * std::log1p(-q);
        double log_t1 = log_coef + j * std::log(q) + double(i) * std::log1p(-q);
        double log_e0 = std::log(0.5) + log_erfc((double(i) - z0) / (std::sqrt(2.0) * z));
        double log_e1 = std::log(0.5) + log_erfc((z0 - j) / (std::sqrt(2.0) * z));
        double log_s0 = log_t0 + (double(i) * double(i) - double(i)) / (2 * z * z) + log_e0;
        double log_s1 = log_t1 + (j * j - j) / (2 * z * z) + log_e1;
        if (sign > 0) {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        } else {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        }
        if (std::max(log_s0, log_s1) < -30 || i > 100000) break;
    }
    return log_add(log_a0, log_a1);
}

void check_rdp(const Rdp& r, const char* what) {
    if (r.value.size() != kOrders.size())
        throw UsageError(std::string(what) + ": an RDP vector of " +
                         std::to_string(r.value.size()) + " orders, not " +
                         std::to_string(kOrders.size()));
}

void check_delta(double delta) {
    if (!(delta > 0 && delta < 1))
        throw UsageError("delta must be in (0, 1), not " + std::to_string(delta));
}

} // namespace

Rdp& Rdp::operator+=(const Rdp& o) {
    check_rdp(o, "composition");
    for (size_t i = 0; i < value.size(); ++i) value[i] += o.value[i];
    return *this;
}

Rdp& Rdp::operator*=(double steps) {
    for (auto& v : value) v *= steps;
    return *this;
}

std::string Rdp::text() const {
    std::string s;
    char buf[32];
    for (size_t i = 0; i < value.size(); ++i) {
        std::snprintf(buf, sizeof buf, "%s%.17g", i ? "," : "", value[i]);
        s += buf;
    }
    return s;
}

Rdp Rdp::parse(const std::string& text, const std::string& what) {
    Rdp r;
    r.value.clear();
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t comma = text.find(',', pos);
        std::string item = text.substr(pos, comma == std::string::npos ? comma : comma - pos);
        char* end = nullptr;
        double v = std::strtod(item.c_str(), &end);
        if (item.empty() || *end != '\0' || !(v >= 0) || std::isnan(v))
            throw UsageError(what + ": '" + item + "' is not a non-negative number");
        r.value.push_back(v);
        if (comma == std::string::npos) break;
        pos = comma + 1;
    }
    if (r.value.size() != kOrders.size())
        throw UsageError(what + ": " + std::to_string(r.value.size()) +
                         " values, not one per RDP "
                         "order (" +
                         std::to_string(kOrders.size()) + ")");
    return r;
}

double sampled_gaussian_rdp(double q, double z, double alpha) {
    if (!(q >= 0 && q <= 1)) throw UsageError("the sampling rate must be in [0, 1]");
    if (!(z > 0) || !std::isfinite(z)) throw UsageError("the noise multiplier must be positive");
    if (!(alpha > 1)) throw UsageError("RDP orders are above 1");
    if (q == 0) return 0;
    if (q == 1) return alpha / (2 * z * z);
    double log_a = alpha == std::floor(alpha) && alpha < 1e6 ? log_a_int(q, z, long(alpha))
                                                             : log_a_frac(q, z, alpha);
    return log_a / (alpha - 1);
}

Rdp gaussian_rdp(double q, double z) {
    Rdp r;
    for (size_t i = 0; i < kOrders.size(); ++i) r.value[i] = sampled_gaussian_rdp(q, z, kOrders[i]);
    return r;
}

Spent epsilon(const Rdp& r, double delta) {
    check_rdp(r, "epsilon");
    check_delta(delta);
    Spent best{kInf, 0};
    for (size_t i = 0; i < kOrders.size(); ++i) {
        double a = kOrders[i];
        double e = r.value[i] + std::log((a - 1) / a) - (std::log(delta) + std::log(a)) / (a - 1);
        if (e < best.epsilon) best = {std::max(e, 0.0), a};
    }
    return best;
}

double epsilon_classic(const Rdp& r, double delta) {
    check_rdp(r, "epsilon");
    check_delta(delta);
    double best = kInf;
    for (size_t i = 0; i < kOrders.size(); ++i)
        best = std::min(best, r.value[i] - std::log(delta) / (kOrders[i] - 1));
    return best;
}

} // namespace n3::privacy
