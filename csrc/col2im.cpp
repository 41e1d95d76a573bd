// col2im: the adjoint of im2col. Every column entry is added back onto the pixel it was
// copied from; entries that came from the zero padding are dropped.
//
// Work is split over the N*C output planes. A thread owns its plane, so the overlapping
// windows (stride < kernel) accumulate without any write race or atomic, and the summation
// order is fixed: the result is deterministic whatever the thread count. Planes are numbered
// with n fastest so that a thread reads each (OH, OW) block stream of col sequentially.
#include <algorithm>

#include "geometry.h"

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

// Fold the output planes [lo, hi) (numbered n-fastest: p = c*N + n) of x from col.
template <typename T, int SW>
void fold_planes(const T* col, T* x, const Geometry& g, int64_t lo, int64_t hi) {
    const int64_t plane_in = g.h * g.w;
    const int64_t plane_out = g.oh * g.ow;
    for (int64_t p = lo; p < hi; ++p) {
        const int64_t c = p / g.n, n = p % g.n;
        T* plane = x + (n * g.c + c) * plane_in;
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
    parallel_for(g.n * g.c, loop_grain(g), loop_threads(g, threads),
                 [&](int64_t lo, int64_t hi, int) { fold_planes<T, SW>(col, x, g, lo, hi); });
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
