// Shapes and parameters of one im2col / col2im call, validated once.
//
// Notation as in tinyae/kernels/numpy_kernels.py: input x is (N, C, H, W), the column
// buffer is (C, KH, KW, N, OH, OW) with
//     col[c, i, j, n, oh, ow] = x_padded[n, c, oh*SH + i*DH, ow*SW + j*DW].
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "parallel.h"

namespace tinyae {

// Force inlining of a small per-plane function into its loop, so that each of its compile-time
// variants is optimised in place (as one call was before it had variants).
#if defined(__GNUC__) || defined(__clang__)
#define TINYAE_ALWAYS_INLINE __attribute__((always_inline)) inline
#elif defined(_MSC_VER)
#define TINYAE_ALWAYS_INLINE __forceinline
#else
#define TINYAE_ALWAYS_INLINE inline
#endif

struct Geometry {
    int64_t n, c, h, w;      // image (N, C, H, W)
    int64_t kh, kw;          // kernel
    int64_t sh, sw;          // stride
    int64_t ph, pw;          // zero padding on each side
    int64_t dh, dw;          // dilation
    int64_t oh, ow;          // output (window) grid
};

// Largest kernel/stride/padding/dilation accepted. Far beyond any real convolution, and small
// enough that every intermediate like H + 2*PH or DH*(KH-1) fits easily in int64_t.
constexpr int64_t kMaxParam = int64_t(1) << 30;

// Window grid length along one axis; may be < 1 when the kernel does not fit.
inline int64_t out_size(int64_t size, int64_t k, int64_t s, int64_t p, int64_t d) {
    const int64_t span = size + 2 * p - d * (k - 1) - 1;
    // Floor division (span may be negative; C++ '/' truncates toward zero).
    const int64_t q = span >= 0 ? span / s : -((-span + s - 1) / s);
    return q + 1;
}

// Checks a scalar parameter; throws std::invalid_argument (-> Python ValueError).
inline void check_param(const char* op, const char* name, int64_t v, int64_t minimum) {
    if (v < minimum) {
        const std::string what = minimum == 1 ? "positive" : ">= " + std::to_string(minimum);
        throw std::invalid_argument(std::string(op) + ": argument '" + name + "' must be " + what +
                                    ", got " + std::to_string(v));
    }
    if (v > kMaxParam) {
        throw std::invalid_argument(std::string(op) + ": argument '" + name + "' is too large (" +
                                    std::to_string(v) + ")");
    }
}

// Element count of an array of these dimensions, refusing one whose size in bytes (and so every
// byte stride NumPy computes for it) would overflow int64_t.
template <size_t D>
inline int64_t checked_numel(const char* op, const int64_t (&dims)[D], int64_t itemsize = 8) {
    int64_t total = 1;
    for (int64_t d : dims) {
        if (d < 0 || __builtin_mul_overflow(total, d, &total)) total = -1;
        if (total < 0) break;
    }
    if (total < 0 || total > INT64_MAX / itemsize) {
        throw std::invalid_argument(std::string(op) + ": the result would be too large");
    }
    return total;
}

// Range [lo, hi) of output positions o whose input index o*s + off lies in [0, size).
// Computed once per kernel tap so that the inner copy loops need no bounds checks.
struct ValidRange {
    int64_t lo, hi;
};

inline ValidRange valid_range(int64_t off, int64_t s, int64_t size, int64_t out) {
    // o*s + off >= 0  <=>  o >= ceil(-off / s)
    int64_t lo = off >= 0 ? 0 : (-off + s - 1) / s;
    // o*s + off <= size - 1  <=>  o <= floor((size - 1 - off) / s)
    int64_t hi = (size - 1 - off) < 0 ? 0 : (size - 1 - off) / s + 1;
    if (lo > out) lo = out;
    if (hi > out) hi = out;
    if (hi < lo) hi = lo;
    return {lo, hi};
}

// Small calls run on one thread: waking a worker costs microseconds, and many more when the other
// core is busy (e.g. with BLAS threads still spinning). Counted in column elements; the threshold
// is where two threads start to win (docs/performance.md).
constexpr int64_t kMinParallelWork = int64_t(1) << 18;

// Threads for a call's loop over the N*C planes (its work: the column buffer's elements), at most
// `threads` (<= 0: num_threads()).
inline int loop_threads(const Geometry& g, int threads) {
    if (threads <= 0) threads = num_threads();
    return g.n * g.c * g.kh * g.kw * g.oh * g.ow >= kMinParallelWork ? threads : 1;
}

// Planes per block handed to a thread: about kBlockWork column elements (256 KB of float32), big
// enough that handing out a block (one atomic add) is free, small enough that a thread the OS
// descheduled holds up the end of the loop by little.
constexpr int64_t kBlockWork = int64_t(1) << 16;

inline int64_t loop_grain(const Geometry& g) {
    const int64_t per_plane = g.kh * g.kw * g.oh * g.ow;
    return per_plane >= kBlockWork ? 1 : kBlockWork / per_plane;
}

template <typename T>
void im2col(const T* x, T* col, const Geometry& g, int threads);

template <typename T>
void col2im(const T* col, T* x, const Geometry& g, int threads);

}  // namespace tinyae
