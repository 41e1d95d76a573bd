"""Tests of the C++ ReLU / leaky ReLU loops (``tinyae._C.leaky_relu`` and
``leaky_relu_backward``, csrc/activation.cpp) and of how the activations route to them.

The reference is the rule written out with ``np.where``, and the NumPy passes of
:mod:`tinyae.ops.activation` (the twin) that run when the C++ kernels are not chosen.
"""

from __future__ import annotations

import numpy as np
import pytest
from cpp_helpers import _C, C_REASON, needs_cpp

import tinyae
import tinyae.kernels as K
from tinyae.ops import activation

SLOPES = [0.0, 0.01, 0.2, 1.0, 1.5, -0.5]


def values(n, dtype, seed=0):
    """Random signs and magnitudes, with the special values that tell the rules apart."""
    x = np.random.default_rng(seed).standard_normal(n).astype(dtype)
    x[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, -3.0]
    return x


@needs_cpp
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("slope", SLOPES)
def test_forward_and_backward_follow_the_rule(dtype, slope):
    x = values(1000, dtype).reshape(10, 100)
    gy = values(1000, dtype, seed=1)[::-1].reshape(10, 100)  # special values at other places
    s = dtype(slope)
    with np.errstate(invalid="ignore"):
        want_y = np.where(x > 0, x, s * x) + dtype(0)
        want_gx = np.where(x > 0, gy, s * gy)
    y = _C.leaky_relu(x, slope)
    gx = _C.leaky_relu_backward(x, gy, slope)
    assert y.dtype == dtype and y.shape == x.shape and gx.shape == x.shape
    np.testing.assert_array_equal(y, want_y)
    np.testing.assert_array_equal(gx, want_gx)
    if slope == 0.0:
        assert not np.signbit(y[~np.isnan(y)]).any()  # ReLU gives 0, never -0, for x <= 0


@needs_cpp
@pytest.mark.parametrize("slope", [0.0, 0.2])
def test_threads_split_large_arrays_without_changing_a_bit(slope):
    x = values(3 * 65536 + 17, np.float32, seed=2)
    gy = values(x.size, np.float32, seed=3)
    one = _C.leaky_relu(x, slope, threads=1), _C.leaky_relu_backward(x, gy, slope, threads=1)
    for threads in (2, 3, 8):
        np.testing.assert_array_equal(_C.leaky_relu(x, slope, threads=threads), one[0])
        np.testing.assert_array_equal(_C.leaky_relu_backward(x, gy, slope, threads=threads), one[1])


@needs_cpp
def test_non_contiguous_inputs_are_read_as_they_are():
    x = values(4000, np.float32, seed=4).reshape(40, 100)[:, ::3].T  # strided and transposed
    gy = values(x.size, np.float32, seed=5).reshape(x.shape)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(_C.leaky_relu(x, 0.1), np.where(x > 0, x, np.float32(0.1) * x) + 0)
        np.testing.assert_array_equal(
            _C.leaky_relu_backward(x, gy, 0.1), np.where(x > 0, gy, np.float32(0.1) * gy)
        )


@needs_cpp
def test_bad_arguments_name_the_op_and_argument():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(TypeError, match="leaky_relu: .*'x'.*int64"):
        _C.leaky_relu(np.ones((3, 4), np.int64), 0.1)
    with pytest.raises(
        TypeError,
        match="leaky_relu_backward: arguments 'gy' and 'a' must have the same dtype, got float64 and float32",
    ):
        _C.leaky_relu_backward(x, x.astype(np.float64), 0.1)
    with pytest.raises(
        ValueError, match=r"leaky_relu_backward: argument 'gy' must have the shape of 'a' \(3, 4\)"
    ):
        _C.leaky_relu_backward(x, np.ones((4, 3), np.float32), 0.1)


# ------------------------------------------------------------------ routing
@pytest.mark.parametrize("slope", [None, 0.2, -0.5])
def test_activations_agree_with_the_numpy_passes(slope):
    """ReLU / leaky ReLU forward and input gradient, C++ kernels against the twin's NumPy passes."""

    def run(kernels):
        before = K.get_kernels()
        K.set_kernels(kernels)
        try:
            x = tinyae.tensor(values(6008, np.float32, seed=6)[8:].reshape(40, -1), requires_grad=True)
            y = tinyae.ops.relu(x) if slope is None else tinyae.ops.leaky_relu(x, slope)
            gy = np.random.default_rng(7).standard_normal(y.shape).astype(np.float32)
            y.backward(tinyae.tensor(gy))
            return y.data, x.grad.data
        finally:
            K.set_kernels(before)

    twin = run("numpy")
    if not K.cpp_available():
        pytest.skip(C_REASON)
    fast = run("cpp")
    np.testing.assert_array_equal(fast[0], twin[0])
    np.testing.assert_allclose(fast[1], twin[1], rtol=2e-7, atol=0)  # the twin's 1 = (1 - s) + s rounds


def test_numpy_kernels_unset_the_fused_loops():
    before = K.get_kernels()
    try:
        K.set_kernels("numpy")
        assert activation._fused is None
        if K.cpp_available():
            K.set_kernels("cpp")
            assert activation._fused is not None
    finally:
        K.set_kernels(before)
