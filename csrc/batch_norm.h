// Batch normalisation's passes over the data, per channel, in training mode.
//
// Notation as in tinyae/kernels/numpy_kernels.py: x is viewed as (N, C, L) (L = H*W, or 1 for an
// (N, C) input), C-contiguous; statistics are per channel c over its M = N*L values.
//
//   forward:   mean = sum(x) / M        var = sum((x - mean)^2) / M      (biased)
//              inv_std = 1 / sqrt(var + eps)
//              y = (x - mean) * inv_std * w + b                  (w = 1, b = 0 when absent)
//   backward:  gb = sum(gy)             gw = inv_std * sum(gy * (x - mean))
//              gx = inv_std * w * (gy - gb / M - (x - mean) * inv_std * gw / M)
//
// One pass reads x for the mean, one for the variance, one writes y; the backward reads gy and x
// once for both sums and once more to write gx. (NumPy needs two more passes each way, and pays
// per (n, c) row for broadcasting: rows of L = 49 values cost more in loop overhead than in work.)
// Channels are independent, so they are split over threads and the result does not depend on
// the thread count. Sums of a row go into 8 float lanes (vectorised), rows into a double.
#pragma once

#include <cstdint>

namespace tinyae {

template <typename T>
void batch_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* var, T* inv_std, int64_t n, int64_t c,
                        int64_t l, double eps, int threads);

// gx may be null (no input gradient wanted); w may be null (no weight: w = 1).
template <typename T>
void batch_norm_backward(const T* x, const T* gy, const T* mean, const T* inv_std, const T* w, T* gx, T* gw, T* gb,
                         int64_t n, int64_t c, int64_t l, int threads);

}  // namespace tinyae
