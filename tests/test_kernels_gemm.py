"""Tests of the C++ float32 matrix product (``tinyae._C.matmul``, csrc/gemm.cpp) and of how
:func:`tinyae.parallel.matmul` routes products to it.

The reference is NumPy's product in float64. Each C[i, j] is a float32 sum of K products, so it
is held to the standard error bound of such a sum, ``(K + 2) * 2**-23 * (|A| @ |B|)[i, j]``,
rather than to a fixed tolerance. The grid covers the kernel's edges: rows around the 14-row
tiles, columns around the 16- and 32-column panels, K around the 256-k blocks, and operands
that are transposed views, strided both ways, reversed or broadcast (stride 0).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cpp_helpers import _C, C_REASON

import tinyae
import tinyae.kernels as K
from tinyae import parallel
from tinyae.kernels import cpp

needs_gemm = pytest.mark.skipif(
    not cpp.GEMM, reason=C_REASON or "this CPU has no AVX-512F: the C++ product cannot run"
)


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def layout(x: np.ndarray, how: str, seed: int = 0) -> np.ndarray:
    """The matrix x (float32) as an array with other strides but the same values."""
    if how == "c":
        return x
    if how == "t":  # a transposed view of a C-contiguous (cols, rows) array
        return np.ascontiguousarray(x.T).T
    if how == "strided":  # every other row and every third column of a bigger array
        big = rand((2 * x.shape[0] + 1, 3 * x.shape[1] + 2), seed + 7)
        big[::2, ::3][: x.shape[0], : x.shape[1]] = x
        return big[::2, ::3][: x.shape[0], : x.shape[1]]
    if how == "reversed":  # negative strides both ways
        return np.ascontiguousarray(x[::-1, ::-1])[::-1, ::-1]
    raise ValueError(how)


def check_product(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64
    bound = (a.shape[1] + 2) * 2.0**-23 * (np.abs(a64) @ np.abs(b64)) + 1e-30
    assert c.shape == ref.shape and c.dtype == np.float32
    err = np.abs(c - ref)
    assert np.all(err <= bound), (
        f"max error {err.max():.3g} over bound at {np.unravel_index(np.argmax(err - bound), err.shape)}"
    )


@needs_gemm
@pytest.mark.parametrize("m", [1, 13, 14, 15, 29, 57])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 31, 32, 33, 70])
def test_matches_float64_over_tile_edges(m, n):
    for kdim, (la, lb) in zip(
        [1, 5, 256, 257, 600], itertools.cycle(itertools.product(["c", "t"], ["c", "t"]))
    ):
        a, b = rand((m, kdim), m + kdim), rand((kdim, n), n + 3 * kdim)
        check_product(a, b, _C.matmul(layout(a, la), layout(b, lb), threads=2))


@needs_gemm
@pytest.mark.parametrize("la", ["c", "t", "strided", "reversed"])
@pytest.mark.parametrize("lb", ["c", "t", "strided", "reversed"])
def test_any_strides(la, lb):
    a, b = rand((45, 300), 1), rand((300, 50), 2)
    check_product(a, b, _C.matmul(layout(a, la, 1), layout(b, lb, 2), threads=3))


@needs_gemm
def test_broadcast_operands_and_the_vae_shapes():
    a = np.broadcast_to(rand((1, 40), 3), (30, 40))  # row stride 0
    b = np.broadcast_to(rand((40, 1), 4), (40, 35))  # column stride 0
    check_product(a, b, _C.matmul(a, b))
    for rows in (1, 7):  # every stride 0 (a broadcast scalar): copied before it is read
        s = np.broadcast_to(np.float32(0.5), (rows, 16))
        check_product(s, rand((16, 100), 8), _C.matmul(s, rand((16, 100), 8), threads=2))
    x, w = rand((128, 784), 5), rand((400, 784), 6)  # a VAE layer: x @ W^T, gy @ W, gy^T @ x
    gy = rand((128, 400), 7)
    check_product(x, w.T, _C.matmul(x, w.T))
    check_product(gy, w, _C.matmul(gy, w))
    check_product(gy.T, x, _C.matmul(gy.T, x))
    check_product(gy.T, x[:, :777], _C.matmul(gy.T, x[:, :777], threads=3))  # a narrow last panel
    a, w = rand((30, 2100), 22), rand((40, 2100), 23)  # packed B panels over three blocks of k's
    check_product(a, w.T, _C.matmul(a, w.T, threads=2))


@needs_gemm
def test_empty_and_k_zero():
    assert _C.matmul(rand((0, 5)), rand((5, 3))).shape == (0, 3)
    assert _C.matmul(rand((4, 5)), rand((5, 0))).shape == (4, 0)
    out = np.full((4, 3), np.nan, np.float32)
    assert _C.matmul(rand((4, 0)), rand((0, 3)), out=out) is out
    assert np.array_equal(out, np.zeros((4, 3), np.float32))  # an empty sum is 0, as in NumPy


@needs_gemm
@pytest.mark.parametrize("la,lb,kdim", [("c", "c", 530), ("c", "t", 530), ("t", "c", 530), ("t", "c", 128)])
def test_result_does_not_depend_on_threads(la, lb, kdim):
    a, b = layout(rand((150, kdim), 8), la), layout(rand((kdim, 270), 9), lb)
    one = _C.matmul(a, b, threads=1)
    for threads in (2, 3, 5, 16):
        assert np.array_equal(_C.matmul(a, b, threads=threads), one), threads


@needs_gemm
def test_non_finite_values_reach_only_their_row_and_column():
    a, b = rand((20, 40), 10), rand((40, 36), 11)
    a[3, 7] = np.nan
    b[5, 33] = np.inf
    c = _C.matmul(a, b)
    assert np.isnan(c[3]).all() and not np.isnan(np.delete(c, 3, axis=0)[:, :33]).any()
    rest = np.delete(c, 3, axis=0)
    assert np.isinf(rest[:, 33]).all() and np.isfinite(np.delete(rest, 33, axis=1)).all()


@needs_gemm
def test_out_is_written_and_returned():
    a, b = rand((20, 30), 12), rand((30, 40), 13)
    out = np.empty((20, 40), np.float32)
    assert _C.matmul(a, b, out=out) is out
    assert np.array_equal(out, _C.matmul(a, b))


@needs_gemm
def test_bad_arguments_name_the_op_and_argument():
    a, b = rand((4, 5)), rand((5, 3))
    with pytest.raises(TypeError, match="matmul: argument 'a' must have dtype float32, got float64"):
        _C.matmul(a.astype(np.float64), b)
    with pytest.raises(TypeError, match="matmul: argument 'b' must have dtype float32"):
        _C.matmul(a, b.astype(np.float16))
    with pytest.raises(ValueError, match="matmul.*'b'.*2"):
        _C.matmul(a, b[0])
    with pytest.raises(ValueError, match=r"matmul: a \(4, 5\) and b \(4, 3\) do not chain"):
        _C.matmul(a, rand((4, 3)))
    with pytest.raises(ValueError, match=r"matmul: argument 'out' must have shape \(4, 3\)"):
        _C.matmul(a, b, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match="matmul: argument 'out' must have dtype float32"):
        _C.matmul(a, b, out=np.empty((4, 3), np.float64))
    with pytest.raises(ValueError, match="matmul: argument 'out' must be C-contiguous"):
        _C.matmul(a, b, out=np.empty((3, 4), np.float32).T)
    buf = np.zeros((5, 5), np.float32)
    with pytest.raises(ValueError, match="matmul: argument 'out'.*overlaps"):
        _C.matmul(buf[:, :5], buf[:, :5], out=buf)


@needs_gemm
def test_unaligned_operands_are_copied_first():
    a, b = rand((4, 5), 20), rand((5, 3), 21)
    odd = np.zeros(4 * 5 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(4, 5)  # an odd address
    odd[...] = a
    check_product(odd, b, _C.matmul(odd, b))
    raw = np.zeros(200, np.uint8)
    skew = np.lib.stride_tricks.as_strided(raw[2:198].view(np.float32), shape=(5, 3), strides=(18, 6))
    assert np.array_equal(_C.matmul(a, skew), np.zeros((4, 3), np.float32))  # 6-byte strides


# ------------------------------------------------------------------ routing
@needs_gemm
def test_parallel_matmul_routes_float32_2d_products_to_cpp(monkeypatch):
    monkeypatch.setattr(parallel, "_num_threads", 2)
    x, w = rand((64, 100), 14), rand((30, 100), 15)
    if K.get_kernels() == "cpp":
        assert np.array_equal(parallel.matmul(x, w.T), _C.matmul(x, w.T, threads=2))
    x64 = x.astype(np.float64)
    assert np.array_equal(parallel.matmul(x64, x64.T), x64 @ x64.T)  # float64: NumPy's BLAS
    batch = rand((3, 4, 5), 16)
    assert np.array_equal(parallel.matmul(batch, batch.transpose(0, 2, 1)), batch @ batch.transpose(0, 2, 1))


@needs_gemm
def test_numpy_kernels_use_numpys_product():
    x, w = rand((64, 100), 17), rand((30, 100), 18)
    before = K.get_kernels()
    try:
        K.set_kernels("numpy")
        assert parallel._gemm is None
        assert np.array_equal(parallel.matmul(x, w.T), x @ w.T)
        K.set_kernels("cpp")
        assert parallel._gemm is cpp.matmul
    finally:
        K.set_kernels(before)


@needs_gemm
def test_linear_layer_gradients_through_cpp_product():
    """A float32 Linear step through the C++ product agrees with float64 NumPy formulas."""
    rng = np.random.default_rng(19)
    layer = tinyae.nn.Linear(70, 33)
    x = tinyae.tensor(rng.standard_normal((50, 70)).astype(np.float32), requires_grad=True)
    y = layer(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    (y * tinyae.tensor(gy)).sum().backward()
    w, b, x64 = (np.asarray(t.data, np.float64) for t in (layer.weight, layer.bias, x))
    np.testing.assert_allclose(y.data, x64 @ w.T + b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x.grad.data, gy @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.weight.grad.data, gy.T.astype(np.float64) @ x64, rtol=1e-4, atol=1e-4)
