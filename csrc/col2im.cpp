// col2im: the adjoint of im2col. Every column entry is added back onto the pixel it was
// copied from; entries that came from the zero padding are dropped.
//
// Two ways to fold one plane, as im2col has two ways to unfold it:
//  * fast path (small strides): every tap's block is added into a zeroed, phase-split scratch
//    copy of the padded plane (phase_split.h), where its rows are contiguous runs: the adds
//    vectorise. Then the scratch is de-interleaved into the plane, dropping the padding
//    (faster than the strided adds below: docs/performance.md).
//  * general path: each tap is added with stride straight into the plane, the padding bounds
//    computed once per tap.
//
// Work is split over the N*C output planes. A thread owns its plane, so the overlapping
// windows (stride < kernel) accumulate without any write race or atomic, and the summation
// order is fixed: the result is deterministic whatever the thread count. Planes are numbered
// with n fastest so that a thread reads each (OH, OW) block stream of col sequentially.
#include <algorithm>
#include <cstring>

#include "geometry.h"
#include "phase_split.h"

namespace tinyae {

namespace {

// Add kernel tap (i, j)'s (OH, OW) block of col onto one output plane.
// SW: compile-time stride (1 or 2) or 0 for the run-time stride, as in im2col.cpp.
template <typename T, int SW>
void add_tap(const T* src, T* plane, const Geometry& g, int64_t i, int64_t j) {
    const int64_t s = SW ? SW : g.sw;
    const int64_t row_off = i * g.dh - g.ph;
    const int64_t col_off = j * g.dw - g.pw;
    const ValidRange rows = valid_range(row_off, g.sh, g.h, g.oh);
    const ValidRange cols = valid_range(col_off, g.sw, g.w, g.ow);

    for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
        const T* in = src + oh * g.ow;
        T* out = plane + (oh * g.sh + row_off) * g.w + col_off;  // out[ow*SW] receives in[ow]
        for (int64_t ow = cols.lo; ow < cols.hi; ++ow) out[ow * s] += in[ow];
    }
}

// out[k] += in[k]: a contiguous run the compiler vectorises (the buffers never alias).
template <typename T>
inline void add_row(T* __restrict__ out, const T* __restrict__ in, int64_t n) {
    for (int64_t k = 0; k < n; ++k) out[k] += in[k];
}

// Fast path: fold all KH*KW blocks of output plane (n, c) through its phase-split scratch.
template <typename T, int SW>
void fold_plane_fast(const T* col, T* plane, T* scratch, const Geometry& g, const PhaseLayout& lay,
                     const SplitOffsets& at, int64_t n, int64_t c) {
    std::fill(scratch, scratch + lay.size(g), T(0));
    const int64_t plane_out = g.oh * g.ow;
    for (int64_t i = 0; i < g.kh; ++i) {
        for (int64_t j = 0; j < g.kw; ++j) {
            const T* src = col + (((c * g.kh + i) * g.kw + j) * g.n + n) * plane_out;
            T* dst = scratch + lay.offset(g, i * g.dh, j * g.dw);  // padded pixel (0, 0) of this tap
            for (int64_t oh = 0; oh < g.oh; ++oh) add_row(dst + oh * lay.wq, src + oh * g.ow, g.ow);
        }
    }
    // De-interleave: pixel (r, s) of the plane is padded pixel (r + PH, s + PW) of the scratch.
    const int64_t sw = SW ? SW : g.sw;
    for (int64_t r = 0; r < g.h; ++r) {
        T* __restrict__ out = plane + r * g.w;
        const T* row = scratch + at.rows[r];
        if (SW == 1) {
            std::memcpy(out, row + at.cols[0], sizeof(T) * g.w);
        } else if (SW == 2 && at.phases == 2) {
            const T* __restrict__ even = row + at.cols[0];  // columns 0, 2, 4, ...
            const T* __restrict__ odd = row + at.cols[1];   // columns 1, 3, 5, ...
            const int64_t pairs = g.w / 2;
            for (int64_t k = 0; k < pairs; ++k) {
                out[2 * k] = even[k];
                out[2 * k + 1] = odd[k];
            }
            if (g.w % 2) out[g.w - 1] = even[pairs];
        } else {
            for (int64_t q = 0; q < at.phases; ++q) {
                const T* src = row + at.cols[q];
                for (int64_t k = 0, col_s = q; col_s < g.w; ++k, col_s += sw) out[col_s] = src[k];
            }
        }
    }
}

// Fold the output planes [lo, hi) (numbered n-fastest: p = c*N + n) of x from col. `scratch`: this
// thread's scratch plane (fast path only).
template <typename T, int SW>
void fold_planes(const T* col, T* x, const Geometry& g, bool fast, const PhaseLayout& lay, const SplitOffsets& at,
                 int64_t lo, int64_t hi, T* scratch) {
    const int64_t plane_in = g.h * g.w;
    const int64_t plane_out = g.oh * g.ow;
    for (int64_t p = lo; p < hi; ++p) {
        const int64_t c = p / g.n, n = p % g.n;
        T* plane = x + (n * g.c + c) * plane_in;
        if (fast) {
            fold_plane_fast<T, SW>(col, plane, scratch, g, lay, at, n, c);
            continue;
        }
        std::fill(plane, plane + plane_in, T(0));
        for (int64_t i = 0; i < g.kh; ++i) {
            for (int64_t j = 0; j < g.kw; ++j) {
                const T* src = col + (((c * g.kh + i) * g.kw + j) * g.n + n) * plane_out;
                add_tap<T, SW>(src, plane, g, i, j);
            }
        }
    }
}

template <typename T, int SW>
void col2im_impl(const T* col, T* x, const Geometry& g, int threads) {
    threads = loop_threads(g, threads);
    PhasePlan<T> plan(g, threads);
    parallel_for(g.n * g.c, loop_grain(g), threads, [&](int64_t lo, int64_t hi, int slot) {
        fold_planes<T, SW>(col, x, g, plan.fast, plan.lay, plan.at, lo, hi, plan.scratch_for(slot));
    });
}

}  // namespace

template <typename T>
void col2im(const T* col, T* x, const Geometry& g, int threads) {
    if (g.sw == 1) {
        col2im_impl<T, 1>(col, x, g, threads);
    } else if (g.sw == 2) {
        col2im_impl<T, 2>(col, x, g, threads);
    } else {
        col2im_impl<T, 0>(col, x, g, threads);
    }
}

template void col2im<float>(const float*, float*, const Geometry&, int);
template void col2im<double>(const double*, double*, const Geometry&, int);

}  // namespace tinyae
