// Batch normalisation's per-channel passes (formulas in batch_norm.h).
#include "batch_norm.h"

#include <cmath>

#include "parallel.h"

namespace tinyae {

namespace {

constexpr int kLanes = 8;

// sum_k a[k] (or sum_k a[k] * (b[k] - shift) with b): 8 independent lanes the compiler turns into
// one vector register, then added up in double. Lanes hold at most L/8 terms of one row.
template <typename T>
double row_sum(const T* a, int64_t l) {
    T acc[kLanes] = {};
    int64_t k = 0;
    for (; k + kLanes <= l; k += kLanes) {
        for (int j = 0; j < kLanes; ++j) acc[j] += a[k + j];
    }
    double s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    for (; k < l; ++k) s += a[k];
    return s;
}

// sum_k (a[k] - shift)^2 when a == b, else sum_k a[k] * (b[k] - shift).
template <typename T>
double row_dot_centered(const T* a, const T* b, T shift, int64_t l) {
    T acc[kLanes] = {};
    int64_t k = 0;
    for (; k + kLanes <= l; k += kLanes) {
        for (int j = 0; j < kLanes; ++j) acc[j] += a[k + j] * (b[k + j] - shift);
    }
    double s = 0;
    for (int j = 0; j < kLanes; ++j) s += acc[j];
    for (; k < l; ++k) s += double(a[k]) * (b[k] - shift);
    return s;
}

// Channels per block handed to a thread: about 64K values.
int64_t channel_grain(int64_t n, int64_t l) {
    const int64_t per_channel = n * l;
    return per_channel >= (int64_t(1) << 16) ? 1 : (int64_t(1) << 16) / per_channel;
}

// Below this many values the loop stays on the calling thread: the passes over 256K values take
// about as long as waking a worker.
constexpr int64_t kMinParallelValues = int64_t(1) << 18;

int bn_threads(int64_t n, int64_t c, int64_t l, int threads) {
    return n * c * l >= kMinParallelValues ? threads : 1;
}

}  // namespace

template <typename T>
void batch_norm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* var, T* inv_std, int64_t n, int64_t c,
                        int64_t l, double eps, int threads) {
    const int64_t m = n * l;
    parallel_for(c, channel_grain(n, l), bn_threads(n, c, l, threads), [&](int64_t lo, int64_t hi, int) {
        for (int64_t ch = lo; ch < hi; ++ch) {
            double s = 0;
            for (int64_t i = 0; i < n; ++i) s += row_sum(x + (i * c + ch) * l, l);
            const T mu = T(s / m);
            double ss = 0;
            for (int64_t i = 0; i < n; ++i) {
                const T* row = x + (i * c + ch) * l;
                ss += row_dot_centered(row, row, mu, l);
            }
            const T variance = T(ss / m);
            const T inv = T(1.0 / std::sqrt(double(variance) + eps));
            const T scale = w ? inv * w[ch] : inv;
            const T shift = b ? b[ch] : T(0);
            for (int64_t i = 0; i < n; ++i) {
                const T* row = x + (i * c + ch) * l;
                T* out = y + (i * c + ch) * l;
                for (int64_t k = 0; k < l; ++k) out[k] = (row[k] - mu) * scale + shift;
            }
            mean[ch] = mu;
            var[ch] = variance;
            inv_std[ch] = inv;
        }
    });
}

template <typename T>
void batch_norm_backward(const T* x, const T* gy, const T* mean, const T* inv_std, const T* w, T* gx, T* gw, T* gb,
                         int64_t n, int64_t c, int64_t l, int threads) {
    const int64_t m = n * l;
    parallel_for(c, channel_grain(n, l), bn_threads(n, c, l, threads), [&](int64_t lo, int64_t hi, int) {
        for (int64_t ch = lo; ch < hi; ++ch) {
            const T mu = mean[ch], inv = inv_std[ch];
            double sg = 0, sgx = 0;  // sum(gy), sum(gy * (x - mean))
            for (int64_t i = 0; i < n; ++i) {
                const int64_t at = (i * c + ch) * l;
                sg += row_sum(gy + at, l);
                sgx += row_dot_centered(gy + at, x + at, mu, l);
            }
            gb[ch] = T(sg);
            gw[ch] = T(inv * sgx);
            if (!gx) continue;
            // gx = a * gy + k * (x - mean) + b0, with per-channel a, k, b0 from the formula.
            const T a = w ? inv * w[ch] : inv;
            const T k = T(-double(a) * inv * (inv * sgx) / m);
            const T b0 = T(-double(a) * sg / m);
            for (int64_t i = 0; i < n; ++i) {
                const int64_t at = (i * c + ch) * l;
                const T* g = gy + at;
                const T* row = x + at;
                T* out = gx + at;
                for (int64_t e = 0; e < l; ++e) out[e] = a * g[e] + k * (row[e] - mu) + b0;
            }
        }
    });
}

template void batch_norm_forward<float>(const float*, const float*, const float*, float*, float*, float*, float*,
                                        int64_t, int64_t, int64_t, double, int);
template void batch_norm_forward<double>(const double*, const double*, const double*, double*, double*, double*,
                                         double*, int64_t, int64_t, int64_t, double, int);
template void batch_norm_backward<float>(const float*, const float*, const float*, const float*, const float*, float*,
                                         float*, float*, int64_t, int64_t, int64_t, int);
template void batch_norm_backward<double>(const double*, const double*, const double*, const double*, const double*,
                                          double*, double*, double*, int64_t, int64_t, int64_t, int);

}  // namespace tinyae
