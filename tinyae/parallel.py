"""tinyae's CPU threads: one thread count, and a loop that splits work over it.

Notation: T = :func:`get_num_threads`, the threads tinyae runs its CPU work on, the calling
thread included.

**Why tinyae splits its own work.** NumPy's BLAS can thread each matrix product, but that
parallelises the products only: everything between them (unfolding images with im2col, folding
with col2im, the transposing copies, the activations) ran on one core. Worse, OpenBLAS's
worker threads keep spinning for about 0.1 s after each product, holding the other cores, so
nothing else could use them either. So tinyae splits the *loops* of its big ops instead: a
convolution's batch is cut into chunks and T threads take chunks one at a time, each running its
chunk from start to end (unfold, multiply, fold) with BLAS on one thread (a third faster on a
convolutional training step; docs/performance.md).

:func:`parallel_for` is that loop. Inside it, BLAS libraries are held at one thread (restored
afterwards, so NumPy code outside tinyae keeps its own setting) and the C++ kernels run serially
(:func:`in_parallel_region` tells them). tinyae's other products go through :func:`matmul`, which
splits a big product over the threads the same way: a single multi-threaded BLAS call would
leave its spinning threads in the way of the next loop.
Python threads can run in parallel here because NumPy's products and ufuncs, and tinyae's C++
kernels, release the GIL while they work.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from tinyae import _blas_spin

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "parallel_for",
    "in_parallel_region",
    "split",
    "matmul",
    "use_gemm",
]


def _default_threads() -> int:
    """``TINYAE_NUM_THREADS``, else ``OMP_NUM_THREADS`` (the variable most users already set to
    mean "threads"), else the CPUs this process may run on."""
    for name in ("TINYAE_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").split(",")[0].strip()  # OMP_NUM_THREADS may be a list
        if value.isdigit() and int(value) >= 1:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


_num_threads = _default_threads()


def get_num_threads() -> int:
    """Threads tinyae runs its CPU work on, the calling thread included (PyTorch's name).

    The default is ``TINYAE_NUM_THREADS``, else ``OMP_NUM_THREADS``, else every CPU this
    process may run on.
    """
    return _num_threads


def set_num_threads(n: int) -> None:
    """Run tinyae's CPU work on ``n`` threads (``n`` >= 1), the calling thread included.

    With ``n`` = 1 everything runs on the calling thread and NumPy's BLAS keeps its own thread
    count (``OPENBLAS_NUM_THREADS``, or ``threadpoolctl``).
    """
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: argument 'n' must be an int, got {type(n).__name__}")
    if n < 1:
        raise ValueError(f"set_num_threads: argument 'n' must be >= 1, got {n}")
    _num_threads = n


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """range(n) cut into ``min(parts, n)`` consecutive [start, stop) slices of near-equal size."""
    parts = max(1, min(parts, n))
    return [(n * i // parts, n * (i + 1) // parts) for i in range(parts)]


# ------------------------------------------------------------------ BLAS threads
class _Blas:
    """The BLAS libraries loaded in this process (found by threadpoolctl on first use)."""

    def __init__(self) -> None:
        self._libs: list[Any] | None = None

    def libs(self) -> list[Any]:
        if self._libs is None:
            from threadpoolctl import ThreadpoolController

            self._libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        return self._libs

    def limit_to_one(self) -> list[tuple[Any, int]]:
        """Set every BLAS to one thread; return what to restore."""
        return self.limit_to(1)

    def limit_to(self, threads: int) -> list[tuple[Any, int]]:
        """Set every BLAS to ``threads`` threads; return what to restore."""
        saved = []
        for lib in self.libs():
            n = lib.num_threads
            if n != threads:
                lib.set_num_threads(threads)
                saved.append((lib, n))
        return saved

    @staticmethod
    def restore(saved: list[tuple[Any, int]]) -> None:
        for lib, n in saved:
            lib.set_num_threads(n)


_blas = _Blas()


# ------------------------------------------------------------------ where the workers run
def _find_sched_getcpu() -> Callable[[], int] | None:
    try:
        return ctypes.CDLL(None).sched_getcpu  # glibc and musl
    except (OSError, AttributeError):
        return None


_sched_getcpu = _find_sched_getcpu()


def _cpus_for_workers() -> frozenset[int] | None:
    """The CPUs this process may use, less the one the calling thread is on (None: no such info,
    or no other CPU).

    Why the workers keep off the caller's CPU: after the process has been idle for a few tens of
    milliseconds, a virtual machine's scheduler tends to wake a worker on the CPU the caller is
    running on (the other virtual CPU, not yet running again, looks busy to it), and the two then
    share one core for many milliseconds before it separates them (a conv forward twice as slow
    after a pause; docs/performance.md).
    """
    if _sched_getcpu is None or not hasattr(os, "sched_getaffinity"):
        return None
    allowed = os.sched_getaffinity(0)
    others = frozenset(allowed - {_sched_getcpu()})
    return others if others and len(others) < len(allowed) else None


# ------------------------------------------------------------------ the loop
class _Job:
    """One parallel_for call: items handed out one at a time to whichever thread asks.

    ``cpus``: where the workers may run during this loop (see :func:`_cpus_for_workers`).
    """

    def __init__(self, n: int, body: Callable[[int], None], cpus: frozenset[int] | None = None) -> None:
        self.n, self.body, self.cpus = n, body, cpus
        self.next = itertools.count()  # next() is atomic under the GIL
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.open = True  # whether a late worker may still join
        self.running = 0  # workers inside
        self.finished = threading.Event()

    def work(self) -> None:
        """Run items until none are left (or one failed)."""
        for i in self.next:
            if i >= self.n or self.error is not None:
                return
            try:
                self.body(i)
            except BaseException as exc:  # handed to the caller, which raises it
                self.error = self.error or exc
                return

    def join(self) -> None:
        """A worker's part: join unless the caller already closed the job, then work."""
        with self.lock:
            if not self.open:
                return  # too late: the caller ran out of items and is not waiting for us
            self.running += 1
        try:
            self.work()
        finally:
            with self.lock:
                self.running -= 1
                if not self.open and self.running == 0:
                    self.finished.set()

    def close_and_wait(self) -> None:
        """The caller's end: no worker joins from now on; wait for those inside."""
        with self.lock:
            self.open = False
            wait = self.running > 0
        if wait:
            self.finished.wait()


_local = threading.local()  # .inside: this thread is running a parallel_for's items
_busy = threading.Lock()  # held by the thread whose loop owns the workers
_workers: list[queue.SimpleQueue] = []


def _worker(inbox: queue.SimpleQueue) -> None:
    _local.inside = True  # a parallel_for from inside an item runs serially
    cpus = None  # this thread's affinity, as last set here
    while True:
        job = inbox.get()
        if job.cpus is not None and job.cpus != cpus:
            try:
                os.sched_setaffinity(0, job.cpus)  # 0: this thread; it moves there at once
                cpus = job.cpus
            except OSError:  # the CPUs changed under us: stay where the scheduler put us
                pass
        job.join()


def _start_workers(count: int) -> None:
    while len(_workers) < count:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=_worker, args=(inbox,), name="tinyae-worker", daemon=True).start()
        _workers.append(inbox)


def _forget_workers() -> None:
    global _busy
    _workers.clear()  # a forked child has none of the parent's threads
    _busy = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


def in_parallel_region() -> bool:
    """Whether this thread is running the items of a :func:`parallel_for` (work inside an item
    runs on its thread alone)."""
    return getattr(_local, "inside", False)


def parallel_for(n: int, body: Callable[[int], None], threads: int | None = None) -> None:
    """Call ``body(i)`` for every i in range(n), on up to ``threads`` threads (default T).

    Items are handed out one at a time to whichever thread is free, the calling thread included;
    a worker that wakes after the items ran out is not waited for. Bodies must write disjoint
    outputs. BLAS runs on one thread meanwhile. Runs on the calling thread alone, in order, when
    one thread is asked for, n < 2, inside another parallel_for, or while another Python
    thread's loop holds the workers. The first exception raised by a body stops the handing out
    of items and is raised here once every thread has left the loop.
    """
    threads = min(get_num_threads() if threads is None else threads, n)
    if threads <= 1 or in_parallel_region() or not _busy.acquire(blocking=False):
        for i in range(n):
            body(i)
        return
    try:
        _start_workers(threads - 1)
        saved = _blas.limit_to_one()
        job = _Job(n, body, _cpus_for_workers())
        _local.inside = True
        try:
            for inbox in _workers[: threads - 1]:
                inbox.put(job)
            job.work()
            job.close_and_wait()
        finally:
            _local.inside = False
            _blas.restore(saved)
    finally:
        _busy.release()
    if job.error is not None:
        raise job.error


# ------------------------------------------------------------------ products
# From this many multiply-adds (M*N*K) on, a product is split over tinyae's threads; smaller ones
# are left to BLAS and its own threads: waking a Python thread (~0.1 ms on a VM) costs more than
# it gains below this size (docs/performance.md).
_MIN_SPLIT_MACS = 2**25


# The float32 product of the C++ kernels, gemm(a, b, threads) for 2-D NumPy arrays, or None.
# tinyae.kernels sets it (use_gemm) while its C++ kernels are chosen and the CPU has AVX-512.
_gemm: Callable[[Any, Any, int], Any] | None = None


def use_gemm(gemm: Callable[[Any, Any, int], Any] | None) -> None:
    """Run :func:`matmul`'s 2-D float32 products with ``gemm(a, b, threads)`` (None: NumPy's BLAS)."""
    global _gemm
    _gemm = gemm


def matmul(a: Any, b: Any) -> Any:
    """``a @ b`` for NumPy arrays (any shapes NumPy accepts), on T threads.

    An outer product ((M, 1) @ (1, N)) is a broadcast multiply. A 2-D float32 product runs on
    the C++ kernels' product (:func:`use_gemm`) when there is one: its threads split the columns
    of the result, and stay awake between the products of a training step, where BLAS's threads
    go to sleep and take tens of microseconds to wake (docs/performance.md). Otherwise, where BLAS's idle
    threads spin only briefly (:mod:`tinyae._blas_spin`), BLAS runs the product on T threads of
    its own. Where they would spin for 0.1 s after it, holding the cores that tinyae's next loop
    needs, a big 2-D product of one dtype is split over T threads (:func:`parallel_for`)
    instead: the rows of the result (M, N) when M >= N, else its columns, each part one
    single-threaded BLAS call writing its slice; smaller products are plain ``a @ b``.
    """
    if a.ndim == 2 and b.ndim == 2 and a.shape[1] == 1 and b.shape[0] == 1:
        # An outer product (K = 1), e.g. the input gradient of a Linear layer with one output: a
        # broadcast multiply is ~10x faster than BLAS here, with the same a[i] * b[j] per entry.
        return a * b
    threads = get_num_threads()
    if not isinstance(a, np.ndarray) or not isinstance(b, np.ndarray):
        return a @ b  # CuPy arrays: a GPU product is parallel already
    if _gemm is not None and a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype == np.float32:
        return _gemm(a, b, 1 if in_parallel_region() else threads)
    if threads == 1 or in_parallel_region():
        return a @ b
    if _blas_spin.BRIEF:
        # BLAS's own threads (T of them) split a product best; they do not spin long after it.
        saved = _blas.limit_to(threads)
        try:
            return a @ b
        finally:
            _blas.restore(saved)
    m, n = a.shape[0], b.shape[-1]
    if a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype and m * n * a.shape[1] >= _MIN_SPLIT_MACS:
        out = np.empty((m, n), dtype=a.dtype)
        parts = split(max(m, n), threads)

        def part(i: int) -> None:
            lo, hi = parts[i]
            if m >= n:
                np.matmul(a[lo:hi], b, out=out[lo:hi])  # (rows, N)
            else:
                np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])  # (M, cols)

        parallel_for(len(parts), part, threads)
        return out
    return a @ b


# ------------------------------------------------------------------ elementwise
# Below this many elements an elementwise op is not split: waking a thread would cost more than
# it saves (docs/performance.md).
_MIN_SPLIT_ELEMENTS = 2**20


def elementwise(fn: Callable[..., Any], *arrays: Any) -> Any:
    """``fn(*arrays)`` for an elementwise ``fn`` of same-shape arrays, on T threads when big.

    ``fn`` takes the arrays and a keyword ``out`` (None: allocate, as NumPy's ufuncs do). When
    every array is a C-contiguous NumPy array of one shape and dtype, with at least
    _MIN_SPLIT_ELEMENTS elements, and T > 1, the flattened arrays are cut into T slices and each
    thread calls ``fn(*slices, out=slice of the result)``; the result has the arrays' dtype.
    Otherwise ``fn(*arrays)`` runs once, here.
    """
    threads = get_num_threads()
    first = arrays[0]
    if (
        threads == 1
        or first.size < _MIN_SPLIT_ELEMENTS  # the common case first: the other tests cost microseconds
        or in_parallel_region()
        or not all(isinstance(a, np.ndarray) and a.flags.c_contiguous for a in arrays)
        or any(a.shape != first.shape or a.dtype != first.dtype for a in arrays)
    ):
        return fn(*arrays)
    out = np.empty_like(first)
    flat_out, flats = out.reshape(-1), [a.reshape(-1) for a in arrays]
    parts = split(first.size, threads)

    def part(i: int) -> None:
        r0, r1 = parts[i]
        fn(*[f[r0:r1] for f in flats], out=flat_out[r0:r1])

    parallel_for(len(parts), part, threads)
    return out
