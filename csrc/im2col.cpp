// im2col: copy every sliding window of an NCHW image into the column buffer.
//
// col[c, i, j, n, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]  (0 outside the image)
//
// Work is split over the N*C input planes: each thread reads one small plane (which stays in
// cache while it is copied KH*KW times) and writes KH*KW disjoint (OH, OW) blocks of col.
#include <cstring>

#include "geometry.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tinyae {

namespace {

// Fill one (OH, OW) block of col with kernel tap (i, j) of one input plane.
template <typename T>
void copy_tap(const T* plane, T* dst, const Geometry& g, int64_t i, int64_t j) {
    const int64_t row_off = i * g.dh - g.ph;  // input row of output row oh is oh*SH + row_off
    const int64_t col_off = j * g.dw - g.pw;  // input column of output column ow is ow*SW + col_off
    const ValidRange rows = valid_range(row_off, g.sh, g.h, g.oh);
    const ValidRange cols = valid_range(col_off, g.sw, g.w, g.ow);
    const int64_t n_valid = cols.hi - cols.lo;

    // Output rows whose input row is padding: all zeros.
    std::memset(dst, 0, sizeof(T) * rows.lo * g.ow);
    std::memset(dst + rows.hi * g.ow, 0, sizeof(T) * (g.oh - rows.hi) * g.ow);

    for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
        T* out = dst + oh * g.ow;
        const T* in = plane + (oh * g.sh + row_off) * g.w + col_off;  // in[ow*SW] is the source
        std::memset(out, 0, sizeof(T) * cols.lo);
        if (g.sw == 1) {
            // Stride 1: the valid part of the row is one contiguous run.
            std::memcpy(out + cols.lo, in + cols.lo, sizeof(T) * n_valid);
        } else {
            for (int64_t ow = cols.lo; ow < cols.hi; ++ow) out[ow] = in[ow * g.sw];
        }
        std::memset(out + cols.hi, 0, sizeof(T) * (g.ow - cols.hi));
    }
}

}  // namespace

template <typename T>
void im2col(const T* x, T* col, const Geometry& g) {
    const int64_t plane_in = g.h * g.w;
    const int64_t plane_out = g.oh * g.ow;
    const int64_t planes = g.n * g.c;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < planes; ++p) {
        const int64_t n = p / g.c, c = p % g.c;
        const T* plane = x + p * plane_in;
        for (int64_t i = 0; i < g.kh; ++i) {
            for (int64_t j = 0; j < g.kw; ++j) {
                T* dst = col + (((c * g.kh + i) * g.kw + j) * g.n + n) * plane_out;
                copy_tap(plane, dst, g, i, j);
            }
        }
    }
}

template void im2col<float>(const float*, float*, const Geometry&);
template void im2col<double>(const double*, double*, const Geometry&);

int openmp_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 0;
#endif
}

}  // namespace tinyae
