"""Tests of batch norm's kernels: the NumPy twin against per-channel loops in float64 written here,
the C++ extension against the twin, and their argument checks.

(The layer on top, tinyae.nn.BatchNorm*, is gradient-checked in test_norm.)
"""

from __future__ import annotations

import numpy as np
import pytest

import tinyae
import tinyae.kernels as K
from tinyae.kernels import cpp
from tinyae.kernels import numpy_kernels as nk

needs_cpp = pytest.mark.skipif(not cpp.AVAILABLE, reason=str(cpp.UNAVAILABLE_REASON))

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
SHAPES = [(2, 1, 3), (3, 4, 7), (5, 3, 49), (2, 6, 13), (64, 9, 49)]  # (N, C, L); L = 49: 7x7 maps


def reference(x, gy, w, b, eps):
    """The formulas of the kernels' docstring, one channel at a time, in float64."""
    x, gy = x.astype(np.float64), gy.astype(np.float64)
    n, c, ln = x.shape
    m = n * ln
    y, gx = np.empty_like(x), np.empty_like(x)
    stats = np.empty((3, c))
    gw, gb = np.empty(c), np.empty(c)
    for ch in range(c):
        v, g = x[:, ch].ravel(), gy[:, ch].ravel()
        mean = v.sum() / m
        var = ((v - mean) ** 2).sum() / m
        inv = 1 / np.sqrt(var + eps)
        wc = 1.0 if w is None else float(w[ch])
        bc = 0.0 if b is None else float(b[ch])
        x_hat = (v - mean) * inv
        y[:, ch] = (x_hat * wc + bc).reshape(n, ln)
        gb[ch], gw[ch] = g.sum(), (g * x_hat).sum()
        gx[:, ch] = (inv * wc * (g - gb[ch] / m - x_hat * gw[ch] / m)).reshape(n, ln)
        stats[:, ch] = mean, var, inv
    return y, stats, gx, gw, gb


def make(shape, dtype, affine, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)  # a mean far from 0: tests the centring
    gy = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal(shape[1]).astype(dtype) if affine else None
    b = rng.standard_normal(shape[1]).astype(dtype) if affine else None
    return x, gy, w, b


def check_against_reference(impl, shape, dtype, affine):
    x, gy, w, b = make(shape, dtype, affine)
    ry, rstats, rgx, rgw, rgb = reference(x, gy, w, b, 1e-5)
    y, mean, var, inv_std = impl.batch_norm_forward(x, w, b, 1e-5)
    assert y.dtype == mean.dtype == var.dtype == inv_std.dtype == dtype
    assert y.shape == shape and mean.shape == var.shape == inv_std.shape == (shape[1],)
    rtol = RTOL[dtype]
    np.testing.assert_allclose(y, ry, rtol=rtol, atol=rtol * 10)
    for got, want in zip((mean, var, inv_std), rstats):
        np.testing.assert_allclose(got, want, rtol=rtol * 10)
    gx, gw, gb = impl.batch_norm_backward(x, gy, mean, inv_std, w, need_gx=True)
    scale = np.abs(rgx).max()
    np.testing.assert_allclose(gx, rgx, rtol=rtol * 10, atol=rtol * 10 * scale)
    np.testing.assert_allclose(gw, rgw, rtol=rtol * 10, atol=rtol * 10 * np.abs(rgw).max())
    np.testing.assert_allclose(gb, rgb, rtol=rtol * 10, atol=rtol * 10 * np.abs(rgb).max())
    none, gw2, gb2 = impl.batch_norm_backward(x, gy, mean, inv_std, w, need_gx=False)
    assert none is None
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_array_equal(gb2, gb)


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_twin_matches_per_channel_loops(shape, dtype, affine):
    check_against_reference(nk, shape, dtype, affine)


@needs_cpp
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cpp_matches_per_channel_loops(shape, dtype, affine, restore_num_threads):
    tinyae.set_num_threads(2)
    check_against_reference(cpp, shape, dtype, affine)


@needs_cpp
def test_cpp_is_the_same_on_any_thread_count(restore_num_threads):
    """Channels are independent and each is summed in one fixed order: bit-identical results."""
    x, gy, w, b = make((64, 24, 196), np.float32, True)  # big enough to be split
    results = []
    for threads in (1, 2, 3):
        tinyae.set_num_threads(threads)
        y, mean, var, inv_std = cpp.batch_norm_forward(x, w, b, 1e-5)
        results.append((y, mean, var, inv_std, *cpp.batch_norm_backward(x, gy, mean, inv_std, w)))
    for other in results[1:]:
        for a, b_ in zip(results[0], other):
            np.testing.assert_array_equal(a, b_)


@needs_cpp
def test_dispatch_uses_cpp_for_numpy_arrays_unless_told(monkeypatch):
    x, gy, w, b = make((3, 4, 5), np.float64, True)
    calls = []
    for mod in (cpp, nk):
        real = mod.batch_norm_forward
        monkeypatch.setattr(mod, "batch_norm_forward", lambda *a, _r=real, _m=mod: calls.append(_m) or _r(*a))
    previous = K.get_kernels()  # "numpy" when the suite runs with TINYAE_KERNELS=numpy
    try:
        K.set_kernels("cpp")
        K.batch_norm_forward(x, w, b, 1e-5)
        K.set_kernels("numpy")
        K.batch_norm_forward(x, w, b, 1e-5)
    finally:
        K.set_kernels(previous)
    assert calls == [cpp, nk]


BAD = [
    ("x", lambda x, gy, w, m: dict(x=x.reshape(-1)), ValueError, "must be 3-D"),
    ("x", lambda x, gy, w, m: dict(x=x.astype(np.int32)), TypeError, "float32 or float64"),
    ("gy", lambda x, gy, w, m: dict(gy=gy[:, :2]), ValueError, "argument 'gy'"),
    ("gy", lambda x, gy, w, m: dict(gy=gy.astype(np.float32)), ValueError, "argument 'gy'"),
    ("weight", lambda x, gy, w, m: dict(weight=w[:2]), ValueError, r"'weight' must have shape \(4,\)"),
    ("weight", lambda x, gy, w, m: dict(weight=w.astype(np.float32)), ValueError, "argument 'weight'"),
    ("mean", lambda x, gy, w, m: dict(mean=m[None]), ValueError, "argument 'mean' must be 1-D"),
]


@pytest.mark.parametrize("backend", ["numpy", pytest.param("cpp", marks=needs_cpp)])
@pytest.mark.parametrize("name, change, error, message", BAD)
def test_bad_arguments_raise_clear_errors(backend, name, change, error, message):
    x, gy, w, b = make((3, 4, 5), np.float64, True)
    _, mean, _, inv_std = nk.batch_norm_forward(x, w, b, 1e-5)
    args = dict(x=x, gy=gy, mean=mean, inv_std=inv_std, weight=w)
    args.update(change(x, gy, w, mean))
    previous = K.get_kernels()
    K.set_kernels(backend)  # the public entry checks first, whichever implementation runs
    try:
        with pytest.raises(error, match=message):
            K.batch_norm_backward(args["x"], args["gy"], args["mean"], args["inv_std"], args["weight"])
        if name in ("x", "weight"):
            with pytest.raises(error, match=message):
                K.batch_norm_forward(args["x"], args["weight"], None, 1e-5)
    finally:
        K.set_kernels(previous)


@needs_cpp
@pytest.mark.parametrize("name, change, error, message", BAD)
def test_the_extension_checks_its_arguments_itself(name, change, error, message):
    """tinyae._C can be called directly: it must refuse bad input too (its own messages)."""
    from tinyae import _C

    x, gy, w, b = make((3, 4, 5), np.float64, True)
    _, mean, _, inv_std = nk.batch_norm_forward(x, w, b, 1e-5)
    args = dict(x=x, gy=gy, mean=mean, inv_std=inv_std, weight=w)
    args.update(change(x, gy, w, mean))
    with pytest.raises((TypeError, ValueError), match="batch_norm_backward"):
        _C.batch_norm_backward(args["x"], args["gy"], args["mean"], args["inv_std"], args["weight"], True)
