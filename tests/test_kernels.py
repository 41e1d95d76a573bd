"""Tests of the im2col / col2im kernels: NumPy twin, C++ extension, CUDA.

The NumPy twin is checked against naive pixel loops written here; the C++ and
CUDA kernels are checked against the twin over a grid of shapes and parameters.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from cpp_helpers import _C, C_REASON, needs_cpp
from geometry_helpers import G

import tinyae
import tinyae.kernels as K
from tinyae.kernels import Geometry, out_size
from tinyae.kernels import cuda as cuda_kernels
from tinyae.kernels import numpy_kernels as nk

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}

# ---------------------------------------------------------------- naive references


def naive_im2col(x, kh, kw, sh, sw, ph, pw, dh, dw):
    """col[c, i, j, n, oh, ow] = x[n, c, oh*sh - ph + i*dh, ow*sw - pw + j*dw], one pixel at a time."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    col = np.zeros((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for ci, i, j, ni, a, b in itertools.product(
        range(c), range(kh), range(kw), range(n), range(oh), range(ow)
    ):
        y, z = a * sh - ph + i * dh, b * sw - pw + j * dw
        if 0 <= y < h and 0 <= z < w:
            col[ci, i, j, ni, a, b] = x[ni, ci, y, z]
    return col


def naive_col2im(col, h, w, sh, sw, ph, pw, dh, dw):
    """Add every column entry back onto the pixel it came from (padding entries are dropped)."""
    c, kh, kw, n, oh, ow = col.shape
    x = np.zeros((n, c, h, w), dtype=col.dtype)
    for ci, i, j, ni, a, b in itertools.product(
        range(c), range(kh), range(kw), range(n), range(oh), range(ow)
    ):
        y, z = a * sh - ph + i * dh, b * sw - pw + j * dw
        if 0 <= y < h and 0 <= z < w:
            x[ni, ci, y, z] += col[ci, i, j, ni, a, b]
    return x


def random(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_close(actual, expected, dtype):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


def param_grid(h, w, kh, kw, strides=(1, 2, 3), pads=(0, 1, 2, 3), dils=(1, 2, 3)):
    """Every (sh, sw, ph, pw, dh, dw) for which the kernel fits the padded (h, w) input."""
    for sh, sw, ph, pw, dh, dw in itertools.product(strides, strides, pads, pads, dils, dils):
        if out_size(h, kh, sh, ph, dh) >= 1 and out_size(w, kw, sw, pw, dw) >= 1:
            yield sh, sw, ph, pw, dh, dw


# ---------------------------------------------------------------- NumPy twin vs naive loops

NAIVE_CASES = [
    # (x shape, kh, kw, sh, sw, ph, pw, dh, dw)
    ((2, 3, 5, 6), 3, 3, 1, 1, 1, 1, 1, 1),
    ((1, 2, 7, 5), 2, 3, 2, 1, 0, 2, 1, 2),
    ((2, 1, 6, 6), 3, 2, 3, 2, 2, 1, 2, 1),
    ((1, 1, 4, 4), 1, 1, 1, 1, 0, 0, 1, 1),
    ((1, 2, 3, 3), 5, 5, 1, 1, 1, 1, 1, 1),  # kernel as large as the padded input
    ((2, 2, 5, 5), 3, 3, 1, 2, 3, 3, 3, 2),
]


@pytest.mark.parametrize("case", NAIVE_CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_twin_matches_naive_loops(case, dtype):
    shape, *params = case
    x = random(shape, dtype)
    col = nk.im2col(x, G(*params))
    np.testing.assert_array_equal(col, naive_im2col(x, *params))
    c = random(col.shape, dtype, seed=1)
    h, w = shape[2:]
    kh, kw, *rest = params
    assert_close(nk.col2im(c, (h, w), G(*params)), naive_col2im(c, h, w, *rest), dtype)


def test_col2im_sums_overlapping_windows():
    # 3x3 windows, stride 1, padding 1 over a 4x4 image: each pixel is in as many windows as
    # its 3x3 neighbourhood has pixels inside the image (4 in a corner, 6 on an edge, 9 inside).
    col = np.ones((1, 3, 3, 1, 4, 4))
    counts = nk.col2im(col, (4, 4), G(3, 3, 1, 1, 1, 1, 1, 1))[0, 0]
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]])
    np.testing.assert_array_equal(counts, expected)
    if _C is not None:
        np.testing.assert_array_equal(_C.col2im(col, (4, 4), G(3, 3, 1, 1, 1, 1, 1, 1))[0, 0], expected)


@pytest.mark.parametrize("impl", ["numpy", "cpp"])
def test_adjoint(impl):
    """<im2col(x), c> == <x, col2im(c)>: col2im is the transpose of im2col."""
    if impl == "cpp" and _C is None:
        pytest.skip(C_REASON)
    mod = nk if impl == "numpy" else _C
    for shape, *params in NAIVE_CASES:
        x = random(shape, np.float64)
        col = mod.im2col(x, G(*params))
        c = random(col.shape, np.float64, seed=2)
        lhs = np.vdot(col, c)
        rhs = np.vdot(x, mod.col2im(c, shape[2:], G(*params)))
        assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)) * c.size


# ---------------------------------------------------------------- C++ vs NumPy twin over a grid

GRID_SHAPES = [
    # (x shape, kh, kw): odd sizes, batch 1, 1x1 kernels, non-square kernels
    ((2, 3, 7, 9), 3, 3),
    ((1, 2, 5, 6), 1, 1),
    ((1, 1, 6, 5), 2, 3),
]


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw", GRID_SHAPES, ids=str)
def test_cpp_matches_twin_on_grid(shape, kh, kw, dtype):
    x = random(shape, dtype)
    n_checked = 0
    for sh, sw, ph, pw, dh, dw in param_grid(shape[2], shape[3], kh, kw):
        args = (kh, kw, sh, sw, ph, pw, dh, dw)
        col = _C.im2col(x, G(*args))
        np.testing.assert_array_equal(col, nk.im2col(x, G(*args)), err_msg=str(args))  # a pure copy
        c = random(col.shape, dtype, seed=n_checked)
        h, w = shape[2:]
        assert_close(_C.col2im(c, (h, w), G(*args)), nk.col2im(c, (h, w), G(*args)), dtype)
        n_checked += 1
    assert n_checked > 100


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("w", [1, 2, 3, 4])
def test_cpp_matches_twin_on_narrow_images(w, dtype):
    # Widths below and around the column stride: the de-interleaving split of the C++ fast path
    # has separate branches for one phase (w < SW), an odd last column and exact pairs.
    x = random((2, 2, 5, w), dtype)
    n_checked = 0
    for kh, kw in ((1, 1), (2, 1), (3, 2)):
        for sh, sw, ph, pw, dh, dw in param_grid(5, w, kh, kw, dils=(1, 2)):
            args = (kh, kw, sh, sw, ph, pw, dh, dw)
            np.testing.assert_array_equal(_C.im2col(x, G(*args)), nk.im2col(x, G(*args)), err_msg=str(args))
            n_checked += 1
    assert n_checked > 50


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_matches_twin_around_the_fixed_row_widths(dtype):
    # im2col copies output rows 7, 14 or 28 wide with a compile-time width (the MNIST-sized
    # layers); every other width takes the run-time loop. Check both, on each side of each width.
    hit = dict.fromkeys((6, 7, 8, 13, 14, 15, 27, 28, 29), 0)
    for w in (13, 14, 15, 27, 28, 29, 30, 56, 57):
        x = random((2, 2, 4, w), dtype, seed=w)
        for kh, kw in ((1, 1), (3, 3), (4, 4)):
            grid = param_grid(4, w, kh, kw, strides=(1, 2, 4), pads=(0, 1), dils=(1, 2))
            for sh, sw, ph, pw, dh, dw in grid:
                args = (kh, kw, sh, sw, ph, pw, dh, dw)
                col = _C.im2col(x, G(*args))
                if col.shape[-1] in hit:
                    hit[col.shape[-1]] += 1
                np.testing.assert_array_equal(col, nk.im2col(x, G(*args)), err_msg=f"w={w} {args}")
    assert min(hit.values()) >= 4, hit


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_kernel_as_large_as_padded_input(dtype):
    x = random((1, 2, 5, 4), dtype)
    for ph, pw, dh, dw in itertools.product(range(4), range(4), (1, 2), (1, 2)):
        # The largest kernel whose dilated extent DH*(KH-1)+1 still fits the padded input.
        kh, kw = (5 + 2 * ph - 1) // dh + 1, (4 + 2 * pw - 1) // dw + 1
        args = (kh, kw, 1, 1, ph, pw, dh, dw)
        col = _C.im2col(x, G(*args))
        assert col.shape[4:] == (out_size(5, kh, 1, ph, dh), out_size(4, kw, 1, pw, dw))
        if dh == dw == 1:
            assert col.shape[4:] == (1, 1)  # a single window covers the whole padded input
        with pytest.raises(ValueError, match="does not fit"):
            _C.im2col(x, G(kh + 1, kw, 1, 1, ph, pw, dh, dw))
        np.testing.assert_array_equal(col, nk.im2col(x, G(*args)))
        c = random(col.shape, dtype)
        assert_close(_C.col2im(c, (5, 4), G(*args)), nk.col2im(c, (5, 4), G(*args)), dtype)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_large_strides_and_padding(dtype):
    """Strides > 4 or wide padding take the C++ general (non phase-split) path."""
    x = random((2, 2, 11, 13), dtype)
    for args in [(3, 3, 5, 6, 2, 1, 1, 1), (2, 3, 7, 5, 4, 0, 2, 3), (3, 3, 1, 1, 700, 2, 1, 1)]:
        col = _C.im2col(x, G(*args))
        np.testing.assert_array_equal(col, nk.im2col(x, G(*args)))
        c = random(col.shape, dtype)
        assert_close(_C.col2im(c, (11, 13), G(*args)), nk.col2im(c, (11, 13), G(*args)), dtype)


@needs_cpp
def test_cpp_large_batch_runs_parallel_path():
    """Big enough to cross the threshold above which the C++ loops run in parallel."""
    x = random((32, 8, 48, 46), np.float32)  # 1.3 to 5 million column elements (threshold: 2**20)
    for args in [(3, 3, 1, 1, 1, 1, 1, 1), (3, 3, 2, 2, 1, 1, 1, 1), (4, 4, 2, 2, 1, 1, 1, 1)]:
        col = _C.im2col(x, G(*args))
        assert col.size >= 2**20
        np.testing.assert_array_equal(col, nk.im2col(x, G(*args)))
        assert_close(_C.col2im(col, (48, 46), G(*args)), nk.col2im(col, (48, 46), G(*args)), np.float32)


# ---------------------------------------------------------------- layouts and dispatch


def non_contiguous_views(x):
    return {
        "sliced": np.repeat(x, 2, axis=3)[:, :, :, ::2],
        "reversed": x[:, :, ::-1, :][:, :, ::-1, :],
        "fortran": np.asfortranarray(x),
        "transposed": np.ascontiguousarray(x.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),
    }


@pytest.mark.parametrize("impl", ["numpy", "cpp"])
def test_non_contiguous_inputs(impl):
    if impl == "cpp" and _C is None:
        pytest.skip(C_REASON)
    mod = nk if impl == "numpy" else _C
    x = random((2, 3, 7, 6), np.float64)
    args = (3, 2, 2, 1, 1, 0, 1, 2)
    expected = mod.im2col(x, G(*args))
    c = random(expected.shape, np.float64)
    expected_x = mod.col2im(c, (7, 6), G(*args))
    for name, view in non_contiguous_views(x).items():
        np.testing.assert_array_equal(view, x)
        np.testing.assert_array_equal(mod.im2col(view, G(*args)), expected, err_msg=name)
    c_view = np.repeat(c, 2, axis=5)[..., ::2]
    np.testing.assert_array_equal(mod.col2im(c_view, (7, 6), G(*args)), expected_x)
    np.testing.assert_array_equal(
        mod.im2col(np.broadcast_to(x[:1], x.shape), G(*args))[:, :, :, 1], expected[:, :, :, 0]
    )


@needs_cpp
def test_cpp_does_not_copy_contiguous_input():
    """NumPy reports its buffers to tracemalloc: a contiguous x adds only the output to the peak,
    a non-contiguous one adds the output plus one contiguous copy of x."""
    import tracemalloc

    x = random((1, 1, 256, 256), np.float64)  # 512 KiB; a 1x1 kernel makes col just as big
    strided = np.repeat(x, 2, axis=3)[..., ::2]

    def peak_increase(a):
        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        col = _C.im2col(a, G(1, 1, 1, 1, 0, 0, 1, 1))
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        del col
        return peak

    assert peak_increase(x) < 1.5 * x.nbytes
    assert peak_increase(strided) > 1.9 * x.nbytes


def test_dispatch_and_info():
    x = np.zeros((1, 1, 3, 3), np.float32)
    assert K.backend_name(x) == K.get_kernels()
    assert K.cpp_available() == (_C is not None)
    assert (K.cpp_unavailable_reason() is None) == K.cpp_available()
    assert K.num_threads() >= 0
    previous = K.get_kernels()
    try:
        K.set_kernels("numpy")
        assert K.backend_name(x) == "numpy"
        np.testing.assert_array_equal(
            K.im2col(x, G(2, 2, 1, 1, 0, 0, 1, 1)), nk.im2col(x, G(2, 2, 1, 1, 0, 0, 1, 1))
        )
        if _C is not None:
            K.set_kernels("cpp")
            assert K.backend_name(x) == "cpp"
        with pytest.raises(ValueError, match="set_kernels"):
            K.set_kernels("fortran")
    finally:
        K.set_kernels(previous)


@needs_cpp
def test_num_threads_reported_and_set(restore_num_threads):
    assert K.num_threads() == tinyae.get_num_threads() == restore_num_threads >= 1
    K.set_num_threads(3)
    assert K.num_threads() == tinyae.get_num_threads() == 3
    tinyae.set_num_threads(1)
    assert K.num_threads() == 1


@pytest.mark.parametrize(
    "bad, error", [(0, ValueError), (-2, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_set_num_threads_rejects_bad_counts(bad, error):
    with pytest.raises(error, match="set_num_threads: argument 'n'"):
        K.set_num_threads(bad)


@needs_cpp
@pytest.mark.parametrize(
    "env, expected",
    [({"TINYAE_NUM_THREADS": "3", "OMP_NUM_THREADS": "2"}, 3), ({"OMP_NUM_THREADS": "2,1"}, 2)],
)
def test_thread_count_from_the_environment(env, expected):
    code = "import tinyae.kernels as K; print(K.num_threads())"
    clean = {k: v for k, v in os.environ.items() if k not in ("TINYAE_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == expected


# Shapes with >= 2^20 column elements, well above the size from which the C++ loops use the pool.
_POOL_CASES = [
    ((20, 8, 30, 30), (3, 3, 1, 1, 1, 1, 1, 1)),
    ((40, 5, 33, 31), (4, 3, 2, 1, 1, 2, 1, 2)),
    ((14, 64, 20, 20), (5, 5, 3, 3, 2, 2, 1, 1)),
]


@needs_cpp
@pytest.mark.parametrize("x_shape, params", _POOL_CASES)
def test_thread_counts_give_identical_results(x_shape, params):
    """Every thread count (including more threads than cores) gives bit-identical im2col and col2im,
    equal to the NumPy twin's: each output plane is owned by one thread, whatever the split."""
    kh, kw, *rest = params
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(np.float32)
    want_col = nk.im2col(x, G(kh, kw, *rest))
    col = rng.standard_normal(want_col.shape).astype(np.float32)
    want_img = nk.col2im(col, x_shape[2:], G(kh, kw, *rest))
    assert want_col.size >= 2**20
    for threads in (1, 2, 3, 7):
        got_col = _C.im2col(x, G(kh, kw, *rest), threads=threads)
        np.testing.assert_array_equal(got_col, want_col, err_msg=f"{threads} threads")
        got_img = _C.col2im(col, x_shape[2:], G(kh, kw, *rest), threads=threads)
        if threads == 1:
            first_img = got_img
        np.testing.assert_array_equal(got_img, first_img, err_msg=f"col2im, {threads} threads")
        np.testing.assert_allclose(got_img, want_img, rtol=1e-5, atol=1e-5)


@needs_cpp
def test_kernels_called_from_several_python_threads_at_once():
    """The GIL is released: concurrent calls share (or, while it is busy, bypass) the pool."""
    from concurrent.futures import ThreadPoolExecutor

    x_shape, (kh, kw, *rest) = _POOL_CASES[0]
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(6)]
    wants = [nk.im2col(x, G(kh, kw, *rest)) for x in xs]
    with ThreadPoolExecutor(3) as ex:
        for _ in range(3):
            gots = list(ex.map(lambda x: _C.im2col(x, G(kh, kw, *rest)), xs))
            for got, want in zip(gots, wants):
                np.testing.assert_array_equal(got, want)


@needs_cpp
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pool_works_in_a_forked_child():
    """A child forked after the pool ran (e.g. a DataLoader worker) gets a fresh pool, not a hang."""
    x_shape, (kh, kw, *rest) = _POOL_CASES[0]
    x = np.random.default_rng(7).standard_normal(x_shape).astype(np.float32)
    want = nk.im2col(x, G(kh, kw, *rest))
    code = (
        "import os, sys, numpy as np, tinyae.kernels as K\n"
        "from tinyae import _C\n"
        "x = np.load(sys.argv[1]); want = np.load(sys.argv[2])\n"
        "a = [int(v) for v in sys.argv[3:]]; g = K.Geometry(a[0:2], a[2:4], a[4:6], a[6:8])\n"
        "_C.im2col(x, g, threads=2)  # the parent's workers exist now\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    ok = np.array_equal(_C.im2col(x, g, threads=2), want)\n"
        "    os._exit(0 if ok else 3)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x)
        np.save(f"{tmp}/want.npy", want)
        args = [str(v) for v in (kh, kw, *rest)]
        out = subprocess.run(
            [sys.executable, "-c", code, f"{tmp}/x.npy", f"{tmp}/want.npy", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 0, (out.returncode, out.stderr)


def test_env_var_selects_numpy_twin():
    code = "import numpy, tinyae.kernels as K; print(K.backend_name(numpy.zeros(1)))"
    env = dict(os.environ, TINYAE_KERNELS="numpy")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "numpy"


# ---------------------------------------------------------------- bad input


def implementations():
    """The checked entry points: the dispatcher (whose checks guard the twin, which trusts its
    arguments) and the extension, which re-checks what keeps its memory accesses in bounds."""
    impls = [("dispatch", K)]
    if _C is not None:
        impls.append(("cpp", _C))
    return impls


@pytest.mark.parametrize("name,mod", implementations(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_im2col_arguments(name, mod):
    x = np.zeros((2, 3, 5, 5), np.float32)
    ok = G(3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(TypeError, match=r"im2col: argument 'x' must be float32 or float64.*int64"):
        mod.im2col(x.astype(np.int64), ok)
    with pytest.raises(TypeError, match="im2col: argument 'x'.*float16"):
        mod.im2col(x.astype(np.float16), ok)
    with pytest.raises(TypeError, match="im2col: argument 'x'.*>f4"):
        mod.im2col(x.astype(">f4"), ok)  # byte-swapped: the kernels read native order only
    with pytest.raises(ValueError, match="im2col: argument 'x' must be 4-D"):
        mod.im2col(x[0], ok)
    with pytest.raises(ValueError, match="im2col: kernel .* does not fit"):
        mod.im2col(x, G(8, 3, 1, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="im2col: kernel .* does not fit"):
        mod.im2col(x, G(3, 3, 1, 1, 0, 0, 3, 1))  # dilated extent 7 > 5
    with pytest.raises(TypeError, match="Geometry"):
        mod.im2col(x, (3, 3, 1, 1, 1, 1, 1, 1))


def test_geometry_checks_its_numbers_once():
    with pytest.raises(ValueError, match="Geometry: argument 'kernel' must be positive, got"):
        G(0, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="Geometry: argument 'stride' must be positive"):
        G(3, 3, 1, 0, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="Geometry: argument 'dilation' must be positive"):
        G(3, 3, 1, 1, 1, 1, -1, 1)
    with pytest.raises(ValueError, match="Geometry: argument 'padding' must be non-negative"):
        G(3, 3, 1, 1, 1, -1, 1, 1)
    with pytest.raises(ValueError, match="Geometry: argument 'padding' is too large"):
        G(3, 3, 1, 1, 2**40, 1, 1, 1)  # absurd padding: an error, never a crash
    with pytest.raises(TypeError, match="Geometry: argument 'kernel' must be an int, got float"):
        G(2.0, 2, 1, 1, 0, 0, 1, 1)
    with pytest.raises(TypeError, match="Geometry: argument 'stride' must be an int, got bool"):
        G(2, 2, True, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="Geometry: argument 'groups' must be positive"):
        G(2, 2, 1, 1, 0, 0, 1, 1, groups=0)
    g = Geometry(np.int64(3), stride=[2, 1], padding=1)
    assert (g.kernel, g.stride, g.padding, g.dilation, g.groups) == ((3, 3), (2, 1), (1, 1), (1, 1), 1)
    assert all(type(v) is int for v in (*g.kernel, *g.stride, g.groups))
    assert g.out_size(7, 5) == (out_size(7, 3, 2, 1, 1), out_size(5, 3, 1, 1, 1))


@needs_cpp
def test_extension_rechecks_a_duck_typed_geometry():
    """_C takes anything with Geometry's attributes; numbers that would index out of bounds are refused."""
    from types import SimpleNamespace

    x = np.zeros((2, 3, 5, 5), np.float32)

    def fake(**changes):
        fields = dict(kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
        return SimpleNamespace(**{**fields, **changes})

    np.testing.assert_array_equal(_C.im2col(x, fake()), nk.im2col(x, G(3, 3, 1, 1, 1, 1, 1, 1)))
    with pytest.raises(ValueError, match="im2col: argument 'kernel' must be positive"):
        _C.im2col(x, fake(kernel=(0, 3)))
    with pytest.raises(ValueError, match="im2col: argument 'stride' must be positive"):
        _C.im2col(x, fake(stride=(1, 0)))
    with pytest.raises(ValueError, match="im2col: argument 'padding' must be >= 0"):
        _C.im2col(x, fake(padding=(1, -1)))
    with pytest.raises(ValueError, match="im2col: argument 'padding' is too large"):
        _C.im2col(x, fake(padding=(2**40, 1)))
    with pytest.raises(TypeError, match="geometry: 'stride' must be a pair of ints"):
        _C.im2col(x, fake(stride=3))
    with pytest.raises(TypeError, match="Geometry"):
        _C.im2col(x, object())


@pytest.mark.parametrize("name,mod", implementations(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_col2im_arguments(name, mod):
    col = np.zeros((3, 3, 3, 2, 5, 5), np.float64)  # from a (2, 3, 5, 5) image, k3 s1 p1
    g = G(3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(TypeError, match="col2im: argument 'col' must be float32 or float64.*int32"):
        mod.col2im(col.astype(np.int32), (5, 5), g)
    with pytest.raises(ValueError, match="col2im: argument 'col' must be 6-D"):
        mod.col2im(col[0], (5, 5), g)
    with pytest.raises(ValueError, match="col2im: argument 'col' has shape"):
        mod.col2im(col, (6, 5), g)  # (6, 5) gives OH = 6, col has 5
    with pytest.raises(ValueError, match="col2im: argument 'col' has shape"):
        mod.col2im(col, (5, 5), G(3, 3, 2, 1, 1, 1, 1, 1))
    with pytest.raises(ValueError, match="col2im: argument 'col' has shape"):
        mod.col2im(col, (5, 5), G(2, 3, 1, 1, 1, 1, 1, 1))  # the kernel differs from col's
    with pytest.raises(ValueError, match="col2im: argument 'output_size'"):
        mod.col2im(col, (0, 5), g)
    with pytest.raises(ValueError, match="col2im: argument 'col'"):
        mod.col2im(np.zeros((3, 0, 3, 2, 5, 5)), (5, 5), g)


# ---------------------------------------------------------------- CUDA


def test_cuda_source_compiles(tmp_path: Path):
    """Compile the CUDA source with nvcc (no GPU needed) so a typo is caught on any machine."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH; cannot compile-check the CUDA kernels")
    source = tmp_path / "tinyae_kernels.cu"
    source.write_text(cuda_kernels.CUDA_SOURCE)
    out = subprocess.run(
        [nvcc, "-std=c++14", "-c", str(source), "-o", str(tmp_path / "tinyae_kernels.o")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    symbols = subprocess.run(["nm", str(tmp_path / "tinyae_kernels.o")], capture_output=True, text=True)
    if symbols.returncode == 0:  # the extern "C" names RawModule.get_function looks up
        for name in cuda_kernels.KERNEL_NAMES:
            assert name in symbols.stdout.split(), name


def _cupy_or_skip():
    from tinyae.backend import cuda_unavailable_reason, cupy_or_none

    cp = cupy_or_none()
    if cp is None:
        pytest.skip(f"no GPU: {cuda_unavailable_reason()}")
    return cp


@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_matches_twin(dtype):
    cp = _cupy_or_skip()
    x = random((2, 3, 7, 9), dtype)
    xg = cp.asarray(x)
    assert K.backend_name(xg) == "cuda"
    for sh, sw, ph, pw, dh, dw in param_grid(7, 9, 3, 2, strides=(1, 2, 3), pads=(0, 1, 3), dils=(1, 2)):
        args = (3, 2, sh, sw, ph, pw, dh, dw)
        col = K.im2col(xg, G(*args))
        np.testing.assert_array_equal(cp.asnumpy(col), nk.im2col(x, G(*args)))
        c = random(col.shape, dtype)
        got = K.col2im(cp.asarray(c), (7, 9), G(*args))
        assert_close(cp.asnumpy(got), nk.col2im(c, (7, 9), G(*args)), dtype)


def test_cuda_col2im_is_deterministic_and_validates():
    cp = _cupy_or_skip()
    c = cp.asarray(random((4, 3, 3, 8, 16, 16), np.float32))
    first = K.col2im(c, (16, 16), G(3, 3, 1, 1, 1, 1, 1, 1))
    for _ in range(3):
        assert bool((K.col2im(c, (16, 16), G(3, 3, 1, 1, 1, 1, 1, 1)) == first).all())
    x_view = cp.asarray(random((2, 3, 8, 8), np.float64))[:, :, ::2]  # non-contiguous
    np.testing.assert_array_equal(
        cp.asnumpy(K.im2col(x_view, G(2, 2, 1, 1, 0, 0, 1, 1))),
        nk.im2col(cp.asnumpy(x_view), G(2, 2, 1, 1, 0, 0, 1, 1)),
    )
    with pytest.raises(TypeError, match="im2col: argument 'x'"):
        K.im2col(cp.zeros((1, 1, 3, 3), cp.int32), G(2, 2, 1, 1, 0, 0, 1, 1))


# ---------------------------------------------------------------- out= buffers


def out_implementations():
    """Every CPU entry point that takes out=: the twin, the dispatcher and (when built) _C itself."""
    impls = [("numpy", nk), ("dispatch", K)]
    if _C is not None:
        impls.append(("cpp", _C))
    return impls


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,kh,kw", GRID_SHAPES, ids=str)
@pytest.mark.parametrize("name,mod", out_implementations(), ids=lambda v: v if isinstance(v, str) else "")
def test_out_equals_returned_result_on_grid(name, mod, shape, kh, kw, dtype):
    x = random(shape, dtype)
    h, w = shape[2:]
    n_checked = 0
    for sh, sw, ph, pw, dh, dw in param_grid(h, w, kh, kw):
        args = (kh, kw, sh, sw, ph, pw, dh, dw)
        expected = mod.im2col(x, G(*args))
        # Filled with NaN: any element the kernel failed to write would show up.
        out = np.full(expected.shape, np.nan, dtype)
        assert mod.im2col(x, G(*args), out=out) is out
        np.testing.assert_array_equal(out, expected, err_msg=str(args))
        c = random(expected.shape, dtype, seed=n_checked)
        expected_x = mod.col2im(c, (h, w), G(*args))
        # col2im overwrites: garbage already in out must not be accumulated onto.
        out_x = np.full(expected_x.shape, 1e3, dtype)
        assert mod.col2im(c, (h, w), G(*args), out=out_x) is out_x
        np.testing.assert_array_equal(out_x, expected_x, err_msg=str(args))
        n_checked += 1
    assert n_checked > 100


@needs_cpp
def test_out_cpp_and_twin_agree_on_layer_shape():
    # An L2-like shape large enough for the C++ parallel path, written into reused buffers.
    x = random((16, 8, 28, 28), np.float32)
    args = (3, 3, 2, 2, 1, 1, 1, 1)
    out_c = np.empty((8, 3, 3, 16, 14, 14), np.float32)
    out_n = np.empty_like(out_c)
    for _ in range(2):  # the second call overwrites the first's result in place
        _C.im2col(x, G(*args), out=out_c)
        nk.im2col(x, G(*args), out=out_n)
        np.testing.assert_array_equal(out_c, out_n)
    img_c = np.empty(x.shape, np.float32)
    img_n = np.empty(x.shape, np.float32)
    for _ in range(2):
        _C.col2im(out_c, (28, 28), G(*args), out=img_c)
        nk.col2im(out_c, (28, 28), G(*args), out=img_n)
        assert_close(img_c, img_n, np.float32)


@pytest.mark.parametrize("name,mod", implementations(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_out_raises(name, mod):
    x = random((2, 3, 5, 5), np.float32)
    args = (3, 3, 1, 1, 1, 1, 1, 1)
    shape = (3, 3, 3, 2, 5, 5)
    shape_re = r"\(3, 3, 3, 2, 5, 5\)"
    with pytest.raises(
        ValueError, match=rf"im2col: argument 'out' must have shape {shape_re}, got \(3, 3, 3, 2, 5\)"
    ):
        mod.im2col(x, G(*args), out=np.empty(shape[:-1], np.float32))
    with pytest.raises(
        TypeError, match=r"im2col: argument 'out' must have dtype float32 like 'x', got float64"
    ):
        mod.im2col(x, G(*args), out=np.empty(shape, np.float64))
    strided = np.empty(shape[:-1] + (10,), np.float32)[..., ::2]
    with pytest.raises(ValueError, match=r"im2col: argument 'out' must be C-contiguous"):
        mod.im2col(x, G(*args), out=strided)
    with pytest.raises(TypeError, match=r"im2col: argument 'out' must be a.*, got list"):
        mod.im2col(x, G(*args), out=[0.0])
    read_only = np.empty(shape, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match=r"im2col: argument 'out' is read-only"):
        mod.im2col(x, G(*args), out=read_only)
    # out aliasing the input: one buffer holds both x and (overlapping it) the column buffer.
    both = np.zeros(int(np.prod(shape)) + x.size, np.float32)
    x_in = both[: x.size].reshape(x.shape)
    x_in[...] = x
    with pytest.raises(ValueError, match=r"im2col: argument 'out' overlaps the memory of 'x'"):
        mod.im2col(x_in, G(*args), out=both[x.size // 2 : x.size // 2 + int(np.prod(shape))].reshape(shape))

    col = random(shape, np.float64)
    with pytest.raises(
        ValueError, match=r"col2im: argument 'out' must have shape \(2, 3, 5, 5\), got \(2, 3, 5, 6\)"
    ):
        mod.col2im(col, (5, 5), G(3, 3, 1, 1, 1, 1, 1, 1), out=np.empty((2, 3, 5, 6)))
    with pytest.raises(
        TypeError, match=r"col2im: argument 'out' must have dtype float64 like 'col', got float32"
    ):
        mod.col2im(col, (5, 5), G(3, 3, 1, 1, 1, 1, 1, 1), out=np.empty((2, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"col2im: argument 'out' must be C-contiguous"):
        mod.col2im(col, (5, 5), G(3, 3, 1, 1, 1, 1, 1, 1), out=np.empty((2, 3, 5, 5)).transpose(0, 1, 3, 2))
    with pytest.raises(ValueError, match=r"col2im: argument 'out' overlaps the memory of 'col'"):
        mod.col2im(col, (5, 5), G(3, 3, 1, 1, 1, 1, 1, 1), out=col.reshape(-1)[:150].reshape(2, 3, 5, 5))


@needs_cpp
def test_bad_out_is_refused_before_any_write():
    # A rejected out= buffer is left untouched (C++ validates before running the kernel).
    x = random((2, 3, 5, 5), np.float32)
    out = np.full((3, 3, 3, 2, 5, 4), 7.0, np.float32)
    with pytest.raises(ValueError):
        _C.im2col(x, G(3, 3, 1, 1, 1, 1, 1, 1), out=out)
    assert (out == 7.0).all()


def test_cuda_out():
    cp = _cupy_or_skip()
    x = random((2, 3, 7, 9), np.float32)
    args = (3, 2, 2, 1, 1, 0, 1, 2)
    expected = nk.im2col(x, G(*args))
    out = cp.full(expected.shape, cp.nan, cp.float32)
    assert K.im2col(cp.asarray(x), G(*args), out=out) is out
    np.testing.assert_array_equal(cp.asnumpy(out), expected)
    c = random(expected.shape, np.float32)
    out_x = cp.full((2, 3, 7, 9), 1e3, cp.float32)
    assert K.col2im(cp.asarray(c), (7, 9), G(*args), out=out_x) is out_x
    assert_close(cp.asnumpy(out_x), nk.col2im(c, (7, 9), G(*args)), np.float32)
    with pytest.raises(
        TypeError, match=r"im2col: argument 'out' must be a cupy.ndarray like 'x', got numpy.ndarray"
    ):
        K.im2col(cp.asarray(x), G(*args), out=np.empty(expected.shape, np.float32))
    with pytest.raises(ValueError, match=r"col2im: argument 'out' must have shape"):
        K.col2im(cp.asarray(c), (7, 9), G(*args), out=cp.empty((2, 3, 7, 8), cp.float32))
