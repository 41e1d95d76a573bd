// Adam's fused update (formulas in adam.h).
#include "adam.h"

#include <cmath>

#if defined(__SSE__) || defined(_M_X64)
#include <xmmintrin.h>
#endif

#include "parallel.h"

namespace tinyae {

namespace {

// Below this many elements the update runs on the calling thread; blocks of kGrain elements
// (256 KB of float32 per array) are handed to the threads.
constexpr int64_t kMinParallel = int64_t(1) << 17;
constexpr int64_t kGrain = int64_t(1) << 16;

// Subnormal numbers (below 1.2e-38 in float32) cost about 100 cycles per operation on x86.
// A parameter whose gradient stays 0 (the weights into a dead ReLU unit) decays m = b1 * m
// through them, and then every step pays for them: 4x slower updates in a trained VAE
// (benchmarks/README.md, "Subnormals"). While a thread runs the update, the CPU flushes them
// to zero (FTZ: results; DAZ: inputs), which changes only values below 1.2e-38.
class FlushSubnormals {
#if defined(__SSE__) || defined(_M_X64)
    unsigned saved_;

public:
    FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ (bit 15) | DAZ (bit 6)
    ~FlushSubnormals() { _mm_setcsr(saved_); }
#endif
};

// max(a, b) that returns NaN when either is NaN, as NumPy's maximum does.
template <typename T>
inline T nan_max(T a, T b) {
    return (a > b || a != a) ? a : b;
}

template <typename T, bool AMSGRAD>
void update(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v, T* __restrict__ v_max,
            int64_t lo, int64_t hi, const AdamScalars& s) {
    const T b1 = T(s.b1), one_minus_b1 = T(1 - s.b1);
    const T b2 = T(s.b2), one_minus_b2 = T(1 - s.b2);
    const T step_size = T(s.step_size), bias2_sqrt = T(s.bias2_sqrt), eps = T(s.eps);
    const T wd = T(s.weight_decay);
    const bool decay = s.weight_decay != 0, maximize = s.maximize;
    for (int64_t k = lo; k < hi; ++k) {
        T d = g[k];
        if (decay) {
            d = maximize ? p[k] * wd - d : p[k] * wd + d;
        } else if (maximize) {
            d = -d;
        }
        m[k] = m[k] * b1 + d * one_minus_b1;
        v[k] = v[k] * b2 + (d * d) * one_minus_b2;
        T vk = v[k];
        if (AMSGRAD) vk = v_max[k] = nan_max(v_max[k], vk);
        const T denom = std::sqrt(vk) / bias2_sqrt + eps;
        p[k] = p[k] - (m[k] / denom) * step_size;
    }
}

}  // namespace

template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, T* v_max, int64_t n, const AdamScalars& s, int threads) {
    if (threads <= 0) threads = num_threads();
    if (n < kMinParallel) threads = 1;
    parallel_for(n, kGrain, threads, [&](int64_t lo, int64_t hi, int) {
        FlushSubnormals flush;  // on this thread, for this block only
        if (v_max) {
            update<T, true>(p, g, m, v, v_max, lo, hi, s);
        } else {
            update<T, false>(p, g, m, v, v_max, lo, hi, s);
        }
    });
}

template void adam_step<float>(float*, const float*, float*, float*, float*, int64_t, const AdamScalars&, int);
template void adam_step<double>(double*, const double*, double*, double*, double*, int64_t, const AdamScalars&, int);

}  // namespace tinyae
