// The direct convolutions of conv_direct.h.
//
// Layout of the forward's work, for one sample n, one group, one block of 32 output channels:
//
//   xs   the sample, zero-padded: (C, HP, WP) with HP = H + 2PH, WP = W + 2PW; per-thread scratch
//   koff koff[k] = offset in xs of tap k = (c, i, j):  (c*HP + i*DH)*WP + j*DW
//   poff poff[p] = offset in xs of output position p = (oh, ow):  oh*SH*WP + ow*SW
//   wb   the block's weights, reordered to (K, 32): 32 output channels side by side per tap,
//        zeros past the last channel of the group
//
// so that col[k, p] = xs[koff[k] + poff[p]] and one tile is
//
//   acc[p][o] = b[o] + sum_k xs[koff[k] + poff[p]] * wb[k][o]     p < 14, o < 32,
//
// stored as row yoff[p] of ys, the block's output channels-last: (OH*OW, 32), per-thread scratch.
// When all tiles of the block are done, ys is copied out to y's 32 channel planes.
//
// Why these sizes: AVX-512 has 32 vector registers. 14 positions x 2 vectors of 16 channels are
// 28 accumulators, plus 2 weight vectors and 1 broadcast input: 31. Per tap the tile does 28
// fused multiply-adds on 2 weight loads and 14 broadcasts, so the multiply units, not the loads,
// set the pace (about 100 GFLOP/s on one core: docs/performance.md).
//
// Each output element is summed by one thread in a fixed order: the result does not depend on
// the thread count.
#include "conv_direct.h"

#include <algorithm>
#include <array>
#include <memory>
#include <stdexcept>
#include <utility>
#include <vector>

#include "parallel.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TINYAE_DIRECT_CONV 1
#include <immintrin.h>

#include "simd_moves.h"
#else
#define TINYAE_DIRECT_CONV 0
#endif

namespace tinyae {

#if TINYAE_DIRECT_CONV

namespace {

constexpr int kTile = 14;   // output positions per tile
constexpr int kBlock = 32;  // output channels per block: two 16-lane vectors

using TileFn = void (*)(const float*, const int64_t*, int64_t, const int64_t*, const float*, const float*, float*,
                       const int64_t*);

// One tile of NP positions and NV * 16 channels, written to out[rows[p]][o] (row length kBlock).
template <int NP, int NV>
__attribute__((target("avx512f"))) void tile(const float* xs, const int64_t* koff, int64_t kdim,
                                             const int64_t* poff, const float* wb, const float* bias, float* out,
                                             const int64_t* rows) {
    __m512 acc[NP][NV];
    for (int v = 0; v < NV; ++v) {
        const __m512 b = _mm512_loadu_ps(bias + 16 * v);
        for (int p = 0; p < NP; ++p) acc[p][v] = b;
    }
    for (int64_t k = 0; k < kdim; ++k) {
        const float* xk = xs + koff[k];
        __m512 w[NV];
        for (int v = 0; v < NV; ++v) w[v] = _mm512_loadu_ps(wb + k * kBlock + 16 * v);
        for (int p = 0; p < NP; ++p) {
            const __m512 xb = _mm512_set1_ps(xk[poff[p]]);
            for (int v = 0; v < NV; ++v) acc[p][v] = _mm512_fmadd_ps(xb, w[v], acc[p][v]);
        }
    }
    for (int p = 0; p < NP; ++p) {
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + rows[p] * kBlock + 16 * v, acc[p][v]);
    }
}

// table[NV - 1][NP - 1]: the tile kernel for a tail tile of NP < 14 positions, or a block of
// 16 channels or fewer (NV = 1), chosen at run time.
template <int NV, int... I>
constexpr std::array<TileFn, kTile> tile_row(std::integer_sequence<int, I...>) {
    return {&tile<I + 1, NV>...};
}
const std::array<TileFn, kTile> kTiles[2] = {tile_row<1>(std::make_integer_sequence<int, kTile>{}),
                                             tile_row<2>(std::make_integer_sequence<int, kTile>{})};

// The weight gradient's tile: NK taps x NV * 16 output channels, summed over every position of
// every sample (the roles of the forward's tile turned around: the taps are the rows now, and the
// vectors hold the upstream gradient of 16 channels at one position).
//
//   out[t][o] = sum_{n, p} xs_n[koff[t] + poff[p]] * gyt_n[p][o]
using WeightTileFn = void (*)(const float*, int64_t, int64_t, const int64_t*, const int64_t*, int64_t,
                              const float*, int64_t, float*);

template <int NK, int NV>
__attribute__((target("avx512f"))) void weight_tile(const float* xs, int64_t x_stride, int64_t n,
                                                    const int64_t* koff, const int64_t* poff, int64_t np,
                                                    const float* gyt, int64_t gy_stride, float* out) {
    __m512 acc[NK][NV];
    int64_t k[NK];
    for (int t = 0; t < NK; ++t) {
        k[t] = koff[t];
        for (int v = 0; v < NV; ++v) acc[t][v] = _mm512_setzero_ps();
    }
    for (int64_t s = 0; s < n; ++s) {
        const float* xn = xs + s * x_stride;
        const float* gn = gyt + s * gy_stride;
        for (int64_t p = 0; p < np; ++p) {
            const float* xp = xn + poff[p];
            __m512 gv[NV];
            for (int v = 0; v < NV; ++v) gv[v] = _mm512_loadu_ps(gn + p * kBlock + 16 * v);
            for (int t = 0; t < NK; ++t) {
                const __m512 xb = _mm512_set1_ps(xp[k[t]]);
                for (int v = 0; v < NV; ++v) acc[t][v] = _mm512_fmadd_ps(xb, gv[v], acc[t][v]);
            }
        }
    }
    for (int t = 0; t < NK; ++t) {
        for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + t * kBlock + 16 * v, acc[t][v]);
    }
}

template <int NV, int... I>
constexpr std::array<WeightTileFn, kTile> weight_tile_row(std::integer_sequence<int, I...>) {
    return {&weight_tile<I + 1, NV>...};
}
const std::array<WeightTileFn, kTile> kWeightTiles[2] = {
    weight_tile_row<1>(std::make_integer_sequence<int, kTile>{}),
    weight_tile_row<2>(std::make_integer_sequence<int, kTile>{})};


// One set of output positions that share their taps: a whole convolution, or one output phase of
// a transposed convolution.
struct Pass {
    int64_t kdim = 0;           // taps per output (K)
    int64_t per_channel = 0;    // taps per input channel: K = Cg * per_channel
    std::vector<int64_t> koff;  // (K) offset of each tap in the padded sample, from the group's channel 0
    std::vector<int64_t> poff;  // (P) offset of each output position's window in the padded sample
    std::vector<int64_t> yoff;  // (P) offset of each output position in an output plane
    std::unique_ptr<float[]> wr;  // (G, blocks, K, 32): the weights, 32 output channels side by side
};

// What all passes share: the padded sample (C, HP, WP) with the image at (PT, PL), and the output.
struct Problem {
    int64_t n, c, h, w;       // x (N, C, H, W)
    int64_t pt, pl, hp, wp;   // padding top / left, padded size
    int64_t cout, groups, plane;  // y (N, C_out, plane)
    int64_t cg, cog, blocks;  // channels per group in and out, 32-channel blocks per group
    std::vector<float> br;    // (G, blocks, 32): the bias, zero-padded (zeros without bias)
};

Problem make_problem(const Geometry& g, int64_t pt, int64_t pl, int64_t hp, int64_t wp, int64_t cout,
                     int64_t groups, int64_t plane, const float* b) {
    Problem pr{g.n, g.c, g.h, g.w, pt, pl, hp, wp, cout, groups, plane, g.c / groups, cout / groups, 0, {}};
    pr.blocks = (pr.cog + kBlock - 1) / kBlock;
    pr.br.assign(groups * pr.blocks * kBlock, 0.0f);
    for (int64_t o = 0; b && o < cout; ++o) {
        pr.br[((o / pr.cog) * pr.blocks + (o % pr.cog) / kBlock) * kBlock + (o % pr.cog) % kBlock] = b[o];
    }
    return pr;
}

// Where w keeps the weights: for output channel o and input channel ci of its group, the kernel's
// KH*KW taps lie side by side at w + wbase[o] + ci * cstride. Tap r belongs to pass pass_of[r]
// (none: -1), where it is tap ci * per_channel + k_of[r].
struct WeightLayout {
    int64_t khw = 0, cstride = 0;
    std::vector<int64_t> wbase;          // (C_out)
    std::vector<int64_t> pass_of, k_of;  // (KH*KW)
};

// Every pass's wr[g, block, k, lane] = the weight of tap k for output channel g*Cog + block*32 +
// lane, zero past the group's last channel. For 16 output channels and one input channel at a
// time, their 16 rows of KH*KW taps are loaded, transposed in registers, and each tap's 16
// channels stored where its pass wants them. (This runs once per call, before the threads start:
// with a division per element it took 0.9 ms of L5's 10 ms forward; one element at a time from
// index tables, 0.10-0.19 ms; this way 0.05-0.10 ms, about as long as reading w and writing wr.)
__attribute__((target("avx512f"))) void reorder_weights(std::vector<Pass>& passes, const Problem& pr, const float* w,
                                                        const WeightLayout& wl) {
    for (Pass& ps : passes) ps.wr.reset(new float[static_cast<size_t>(pr.groups * pr.blocks * ps.kdim * kBlock)]);
    for (int64_t gi = 0; gi < pr.groups; ++gi) {
        for (int64_t ob = 0; ob < pr.blocks; ++ob) {
            const int64_t gb = gi * pr.blocks + ob, valid = std::min<int64_t>(kBlock, pr.cog - ob * kBlock);
            for (int64_t half = 0; half < 2; ++half) {  // lanes 16*half .. 16*half + 15
                const int64_t lanes = std::clamp<int64_t>(valid - 16 * half, 0, 16);
                const int64_t* base = wl.wbase.data() + gi * pr.cog + ob * kBlock + 16 * half;
                for (int64_t ci = 0; ci < pr.cg; ++ci) {
                    for (int64_t r0 = 0; r0 < wl.khw; r0 += 16) {
                        const int64_t count = std::min<int64_t>(16, wl.khw - r0);
                        const __mmask16 m = static_cast<__mmask16>((1u << count) - 1);
                        __m512 r[16];  // row j: channel j's taps r0 .. r0 + 15
                        for (int64_t j = 0; j < 16; ++j) {
                            r[j] = j < lanes ? _mm512_maskz_loadu_ps(m, w + base[j] + ci * wl.cstride + r0)
                                             : _mm512_setzero_ps();
                        }
                        transpose16(r);  // row i: tap r0 + i of the 16 channels
                        for (int64_t i = 0; i < count; ++i) {
                            const int64_t p = wl.pass_of[r0 + i];
                            if (p < 0) continue;
                            Pass& ps = passes[p];
                            const int64_t k = ci * ps.per_channel + wl.k_of[r0 + i];
                            _mm512_storeu_ps(ps.wr.get() + (gb * ps.kdim + k) * kBlock + 16 * half, r[i]);
                        }
                    }
                }
            }
        }
    }
}

// Every pass over every sample: work items (n, group, block), n slowest, so that a thread's
// consecutive items mostly reuse its padded sample; each item runs all passes, so the output
// phases of one channel block, which share cache lines of y, are written by one thread. Items are
// big (K * P * 32 multiply-adds), so one at a time is handed out. The tiles fill ys, and y is
// written once per item, plane after plane: writing each tile's 14 positions straight into the
// 32 planes made L5's transposed forward and input gradient 5-6% slower (docs/performance.md).
void run(const float* x, float* y, const Problem& pr, const std::vector<Pass>& passes, int threads) {
    if (threads <= 0) threads = num_threads();
    int64_t macs = 0;
    for (const Pass& ps : passes) macs += pr.n * static_cast<int64_t>(ps.poff.size()) * pr.cout * ps.kdim;
    const int use = macs >= (int64_t(1) << 22) ? threads : 1;
    const int64_t plane = pr.hp * pr.wp;
    std::vector<float> scratch(static_cast<size_t>(use * pr.c * plane), 0.0f);  // borders stay zero
    std::vector<int64_t> padded(use, -1);                                        // sample in each scratch
    std::vector<float> staged(static_cast<size_t>(use * pr.plane * kBlock));     // ys of each thread
    const int64_t per_sample = pr.groups * pr.blocks;
    parallel_for(pr.n * per_sample, 1, use, [&](int64_t lo, int64_t hi, int slot) {
        float* xs = scratch.data() + slot * pr.c * plane;
        float* ys = staged.data() + slot * pr.plane * kBlock;  // (OH*OW, 32)
        for (int64_t item = lo; item < hi; ++item) {
            const int64_t n = item / per_sample, gi = (item % per_sample) / pr.blocks, ob = item % pr.blocks;
            if (padded[slot] != n) {
                pad_sample(x + n * pr.c * pr.h * pr.w, xs, pr.c, pr.h, pr.w, pr.hp, pr.wp, pr.pt, pr.pl);
                padded[slot] = n;
            }
            const float* xg = xs + gi * pr.cg * plane;
            const float* bb = pr.br.data() + (gi * pr.blocks + ob) * kBlock;
            const int64_t o0 = gi * pr.cog + ob * kBlock, valid = std::min<int64_t>(kBlock, pr.cog - ob * kBlock);
            float* yn = y + (n * pr.cout + o0) * pr.plane;
            const auto& row = kTiles[valid > 16 ? 1 : 0];
            for (const Pass& ps : passes) {
                const float* wb = ps.wr.get() + (gi * pr.blocks + ob) * ps.kdim * kBlock;
                const int64_t np = static_cast<int64_t>(ps.poff.size());
                for (int64_t p0 = 0; p0 < np; p0 += kTile) {
                    const int64_t count = std::min<int64_t>(kTile, np - p0);
                    row[count - 1](xg, ps.koff.data(), ps.kdim, ps.poff.data() + p0, wb, bb, ys, ps.yoff.data() + p0);
                }
            }
            store_planes(ys, kBlock, yn, pr.plane, valid);  // (OH*OW, 32) -> (32, OH*OW)
        }
    });
}

// A convolution's offsets in its zero-padded sample (HP, WP): koff[k] of tap k = (c, i, j) of one
// group's Cg channels, poff[p] of output position p = (oh, ow). Shared by the forward and the
// weight gradient, which read the same windows.
void conv_offsets(const Geometry& g, int64_t cg, int64_t hp, int64_t wp, std::vector<int64_t>& koff,
                  std::vector<int64_t>& poff) {
    koff.resize(cg * g.kh * g.kw);
    for (int64_t c = 0; c < cg; ++c) {
        for (int64_t i = 0; i < g.kh; ++i) {
            for (int64_t j = 0; j < g.kw; ++j) koff[(c * g.kh + i) * g.kw + j] = (c * hp + i * g.dh) * wp + j * g.dw;
        }
    }
    poff.resize(g.oh * g.ow);
    for (int64_t p = 0; p < g.oh * g.ow; ++p) poff[p] = (p / g.ow) * g.sh * wp + (p % g.ow) * g.sw;
}

}  // namespace

bool conv2d_direct_supported() {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

void conv2d_direct(const float* x, const float* w, const float* b, float* y, const Geometry& g, int64_t cout,
                   int64_t groups, int threads) {
    if (!conv2d_direct_supported()) throw std::runtime_error("conv2d_direct: this CPU has no AVX-512F");
    const int64_t hp = g.h + 2 * g.ph, wp = g.w + 2 * g.pw, np = g.oh * g.ow;
    const Problem pr = make_problem(g, g.ph, g.pw, hp, wp, cout, groups, np, b);
    std::vector<Pass> passes(1);
    Pass& ps = passes[0];
    ps.per_channel = g.kh * g.kw;
    ps.kdim = pr.cg * ps.per_channel;
    conv_offsets(g, pr.cg, hp, wp, ps.koff, ps.poff);
    ps.yoff.resize(np);
    for (int64_t p = 0; p < np; ++p) ps.yoff[p] = p;  // y's positions in order
    WeightLayout wl;  // w: (C_out, Cg, KH, KW), its taps in the pass's order
    wl.khw = ps.per_channel;
    wl.cstride = wl.khw;
    for (int64_t o = 0; o < cout; ++o) wl.wbase.push_back(o * ps.kdim);
    wl.pass_of.assign(wl.khw, 0);
    for (int64_t r = 0; r < wl.khw; ++r) wl.k_of.push_back(r);
    reorder_weights(passes, pr, w, wl);
    run(x, y, pr, passes, threads);
}

// Per axis, with stride s, padding p, kernel k (dilation 1): output row oy = s*q + a - p of phase a
// receives x[q - t] * w[a + s*t] for t = 0 .. T_a - 1, T_a = ceil((k - a) / s). So phase a is a
// stride-1 sum over T_a taps at input rows q, q - 1, ...; x is padded above by enough rows that
// q - t never falls off it, and the rows past the image read zeros.
struct PhaseAxis {
    int64_t taps;    // T_a
    int64_t q0, q1;  // the phase's outputs: q0 <= q <= q1 (empty when q1 < q0)
};

PhaseAxis phase_axis(int64_t a, int64_t s, int64_t p, int64_t k, int64_t out) {
    const int64_t taps = a < k ? (k - a + s - 1) / s : 0;
    // oy = s*q + a - p must lie in [0, out): q >= ceil((p - a) / s), q <= floor((out - 1 + p - a) / s).
    const int64_t lo = p - a, hi = out - 1 + p - a;
    const int64_t q0 = lo >= 0 ? (lo + s - 1) / s : -((-lo) / s);
    const int64_t q1 = hi >= 0 ? hi / s : -((-hi + s - 1) / s);
    return {taps, q0, q1};
}

void conv_transpose2d_direct(const float* x, const float* w, const float* b, float* y, const Geometry& g,
                             int64_t cout, int64_t groups, int threads) {
    if (!conv2d_direct_supported()) throw std::runtime_error("conv_transpose2d_direct: this CPU has no AVX-512F");
    // g as col2im sees it, but with x's channels: g.n, g.c = C (x's channels), g.h, g.w = the output
    // size, and (g.oh, g.ow) = x's size, the conv size of the output. y is (N, C_out, g.h, g.w).
    const int64_t c = g.c, h = g.oh, wd = g.ow;
    std::vector<PhaseAxis> rows(g.sh), cols(g.sw);
    int64_t pt = 0, pl = 0, hp = 0, wp = 0;
    for (int64_t a = 0; a < g.sh; ++a) {
        rows[a] = phase_axis(a, g.sh, g.ph, g.kh, g.h);
        pt = std::max(pt, rows[a].taps - 1 - rows[a].q0);
    }
    for (int64_t a = 0; a < g.sw; ++a) {
        cols[a] = phase_axis(a, g.sw, g.pw, g.kw, g.w);
        pl = std::max(pl, cols[a].taps - 1 - cols[a].q0);
    }
    hp = h + pt;
    wp = wd + pl;
    for (const PhaseAxis& r : rows) hp = std::max(hp, r.q1 + pt + 1);
    for (const PhaseAxis& q : cols) wp = std::max(wp, q.q1 + pl + 1);
    const Geometry gx{g.n, c, h, wd, g.kh, g.kw, 1, 1, 0, 0, 1, 1, g.h, g.w};
    const Problem pr = make_problem(gx, pt, pl, hp, wp, cout, groups, g.h * g.w, b);
    // w: (C, C_out/G, KH, KW): output channel o = g*Cog + j, input channel ci of its group, at
    // w[g*Cg + ci, j]. Tap (kh, kw) belongs to the phase (kh % SH, kw % SW), as its tap (t, u) =
    // (kh / SH, kw / SW).
    WeightLayout wl;
    wl.khw = g.kh * g.kw;
    wl.cstride = pr.cog * wl.khw;
    for (int64_t o = 0; o < cout; ++o) wl.wbase.push_back(((o / pr.cog) * pr.cg * pr.cog + o % pr.cog) * wl.khw);
    wl.pass_of.assign(wl.khw, -1);
    wl.k_of.assign(wl.khw, 0);
    std::vector<Pass> passes;
    for (int64_t a = 0; a < g.sh; ++a) {
        for (int64_t bb = 0; bb < g.sw; ++bb) {
            const PhaseAxis& r = rows[a];
            const PhaseAxis& q = cols[bb];
            if (r.q1 < r.q0 || q.q1 < q.q0) continue;  // no output row or column in this phase
            Pass ps;
            ps.per_channel = r.taps * q.taps;
            ps.kdim = pr.cg * ps.per_channel;
            ps.koff.resize(ps.kdim);
            for (int64_t ci = 0; ci < pr.cg; ++ci) {
                for (int64_t t = 0; t < r.taps; ++t) {
                    for (int64_t u = 0; u < q.taps; ++u) {
                        ps.koff[(ci * r.taps + t) * q.taps + u] = ci * hp * wp - t * wp - u;  // rows q - t, cols r - u
                    }
                }
            }
            for (int64_t qy = r.q0; qy <= r.q1; ++qy) {
                for (int64_t qx = q.q0; qx <= q.q1; ++qx) {
                    ps.poff.push_back((qy + pt) * wp + qx + pl);
                    ps.yoff.push_back((g.sh * qy + a - g.ph) * g.w + g.sw * qx + bb - g.pw);
                }
            }
            for (int64_t t = 0; t < r.taps; ++t) {
                for (int64_t u = 0; u < q.taps; ++u) {
                    const int64_t tap = (a + g.sh * t) * g.kw + bb + g.sw * u;
                    wl.pass_of[tap] = static_cast<int64_t>(passes.size());
                    wl.k_of[tap] = t * q.taps + u;
                }
            }
            passes.push_back(std::move(ps));
        }
    }
    reorder_weights(passes, pr, w, wl);
    run(x, y, pr, passes, threads);
}

void conv2d_weight_grad_direct(const float* x, const float* gy, float* gw, const Geometry& g, int64_t cout,
                               int64_t groups, int threads) {
    if (!conv2d_direct_supported()) throw std::runtime_error("conv2d_weight_grad_direct: this CPU has no AVX-512F");
    if (threads <= 0) threads = num_threads();
    const int64_t hp = g.h + 2 * g.ph, wp = g.w + 2 * g.pw, plane = hp * wp, np = g.oh * g.ow;
    const int64_t cg = g.c / groups, cog = cout / groups, kdim = cg * g.kh * g.kw;
    const int64_t blocks = (cog + kBlock - 1) / kBlock, ktiles = (kdim + kTile - 1) / kTile;
    const int64_t cpad = groups * blocks * kBlock;  // gy's channels, each group's padded to whole blocks
    if (g.n == 0) {  // an empty batch: the sum over it is zero
        std::fill(gw, gw + cout * kdim, 0.0f);
        return;
    }

    std::vector<int64_t> koff, poff;
    conv_offsets(g, cg, hp, wp, koff, poff);

    // The batch in chunks of m samples, each zero-padded, (m, C, HP, WP), with its gy transposed to
    // (m, G, blocks, P, 32). A chunk's padded x is at most kChunkElems: the scratch stays a few MB
    // whatever the batch (a whole padded batch was up to 15 MB on W3 of the benchmarks).
    constexpr int64_t kChunkElems = int64_t(1) << 20;
    const int64_t m = std::max<int64_t>(1, std::min<int64_t>(g.n, kChunkElems / (g.c * plane)));
    // Uninitialised: each sample's part is zeroed (borders, padding channels) by the thread that
    // fills it, not by the caller alone before the loop (5.6 MB of zeros on L5's weight gradient).
    std::unique_ptr<float[]> xs(new float[static_cast<size_t>(m * g.c * plane)]);
    std::unique_ptr<float[]> gyt(new float[static_cast<size_t>(m * cpad * np)]);
    const int use = g.n * np * cout * kdim >= (int64_t(1) << 22) ? threads : 1;
    for (int64_t n0 = 0; n0 < g.n; n0 += m) {
        const int64_t count_n = std::min(m, g.n - n0);
        parallel_for(count_n, 1, use, [&](int64_t lo, int64_t hi, int) {
            for (int64_t s = lo; s < hi; ++s) {
                const int64_t n = n0 + s;
                if (n0 == 0) {  // the rows copied below cover the same places in every chunk
                    std::fill(&xs[s * g.c * plane], &xs[(s + 1) * g.c * plane], 0.0f);
                    std::fill(&gyt[s * cpad * np], &gyt[(s + 1) * cpad * np], 0.0f);
                }
                pad_sample(x + n * g.c * g.h * g.w, &xs[s * g.c * plane], g.c, g.h, g.w, hp, wp, g.ph, g.pw);
                for (int64_t o = 0; o < cout; ++o) {
                    const int64_t gi = o / cog, ob = (o % cog) / kBlock, lane = (o % cog) % kBlock;
                    float* dst = &gyt[((s * groups + gi) * blocks + ob) * np * kBlock + lane];
                    const float* src = gy + (n * cout + o) * np;
                    for (int64_t p = 0; p < np; ++p) dst[p * kBlock] = src[p];
                }
            }
        });
        // Work items (group, block, tap tile): each owns its entries of gw and sums them over the
        // chunk, then adds that onto the earlier chunks' sum; no two threads touch one entry, and
        // the order of the sum is fixed whatever the thread count. Their order: on one thread a
        // block's tap tiles in turn (its transposed gradient stays in L2); on several, a tap tile's
        // blocks in turn, so the threads read the same stretch of the padded batch at once (L5's
        // weight gradient: 7% and 15% faster than the other order; docs/performance.md).
        const bool taps_outer = use > 1;
        parallel_for(groups * blocks * ktiles, 1, use, [&](int64_t lo, int64_t hi, int) {
            alignas(64) float tmp[kTile * kBlock];
            for (int64_t item = lo; item < hi; ++item) {
                const int64_t gi = item / (blocks * ktiles), r = item % (blocks * ktiles);
                const int64_t ob = taps_outer ? r % blocks : r / ktiles, kt = taps_outer ? r / blocks : r % ktiles;
                const int64_t k0 = kt * kTile, count = std::min<int64_t>(kTile, kdim - k0);
                const int64_t valid = std::min<int64_t>(kBlock, cog - ob * kBlock);
                kWeightTiles[valid > 16 ? 1 : 0][count - 1](xs.get() + gi * cg * plane, g.c * plane, count_n,
                                                             koff.data() + k0, poff.data(), np,
                                                             gyt.get() + (gi * blocks + ob) * np * kBlock,
                                                             cpad * np, tmp);
                for (int64_t o = 0; o < valid; ++o) {
                    float* dst = gw + (gi * cog + ob * kBlock + o) * kdim + k0;  // gw: (C_out, K)
                    for (int64_t t = 0; t < count; ++t) {
                        dst[t] = n0 == 0 ? tmp[t * kBlock + o] : dst[t] + tmp[t * kBlock + o];
                    }
                }
            }
        });
    }
}

#else  // not an x86-64 GCC/Clang build

bool conv2d_direct_supported() { return false; }

void conv2d_direct(const float*, const float*, const float*, float*, const Geometry&, int64_t, int64_t, int) {
    throw std::runtime_error("conv2d_direct: not built for this platform (x86-64 with GCC or Clang only)");
}

void conv_transpose2d_direct(const float*, const float*, const float*, float*, const Geometry&, int64_t, int64_t,
                             int) {
    throw std::runtime_error("conv_transpose2d_direct: not built for this platform (x86-64 with GCC or Clang only)");
}

void conv2d_weight_grad_direct(const float*, const float*, float*, const Geometry&, int64_t, int64_t, int) {
    throw std::runtime_error("conv2d_weight_grad_direct: not built for this platform (x86-64 with GCC or Clang only)");
}

#endif

}  // namespace tinyae
