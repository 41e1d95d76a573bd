// Leaky ReLU and its gradient, each one pass over its elements (ReLU is slope 0):
//
//   forward:   y[i]  = x[i]            where x[i] > 0,  slope * x[i]   elsewhere
//   backward:  gx[i] = gy[i]           where a[i] > 0,  slope * gy[i]  elsewhere
//
// `a` is the input x, or the output y when slope >= 0 (then y > 0 exactly where x > 0).
// A NaN input gives NaN (slope * NaN), as the NumPy twin's max(x, slope * x) does.
// The twin (tinyae/ops/activation.py) runs each as 2-4 NumPy passes over whole arrays.
#pragma once

#include <cstdint>

namespace tinyae {

template <typename T>
void leaky_relu(const T* x, T* y, int64_t n, T slope, int threads);

template <typename T>
void leaky_relu_backward(const T* a, const T* gy, T* gx, int64_t n, T slope, int threads);

}  // namespace tinyae
