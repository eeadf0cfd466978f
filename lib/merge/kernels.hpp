// n3/merge/kernels.hpp — the element loops of n3-merge, written for the compiler to vectorise.
//
// Every kernel works on one contiguous chunk of one tensor. Sums over elements use eight
// fixed lanes combined in a fixed order, and no kernel contracts a*b+c into an FMA, so the
// result is the same bits whichever CPU clone (AVX-512, AVX2, baseline) runs. The kernels
// never fail; the callers check the flags they return.
#pragma once

#include <cstddef>
#include <cstdint>

namespace n3::merge::kernel {

// acc[j] = w * x[j]
void scale(double* acc, const float* x, double w, size_t n);
// acc[j] += w * x[j]
void axpy(double* acc, const float* x, double w, size_t n);
// out[j] = float(base[j] + s * acc[j]) (base may be null: out[j] = float(s * acc[j]));
// returns true when every out[j] is finite.
bool store(float* out, const double* acc, double s, const float* base, size_t n);
// sum of (w * x[j])^2
double sum_squares(const float* x, double w, size_t n);
// sum of (wa * a[j] - wb * b[j])^2
double squared_distance(const float* a, double wa, const float* b, double wb, size_t n);
// Sorts each column j < len of the n rows rows[i * stride + j] ascending, with an odd-even
// transposition network applied to whole rows (vectorised across columns). For small n.
void sort_columns(double* rows, size_t n, size_t stride, size_t len);
// true when every x[j] is finite
bool all_finite(const float* x, size_t n);

} // namespace n3::merge::kernel
