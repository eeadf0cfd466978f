// n3/merge/kernels.cpp — the element loops (see kernels.hpp), built with -O3 and per-CPU clones;
// eight fixed lanes and no FMA contraction keep every clone's bits the same.
#include "merge/kernels.hpp"

#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__)
#define N3_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define N3_CLONES
#endif

namespace n3::merge::kernel {

namespace {
constexpr size_t kLanes = 8;

inline uint32_t float_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

// Combines the lanes pairwise in a fixed tree, so the order never depends on the CPU.
inline double combine(const double* l) {
    return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}
} // namespace

N3_CLONES void scale(double* __restrict acc, const float* __restrict x, double w, size_t n) {
    for (size_t j = 0; j < n; ++j) acc[j] = w * double(x[j]);
}

N3_CLONES void axpy(double* __restrict acc, const float* __restrict x, double w, size_t n) {
    for (size_t j = 0; j < n; ++j) acc[j] += w * double(x[j]);
}

N3_CLONES bool store(float* __restrict out, const double* __restrict acc, double s,
                     const float* __restrict base, size_t n) {
    uint32_t bad = 0;
    if (base) {
        for (size_t j = 0; j < n; ++j) {
            float v = float(double(base[j]) + s * acc[j]);
            out[j] = v;
            bad |= uint32_t((float_bits(v) & 0x7f800000u) == 0x7f800000u);
        }
    } else {
        for (size_t j = 0; j < n; ++j) {
            float v = float(s * acc[j]);
            out[j] = v;
            bad |= uint32_t((float_bits(v) & 0x7f800000u) == 0x7f800000u);
        }
    }
    return bad == 0;
}

N3_CLONES double sum_squares(const float* __restrict x, double w, size_t n) {
    double lane[kLanes] = {};
    size_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (size_t l = 0; l < kLanes; ++l) {
            double v = w * double(x[j + l]);
            lane[l] += v * v;
        }
    for (size_t l = 0; j < n; ++j, ++l) {
        double v = w * double(x[j]);
        lane[l] += v * v;
    }
    return combine(lane);
}

N3_CLONES double squared_distance(const float* __restrict a, double wa, const float* __restrict b,
                                  double wb, size_t n) {
    double lane[kLanes] = {};
    size_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (size_t l = 0; l < kLanes; ++l) {
            double d = wa * double(a[j + l]) - wb * double(b[j + l]);
            lane[l] += d * d;
        }
    for (size_t l = 0; j < n; ++j, ++l) {
        double d = wa * double(a[j]) - wb * double(b[j]);
        lane[l] += d * d;
    }
    return combine(lane);
}

N3_CLONES void sort_columns(double* rows, size_t n, size_t stride, size_t len) {
    for (size_t round = 0; round < n; ++round)
        for (size_t i = round % 2; i + 1 < n; i += 2) {
            double* __restrict a = rows + i * stride;
            double* __restrict b = rows + (i + 1) * stride;
            for (size_t j = 0; j < len; ++j) {
                double x = a[j], y = b[j];
                a[j] = y < x ? y : x;
                b[j] = y < x ? x : y;
            }
        }
}

N3_CLONES bool all_finite(const float* __restrict x, size_t n) {
    uint32_t bad = 0;
    for (size_t j = 0; j < n; ++j) bad |= uint32_t((float_bits(x[j]) & 0x7f800000u) == 0x7f800000u);
    return bad == 0;
}

} // namespace n3::merge::kernel
