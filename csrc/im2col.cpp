// im2col: copy every sliding window of an NCHW image into the column buffer.
//
// col[c, i, j, n, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]  (0 outside the image)
//
// Work is split over the N*C input planes. A thread reads one small plane (it stays in cache
// while it is copied KH*KW times) and writes KH*KW disjoint (OH, OW) blocks of col. Planes are
// numbered with n fastest, so one thread's consecutive planes write consecutive blocks of col:
// KH*KW sequential write streams instead of scattered partial cache lines.
//
// Two ways to copy one plane:
//  * fast path (small strides, the usual case): first build a zero-padded, phase-split copy of the
//    plane in a per-thread scratch buffer; then every output row is one branch-free contiguous copy.
//  * general path (large strides or huge padding, where that scratch would be big): a strided copy
//    with the padding bounds computed once per kernel tap.
//
// On big layers about 40% of the time is the memory traffic of writing the output (profile in
// docs/performance.md).
#include <algorithm>
#include <cstring>

#include "geometry.h"
#include "phase_split.h"

namespace tinyae {

namespace {

// Write the pixels of one (H, W) plane into its padded, phase-split scratch. Only pixel positions
// are written; the padding positions are never touched, so they stay zero from the one-time
// zeroing of the scratch buffer (no per-plane memset).
//
// SW: the column stride as a compile-time constant (1 or 2, the usual convolutions) or 0 for the
// run-time stride. With a constant stride every row is de-interleaved in one pass over it (all
// phases at once), a loop the compiler turns into vector loads and shuffles; with a run-time
// stride it is one scalar strided loop per phase, several times slower (docs/performance.md).
template <typename T, int SW>
void split_plane(const T* __restrict__ plane, T* __restrict__ scratch, const Geometry& g,
                 const SplitOffsets& at) {
    const int64_t sw = SW ? SW : g.sw;
    for (int64_t r = 0; r < g.h; ++r) {
        const T* __restrict__ row = plane + r * g.w;
        T* dst_row = scratch + at.rows[r];
        if (SW == 1) {
            std::memcpy(dst_row + at.cols[0], row, sizeof(T) * g.w);
        } else if (SW == 2 && at.phases == 2) {
            // Columns 0, 2, 4, ... and 1, 3, 5, ... to their two phase rows.
            T* __restrict__ even = dst_row + at.cols[0];
            T* __restrict__ odd = dst_row + at.cols[1];
            const int64_t pairs = g.w / 2;
            for (int64_t k = 0; k < pairs; ++k) {
                even[k] = row[2 * k];
                odd[k] = row[2 * k + 1];
            }
            if (g.w % 2) even[pairs] = row[g.w - 1];
        } else {
            for (int64_t q = 0; q < at.phases; ++q) {
                T* dst = dst_row + at.cols[q];
                for (int64_t k = 0, s = q; s < g.w; ++k, s += sw) dst[k] = row[s];
            }
        }
    }
}

// Copy a short contiguous row (typically 7-28 elements) in 16-byte chunks. The last chunk is
// aligned to the end of the row and may overlap the previous one (it rewrites equal values), so
// there is no scalar remainder loop, which would cost more than the vector copies for rows this
// short. Fixed-size memcpy compiles to one unaligned 16-byte load and store.
template <typename T>
inline void copy_row(T* out, const T* in, int64_t n) {
    constexpr int64_t kChunk = 16 / sizeof(T);
    if (n < kChunk) {
        for (int64_t k = 0; k < n; ++k) out[k] = in[k];
        return;
    }
    int64_t k = 0;
    for (; k + kChunk <= n; k += kChunk) std::memcpy(out + k, in + k, 16);
    if (k < n) std::memcpy(out + n - kChunk, in + n - kChunk, 16);
}

// Fast path: all KH*KW (OH, OW) blocks of one plane, from its phase-split scratch.
// OW: the row width as a compile-time constant, or 0 for the run-time width. A constant width
// turns each row into a fixed sequence of 16-byte copies with no loop or remainder test, which is
// faster on the 7-, 14- and 28-wide rows of MNIST-sized layers (docs/performance.md); col2im's
// adds gained nothing from it, so it is not done there.
template <typename T, int OW>
TINYAE_ALWAYS_INLINE void copy_plane_fast(const T* scratch, T* col, const Geometry& g, const PhaseLayout& lay,
                                          int64_t n, int64_t c) {
    const int64_t ow = OW ? OW : g.ow;
    const int64_t plane_out = g.oh * ow;
    for (int64_t i = 0; i < g.kh; ++i) {
        for (int64_t j = 0; j < g.kw; ++j) {
            T* dst = col + (((c * g.kh + i) * g.kw + j) * g.n + n) * plane_out;
            const T* src = scratch + lay.offset(g, i * g.dh, j * g.dw);  // pixel (0, 0) of this tap
            for (int64_t oh = 0; oh < g.oh; ++oh) {
                const T* in = src + oh * lay.wq;
                T* out = dst + oh * ow;
                copy_row(out, in, ow);
            }
        }
    }
}

// General path: one (OH, OW) block for tap (i, j), read with stride from the unpadded plane.
template <typename T>
void copy_tap_general(const T* plane, T* dst, const Geometry& g, int64_t i, int64_t j) {
    const int64_t row_off = i * g.dh - g.ph;  // input row of output row oh: oh*SH + row_off
    const int64_t col_off = j * g.dw - g.pw;  // input column of output column ow: ow*SW + col_off
    // Hoisted bounds: the padding test is done once per tap, not once per element.
    const ValidRange rows = valid_range(row_off, g.sh, g.h, g.oh);
    const ValidRange cols = valid_range(col_off, g.sw, g.w, g.ow);
    std::fill(dst, dst + rows.lo * g.ow, T(0));  // output rows whose input row is padding
    for (int64_t oh = rows.lo; oh < rows.hi; ++oh) {
        T* out = dst + oh * g.ow;
        const T* in = plane + (oh * g.sh + row_off) * g.w + col_off;  // in[ow*SW] is the source
        std::fill(out, out + cols.lo, T(0));
        for (int64_t ow = cols.lo; ow < cols.hi; ++ow) out[ow] = in[ow * g.sw];
        std::fill(out + cols.hi, out + g.ow, T(0));
    }
    std::fill(dst + rows.hi * g.ow, dst + g.oh * g.ow, T(0));
}

// Hint the CPU to start loading a plane into cache (a no-op on compilers without the builtin).
template <typename T>
inline void prefetch_plane(const T* plane, int64_t size) {
#if defined(__GNUC__) || defined(__clang__)
    constexpr int64_t kLine = 64 / sizeof(T);  // elements per cache line
    for (int64_t k = 0; k < size; k += kLine) __builtin_prefetch(plane + k);
#else
    (void)plane;
    (void)size;
#endif
}

// Unfold the planes [lo, hi) (numbered n-fastest: p = c*N + n) into col. `scratch`: this
// thread's zero-initialised scratch plane (fast path only).
template <typename T>
void unfold_planes(const T* x, T* col, const Geometry& g, bool fast, const PhaseLayout& lay,
                   const SplitOffsets& split_at, int64_t lo, int64_t hi, T* scratch) {
    const int64_t plane_in = g.h * g.w;
    for (int64_t p = lo; p < hi; ++p) {
        const int64_t c = p / g.n, n = p % g.n;
        const T* plane = x + (n * g.c + c) * plane_in;
        // Planes are visited n-fastest, i.e. C*H*W elements apart in x: too far for the hardware
        // prefetcher, so ask for the next plane now and it arrives while this one is copied.
        if (p + 1 < hi) prefetch_plane(x + (((p + 1) % g.n) * g.c + (p + 1) / g.n) * plane_in, plane_in);
        if (fast) {
            if (g.sw == 1) {
                split_plane<T, 1>(plane, scratch, g, split_at);
            } else if (g.sw == 2) {
                split_plane<T, 2>(plane, scratch, g, split_at);
            } else {
                split_plane<T, 0>(plane, scratch, g, split_at);
            }
            switch (g.ow) {
                case 7: copy_plane_fast<T, 7>(scratch, col, g, lay, n, c); break;
                case 14: copy_plane_fast<T, 14>(scratch, col, g, lay, n, c); break;
                case 28: copy_plane_fast<T, 28>(scratch, col, g, lay, n, c); break;
                default: copy_plane_fast<T, 0>(scratch, col, g, lay, n, c);
            }
        } else {
            for (int64_t i = 0; i < g.kh; ++i) {
                for (int64_t j = 0; j < g.kw; ++j) {
                    T* dst = col + (((c * g.kh + i) * g.kw + j) * g.n + n) * g.oh * g.ow;
                    copy_tap_general(plane, dst, g, i, j);
                }
            }
        }
    }
}

}  // namespace

template <typename T>
void im2col(const T* x, T* col, const Geometry& g, int threads) {
    threads = loop_threads(g, threads);
    PhasePlan<T> plan(g, threads);
    parallel_for(g.n * g.c, loop_grain(g), threads, [&](int64_t lo, int64_t hi, int slot) {
        unfold_planes(x, col, g, plan.fast, plan.lay, plan.at, lo, hi, plan.scratch_for(slot));
    });
}

template void im2col<float>(const float*, float*, const Geometry&, int);
template void im2col<double>(const double*, double*, const Geometry&, int);

}  // namespace tinyae
