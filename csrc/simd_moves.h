// Data movement around the direct convolutions' tiles (conv_direct.cpp), in AVX-512: a sample
// copied into its zero-padded scratch, and 16 x 16 blocks transposed in registers, which turn
// channels-last rows into channel planes and back.
//
// x86-64 with GCC or Clang only: conv_direct.cpp includes this where it builds its kernels.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace tinyae {

// One sample x (C, H, W) into its zero-padded copy xs (C, HP, WP) at row PT, column PL; the
// borders are not written. Rows are short (7-28 floats on MNIST-sized layers), so they are
// copied 16 floats at a time with a masked tail rather than by a memcpy call per row (L5's
// input gradient: 2% faster).
__attribute__((target("avx512f"))) inline void pad_sample(const float* x, float* xs, int64_t c, int64_t h,
                                                          int64_t w, int64_t hp, int64_t wp, int64_t pt, int64_t pl) {
    const __mmask16 tail = static_cast<__mmask16>((1u << (w % 16)) - 1);
    for (int64_t ci = 0; ci < c; ++ci) {
        for (int64_t r = 0; r < h; ++r) {
            const float* src = x + (ci * h + r) * w;
            float* dst = xs + (ci * hp + r + pt) * wp + pl;
            int64_t k = 0;
            for (; k + 16 <= w; k += 16) _mm512_storeu_ps(dst + k, _mm512_loadu_ps(src + k));
            if (tail) _mm512_mask_storeu_ps(dst + k, tail, _mm512_maskz_loadu_ps(tail, src + k));
        }
    }
}

// r[i][j] -> r[j][i] for a 16 x 16 block held in 16 registers: pairs of rows interleaved by
// 32-bit elements, then by 64-bit pairs, then whole 128-bit lanes exchanged twice.
__attribute__((target("avx512f"))) inline void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {  // per lane: r_i[0] r_i+1[0] r_i[1] r_i+1[1] | ... [2] [3]
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {  // r[i + e], per lane L: rows i..i+3 of column 4L + e
        const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        const __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int e = 0; e < 4; ++e) {  // column 4L + e gathers lane L of r[e], r[4 + e], r[8 + e], r[12 + e]
        const __m512 a = _mm512_shuffle_f32x4(r[e], r[4 + e], 0x88), b = _mm512_shuffle_f32x4(r[e], r[4 + e], 0xDD);
        const __m512 c = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0x88);
        const __m512 d = _mm512_shuffle_f32x4(r[8 + e], r[12 + e], 0xDD);
        t[e] = _mm512_shuffle_f32x4(a, c, 0x88);
        t[4 + e] = _mm512_shuffle_f32x4(b, d, 0x88);
        t[8 + e] = _mm512_shuffle_f32x4(a, c, 0xDD);
        t[12 + e] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
    for (int i = 0; i < 16; ++i) r[i] = t[i];
}

// ys (P, row), channels-last, into y's first `valid` planes (valid, P), in 16 x 16 blocks
// transposed in registers (a scalar copy, strided by the row, took 0.5 ms of L5's 8 ms transposed
// forward). `row` is a multiple of 16, at least `valid`.
__attribute__((target("avx512f"))) inline void store_planes(const float* ys, int64_t row, float* y, int64_t plane,
                                                            int64_t valid) {
    for (int64_t v = 0; v * 16 < valid; ++v) {
        const int64_t channels = std::min<int64_t>(16, valid - 16 * v);
        for (int64_t p0 = 0; p0 < plane; p0 += 16) {
            const int64_t count = std::min<int64_t>(16, plane - p0);
            const __mmask16 m = static_cast<__mmask16>((1u << count) - 1);
            __m512 r[16];
            for (int64_t i = 0; i < 16; ++i) {
                r[i] = i < count ? _mm512_loadu_ps(ys + (p0 + i) * row + 16 * v) : _mm512_setzero_ps();
            }
            transpose16(r);
            for (int64_t j = 0; j < channels; ++j) _mm512_mask_storeu_ps(y + (16 * v + j) * plane + p0, m, r[j]);
        }
    }
}

}  // namespace tinyae
