"""Tests of Adam's update kernel: the NumPy twin against a per-element float64 loop written here,
the C++ extension against the twin (bit for bit), its thread counts, the dispatch, and the
argument checks. (The optimizer on top, tinyae.optim.Adam, is tested against the published rule
and PyTorch in test_optim.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyae
import tinyae.kernels as K
from tinyae.kernels import cpp
from tinyae.kernels import numpy_kernels as nk

needs_cpp = pytest.mark.skipif(not cpp.AVAILABLE, reason=str(cpp.UNAVAILABLE_REASON))

DTYPES = [np.float32, np.float64]
# (amsgrad, weight_decay, maximize)
CONFIGS = [
    (False, 0.0, False),
    (False, 0.05, False),
    (False, 0.0, True),
    (True, 0.05, True),
    (True, 0.0, False),
]


def scalars(k=3, lr=1e-2, b1=0.9, b2=0.999):
    return dict(beta1=b1, beta2=b2, step_size=lr / (1 - b1**k), bias2_sqrt=math.sqrt(1 - b2**k), eps=1e-8)


def make(n, dtype, amsgrad, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n).astype(dtype)
    g = rng.standard_normal(n).astype(dtype)
    m = (0.1 * rng.standard_normal(n)).astype(dtype)
    v = (0.01 * rng.random(n)).astype(dtype)
    v_max = (0.01 * rng.random(n)).astype(dtype) if amsgrad else None
    return p, g, m, v, v_max


def copies(*arrays):
    return [None if a is None else a.copy() for a in arrays]


def reference(p, g, m, v, v_max, beta1, beta2, step_size, bias2_sqrt, eps, weight_decay, maximize):
    """The formulas of the kernels' docstring, one element at a time, in float64."""
    p, m, v = (a.astype(np.float64) for a in (p, m, v))
    v_max = None if v_max is None else v_max.astype(np.float64)
    for k in range(p.size):
        d = float(g[k])
        d = (weight_decay * p[k] - d) if maximize else (weight_decay * p[k] + d)
        m[k] = beta1 * m[k] + (1 - beta1) * d
        v[k] = beta2 * v[k] + (1 - beta2) * d * d
        vk = v[k]
        if v_max is not None:
            v_max[k] = vk = max(v_max[k], vk)
        p[k] -= step_size * m[k] / (math.sqrt(vk) / bias2_sqrt + eps)
    return p, m, v, v_max


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad, wd, maximize", CONFIGS)
def test_twin_matches_the_formulas(dtype, amsgrad, wd, maximize):
    p, g, m, v, v_max = make(57, dtype, amsgrad)
    s = scalars()
    want = reference(p, g, m, v, v_max, weight_decay=wd, maximize=maximize, **s)
    got = copies(p, m, v, v_max)
    nk.adam_step(got[0], g, *got[1:], weight_decay=wd, maximize=maximize, **s)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    for a, b in zip(got, want):
        if a is not None:
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * 1e-2)


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("amsgrad, wd, maximize", CONFIGS)
@pytest.mark.parametrize("n", [1, 7, 1000, 300_001])  # the last one is split over threads
def test_cpp_equals_twin_bit_for_bit(dtype, amsgrad, wd, maximize, n):
    p, g, m, v, v_max = make(n, dtype, amsgrad, seed=n)
    s = scalars(k=5)
    twin, fused = copies(p, m, v, v_max), copies(p, m, v, v_max)
    nk.adam_step(twin[0], g, *twin[1:], weight_decay=wd, maximize=maximize, **s)
    cpp.adam_step(fused[0], g, *fused[1:], weight_decay=wd, maximize=maximize, **s)
    for a, b in zip(fused, twin):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(g, make(n, dtype, amsgrad, seed=n)[1])  # the gradient is only read


@needs_cpp
def test_cpp_result_does_not_depend_on_the_thread_count():
    p, g, m, v, v_max = make(500_003, np.float32, True)
    results = []
    for threads in (1, 2, 3):
        out = copies(p, m, v, v_max)
        tinyae._C.adam_step(out[0], g, *out[1:], 0.5, 0.999, 0.01, 0.1, 1e-8, 0.01, False, threads=threads)
        results.append(out)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@needs_cpp
def test_nan_gradient_propagates_as_in_the_twin():
    p, g, m, v, v_max = make(9, np.float32, True)
    g[3] = np.nan
    v_max[5] = np.nan
    twin, fused = copies(p, m, v, v_max), copies(p, m, v, v_max)
    nk.adam_step(twin[0], g, *twin[1:], **scalars())
    cpp.adam_step(fused[0], g, *fused[1:], **scalars())
    for a, b in zip(fused, twin):
        np.testing.assert_array_equal(a, b)  # NaN in the same places (assert_array_equal treats NaN == NaN)
    assert np.isnan(fused[0][[3, 5]]).all() and not np.isnan(np.delete(fused[0], [3, 5])).any()


@needs_cpp
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_flushes_subnormals_and_leaves_the_rest_as_the_twin(dtype):
    # A dead unit's gradient is 0 and its m decays by beta1 each step: here m and g are subnormal
    # in the first half (the C++ kernel flushes them to zero), ordinary in the second half.
    tiny = np.finfo(dtype).tiny
    p, g, m, v, _ = make(1000, dtype, False, seed=3)
    m[:500] = tiny * np.linspace(0.01, 0.9, 500).astype(dtype)
    g[:500] = tiny * np.linspace(-0.5, 0.5, 500).astype(dtype)
    twin, fused = copies(p, m, v, None), copies(p, m, v, None)
    nk.adam_step(twin[0], g, *twin[1:], **scalars())
    cpp.adam_step(fused[0], g, *fused[1:], **scalars())
    assert (np.abs(twin[1][:500]) < tiny).all() and (twin[1][:500] != 0).any()  # the twin keeps them
    np.testing.assert_array_equal(fused[1][:500], 0)  # m flushed
    for a, b in zip(fused[:3], twin[:3]):
        np.testing.assert_array_equal(a[500:], b[500:])  # ordinary values: bit for bit
        np.testing.assert_allclose(a[:500], b[:500], rtol=0, atol=4 * tiny)
    # The flush is local to the kernel: NumPy on this thread still produces subnormals afterwards.
    assert np.multiply(np.asarray(tiny, dtype), dtype(0.5)) != 0


def test_public_entry_runs_the_twin_for_strided_states_and_with_numpy_kernels():
    p, g, m, v, _ = make(40, np.float64, False)
    s = scalars()
    want = copies(p, m, v)
    nk.adam_step(want[0], g, want[1], want[2], None, **s)
    # Every other element of a bigger buffer: the C++ kernel needs contiguous states, so the twin runs.
    strided = [np.zeros(80) for _ in range(3)]
    for buf, a in zip(strided, (p, m, v)):
        buf[::2] = a
    K.adam_step(strided[0][::2], g, strided[1][::2], strided[2][::2], **s)
    for buf, a in zip(strided, want):
        np.testing.assert_array_equal(buf[::2], a)
        assert not buf[1::2].any()  # the elements in between are untouched
    previous = K.get_kernels()
    K.set_kernels("numpy")
    try:
        got = copies(p, m, v)
        K.adam_step(got[0], g, got[1], got[2], **s)
    finally:
        K.set_kernels(previous)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_twin_uses_the_given_work_arrays_and_the_fused_kernel_never_asks_for_them():
    p, g, m, v, _ = make(30, np.float32, False)
    s = scalars()
    work = (np.full(30, np.nan, np.float32), np.full(30, np.nan, np.float32))
    got = copies(p, m, v)
    nk.adam_step(got[0], g, got[1], got[2], None, weight_decay=0.1, work=work, **s)
    assert not np.isnan(work[0]).any() and not np.isnan(work[1]).any()  # both were written
    want = copies(p, m, v)
    nk.adam_step(want[0], g, want[1], want[2], None, weight_decay=0.1, **s)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="adam_step: argument 'work' must be two arrays of shape"):
        nk.adam_step(p, g, m, v, None, work=(work[0], work[1][:5]), **s)
    with pytest.raises(ValueError, match="adam_step: argument 'work' shares memory with another argument"):
        nk.adam_step(p, g, m, v, None, work=(work[0], m), **s)
    with pytest.raises(ValueError, match="adam_step: argument 'work' shares memory"):
        nk.adam_step(p, g, m, v, None, work=(work[0], work[0]), **s)
    asked = []
    K.adam_step(p, g, m, v, work=lambda: asked.append(1) or work, **s)
    assert asked == ([] if K.get_kernels() == "cpp" else [1])


def _entries():
    """The checked entry points: the public one (whose checks guard the twin) and the extension's."""
    entries = [("kernels", K.adam_step)]
    if cpp.AVAILABLE:
        entries.append(("cpp", cpp.adam_step))
    return entries


@pytest.mark.parametrize("name, fn", _entries())
def test_bad_arguments_raise_clear_errors(name, fn):
    p, g, m, v, _ = make(6, np.float32, False)
    s = scalars()
    with pytest.raises(TypeError, match="adam_step: argument 'grad' must have (the )?dtype"):
        fn(p, g.astype(np.float64), m, v, None, **s)
    with pytest.raises(TypeError, match="adam_step: argument 'param' must be float32 or float64"):
        fn(p.astype(np.int32), g, m, v, None, **s)
    with pytest.raises(
        ValueError, match="adam_step: argument 'exp_avg' must have the (shape|size) of 'param'"
    ):
        fn(p, g, np.zeros(5, np.float32), v, None, **s)
    with pytest.raises(TypeError, match="adam_step: argument 'exp_avg_sq' must be"):
        fn(p, g, m, [0.0] * 6, None, **s)
    frozen = p.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="adam_step: argument 'param' is read-only"):
        fn(frozen, g, m, v, None, **s)
    with pytest.raises(ValueError, match="adam_step: arguments 'exp_avg' and 'exp_avg_sq' share memory"):
        fn(p, g, m, m, None, **s)
    with pytest.raises(ValueError, match="adam_step: arguments 'param' and 'grad' share memory"):
        fn(p, p, m, v, None, **s)


@needs_cpp
def test_extension_itself_checks_its_arguments():
    """_C is callable directly: it must refuse what would make it write out of bounds or into a copy."""
    p, g, m, v, _ = make(6, np.float32, False)
    args = (0.9, 0.999, 0.01, 0.1, 1e-8)
    with pytest.raises(ValueError, match="adam_step: argument 'exp_avg' must be C-contiguous"):
        tinyae._C.adam_step(p, g, np.zeros(12, np.float32)[::2], v, None, *args)
    with pytest.raises(ValueError, match="adam_step: argument 'exp_avg_sq' must have the size of 'param'"):
        tinyae._C.adam_step(p, g, m, np.zeros(7, np.float32), None, *args)
    with pytest.raises(TypeError, match="adam_step: argument 'max_exp_avg_sq' must have dtype float32"):
        tinyae._C.adam_step(p, g, m, v, np.zeros(6), *args)
    with pytest.raises(ValueError, match="adam_step: arguments 'param' and 'exp_avg' share memory"):
        tinyae._C.adam_step(p, g, p, v, None, *args)
    # A strided gradient is read through one contiguous copy: the same result as a contiguous one.
    wide = np.zeros(12, np.float32)
    wide[::2] = g
    a, b = copies(p, m, v), copies(p, m, v)
    tinyae._C.adam_step(a[0], wide[::2], a[1], a[2], None, *args)
    tinyae._C.adam_step(b[0], g, b[1], b[2], None, *args)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
