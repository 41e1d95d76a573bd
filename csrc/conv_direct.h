// Direct float32 convolutions for CPUs with AVX-512: no column buffer, no separate matrix
// product. Three kernels: a convolution's forward, a transposed convolution's forward (which is
// also a convolution's input gradient), and a convolution's weight gradient.
//
// Notation as in geometry.h: x (N, C, H, W), weight (C_out, C/G, KH, KW), y (N, C_out, OH, OW),
// G groups, K = C/G * KH * KW (the length of one dot product), P = OH * OW (output positions of one
// sample). What the forward computes is the im2col convolution of tinyae/nn/conv.py:
//
//   y[n, o, p] = b[o] + sum_k W[o, k] * col[k, (n, p)],   col = im2col(x) of group(o)
//
// How: a tile of up to 14 output positions times 32 output channels is held in 28 vector
// registers while the loop runs over all K taps; each step broadcasts 14 input values (read
// straight from a zero-padded copy of the sample) and multiplies them by two vectors of 16
// weights. Every output is written once, after its whole sum; nothing else goes through memory.
// The transposed forward runs the same tiles once per output phase; the weight gradient turns
// them around (14 taps x 32 channels of gW, summed over every position of the batch).
// Their speed against im2col plus OpenBLAS, and where each is used: docs/performance.md and
// tinyae/nn/conv.py.
#pragma once

#include <cstdint>

#include "geometry.h"

namespace tinyae {

// Whether this build and this CPU can run conv2d_direct (an x86-64 build with GCC or Clang, and
// a CPU with AVX-512F).
bool conv2d_direct_supported();

// Largest per-thread scratch, in elements, that the direct kernels accept: one zero-padded sample
// C * (H + 2PH) * (W + 2PW), and (forward and transposed forward) the 32 output planes
// 32 * OH * OW of one channel block.
constexpr int64_t kDirectMaxScratch = int64_t(1) << 24;

// y = conv2d(x, w) + b (b may be null). g: the geometry of the unfolded input (g.c = C, all
// groups); cout: C_out. Throws std::runtime_error when !conv2d_direct_supported().
void conv2d_direct(const float* x, const float* w, const float* b, float* y, const Geometry& g, int64_t cout,
                   int64_t groups, int threads);

// y = conv_transpose2d(x, w) + b (b may be null), dilation 1: x (N, C, OH, OW), w (C, C_out/G, KH,
// KW), y (N, C_out, H, W). g: the geometry of y as an image unfolded to x's size, with g.c = C
// (x's channels): g.h, g.w = H, W and g.oh, g.ow = OH, OW. Computed as SH*SW stride-1 sums, one
// per output phase (oy mod SH, ox mod SW), each written straight to its pixels of y.
void conv_transpose2d_direct(const float* x, const float* w, const float* b, float* y, const Geometry& g,
                             int64_t cout, int64_t groups, int threads);

// gw = the weight gradient of y = conv2d(x, w) for the upstream gradient gy (N, C_out, OH, OW):
// gw[o, k] = sum over n and output positions of gy * (the input value tap k reads), gw (C_out, C/G,
// KH, KW). g as for conv2d_direct. One thread owns each (group, 32 channels, 14 taps) tile of gw and
// sums it over the batch, chunk by chunk: no reduction across threads, a fixed order.
void conv2d_weight_grad_direct(const float* x, const float* gy, float* gw, const Geometry& g, int64_t cout,
                               int64_t groups, int threads);

}  // namespace tinyae
