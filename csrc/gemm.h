// A float32 matrix product for CPUs with AVX-512: C = A @ B.
//
//   A (M, K), B (K, N), C (M, N);  C[i][j] = sum_k A[i][k] * B[k][j]
//
// A and B are read through element strides (A[i][k] = a[i*sa_row + k*sa_col], the same for B),
// so a transposed view (x @ W.T, gy.T @ x) needs no copy; A needs sa_col == 1 or sa_row == 1
// (B any strides). C is row-major with row stride ldc.
// Each C[i][j] is summed by one thread in the order k = 0, 1, ..., K - 1 (fused multiply-adds
// in float32): the result does not depend on the thread count.
#pragma once

#include <cstdint>

namespace tinyae {

// True when this CPU runs the kernel (AVX-512 F); sgemm must not be called otherwise.
bool gemm_available();

void sgemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t sa_row, int64_t sa_col, const float* b,
           int64_t sb_row, int64_t sb_col, float* c, int64_t ldc, int threads);

}  // namespace tinyae
