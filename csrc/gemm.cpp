// The matrix product of gemm.h, C = A @ B, the way BLAS libraries do it, in two loops:
//
//   for each B panel of 32 columns (K, 32):              bp[k][q] = B[k][j0 + q]
//     for each block of k's, for each A panel of 14 rows:
//       one tile: C[i0 + p][j0 + q] += sum_k A[i0 + p][k] * bp[k][q]     p < 14, q < 32
//
// Why these sizes: the tile is the direct convolution's (conv_direct.cpp): 14 x 2 vectors of 16
// accumulators, 2 vectors of B and 1 broadcast of A fill AVX-512's 32 registers, and per k the
// tile does 28 fused multiply-adds on 2 vector loads and 14 broadcasts. A block of 256 k's of
// one B panel read in place (32 KB) is read by every A panel in turn, so it stays in the L1
// cache; a packed panel, contiguous, streams from L2 in blocks of 1024 k's. For gy^T @ x with
// K <= 256 the two outer loops swap: each (strided) A panel stays in L1 while the B panels pass.
//
// Nothing is packed that can be read in place: A is only ever broadcast one element at a time,
// so any strides do; B's panel rows are read where they are when B's rows are contiguous
// (x @ W, gy^T @ x). Any other B (x @ W^T: contiguous columns) is copied one panel at a time,
// by the thread that multiplies it, into (K, 32).
//
// Threads split the columns of C: each takes whole B panels (and, when there are fewer panels
// than threads, blocks of rows too), so the B it reads stays in its own core's caches. Every C
// element is summed by one thread in the order of k: the result does not depend on the threads.
#include "gemm.h"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

#include "parallel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TINYAE_GEMM 1
#include <immintrin.h>
#else
#define TINYAE_GEMM 0
#endif

namespace tinyae {

#if TINYAE_GEMM

namespace {

constexpr int kMR = 14;       // rows of A per tile: one broadcast each
constexpr int kNR = 32;       // columns of B per panel: two 16-lane vectors
constexpr int64_t kAhead = 8;  // k's a transposed A is prefetched ahead (docs/performance.md)
constexpr int64_t kKC = 256;  // k's per block of a B panel read in place: 32 KB, L1's size
// k's per block of a packed (contiguous) B panel: it streams from L2 well, and fewer blocks mean
// fewer passes over C (x @ W^T, K = 784: ~5% faster than 256; docs/performance.md).
constexpr int64_t kKCPacked = 1024;

// The A operand of a tile: A[p][k] = a[p * row + k * col] (row == 1 for a transposed A).
struct AView {
    const float* a;
    int64_t row, col;
};

using TileFn = void (*)(int64_t, AView, const float*, int64_t, float*, int64_t, int, bool);

// C[p][q] (p < MR, q < ncols <= NV * 16) = (add ? C[p][q] : 0) + sum_{k < kc} A[p][k] * B[k][q],
// B[k][q] = b[k * ldb + q] for q < NV * 16 (all read: the caller pads B's last panel). AT: A is transposed (A.row == 1), so A[p][k] is a[k * A.col + p].
template <int MR, int NV, bool AT>
__attribute__((target("avx512f"))) void tile(int64_t kc, AView A, const float* b, int64_t ldb, float* c,
                                             int64_t ldc, int ncols, bool add) {
    __mmask16 mask[NV];
    for (int v = 0; v < NV; ++v) {
        const int cols = std::min(std::max(ncols - 16 * v, 0), 16);
        mask[v] = static_cast<__mmask16>((1u << cols) - 1u);
    }
    __m512 acc[MR][NV];
    for (int p = 0; p < MR; ++p) {
        for (int v = 0; v < NV; ++v) {
            acc[p][v] = add ? _mm512_maskz_loadu_ps(mask[v], c + p * ldc + 16 * v) : _mm512_setzero_ps();
        }
    }
    const int64_t row = AT ? 1 : A.row, col = AT ? A.col : 1;
    for (int64_t k = 0; k < kc; ++k) {
        __m512 w[NV];
        for (int v = 0; v < NV; ++v) w[v] = _mm512_loadu_ps(b + k * ldb + 16 * v);
        const float* ak = A.a + k * col;
        if (AT) {  // rows of a transposed A can lie further apart than the hardware prefetcher looks
            _mm_prefetch(reinterpret_cast<const char*>(ak + kAhead * col), _MM_HINT_T0);
            _mm_prefetch(reinterpret_cast<const char*>(ak + kAhead * col + MR - 1), _MM_HINT_T0);
        }
        for (int p = 0; p < MR; ++p) {
            const __m512 x = _mm512_set1_ps(ak[p * row]);
            for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_fmadd_ps(x, w[v], acc[p][v]);
        }
    }
    for (int p = 0; p < MR; ++p) {
        for (int v = 0; v < NV; ++v) _mm512_mask_storeu_ps(c + p * ldc + 16 * v, mask[v], acc[p][v]);
    }
}

// kTiles[AT][NV - 1][MR - 1]: the tile for the last rows (MR < 14) or columns (<= 16: NV = 1).
template <int NV, bool AT, int... I>
constexpr std::array<TileFn, kMR> tile_row(std::integer_sequence<int, I...>) {
    return {&tile<I + 1, NV, AT>...};
}
template <bool AT>
constexpr std::array<std::array<TileFn, kMR>, 2> tile_table() {
    return {tile_row<1, AT>(std::make_integer_sequence<int, kMR>{}),
            tile_row<2, AT>(std::make_integer_sequence<int, kMR>{})};
}
const std::array<std::array<TileFn, kMR>, 2> kTiles[2] = {tile_table<false>(), tile_table<true>()};

// dst (K, 32) = B[:, j0 : j0 + cols], zeros past `cols`; B[k][j] = b[k * row + j * col].
// A B with contiguous columns (row == 1, x @ W^T) is gathered 16 columns at a time: the 32
// columns' cache lines serve 16 k's each, so they stay in L1 while the rows of dst are written.
__attribute__((target("avx512f"))) void pack_panel(const float* b, int64_t row, int64_t col, int64_t j0, int cols,
                                                   int64_t kdim, float* dst) {
    __mmask16 mask[2];
    for (int v = 0; v < 2; ++v) {
        const int n = std::min(std::max(cols - 16 * v, 0), 16);
        mask[v] = static_cast<__mmask16>((1u << n) - 1u);
    }
    if (col == 1) {  // rows contiguous: the last panel of a B read in place, padded with zeros
        for (int64_t k = 0; k < kdim; ++k) {
            for (int v = 0; v < 2; ++v) {
                _mm512_storeu_ps(dst + k * kNR + 16 * v, _mm512_maskz_loadu_ps(mask[v], b + k * row + j0 + 16 * v));
            }
        }
        return;
    }
    if (row == 1 && col > 0 && col * kNR < (int64_t{1} << 31)) {
        const __m512i q = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512i offset = _mm512_mullo_epi32(q, _mm512_set1_epi32(static_cast<int>(col)));  // q * col
        for (int64_t k = 0; k < kdim; ++k) {
            for (int v = 0; v < 2; ++v) {
                const float* base = b + (j0 + 16 * v) * col + k;
                const __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask[v], offset, base, 4);
                _mm512_storeu_ps(dst + k * kNR + 16 * v, x);
            }
        }
        return;
    }
    for (int64_t k = 0; k < kdim; ++k) {  // any other strides, one element at a time
        for (int q = 0; q < kNR; ++q) dst[k * kNR + q] = q < cols ? b[k * row + (j0 + q) * col] : 0.0f;
    }
}

}  // namespace

bool gemm_available() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t sa_row, int64_t sa_col, const float* b,
           int64_t sb_row, int64_t sb_col, float* c, int64_t ldc, int threads) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
        return;
    }
    const int64_t pm = (m + kMR - 1) / kMR, pn = (n + kNR - 1) / kNR;
    const bool a_transposed = sa_row == 1 && sa_col != 1;
    const bool b_rows = sb_col == 1;  // rows contiguous: whole panels are read where they are
    const auto& tiles = kTiles[a_transposed ? 1 : 0];
    // One block of k's, a transposed A and B read in place (gy^T @ x: K is the batch): each A panel,
    // strided in memory, is read once and stays in L1 while the B panels stream past it
    // (docs/performance.md); otherwise a block of a B panel stays in L1 while the A panels pass.
    const bool a_outer = a_transposed && k <= kKC && b_rows;

    // Work items: column ranges (whole panels) x row ranges (whole A panels); rows are split only
    // when there are fewer panels than threads.
    const int use = std::max(1, threads);
    const int64_t col_parts = std::min<int64_t>(pn, use);
    const int64_t row_parts = std::min<int64_t>(pm, (use + col_parts - 1) / col_parts);
    parallel_for(col_parts * row_parts, 1, use, [&](int64_t lo, int64_t hi, int) {
        thread_local std::vector<float> panel;  // (K, 32): this thread's copy of a B panel
        if (panel.size() < static_cast<size_t>(k * kNR)) panel.resize(static_cast<size_t>(k * kNR));
        for (int64_t t = lo; t < hi; ++t) {
            const int64_t cp = t / row_parts, rp = t % row_parts;
            const int64_t jp0 = pn * cp / col_parts, jp1 = pn * (cp + 1) / col_parts;
            const int64_t ip0 = pm * rp / row_parts, ip1 = pm * (rp + 1) / row_parts;
            if (a_outer) {
                const int64_t last = pn - 1, j_last = last * kNR;
                const bool narrow = n - j_last < kNR && jp1 == pn;  // B's last panel, padded once
                if (narrow) pack_panel(b, sb_row, sb_col, j_last, static_cast<int>(n - j_last), k, panel.data());
                for (int64_t ip = ip0; ip < ip1; ++ip) {
                    const int64_t i0 = ip * kMR, rows = std::min<int64_t>(kMR, m - i0);
                    const AView A{a + i0 * sa_row, sa_row, sa_col};
                    for (int64_t jp = jp0; jp < jp1; ++jp) {
                        const int64_t j0 = jp * kNR;
                        const int ncols = static_cast<int>(std::min<int64_t>(kNR, n - j0));
                        const bool padded = narrow && jp == last;
                        tiles[ncols > 16 ? 1 : 0][rows - 1](k, A, padded ? panel.data() : b + j0, padded ? kNR : sb_row,
                                                            c + i0 * ldc + j0, ldc, ncols, false);
                    }
                }
                continue;
            }
            for (int64_t jp = jp0; jp < jp1; ++jp) {
                const int64_t j0 = jp * kNR;
                const int ncols = static_cast<int>(std::min<int64_t>(kNR, n - j0));
                const float* bpanel = b + j0;
                int64_t ldb = sb_row;
                if (!b_rows || ncols < kNR) {
                    pack_panel(b, sb_row, sb_col, j0, ncols, k, panel.data());
                    bpanel = panel.data();
                    ldb = kNR;
                }
                const auto& row = tiles[ncols > 16 ? 1 : 0];
                const int64_t kblock = ldb == kNR ? kKCPacked : kKC;
                for (int64_t k0 = 0; k0 < k; k0 += kblock) {
                    const int64_t kc = std::min(kblock, k - k0);
                    for (int64_t ip = ip0; ip < ip1; ++ip) {
                        const int64_t i0 = ip * kMR, rows = std::min<int64_t>(kMR, m - i0);
                        const AView A{a + i0 * sa_row + k0 * sa_col, sa_row, sa_col};
                        row[rows - 1](kc, A, bpanel + k0 * ldb, ldb, c + i0 * ldc + j0, ldc, ncols, k0 > 0);
                    }
                }
            }
        }
    });
}

#else  // not x86-64 with GCC or Clang

bool gemm_available() { return false; }

void sgemm(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*,
           int64_t, int) {}

#endif

}  // namespace tinyae
