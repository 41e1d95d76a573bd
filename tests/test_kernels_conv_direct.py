"""Tests of conv2d_direct, conv_transpose2d_direct and conv2d_weight_grad_direct: a convolution's
forward, a transposed convolution's forward and a convolution's weight gradient, without a column
buffer.

The NumPy twin (im2col + a product per group) is checked against naive loops over output
pixels written here; the C++ kernel (float32, AVX-512) against the twin over a grid that covers
its tile edges: output channels per group around the 16- and 32-channel blocks, output
positions around the 14-position tiles, groups, strides, padding, dilation, no bias.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cpp_helpers import _C, C_REASON, needs_cpp
from geometry_helpers import G

import tinyae
import tinyae.kernels as K
from tinyae.kernels import conv_plan, cpp, out_size
from tinyae.kernels import numpy_kernels as nk

needs_direct = pytest.mark.skipif(
    not cpp.DIRECT_CONV, reason=C_REASON or "this CPU has no AVX-512F: the direct C++ convolution cannot run"
)
# Tests of what the engine chooses also need the C++ kernels chosen (not TINYAE_KERNELS=numpy).
needs_direct_chosen = pytest.mark.skipif(
    not cpp.DIRECT_CONV or K.get_kernels() != "cpp",
    reason=C_REASON or "the C++ kernels are not chosen, or this CPU has no AVX-512F",
)


def geo(w, sh, sw, ph, pw, dh, dw, groups=1):
    """The Geometry of a convolution with weight ``w``: its kernel size, and these numbers."""
    return G(*w.shape[2:], sh, sw, ph, pw, dh, dw, groups)


def random(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def naive_conv2d(x, w, b, sh, sw, ph, pw, dh, dw, groups):
    """y[n, o, a, c] = b[o] + sum over the group's channels and taps, one output pixel at a time."""
    n, c, h, wd = x.shape
    c_out, cg, kh, kw = w.shape
    cog = c_out // groups
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
    y = np.zeros((n, c_out, oh, ow), dtype=np.float64)
    for ni, o, a, col in itertools.product(range(n), range(c_out), range(oh), range(ow)):
        g = o // cog
        total = 0.0 if b is None else float(b[o])
        for ci, i, j in itertools.product(range(cg), range(kh), range(kw)):
            r, s = a * sh - ph + i * dh, col * sw - pw + j * dw
            if 0 <= r < h and 0 <= s < wd:
                total += float(w[o, ci, i, j]) * float(x[ni, g * cg + ci, r, s])
        y[ni, o, a, col] = total
    return y


def assert_close32(actual, expected):
    scale = float(np.abs(expected).max(initial=1.0))
    np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=2e-5 * scale)


# (x shape, C_out, kernel (kh, kw), stride, padding, dilation, groups, bias)
NAIVE_CASES = [
    ((2, 3, 6, 7), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    ((1, 4, 7, 5), 6, (2, 3), (2, 1), (0, 2), (1, 2), 2, False),
    ((2, 6, 5, 5), 3, (3, 2), (1, 2), (2, 1), (2, 1), 3, True),
]


@pytest.mark.parametrize("case", NAIVE_CASES, ids=str)
def test_twin_matches_naive_loops(case):
    shape, c_out, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups, with_bias = case
    x = random(shape, np.float64)
    w = random((c_out, shape[1] // groups, kh, kw), np.float64, seed=1)
    b = random((c_out,), np.float64, seed=2) if with_bias else None
    y = nk.conv2d_direct(x, w, b, geo(w, sh, sw, ph, pw, dh, dw, groups))
    np.testing.assert_allclose(
        y, naive_conv2d(x, w, b, sh, sw, ph, pw, dh, dw, groups), rtol=1e-12, atol=1e-12
    )


# (x shape, C_out, kernel, stride, padding, dilation, groups): output channels per group 1, 5, 16,
# 17, 32, 33, 48 (blocks of 32, a last block of <= 16 uses one vector); positions per sample 1, 13,
# 14, 15, 28, 49 (tiles of 14).
GRID = [
    ((2, 3, 4, 4), 1, 3, 1, 1, 1, 1),  # P = 16, one output channel
    ((3, 4, 7, 7), 5, 3, 2, 1, 1, 1),  # P = 16
    ((2, 8, 13, 1), 16, (3, 1), 1, (1, 0), 1, 1),  # P = 13
    ((2, 6, 14, 1), 17, (1, 1), 1, 0, 1, 1),  # P = 14, 1x1 kernel
    ((2, 16, 15, 1), 32, (3, 1), 1, (1, 0), 1, 1),  # P = 15
    ((2, 8, 9, 9), 33, 4, 2, 1, 1, 1),  # P = 16
    ((2, 64, 14, 14), 48, 4, 2, 1, 1, 1),  # P = 49, K = 1024
    ((1, 4, 9, 9), 64, 9, 1, 0, 1, 1),  # P = 1: one window
    ((2, 6, 10, 8), 34, 3, (2, 1), (0, 2), (2, 1), 2),  # groups, dilation, mixed strides
    ((2, 9, 8, 8), 48, 3, 1, 2, 2, 3),  # three groups of 16 channels
]


@needs_direct
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("case", GRID, ids=str)
def test_cpp_matches_twin(case, with_bias):
    shape, c_out, k, s, p, d, groups = case
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (v if isinstance(v, tuple) else (v, v) for v in (k, s, p, d))
    x = random(shape)
    w = random((c_out, shape[1] // groups, kh, kw), seed=1)
    b = random((c_out,), seed=2) if with_bias else None
    y = _C.conv2d_direct(x, w, b, geo(w, sh, sw, ph, pw, dh, dw, groups))
    b64 = None if b is None else b.astype(np.float64)
    expected = nk.conv2d_direct(
        x.astype(np.float64), w.astype(np.float64), b64, geo(w, sh, sw, ph, pw, dh, dw, groups)
    )
    assert y.dtype == np.float32 and y.shape == expected.shape
    assert_close32(y, expected)
    if K.get_kernels() == "cpp":  # the public entry runs the same kernel (float32, AVX-512)
        np.testing.assert_array_equal(K.conv2d_direct(x, w, b, geo(w, sh, sw, ph, pw, dh, dw, groups)), y)


@needs_direct
def test_result_does_not_depend_on_the_thread_count():
    x, w, b = random((5, 16, 14, 14)), random((40, 16, 3, 3), seed=1), random((40,), seed=2)
    results = [_C.conv2d_direct(x, w, b, geo(w, 2, 2, 1, 1, 1, 1, 1), threads=t) for t in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@needs_direct
def test_non_contiguous_inputs_are_read_correctly():
    x = random((3, 14, 14, 6)).transpose(0, 3, 1, 2)[:, ::2]  # (3, 3, 14, 14), strided
    w = random((32, 3, 3, 6), seed=1)[..., ::2]  # (32, 3, 3, 3), strided
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    y = _C.conv2d_direct(x, w, None, geo(w, 1, 2, 0, 1, 1, 1, 1))
    assert_close32(
        y,
        nk.conv2d_direct(np.ascontiguousarray(x), np.ascontiguousarray(w), None, geo(w, 1, 2, 0, 1, 1, 1, 1)),
    )


def test_against_torch():
    torch = pytest.importorskip("torch")
    x, w, b = random((4, 12, 11, 11)), random((36, 4, 3, 3), seed=1), random((36,), seed=2)
    y = K.conv2d_direct(x, w, b, geo(w, 2, 2, 1, 1, 2, 2, 3))
    ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                                     stride=2, padding=1, dilation=2, groups=3).numpy()  # fmt: skip
    assert_close32(y, ref)


# ---------------------------------------------------------------- the transposed convolution


def naive_conv_transpose2d(x, w, b, out_hw, sh, sw, ph, pw, dh, dw, groups):
    """Scatter every input pixel times every tap onto the output pixel it lands on, one at a time."""
    n, c, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cg = c // groups
    y = np.zeros((n, cog * groups, *out_hw), dtype=np.float64)
    for ni, ci, r, s, o, i, j in itertools.product(
        range(n), range(c), range(h), range(wd), range(cog), range(kh), range(kw)
    ):
        oy, ox = r * sh - ph + i * dh, s * sw - pw + j * dw
        if 0 <= oy < out_hw[0] and 0 <= ox < out_hw[1]:
            y[ni, (ci // cg) * cog + o, oy, ox] += float(x[ni, ci, r, s]) * float(w[ci, o, i, j])
    return y if b is None else y + b.reshape(1, -1, 1, 1)


def out_hw_of(x_hw, k, s, p, op, d=(1, 1)):
    """PyTorch's transposed-conv output size: (H - 1) * S - 2P + D(K - 1) + OP + 1."""
    return tuple((x_hw[a] - 1) * s[a] - 2 * p[a] + d[a] * (k[a] - 1) + op[a] + 1 for a in (0, 1))


# (x shape, C_out, kernel, stride, padding, output_padding, groups)
TRANSPOSE_GRID = [
    ((2, 16, 7, 7), 32, (4, 4), (2, 2), (1, 1), (0, 0), 1),  # W5's generator layer, scaled down
    ((2, 8, 7, 7), 48, (3, 3), (2, 2), (1, 1), (1, 1), 1),  # phases with 2 and 1 taps
    ((2, 6, 5, 4), 10, (3, 3), (3, 2), (2, 1), (2, 1), 2),  # stride 3: phases of 1 tap, groups
    ((2, 3, 3, 3), 16, (2, 2), (3, 3), (0, 0), (2, 2), 1),  # stride > kernel: a phase with no taps
    ((3, 8, 4, 6), 48, (5, 5), (2, 2), (3, 3), (1, 1), 4),  # padding > stride, four groups
    ((2, 4, 5, 5), 33, (1, 1), (1, 1), (0, 0), (0, 0), 1),  # 1x1: one phase
    ((1, 5, 9, 2), 17, (3, 2), (1, 2), (2, 0), (0, 1), 1),  # stride 1 one way, 2 the other
]


@pytest.mark.parametrize("case", TRANSPOSE_GRID[:4], ids=str)
def test_transpose_twin_matches_naive_loops(case):
    shape, c_out, k, s, p, op, groups = case
    x = random(shape, np.float64)
    w = random((shape[1], c_out // groups, *k), np.float64, seed=1)
    b = random((c_out,), np.float64, seed=2)
    out_hw = out_hw_of(shape[2:], k, s, p, op)
    y = nk.conv_transpose2d_direct(x, w, b, out_hw, geo(w, *s, *p, 1, 1, groups))
    np.testing.assert_allclose(
        y, naive_conv_transpose2d(x, w, b, out_hw, *s, *p, 1, 1, groups), rtol=1e-12, atol=1e-12
    )


@needs_direct
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("case", TRANSPOSE_GRID, ids=str)
def test_transpose_cpp_matches_twin(case, with_bias):
    shape, c_out, k, s, p, op, groups = case
    x = random(shape)
    w = random((shape[1], c_out // groups, *k), seed=1)
    b = random((c_out,), seed=2) if with_bias else None
    out_hw = out_hw_of(shape[2:], k, s, p, op)
    y = _C.conv_transpose2d_direct(x, w, b, out_hw, geo(w, *s, *p, 1, 1, groups))
    b64 = None if b is None else b.astype(np.float64)
    expected = nk.conv_transpose2d_direct(
        x.astype(np.float64), w.astype(np.float64), b64, out_hw, geo(w, *s, *p, 1, 1, groups)
    )
    assert y.dtype == np.float32 and y.shape == expected.shape
    assert_close32(y, expected)
    if K.get_kernels() == "cpp":
        np.testing.assert_array_equal(
            K.conv_transpose2d_direct(x, w, b, out_hw, geo(w, *s, *p, 1, 1, groups)), y
        )


@needs_direct
def test_transpose_result_does_not_depend_on_the_thread_count():
    x, w, b = random((5, 32, 7, 7)), random((32, 40, 4, 4), seed=1), random((40,), seed=2)
    results = [
        _C.conv_transpose2d_direct(x, w, b, (14, 14), geo(w, 2, 2, 1, 1, 1, 1, 1), threads=t)
        for t in (1, 2, 3)
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@needs_direct_chosen
def test_transposed_conv_layer_uses_the_direct_kernel_and_keeps_its_gradients(monkeypatch):
    calls = []
    real = _C.conv_transpose2d_direct
    monkeypatch.setattr(cpp, "conv_transpose2d_direct", lambda *a, **k: calls.append(a[1].shape) or real(*a))
    x0, w0, b0 = random((3, 32, 5, 5)), random((32, 16, 4, 4), seed=1), random((16,), seed=2)

    def run():
        x, w, b = (tinyae.tensor(a, requires_grad=True) for a in (x0, w0, b0))
        y = tinyae.nn.functional.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)
        (y * y).sum().backward()
        return [t.numpy() for t in (y, x.grad, w.grad, b.grad)]

    direct = run()
    assert (32, 16, 4, 4) in calls  # the forward; the backward's conv2d gradient has 32 outputs too
    previous = K.get_kernels()
    try:
        K.set_kernels("numpy")
        reference = run()
    finally:
        K.set_kernels(previous)
    for a, e in zip(direct, reference):
        assert_close32(a, e)
    calls.clear()
    tinyae.nn.functional.conv_transpose2d(tinyae.tensor(x0), tinyae.tensor(random((32, 1, 4, 4))), stride=2)
    tinyae.nn.functional.conv_transpose2d(tinyae.tensor(x0), tinyae.tensor(w0), stride=2, dilation=2)
    assert calls == []  # one output channel; dilation 2: W^T x + col2im


# ---------------------------------------------------------------- the weight gradient


def naive_weight_grad(x, gy, kh, kw, sh, sw, ph, pw, dh, dw, groups):
    """gW[o, c, i, j] = sum over samples and output pixels of gy times the input pixel tap (i, j) reads."""
    n, c, h, wd = x.shape
    c_out, oh, ow = gy.shape[1:]
    cg, cog = c // groups, c_out // groups
    gw = np.zeros((c_out, cg, kh, kw))
    for o, ci, i, j in itertools.product(range(c_out), range(cg), range(kh), range(kw)):
        total = 0.0
        for ni, a, b in itertools.product(range(n), range(oh), range(ow)):
            r, s = a * sh - ph + i * dh, b * sw - pw + j * dw
            if 0 <= r < h and 0 <= s < wd:
                total += float(gy[ni, o, a, b]) * float(x[ni, (o // cog) * cg + ci, r, s])
        gw[o, ci, i, j] = total
    return gw


@pytest.mark.parametrize("case", NAIVE_CASES, ids=str)
def test_weight_grad_twin_matches_naive_loops(case):
    shape, c_out, (kh, kw), (sh, sw), (ph, pw), (dh, dw), groups, _ = case
    x = random(shape, np.float64)
    oh, ow = out_size(shape[2], kh, sh, ph, dh), out_size(shape[3], kw, sw, pw, dw)
    gy = random((shape[0], c_out, oh, ow), np.float64, seed=3)
    gw = nk.conv2d_weight_grad_direct(x, gy, G(kh, kw, sh, sw, ph, pw, dh, dw, groups))
    expected = naive_weight_grad(x, gy, kh, kw, sh, sw, ph, pw, dh, dw, groups)
    np.testing.assert_allclose(gw, expected, rtol=1e-12, atol=1e-12)


@needs_direct
@pytest.mark.parametrize("case", GRID, ids=str)
def test_weight_grad_cpp_matches_twin(case):
    shape, c_out, k, s, p, d, groups = case
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (v if isinstance(v, tuple) else (v, v) for v in (k, s, p, d))
    x = random(shape)
    oh, ow = out_size(shape[2], kh, sh, ph, dh), out_size(shape[3], kw, sw, pw, dw)
    gy = random((shape[0], c_out, oh, ow), seed=3)
    gw = _C.conv2d_weight_grad_direct(x, gy, G(kh, kw, sh, sw, ph, pw, dh, dw, groups))
    expected = nk.conv2d_weight_grad_direct(
        x.astype(np.float64), gy.astype(np.float64), G(kh, kw, sh, sw, ph, pw, dh, dw, groups)
    )
    assert gw.dtype == np.float32 and gw.shape == expected.shape == (c_out, shape[1] // groups, kh, kw)
    assert_close32(gw, expected)
    if K.get_kernels() == "cpp":
        np.testing.assert_array_equal(
            K.conv2d_weight_grad_direct(x, gy, G(kh, kw, sh, sw, ph, pw, dh, dw, groups)), gw
        )


@needs_direct
def test_weight_grad_does_not_depend_on_the_thread_count():
    # Big enough (N * P * C_out * K >= 2^22) that several threads are used, in the item order
    # of several threads (a tap tile's channel blocks in turn), not one's.
    x, gy = random((8, 32, 14, 14)), random((8, 40, 7, 7), seed=1)
    results = [
        _C.conv2d_weight_grad_direct(x, gy, G(4, 4, 2, 2, 1, 1, 1, 1, 1), threads=t) for t in (1, 2, 3)
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@needs_direct
def test_weight_grad_sums_a_batch_too_big_for_one_chunk():
    # The kernel pads at most 2^20 input values at a time: 113 samples of (256, 6, 6) here, so this
    # batch of 120 is summed in two chunks.
    x, gy = random((120, 256, 6, 6)), random((120, 16, 4, 4), seed=1)
    gw = _C.conv2d_weight_grad_direct(x, gy, G(3, 3, 1, 1, 0, 0, 1, 1, 1))
    expected = nk.conv2d_weight_grad_direct(
        x.astype(np.float64), gy.astype(np.float64), G(3, 3, 1, 1, 0, 0, 1, 1, 1)
    )
    assert_close32(gw, expected)
    np.testing.assert_array_equal(
        _C.conv2d_weight_grad_direct(x, gy, G(3, 3, 1, 1, 0, 0, 1, 1, 1), threads=1), gw
    )


@needs_direct
def test_empty_batches():
    x, w = np.zeros((0, 16, 8, 8), np.float32), random((32, 16, 3, 3))
    assert _C.conv2d_direct(x, w, None, geo(w, 1, 1, 1, 1, 1, 1, 1)).shape == (0, 32, 8, 8)
    y = _C.conv_transpose2d_direct(x, random((16, 32, 4, 4)), None, (16, 16), G(4, 4, 2, 2, 1, 1, 1, 1))
    assert y.shape == (0, 32, 16, 16)
    gw = _C.conv2d_weight_grad_direct(x, np.zeros((0, 32, 8, 8), np.float32), G(3, 3, 1, 1, 1, 1, 1, 1))
    np.testing.assert_array_equal(gw, np.zeros((32, 16, 3, 3), np.float32))  # a sum over no samples


@needs_direct_chosen
def test_conv_layer_weight_gradient_runs_direct(monkeypatch):
    calls = []
    real = _C.conv2d_weight_grad_direct
    monkeypatch.setattr(
        cpp, "conv2d_weight_grad_direct", lambda *a, **k: calls.append(a[1].shape) or real(*a)
    )
    x = tinyae.tensor(random((3, 16, 9, 9)))
    w = tinyae.tensor(random((32, 16, 3, 3), seed=1), requires_grad=True)
    tinyae.nn.functional.conv2d(x, w, stride=2, padding=1).sum().backward()
    assert calls == [(3, 32, 5, 5)]
    one_channel = tinyae.tensor(random((32, 1, 3, 3)), requires_grad=True)  # 9 taps: im2col + GEMM
    tinyae.nn.functional.conv2d(tinyae.tensor(random((3, 1, 9, 9))), one_channel, padding=1).sum().backward()
    assert len(calls) == 1


# ---------------------------------------------------------------- dispatch and the conv layer


@needs_direct_chosen
def test_runs_cpp_only_for_float32_numpy_within_the_scratch_limit():
    x = random((2, 3, 8, 8))
    assert K.conv2d_direct_runs_cpp(x, G(3, 3, 1, 1, 1, 1, 1, 1))
    assert not K.conv2d_direct_runs_cpp(
        x.astype(np.float64), G(3, 3, 1, 1, 1, 1, 1, 1)
    )  # no float64 kernel: the twin
    big = np.lib.stride_tricks.as_strided(x, shape=(1, 1, 4097, 4097), strides=(0, 0, 0, 0))
    assert not K.conv2d_direct_runs_cpp(
        big, G(3, 3, 1, 1, 0, 0, 1, 1)
    )  # one padded sample over 2^24 elements
    wide = np.lib.stride_tricks.as_strided(x, shape=(1, 1, 1000, 1000), strides=(0, 0, 0, 0))
    assert K.conv2d_direct_runs_cpp(wide, G(3, 3, 2, 2, 1, 1, 1, 1))  # 32 x 500 x 500 output elements
    assert not K.conv2d_direct_runs_cpp(wide, G(3, 3, 1, 1, 1, 1, 1, 1))  # 32 x 1000 x 1000: over 2^24
    assert K.conv_transpose2d_direct_runs_cpp(wide[:, :, :300, :300], G(4, 4, 2, 2, 1, 1, 1, 1))
    assert not K.conv_transpose2d_direct_runs_cpp(wide[:, :, :400, :400], G(4, 4, 2, 2, 1, 1, 1, 1))
    previous = K.get_kernels()
    try:
        K.set_kernels("numpy")
        assert not K.conv2d_direct_runs_cpp(x, G(3, 3, 1, 1, 1, 1, 1, 1))
    finally:
        K.set_kernels(previous)


def test_without_avx512_the_twin_and_im2col_run(monkeypatch):
    # As on a CPU without AVX-512F (or a non-x86 build): the public entry runs the twin and the
    # conv layer its im2col + GEMM path, with the same results.
    monkeypatch.setattr(cpp, "DIRECT_CONV", False)
    monkeypatch.setattr(cpp, "conv2d_direct", lambda *a, **k: pytest.fail("the C++ kernel was called"))
    x, w, b = random((2, 8, 9, 9)), random((32, 8, 3, 3), seed=1), random((32,), seed=2)
    assert not K.conv2d_direct_runs_cpp(x, G(3, 3, 1, 1, 1, 1, 1, 1))
    y = K.conv2d_direct(x, w, b, geo(w, 2, 2, 1, 1, 1, 1))
    assert_close32(y, nk.conv2d_direct(x, w, b, geo(w, 2, 2, 1, 1, 1, 1)))
    layer = tinyae.nn.functional.conv2d(
        tinyae.tensor(x), tinyae.tensor(w), tinyae.tensor(b), stride=2, padding=1
    )
    assert_close32(layer.numpy(), y)


@needs_direct_chosen
def test_conv_layer_uses_the_direct_kernel_where_it_pays(monkeypatch):
    calls = []
    monkeypatch.setattr(
        cpp, "conv2d_direct", lambda *a, **k: calls.append(a[1].shape) or _C.conv2d_direct(*a)
    )
    f = tinyae.nn.functional
    x = tinyae.tensor(random((2, 8, 10, 10)))
    w = random((32, 8, 3, 3), seed=1)
    y = f.conv2d(x, tinyae.tensor(w), stride=2, padding=1)  # 32 channels, K = 72: direct
    assert calls == [(32, 8, 3, 3)]
    previous = K.get_kernels()
    try:
        K.set_kernels("numpy")  # the im2col + GEMM path with the NumPy twin: an independent reference
        ref = f.conv2d(x, tinyae.tensor(w), stride=2, padding=1)
    finally:
        K.set_kernels(previous)
    assert_close32(y.numpy(), ref.numpy())
    f.conv2d(x, tinyae.tensor(random((8, 8, 3, 3))), padding=1)  # 8 output channels: im2col + GEMM
    f.conv2d(tinyae.tensor(random((2, 1, 10, 10))), tinyae.tensor(random((32, 1, 3, 3))))  # K = 9: the same
    assert len(calls) == 1
    assert conv_plan.DIRECT_MIN_COG == 16 and conv_plan.DIRECT_MIN_KG == 32


@needs_direct_chosen
def test_gradients_through_a_direct_forward_match_the_numpy_path():
    x0, w0, b0 = random((3, 16, 9, 9)), random((32, 16, 3, 3), seed=1), random((32,), seed=2)

    def run():
        x, w, b = (tinyae.tensor(a, requires_grad=True) for a in (x0, w0, b0))
        y = tinyae.nn.functional.conv2d(x, w, b, stride=2, padding=1)
        (y * y).sum().backward()
        return [t.numpy() for t in (y, x.grad, w.grad, b.grad)]

    direct = run()
    previous = K.get_kernels()
    try:
        K.set_kernels("numpy")
        reference = run()
    finally:
        K.set_kernels(previous)
    for a, e in zip(direct, reference):
        assert_close32(a, e)


# ---------------------------------------------------------------- errors


def kernel_entry(entry: str, name: str):
    """The kernel ``name`` as the public dispatcher (whose checks guard the NumPy twin) or the
    extension itself (which re-checks what memory safety needs)."""
    if entry == "extension" and _C is None:
        pytest.skip(C_REASON)
    return getattr({"public": K, "extension": _C}[entry], name)


BAD_CALLS = [
    ("x float64", TypeError, "float", lambda x, w, b: (x.astype(np.float64), w, b, 1, 1, 0, 0, 1, 1, 1)),
    ("x 3-D", ValueError, "4-D", lambda x, w, b: (x[0], w, b, 1, 1, 0, 0, 1, 1, 1)),
    ("weight channels", ValueError, "weight", lambda x, w, b: (x, w[:, :2], b, 1, 1, 0, 0, 1, 1, 1)),
    ("groups", ValueError, "groups", lambda x, w, b: (x, w, b, 1, 1, 0, 0, 1, 1, 2)),
    ("bias shape", ValueError, "bias", lambda x, w, b: (x, w, b[:3], 1, 1, 0, 0, 1, 1, 1)),
    (
        "bias dtype",
        (TypeError, ValueError),
        "bias",
        lambda x, w, b: (x, w, b.astype(np.float64), 1, 1, 0, 0, 1, 1, 1),
    ),
    ("stride 0", ValueError, "stride", lambda x, w, b: (x, w, b, 0, 1, 0, 0, 1, 1, 1)),
    ("kernel too big", ValueError, "does not fit", lambda x, w, b: (x[:, :, :2], w, b, 1, 1, 0, 0, 1, 1, 1)),
]


BAD_TRANSPOSE_CALLS = [
    ("weight in-channels", ValueError, "weight", lambda x, w, b: (x, w[:2], b, 9, 9, 2, 2, 1, 1, 1, 1, 1)),
    ("out size", ValueError, "output size", lambda x, w, b: (x, w, b, 12, 9, 2, 2, 1, 1, 1, 1, 1)),
    ("bias shape", ValueError, "bias", lambda x, w, b: (x, w, b[:2], 9, 9, 2, 2, 1, 1, 1, 1, 1)),
    ("groups", ValueError, "groups", lambda x, w, b: (x, w, b, 9, 9, 2, 2, 1, 1, 1, 1, 2)),
    ("padding", ValueError, "padding", lambda x, w, b: (x, w, b, 9, 9, 2, 2, -1, 1, 1, 1, 1)),
]


@pytest.mark.parametrize(
    "name,error,match,args", BAD_TRANSPOSE_CALLS, ids=[c[0] for c in BAD_TRANSPOSE_CALLS]
)
@pytest.mark.parametrize("entry", ["public", "extension"])
def test_bad_transpose_arguments_raise_clear_errors(entry, name, error, match, args):
    fn = kernel_entry(entry, "conv_transpose2d_direct")
    x, w, b = random((2, 3, 5, 5)), random((3, 4, 3, 3), seed=1), random((4,), seed=2)  # out 9x9 at s2 p1
    a = args(x, w, b)
    with pytest.raises(error, match=match):
        fn(*a[:3], a[3:5], geo(a[1], *a[5:]))


BAD_WEIGHT_GRAD_CALLS = [
    ("gy batch", ValueError, "gy", lambda x, gy: (x, gy[:1], 3, 3, 1, 1, 1, 1, 1, 1, 1)),
    ("gy size", ValueError, "gy", lambda x, gy: (x, gy[:, :, :4], 3, 3, 1, 1, 1, 1, 1, 1, 1)),
    ("groups", ValueError, "groups", lambda x, gy: (x, gy, 3, 3, 1, 1, 1, 1, 1, 1, 2)),
    (
        "gy float64",
        TypeError,
        "gy|float32",
        lambda x, gy: (x, gy.astype(np.float64), 3, 3, 1, 1, 1, 1, 1, 1, 1),
    ),
    ("kernel 0", ValueError, "kernel", lambda x, gy: (x, gy, 0, 3, 1, 1, 1, 1, 1, 1, 1)),
]


@pytest.mark.parametrize(
    "name,error,match,args", BAD_WEIGHT_GRAD_CALLS, ids=[c[0] for c in BAD_WEIGHT_GRAD_CALLS]
)
@pytest.mark.parametrize("entry", ["public", "extension"])
def test_bad_weight_grad_arguments_raise_clear_errors(entry, name, error, match, args):
    fn = kernel_entry(entry, "conv2d_weight_grad_direct")
    x, gy = random((2, 3, 5, 5)), random((2, 4, 5, 5), seed=1)  # k3 s1 p1
    a = args(x, gy)
    with pytest.raises(error, match=match):
        fn(a[0], a[1], G(*a[2:]))


@needs_cpp
def test_extension_refuses_outputs_too_big_for_its_scratch():
    # Each thread stages a channel block's output, 32 planes of (OH, OW): over 2^24 elements is
    # refused with the shapes named, not allocated (the dispatchers send such layers elsewhere).
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(1, 1, 1000, 1000), strides=(0,) * 4)
    w = random((32, 1, 3, 3), seed=1)
    with pytest.raises(ValueError, match=r"conv2d_direct: 32 output planes of \(1000, 1000\)"):
        _C.conv2d_direct(x, w, None, geo(w, 1, 1, 1, 1, 1, 1, 1))
    xt = x[:, :, :400, :400]
    wt = random((1, 32, 4, 4), seed=2)
    with pytest.raises(ValueError, match=r"conv_transpose2d_direct: 32 output planes of \(800, 800\)"):
        _C.conv_transpose2d_direct(xt, wt, None, (800, 800), geo(wt, 2, 2, 1, 1, 1, 1, 1))


@needs_cpp
def test_transpose_extension_refuses_dilation_and_float64():
    x, w = random((2, 3, 5, 5)), random((3, 4, 3, 3), seed=1)
    with pytest.raises(ValueError, match="dilation 1"):
        _C.conv_transpose2d_direct(x, w, None, (13, 13), geo(w, 2, 2, 1, 1, 2, 2, 1))
    with pytest.raises(TypeError, match="float32"):
        _C.conv_transpose2d_direct(x.astype(np.float64), w, None, (9, 9), geo(w, 2, 2, 1, 1, 1, 1, 1))


@pytest.mark.parametrize("name,error,match,args", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
@pytest.mark.parametrize("entry", ["public", "extension"])
def test_bad_arguments_raise_clear_errors(entry, name, error, match, args):
    fn = kernel_entry(entry, "conv2d_direct")
    x, w, b = random((2, 3, 5, 5)), random((4, 3, 3, 3), seed=1), random((4,), seed=2)
    a = args(x, w, b)
    with pytest.raises(error, match=match):  # a float64 x with a float32 weight: mixed dtypes everywhere
        fn(*a[:3], geo(a[1], *a[3:]))
