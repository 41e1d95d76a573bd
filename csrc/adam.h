// Adam's update of one parameter, fused into one pass over its elements.
//
// Notation as in tinyae/optim/adam.py (PyTorch's rule), per element, at step k:
//
//   d = g + wd * p           (or wd * p - g with maximize; wd = 0: g or -g)
//   m = b1 * m + (1 - b1) * d
//   v = b2 * v + (1 - b2) * d^2
//   v_max = max(v_max, v), used in place of v     (amsgrad only)
//   p = p - step_size * m / (sqrt(v) / bias2_sqrt + eps)
//
// with step_size = lr / (1 - b1^k) and bias2_sqrt = sqrt(1 - b2^k) computed by the caller.
// The NumPy twin (tinyae/kernels/numpy_kernels.py, adam_step) runs the same operations one
// array pass at a time, twelve passes in all; here each element is read and written once.
// Every operation is done in T, in the twin's order, with the scalars rounded to T as NumPy
// rounds them, so the two agree to the last bit where the compiler does not contract a*b+c
// into one fused multiply-add (CMakeLists.txt turns contraction off for this file), and where
// a value is subnormal (below 1.2e-38 in float32), which this kernel flushes to zero (adam.cpp).
#pragma once

#include <cstdint>

namespace tinyae {

struct AdamScalars {
    double b1, b2;         // betas
    double step_size;      // lr / (1 - b1^k)
    double bias2_sqrt;     // sqrt(1 - b2^k)
    double eps;
    double weight_decay;   // L2 penalty folded into the gradient (0: none)
    bool maximize;
};

// p, m, v (and v_max unless null) are updated in place; all hold n elements, g is read only.
template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, const AdamScalars& s, int threads);

}  // namespace tinyae
