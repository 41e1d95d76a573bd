"""Tests of tinyae.parallel: the thread count, parallel_for, and the ops split over threads.

The split paths only run for big arrays, so most tests lower the size thresholds to 0 and compare
against the same op on one thread (elementwise ops must be bit-identical: every element is
computed by the same code either way).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import tinyae
from tinyae import parallel
from tinyae.kernels import conv_gemm
from tinyae.tensor import Tensor


@pytest.fixture
def split_everything(monkeypatch, restore_num_threads):
    """Split every op, however small, over 2 threads."""
    monkeypatch.setattr(parallel, "_MIN_SPLIT_MACS", 0)
    monkeypatch.setattr(parallel, "_MIN_SPLIT_ELEMENTS", 0)
    monkeypatch.setattr(conv_gemm, "MIN_PARALLEL_BYTES", 0)
    tinyae.set_num_threads(2)


# ---------------------------------------------------------------------- split
@pytest.mark.parametrize("n, parts", [(10, 3), (7, 7), (3, 8), (1, 2), (0, 4), (100, 1)])
def test_split_covers_the_range_in_near_equal_parts(n, parts):
    got = parallel.split(n, parts)
    assert len(got) == max(1, min(parts, n))
    assert got[0][0] == 0 and got[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(got, got[1:]))
    sizes = [b - a for a, b in got]
    assert max(sizes) - min(sizes) <= 1


# ---------------------------------------------------------------------- parallel_for
@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_parallel_for_runs_every_item_once(threads, restore_num_threads):
    tinyae.set_num_threads(threads)
    seen: list[int] = []
    lock = threading.Lock()

    def body(i):
        with lock:
            seen.append(i)

    parallel.parallel_for(50, body)
    assert sorted(seen) == list(range(50))


def test_parallel_for_uses_several_threads(restore_num_threads):
    """Bodies that release the GIL (here: sleep) overlap, so more than one thread takes items."""
    tinyae.set_num_threads(3)
    idents = set()

    def body(i):
        idents.add(threading.get_ident())
        time.sleep(0.01)

    parallel.parallel_for(12, body)
    assert threading.get_ident() in idents  # the caller works too
    assert len(idents) >= 2


@pytest.mark.skipif(
    parallel._sched_getcpu is None or len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2,
    reason="needs sched_getcpu and at least 2 CPUs",
)
def test_workers_keep_off_the_callers_cpu(restore_num_threads):
    """Each worker restricts itself to the process's CPUs other than the caller's (see
    parallel._cpus_for_workers); the caller itself is not restricted."""
    tinyae.set_num_threads(2)
    allowed = os.sched_getaffinity(0)
    for _ in range(3):
        masks = {}

        def body(i, masks=masks):
            masks[threading.get_ident()] = os.sched_getaffinity(0)
            time.sleep(0.01)

        parallel.parallel_for(6, body)
        workers = {ident: mask for ident, mask in masks.items() if ident != threading.get_ident()}
        assert workers, "no worker took an item"
        for mask in workers.values():  # all allowed CPUs but one: the caller's when the loop began
            assert mask < allowed and len(mask) == len(allowed) - 1, (mask, allowed)
    assert os.sched_getaffinity(0) == allowed  # the caller's own affinity is untouched


@pytest.mark.skipif(
    not os.path.isdir("/proc/self/task") or len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2,
    reason="needs Linux's /proc and at least 2 CPUs",
)
def test_cpp_pool_workers_keep_off_the_callers_cpu():
    """The C++ kernels' pool does the same as parallel_for's workers. Checked in a fresh process
    that starts no Python workers, so a thread restricted to all CPUs but one is a C++ worker."""
    pytest.importorskip("tinyae._C")
    code = """
import json, os
import numpy as np
from tinyae import _C
from tinyae.kernels import Geometry
x = np.ones((64, 32, 28, 28), np.float32)
for _ in range(5):
    _C.im2col(x, Geometry(3, 1, 1), threads=2)
sizes = [len(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")]
print(json.dumps([len(os.sched_getaffinity(0)), sorted(sizes)]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    allowed, sizes = json.loads(out.stdout)
    assert allowed - 1 in sizes, (allowed, sizes)


def test_parallel_for_one_thread_runs_in_order_on_the_caller(restore_num_threads):
    tinyae.set_num_threads(1)
    order, idents = [], set()
    parallel.parallel_for(6, lambda i: (order.append(i), idents.add(threading.get_ident())))
    assert order == list(range(6)) and idents == {threading.get_ident()}


def test_parallel_for_raises_the_bodys_error_and_recovers(restore_num_threads):
    tinyae.set_num_threads(2)

    def body(i):
        if i == 5:
            raise ValueError("item 5")
        time.sleep(0.001)

    with pytest.raises(ValueError, match="item 5"):
        parallel.parallel_for(20, body)
    done = []
    parallel.parallel_for(4, done.append)  # the workers are free again
    assert sorted(done) == [0, 1, 2, 3]


def test_nested_parallel_for_runs_serially_inside(restore_num_threads):
    tinyae.set_num_threads(2)
    assert not parallel.in_parallel_region()
    inner_threads = []

    def body(i):
        assert parallel.in_parallel_region()
        here = threading.get_ident()
        parallel.parallel_for(4, lambda j: inner_threads.append(threading.get_ident() == here))

    parallel.parallel_for(4, body)
    assert len(inner_threads) == 16 and all(inner_threads)
    assert not parallel.in_parallel_region()


def test_blas_is_held_at_one_thread_inside_and_restored_after(restore_num_threads):
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("threadpoolctl finds no BLAS library in this process")
    tinyae.set_num_threads(2)
    inside = []
    parallel.parallel_for(2, lambda i: inside.append(blas_threads()))
    assert inside and all(t == [1] * len(before) for t in inside)
    assert blas_threads() == before


def test_parallel_for_works_in_a_forked_child(restore_num_threads):
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    code = (
        "import os, sys, time, tinyae\n"
        "from tinyae import parallel\n"
        "tinyae.set_num_threads(2)\n"
        "parallel.parallel_for(4, lambda i: time.sleep(0.01))  # the parent's workers exist now\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    seen = []\n"
        "    parallel.parallel_for(8, lambda i: (time.sleep(0.01), seen.append(i)))\n"
        "    os._exit(0 if sorted(seen) == list(range(8)) else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"TINYAE_NUM_THREADS": "3", "OMP_NUM_THREADS": "2"}, 3),
        ({"OMP_NUM_THREADS": "2,1"}, 2),
        ({"TINYAE_NUM_THREADS": "x"}, None),
    ],
)
def test_thread_count_from_the_environment(env, expected):
    code = "import tinyae; print(tinyae.get_num_threads())"
    clean = {k: v for k, v in os.environ.items() if k not in ("TINYAE_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert int(out.stdout) == (cpus if expected is None else expected)


@pytest.mark.parametrize(
    "bad, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)]
)
def test_set_num_threads_rejects_bad_counts(bad, error):
    with pytest.raises(error, match="set_num_threads: argument 'n'"):
        tinyae.set_num_threads(bad)


# ---------------------------------------------------------------------- split ops
@pytest.mark.parametrize(
    "dtypes", [(np.float32, np.float32), (np.float64, np.float64), (np.float32, np.float64)]
)
def test_outer_product_equals_numpy_exactly(dtypes):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 1)).astype(dtypes[0])
    b = rng.standard_normal((1, 6272)).astype(dtypes[1])[:, ::2]  # a strided view, too
    out = parallel.matmul(a, b)
    expected = a @ b
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)
    # ... and through the autograd op: with one output column, dL/dx = gy (N, 1) @ w^T (1, K)
    x = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 1)), requires_grad=True)
    assert tinyae.gradcheck(lambda x, w: x @ w, (x, w))


@pytest.mark.parametrize("shape_a, shape_b", [((37, 9), (9, 5)), ((5, 9), (9, 37)), ((1, 4), (4, 3))])
def test_split_matmul_equals_numpy(shape_a, shape_b, split_everything):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(parallel.matmul(a, b.T.copy().T), a @ b, rtol=1e-13, atol=1e-13)  # strided b
    x3 = rng.standard_normal((2, *shape_a))  # batched and mixed dtypes: plain a @ b
    np.testing.assert_array_equal(parallel.matmul(x3, b), x3 @ b)
    np.testing.assert_array_equal(parallel.matmul(a.astype(np.float32), b), a.astype(np.float32) @ b)


def test_elementwise_split_is_bit_identical(split_everything):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, 13)), rng.standard_normal((7, 13))
    np.testing.assert_array_equal(parallel.elementwise(np.multiply, x, y), x * y)
    got = parallel.elementwise(lambda a, out=None: np.maximum(a, 0, out=out), x)
    np.testing.assert_array_equal(got, np.maximum(x, 0))
    # not splittable: other shapes, strides or dtypes go through fn once
    np.testing.assert_array_equal(parallel.elementwise(np.multiply, x, y[:1]), x * y[:1])
    np.testing.assert_array_equal(parallel.elementwise(np.multiply, x.T, y.T), x.T * y.T)
    np.testing.assert_array_equal(
        parallel.elementwise(np.multiply, x, y.astype(np.float32)), x * y.astype("f4")
    )


@pytest.mark.parametrize(
    "op",
    [
        lambda t: t.relu(),
        lambda t: tinyae.nn.functional.leaky_relu(t, 0.2),
        lambda t: tinyae.nn.functional.leaky_relu(t, 1.5),
        lambda t: t.sigmoid(),
        lambda t: t.tanh(),
        lambda t: t * (t + 1),
    ],
)
def test_split_activations_match_one_thread_and_gradcheck(op, split_everything):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((6, 11))
    data[np.abs(data) < 0.05] = 0.5  # away from the kinks at 0
    g = rng.standard_normal((6, 11))

    def run():
        x = Tensor(data.copy(), requires_grad=True)
        y = op(x)
        y.backward(Tensor(g))
        return y.numpy(), x.grad.numpy()

    split = run()
    tinyae.set_num_threads(1)
    serial = run()
    for a, b in zip(split, serial):
        np.testing.assert_array_equal(a, b)
    tinyae.set_num_threads(2)
    assert tinyae.gradcheck(op, [Tensor(data, requires_grad=True)])


def _conv_step(kind, arrays, **kw):
    x, w, b = (Tensor(a.copy(), requires_grad=True) for a in arrays)
    fn = tinyae.nn.functional.conv2d if kind == "conv" else tinyae.nn.functional.conv_transpose2d
    y = fn(x, w, b, **kw)
    y.backward(Tensor(np.cos(np.arange(y.size, dtype=np.float64)).reshape(y.shape)))
    return [y.numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()]


@pytest.mark.parametrize(
    "kind, x_shape, w_shape, kw",
    [
        ("conv", (9, 4, 8, 7), (6, 4, 3, 3), dict(stride=2, padding=1)),  # per-sample GEMMs
        ("conv", (9, 12, 6, 6), (8, 12, 3, 3), dict(padding=1)),  # one GEMM over the chunk
        ("convT", (9, 6, 5, 4), (6, 3, 4, 4), dict(stride=2, padding=1)),
        ("convT", (9, 12, 4, 4), (12, 8, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ],
)
def test_conv_chunks_on_threads_match_one_thread(kind, x_shape, w_shape, kw, split_everything, monkeypatch):
    """Chunks run on 2 threads give the one-thread results, bit-identical from run to run (the
    weight gradient's parts are summed in chunk order, whichever thread finished first)."""
    rng = np.random.default_rng(3)
    c_out = w_shape[0] if kind == "conv" else w_shape[1]
    arrays = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(c_out)
    monkeypatch.setattr(conv_gemm, "CPU_CHUNK_BYTES", 1)  # one sample per chunk: 9, rounded up to 10 slots
    assert len(conv_gemm.chunks(9, 100, arrays[0])) == 9  # n < 10: one sample each
    first = _conv_step(kind, arrays, **kw)
    again = _conv_step(kind, arrays, **kw)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    tinyae.set_num_threads(1)
    serial = _conv_step(kind, arrays, **kw)
    for a, b in zip(first, serial):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_chunk_count_is_a_multiple_of_the_threads(monkeypatch, restore_num_threads):
    like = np.zeros(1, np.float32)
    monkeypatch.setattr(conv_gemm, "MIN_PARALLEL_BYTES", 0)
    monkeypatch.setattr(conv_gemm, "CPU_CHUNK_BYTES", 1000)
    for threads in (1, 2, 3):
        tinyae.set_num_threads(threads)
        for n in (5, 16, 100):
            chunks = conv_gemm.chunks(n, 100, like)  # at most 10 samples per chunk
            assert chunks[0][0] == 0 and chunks[-1][1] == n
            assert max(b - a for a, b in chunks) <= 10
            assert len(chunks) % threads == 0 or len(chunks) == n
    tinyae.set_num_threads(2)
    monkeypatch.setattr(conv_gemm, "MIN_PARALLEL_BYTES", 10**9)
    assert len(conv_gemm.chunks(16, 100, like)) == 2  # too small to split: as on one thread


# ---------------------------------------------------------------------- BLAS's idle spin
@pytest.mark.parametrize(
    "code, env, expected",
    [
        ("import tinyae", {}, ["True", "20"]),  # tinyae first: it sets the short spin
        ("import numpy, tinyae", {}, ["False", "None"]),  # NumPy first: too late, left alone
        ("import tinyae", {"OPENBLAS_THREAD_TIMEOUT": "28"}, ["False", "28"]),  # a value set is kept
        ("import numpy, tinyae", {"OPENBLAS_THREAD_TIMEOUT": "8"}, ["True", "8"]),
    ],
)
def test_blas_spin_is_set_only_while_it_can_take_effect(code, env, expected):
    import os
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    probe = f"{code}; import os; print(tinyae._blas_spin.BRIEF, os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"
    out = subprocess.run([sys.executable, "-c", probe], env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == expected


@pytest.mark.parametrize("shape_a, shape_b", [((128, 784), (784, 400)), ((3, 5), (5, 2)), ((70, 1), (1, 90))])
def test_products_on_blas_threads_when_they_spin_briefly(shape_a, shape_b, monkeypatch, restore_num_threads):
    """With a brief spin, products go to BLAS's own T threads; the BLAS setting is restored."""
    from tinyae import _blas_spin

    monkeypatch.setattr(_blas_spin, "BRIEF", True)
    tinyae.set_num_threads(2)
    before = [lib.num_threads for lib in parallel._blas.libs()]
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal(shape_a).astype(np.float32), rng.standard_normal(shape_b).astype(np.float32)
    want = a.astype(np.float64) @ b.astype(np.float64)  # any summation order is within float32 rounding of it
    np.testing.assert_allclose(parallel.matmul(a, b), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert [lib.num_threads for lib in parallel._blas.libs()] == before
