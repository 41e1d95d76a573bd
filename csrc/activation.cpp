// The loops of activation.h, split into blocks over the thread pool.
#include "activation.h"

#include <algorithm>

#include "parallel.h"

namespace tinyae {

namespace {

// Below this many elements a loop runs on the calling thread; blocks of kGrain elements (256 KB of
// float32) are handed out otherwise. A pass costs ~0.1-0.3 ns per element, so a block is ~10-20
// us of work, ten times a hand-off to an awake worker (docs/performance.md).
constexpr int64_t kGrain = int64_t(1) << 16;

}  // namespace

template <typename T>
void leaky_relu(const T* x, T* y, int64_t n, T slope, int threads) {
    parallel_for(n, kGrain, threads, [&](int64_t lo, int64_t hi, int) {
        for (int64_t i = lo; i < hi; ++i) {
            // Both sides computed, then one picked: a vector select (CMakeLists.txt says which
            // flag that needs). + 0 turns ReLU's 0 * (x < 0) = -0 into 0, as max(x, 0) gives.
            const T v = x[i], scaled = slope * v + T(0);
            y[i] = v > T(0) ? v : scaled;
        }
    });
}

template <typename T>
void leaky_relu_backward(const T* a, const T* gy, T* gx, int64_t n, T slope, int threads) {
    parallel_for(n, kGrain, threads, [&](int64_t lo, int64_t hi, int) {
        for (int64_t i = lo; i < hi; ++i) {
            const T g = gy[i], scaled = slope * g;
            gx[i] = a[i] > T(0) ? g : scaled;
        }
    });
}

template void leaky_relu<float>(const float*, float*, int64_t, float, int);
template void leaky_relu<double>(const double*, double*, int64_t, double, int);
template void leaky_relu_backward<float>(const float*, const float*, float*, int64_t, float, int);
template void leaky_relu_backward<double>(const double*, const double*, double*, int64_t, double, int);

}  // namespace tinyae
