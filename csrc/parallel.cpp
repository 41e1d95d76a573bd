// The thread pool of parallel.h.
//
// One loop ("job") at a time. The caller publishes the job and wakes the sleeping workers (the
// awake ones are watching job_), then takes blocks itself. A worker joins the job only while it
// is open; when the caller finds no block left it closes the job and waits only for the workers
// that joined (each finishes its current block). Workers are detached and the pool is never
// destroyed: at interpreter exit they are asleep, and a forked child (which inherits no threads)
// gets a fresh, empty pool.
//
// On Linux the workers keep off the CPU of the thread that started the loop, as tinyae's Python
// workers do (tinyae/parallel.py, _cpus_for_workers, says why: on a VM, after an idle pause, a
// woken worker tended to land on the caller's CPU and share it for many milliseconds).
#include "parallel.h"

#include <pthread.h>
#ifdef __linux__
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
inline void pause() { _mm_pause(); }
#else
inline void pause() {}
#endif

namespace tinyae {

namespace {

// How long an idle thread stays awake: 1 ms spans the gaps between the loops of a training step
// (docs/performance.md); after the first 50 us it yields its core to any other thread that wants
// it (BLAS's, or tinyae's Python workers).
constexpr std::chrono::microseconds kSpin{1000}, kSpinAlone{50};

thread_local bool inside_loop = false;  // set while this thread runs a loop's body

#ifdef __linux__
// The CPUs the calling thread may use, less the one it runs on; false when that leaves none or
// the information is missing.
bool cpus_for_workers(cpu_set_t* mask) {
    const int cpu = sched_getcpu();
    if (cpu < 0 || sched_getaffinity(0, sizeof(cpu_set_t), mask) != 0) return false;
    if (!CPU_ISSET(cpu, mask) || CPU_COUNT(mask) < 2) return false;
    CPU_CLR(cpu, mask);
    return true;
}
#endif

class Pool {
public:
    // Returns false (without running anything) when the pool is busy with another thread's loop.
    bool run(int64_t n, int64_t grain, int threads, const LoopBody& body) {
        std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (; started_ < threads - 1; ++started_) std::thread(&Pool::worker_loop, this, started_ + 1).detach();
            body_ = &body;
            n_ = n;
            grain_ = grain;
            next_.store(0);
            error_ = nullptr;
            wanted_ = threads - 1;
            open_ = true;
#ifdef __linux__
            has_cpus_ = cpus_for_workers(&cpus_);
#endif
            job_.fetch_add(1);
            if (sleeping_ > 0) wake_.notify_all();
        }
        work(0);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            open_ = false;  // from here on running_ only falls
        }
        spin_until([this] { return running_.load() == 0; });
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return running_ == 0; });
        body_ = nullptr;
        if (error_) std::rethrow_exception(error_);
        return true;
    }

private:
    void worker_loop(int slot) {
        inside_loop = true;  // a nested parallel_for from a worker runs serially
        uint64_t seen = 0;
#ifdef __linux__
        cpu_set_t mine;  // this worker's affinity, as last set here
        bool have_mine = false;
#endif
        for (;;) {
            spin_until([&] { return job_.load() != seen; });
            std::unique_lock<std::mutex> lock(mutex_);
            ++sleeping_;
            wake_.wait(lock, [&] { return job_.load() != seen; });
            --sleeping_;
            seen = job_.load();
            if (!open_ || slot > wanted_) continue;  // too late, or not needed for this job
            ++running_;
#ifdef __linux__
            if (has_cpus_ && !(have_mine && CPU_EQUAL(&cpus_, &mine))) {
                mine = cpus_;  // a failure (CPUs gone meanwhile) leaves us where the scheduler put us
                have_mine = pthread_setaffinity_np(pthread_self(), sizeof(cpu_set_t), &mine) == 0;
            }
#endif
            lock.unlock();
            work(slot);
            lock.lock();
            if (--running_ == 0) done_.notify_one();
        }
    }

    // Busy-wait until done() or kSpin has passed. A sleeping thread takes tens of microseconds
    // to wake on a virtual machine, as long as a small loop takes: between the loops of one
    // training step (microseconds apart) the threads stay awake (docs/performance.md).
    template <class Done>
    static void spin_until(Done done) {
        const auto start = std::chrono::steady_clock::now();
        while (!done()) {
            for (int i = 0; i < 16; ++i) pause();
            const auto waited = std::chrono::steady_clock::now() - start;
            if (waited >= kSpin) return;
            if (waited >= kSpinAlone) std::this_thread::yield();  // a thread that wants this core gets it
        }
    }

    // Take blocks until none is left (or a body threw).
    void work(int slot) {
        const bool was_inside = inside_loop;
        inside_loop = true;
        try {
            for (;;) {
                const int64_t lo = next_.fetch_add(grain_);
                if (lo >= n_) break;
                (*body_)(lo, std::min(lo + grain_, n_), slot);
            }
        } catch (...) {
            next_.store(n_);  // nobody takes another block
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
        }
        inside_loop = was_inside;
    }

    std::mutex run_mutex_;  // held by the thread whose loop owns the pool
    std::mutex mutex_;      // guards everything below except next_
    std::condition_variable wake_, done_;
    int started_ = 0;       // workers started so far; they have slots 1..started_
    std::atomic<uint64_t> job_{0};  // id of the latest job
    int sleeping_ = 0;      // workers blocked on wake_
    bool open_ = false;     // whether workers may still join it
    int wanted_ = 0;        // workers it may use: slots 1..wanted_
    std::atomic<int> running_{0};  // workers inside it
    const LoopBody* body_ = nullptr;
    int64_t n_ = 0, grain_ = 1;
    std::atomic<int64_t> next_{0};  // first iteration of the next block to hand out
    std::exception_ptr error_;
#ifdef __linux__
    cpu_set_t cpus_;          // where the workers may run during this job
    bool has_cpus_ = false;
#endif
};

Pool* the_pool = nullptr;
std::once_flag pool_once;

void fresh_pool_after_fork() { the_pool = new Pool(); }  // the parent's pool (and its threads) is gone

Pool& pool() {
    std::call_once(pool_once, [] {
        the_pool = new Pool();
        pthread_atfork(nullptr, nullptr, fresh_pool_after_fork);
    });
    return *the_pool;
}

}  // namespace

int num_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

void parallel_for(int64_t n, int64_t grain, int threads, const LoopBody& body) {
    grain = std::max<int64_t>(1, grain);
    threads = static_cast<int>(std::min<int64_t>(threads, (n + grain - 1) / grain));
    if (threads <= 1 || inside_loop || !pool().run(n, grain, threads, body)) {
        if (n > 0) body(0, n, 0);  // slot 0: a serial run uses the first scratch slot
    }
}

}  // namespace tinyae
