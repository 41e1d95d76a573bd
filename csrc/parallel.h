// A small thread pool for the kernels' loops over image planes.
//
// Why not OpenMP: the loops share the machine with BLAS, whose own threads (OpenBLAS's pthreads,
// or a second OpenMP runtime such as PyTorch's, which a process-wide libgomp.so.1 would even
// share with us) may still be spinning when a kernel starts. An OpenMP `schedule(static)` loop
// hands each thread a fixed half of the work and waits at its end for the slowest thread: one
// worker that shares its core with a spinning thread made a 2-thread im2col slower than the
// same call on one thread. Here blocks are handed out one at a time to whichever thread is free,
// the calling thread works too, and a worker that has not started by the time the caller ran
// out of blocks is not waited for. An idle worker stays awake for 1 ms, so that the next loop
// of a training step (microseconds away) finds it running, then sleeps on a condition variable.
#pragma once

#include <cstdint>
#include <functional>

namespace tinyae {

// The hardware threads (>= 1): the default of a call that names no thread count. (tinyae's Python
// layer always names one: tinyae.get_num_threads(), or 1 inside its own parallel loops.)
int num_threads();

// body(lo, hi, slot) runs the iterations [lo, hi) of a loop over [0, n); `slot` (0 <= slot <
// threads) is unique among the threads running the loop at the same time (an index for
// per-thread scratch memory).
using LoopBody = std::function<void(int64_t lo, int64_t hi, int slot)>;

// Run body over [0, n) in blocks of `grain` iterations on up to `threads` threads (workers are
// started lazily, by the first loop that needs them). Runs on the
// calling thread alone when threads <= 1, n <= grain, inside another parallel_for (nested), or
// while another thread's loop holds the pool. An exception thrown by body stops the handing
// out of blocks and is rethrown here once every thread has left the loop.
void parallel_for(int64_t n, int64_t grain, int threads, const LoopBody& body);

}  // namespace tinyae
