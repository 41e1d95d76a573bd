"""Tests of the functional ops batch_norm, max_pool2d, avg_pool2d, interpolate and dropout,
and of the branch-free forms of leaky_relu and sigmoid (their outputs and memory behaviour).

Each op is checked three ways: forward against an independent reference (naive loops
or NumPy formulas written here), gradients against central differences (gradcheck and
gradgradcheck in float64), and forward + backward against PyTorch when importable.
Max-pool inputs are drawn without near-ties (a permutation of well-spaced values), so
that finite differences never flip a window's winner.
"""

from __future__ import annotations

import gc
import itertools
import weakref

import numpy as np
import pytest

import tinyae
import tinyae.nn.functional as F
from tinyae.kernels import get_kernels, set_kernels

RNG = np.random.default_rng(1234)


def t64(a: np.ndarray) -> tinyae.Tensor:
    return tinyae.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def spaced(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Distinct values 0.1 apart in random order: no ties, no near-ties."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1 - n * 0.05


# ================================================================== batch_norm
def bn_reference(x: np.ndarray, w: np.ndarray | None, b: np.ndarray | None, eps: float) -> np.ndarray:
    """Batch statistics per channel over every axis but 1, biased variance."""
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    if w is not None:
        y = y * w.reshape(shape)
    if b is not None:
        y = y + b.reshape(shape)
    return y


@pytest.mark.parametrize("shape", [(5, 3), (4, 3, 5), (3, 2, 4, 3)], ids=["1d", "1d-L", "2d"])
def test_batch_norm_training_forward_and_running_update(shape):
    x = RNG.standard_normal(shape) * 3 + 2
    c = shape[1]
    w, b = RNG.standard_normal(c), RNG.standard_normal(c)
    rm, rv = tinyae.tensor(RNG.standard_normal(c)), tinyae.tensor(RNG.random(c) + 0.5)
    rm0, rv0 = rm.numpy().copy(), rv.numpy().copy()
    y = F.batch_norm(tinyae.tensor(x), rm, rv, tinyae.tensor(w), tinyae.tensor(b), training=True,
                     momentum=0.3, eps=1e-3)  # fmt: skip
    np.testing.assert_allclose(y.numpy(), bn_reference(x, w, b, 1e-3), rtol=1e-10, atol=1e-12)
    axes = (0, *range(2, x.ndim))
    m = x.size // c
    np.testing.assert_allclose(rm.numpy(), 0.7 * rm0 + 0.3 * x.mean(axis=axes), rtol=1e-12)
    unbiased = x.var(axis=axes) * m / (m - 1)
    np.testing.assert_allclose(rv.numpy(), 0.7 * rv0 + 0.3 * unbiased, rtol=1e-12)


def test_batch_norm_eval_uses_running_stats():
    x = RNG.standard_normal((4, 3, 2, 2))
    rm, rv = RNG.standard_normal(3), RNG.random(3) + 0.5
    w, b = RNG.standard_normal(3), RNG.standard_normal(3)
    y = F.batch_norm(
        tinyae.tensor(x), tinyae.tensor(rm), tinyae.tensor(rv), tinyae.tensor(w), tinyae.tensor(b)
    )
    s = (1, 3, 1, 1)
    expected = (x - rm.reshape(s)) / np.sqrt(rv.reshape(s) + 1e-5) * w.reshape(s) + b.reshape(s)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 2, 3, 3)], ids=["1d", "1d-L", "2d"])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_training_gradcheck_and_gradgradcheck(shape, affine):
    c = shape[1]
    x = t64(RNG.standard_normal(shape))
    args = [x]
    if affine:
        args += [t64(RNG.standard_normal(c) + 1.5), t64(RNG.standard_normal(c))]

    def f(x, w=None, b=None):
        return F.batch_norm(x, None, None, w, b, training=True, eps=1e-3)

    assert tinyae.gradcheck(f, args)
    assert tinyae.gradgradcheck(f, args)


def test_batch_norm_eval_gradcheck():
    x, w, b = t64(RNG.standard_normal((3, 2, 2, 2))), t64(RNG.standard_normal(2)), t64(RNG.standard_normal(2))
    rm, rv = tinyae.tensor(RNG.standard_normal(2)), tinyae.tensor(RNG.random(2) + 0.5)

    def f(x, w, b):
        return F.batch_norm(x, rm, rv, w, b, training=False)

    assert tinyae.gradcheck(f, [x, w, b])
    assert tinyae.gradgradcheck(f, [x, w, b])


def test_batch_norm_matches_torch_forward_backward():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((6, 4, 3, 5))
    w, b = RNG.standard_normal(4), RNG.standard_normal(4)
    gy = RNG.standard_normal(x.shape)
    ours = [t64(x), t64(w), t64(b)]
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    rm, rv = tinyae.zeros(4, dtype=np.float64), tinyae.ones(4, dtype=np.float64)
    trm, trv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    y = F.batch_norm(ours[0], rm, rv, ours[1], ours[2], training=True)
    ty = torch.nn.functional.batch_norm(theirs[0], trm, trv, theirs[1], theirs[2], training=True)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    y.backward(gy)
    ty.backward(torch.tensor(gy))
    for a, ta in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rm.numpy(), trm.numpy(), rtol=1e-12)
    np.testing.assert_allclose(rv.numpy(), trv.numpy(), rtol=1e-12)


def test_batch_norm_bad_arguments():
    x = tinyae.randn(4, 3)
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\).*\(4, 3\)"):
        F.batch_norm(x, None, None, tinyae.ones(4), None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(tinyae.randn(1, 3), None, None, training=True)
    with pytest.raises(ValueError, match="running_mean and running_var are required"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(ValueError, match=r"\(N, C, \.\.\.\)"):
        F.batch_norm(tinyae.randn(3), None, None, training=True)


@pytest.mark.parametrize("params", ["wb", "w", "b", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_norm_backward_same_with_and_without_graph(params, dtype):
    """The array backward (create_graph=False) and the Tensor-op one (create_graph=True) agree."""
    rng = np.random.default_rng(40)
    x = rng.standard_normal((4, 3, 5, 2)) * 2 + 1
    w, b = rng.standard_normal(3) + 1.5, rng.standard_normal(3)
    gy = rng.standard_normal(x.shape)
    results = []
    for create_graph in (False, True):
        tx = tinyae.tensor(x.astype(dtype), requires_grad=True)
        tw = tinyae.tensor(w.astype(dtype), requires_grad=True) if "w" in params else None
        tb = tinyae.tensor(b.astype(dtype), requires_grad=True) if "b" in params else None
        y = F.batch_norm(tx, None, None, tw, tb, training=True)
        wanted = [t for t in (tx, tw, tb) if t is not None]
        grads = tinyae.grad(y, wanted, tinyae.tensor(gy.astype(dtype)), create_graph=create_graph)
        assert all(g.dtype == dtype for g in grads)
        results.append([y.numpy(), *(g.numpy() for g in grads)])
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for a, b_ in zip(*results):
        np.testing.assert_allclose(a, b_, rtol=tol, atol=tol)
    np.testing.assert_allclose(results[0][0], bn_reference(x, *(
        v if k in params else None for k, v in (("w", w), ("b", b))), 1e-5), rtol=tol, atol=tol)  # fmt: skip


def test_batch_norm_keeps_only_its_input():
    """One Function for normalise + scale + shift: its output can be freed once the next op is done."""
    rng = np.random.default_rng(41)
    x, w, b = t64(rng.standard_normal((4, 3, 2, 2))), t64(rng.random(3) + 0.5), t64(rng.standard_normal(3))
    h = F.batch_norm(x * 2.0, None, None, w, b, training=True)
    assert len(h.creator.inputs) == 3  # x * 2, weight and bias: no separate multiply / add ops
    out = F.leaky_relu(h, 0.2)  # reads its own output in backward, not h
    freed = weakref.ref(h.data)
    del h
    gc.collect()
    assert freed() is None
    out.sum().backward()
    theirs = [t64(a.numpy()) for a in (x, w, b)]
    kept = F.batch_norm(theirs[0] * 2.0, None, None, theirs[1], theirs[2], training=True)
    F.leaky_relu(kept, 0.2).sum().backward()  # the same with the output alive: same gradients
    for a, t in zip((x, w, b), theirs):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)


# ================================================================== max_pool2d
def max_pool_reference(x, k, s, p, d):
    """Naive loops: the max over each window, padding never wins."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, s, p, d
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), -np.inf)
    xp[:, :, ph : ph + h, pw : pw + w] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.empty((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        window = xp[:, :, i * sh : i * sh + dh * (kh - 1) + 1 : dh, j * sw : j * sw + dw * (kw - 1) + 1 : dw]
        y[:, :, i, j] = window.max(axis=(2, 3))
    return y


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=1, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=2, stride=1, dilation=2, padding=1),
]


def _pool_args(case):
    k = case["kernel_size"]
    k = k if isinstance(k, tuple) else (k, k)
    s = case.get("stride", k)
    s = s if isinstance(s, tuple) else (s, s)
    p = case.get("padding", 0)
    p = p if isinstance(p, tuple) else (p, p)
    d = case.get("dilation", 1)
    return k, s, p, (d, d)


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_forward_matches_loops(case):
    x = RNG.standard_normal((2, 3, 7, 6))
    y = F.max_pool2d(tinyae.tensor(x), **case)
    np.testing.assert_array_equal(y.numpy(), max_pool_reference(x, *_pool_args(case)))


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_gradcheck_and_gradgradcheck(case):
    x = t64(spaced((2, 2, 5, 4)))
    f = lambda x: F.max_pool2d(x, **case)  # noqa: E731
    assert tinyae.gradcheck(f, [x])
    assert tinyae.gradgradcheck(f, [x])


def test_max_pool2d_ties_send_gradient_to_one_winner():
    x = tinyae.ones(1, 1, 4, 4, requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    g = x.grad.numpy()[0, 0]
    assert g.sum() == 4  # one unit of gradient per window, not split
    np.testing.assert_array_equal(g[::2, ::2], np.ones((2, 2)))  # the first element of each window wins


def test_max_pool2d_overlapping_windows_accumulate():
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the centre wins all four 2x2 windows of stride 1
    xt = tinyae.tensor(x, requires_grad=True)
    F.max_pool2d(xt, 2, stride=1).sum().backward()
    assert xt.grad.numpy()[0, 0, 1, 1] == 4 and xt.grad.numpy().sum() == 4


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 7, 6)).astype(np.float32)
    xt, tx = tinyae.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = F.max_pool2d(xt, **case), torch.nn.functional.max_pool2d(tx, **case)
    gy = RNG.standard_normal(y.shape).astype(np.float32)
    y.backward(gy)
    ty.backward(torch.tensor(gy))
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_pools_same_result_with_numpy_kernels():
    x = tinyae.tensor(RNG.standard_normal((2, 2, 6, 6)))
    before = get_kernels()
    try:
        set_kernels("numpy")
        ref = [F.max_pool2d(x, 3, 2, 1).numpy(), F.avg_pool2d(x, 3, 2, 1).numpy()]
    finally:
        set_kernels(before)
    np.testing.assert_array_equal(F.max_pool2d(x, 3, 2, 1).numpy(), ref[0])
    np.testing.assert_allclose(F.avg_pool2d(x, 3, 2, 1).numpy(), ref[1], rtol=1e-12)


# ================================================================== avg_pool2d
def avg_pool_reference(x, k, s, p, count_include_pad=True, divisor_override=None):
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    n, c, h, w = x.shape
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph : ph + h, pw : pw + w] = x
    real = np.zeros(xp.shape[2:])
    real[ph : ph + h, pw : pw + w] = 1
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
        total = xp[:, :, rows, cols].sum(axis=(2, 3))
        if divisor_override:
            divisor = divisor_override
        elif count_include_pad:
            divisor = kh * kw
        else:
            divisor = real[rows, cols].sum()
        y[:, :, i, j] = total / divisor
    return y


AVG_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1), divisor_override=5),
]


def _avg_ref(x, case):
    k, s, p, _ = _pool_args(case)
    return avg_pool_reference(x, k, s, p, case.get("count_include_pad", True), case.get("divisor_override"))


@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool2d_forward_matches_loops(case):
    x = RNG.standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(F.avg_pool2d(tinyae.tensor(x), **case).numpy(), _avg_ref(x, case), rtol=1e-12)


@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool2d_gradcheck_and_gradgradcheck(case):
    x = t64(RNG.standard_normal((2, 2, 5, 4)))
    f = lambda x: F.avg_pool2d(x, **case)  # noqa: E731
    assert tinyae.gradcheck(f, [x])
    assert tinyae.gradgradcheck(f, [x])


@pytest.mark.parametrize("case", AVG_CASES)
def test_avg_pool2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 7, 6))
    xt, tx = t64(x), torch.tensor(x, requires_grad=True)
    y, ty = F.avg_pool2d(xt, **case), torch.nn.functional.avg_pool2d(tx, **case)
    gy = RNG.standard_normal(y.shape)
    y.backward(gy)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-12)


def test_avg_pool2d_keeps_float32():
    y = F.avg_pool2d(tinyae.randn(1, 1, 4, 4), 2)
    assert y.dtype == np.float32


# ================================================================== pool errors
@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
def test_pool_bad_arguments(op):
    name = op.__name__
    with pytest.raises(ValueError, match=rf"{name}: expected a 4-D input \(N, C, H, W\), got shape \(3, 4\)"):
        op(tinyae.randn(3, 4), 2)
    with pytest.raises(ValueError, match=rf"{name}: input of shape \(1, 1, 2, 2\) is too small"):
        op(tinyae.randn(1, 1, 2, 2), 3)
    with pytest.raises(ValueError, match="at most half"):
        op(tinyae.randn(1, 1, 6, 6), 2, padding=2)
    with pytest.raises(ValueError, match=rf"{name}: argument 'kernel_size' must be positive, got 0"):
        op(tinyae.randn(1, 1, 6, 6), 0)
    with pytest.raises(TypeError, match="must be a Tensor"):
        op(np.zeros((1, 1, 4, 4)), 2)
    with pytest.raises(ValueError, match="ceil_mode"):
        op(tinyae.randn(1, 1, 6, 6), 2, ceil_mode=True)


# ================================================================== interpolate
def nearest_reference(x, oh, ow, scale=None):
    """out[i, j] = x[floor(i * step), floor(j * step)] with PyTorch's step and special cases."""
    h, w = x.shape[2:]

    def index(n_in, n_out, s):
        if n_out == n_in:
            return list(range(n_out))
        if n_out == 2 * n_in:
            return [i // 2 for i in range(n_out)]
        step = np.float32(1 / s) if s else np.float32(n_in) / np.float32(n_out)
        return [min(int(np.floor(np.float32(i) * step)), n_in - 1) for i in range(n_out)]

    rows, cols = index(h, oh, scale and scale[0]), index(w, ow, scale and scale[1])
    y = np.empty(x.shape[:2] + (oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        y[:, :, i, j] = x[:, :, rows[i], cols[j]]
    return y


INTERP_CASES = [
    (dict(scale_factor=2), (8, 6), (2.0, 2.0)),
    (dict(scale_factor=(3, 2)), (12, 6), (3.0, 2.0)),
    (dict(size=(8, 9)), (8, 9), None),
    (dict(size=(6, 5)), (6, 5), None),
    (dict(scale_factor=1.7), (6, 5), (1.7, 1.7)),
    (dict(scale_factor=0.5), (2, 1), (0.5, 0.5)),
]


@pytest.mark.parametrize("kwargs,out,scale", INTERP_CASES)
def test_interpolate_forward_matches_loops(kwargs, out, scale):
    x = RNG.standard_normal((2, 3, 4, 3))
    y = F.interpolate(tinyae.tensor(x), **kwargs)
    assert y.shape == (2, 3, *out)
    np.testing.assert_array_equal(y.numpy(), nearest_reference(x, *out, scale))


@pytest.mark.parametrize("kwargs,out,scale", INTERP_CASES)
def test_interpolate_gradcheck_and_gradgradcheck(kwargs, out, scale):
    x = t64(RNG.standard_normal((1, 2, 4, 3)))
    f = lambda x: F.interpolate(x, **kwargs)  # noqa: E731
    assert tinyae.gradcheck(f, [x])
    assert tinyae.gradgradcheck(f, [x])


@pytest.mark.parametrize(
    "kwargs",
    [dict(scale_factor=2), dict(scale_factor=(2, 3)), dict(size=(10, 9)), dict(scale_factor=1.7),
     dict(scale_factor=2.04), dict(size=(5, 4)), dict(scale_factor=0.5),
     dict(scale_factor=2.5, recompute_scale_factor=True)],
)  # fmt: skip
def test_interpolate_matches_torch(kwargs):
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((2, 3, 7, 6))
    xt, tx = t64(x), torch.tensor(x, requires_grad=True)
    y, ty = F.interpolate(xt, **kwargs), torch.nn.functional.interpolate(tx, **kwargs)
    gy = RNG.standard_normal(y.shape)
    y.backward(gy)
    ty.backward(torch.tensor(gy))
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_interpolate_bad_arguments():
    x = tinyae.randn(1, 1, 4, 4)
    with pytest.raises(ValueError, match="only mode='nearest'"):
        F.interpolate(x, scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x, size=(8, 8), scale_factor=2)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="scale_factor must be a positive number"):
        F.interpolate(x, scale_factor=-1)
    with pytest.raises(ValueError, match=r"interpolate: expected a 4-D input"):
        F.interpolate(tinyae.randn(4, 4), scale_factor=2)


# ================================================================== dropout
def test_dropout_statistics_and_scaling():
    tinyae.manual_seed(0)
    x = tinyae.ones(200, 500)
    y = F.dropout(x, p=0.3).numpy()
    kept = y != 0
    # fraction kept ~ Binomial(n, 0.7) / n: standard error sqrt(0.7 * 0.3 / n) ~ 0.0014
    assert abs(kept.mean() - 0.7) < 5 * np.sqrt(0.21 / y.size)
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)  # survivors scaled by 1 / (1 - p)


def test_dropout_identity_cases_and_p_one():
    x = tinyae.randn(3, 4)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).numpy().any()
    for p in (-0.1, 1.5, "a"):
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.dropout(x, p)


def test_dropout_reproducible_with_manual_seed_and_mask_gradient():
    x = tinyae.randn(4, 6, requires_grad=True)
    tinyae.manual_seed(7)
    y1 = F.dropout(x, 0.4)
    tinyae.manual_seed(7)
    y2 = F.dropout(x, 0.4)
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    y1.sum().backward()
    mask = (y1.numpy() != 0) / 0.6
    np.testing.assert_allclose(x.grad.numpy(), mask, rtol=1e-6)  # dL/dx is exactly the scaled mask


def test_dropout_gradcheck_and_gradgradcheck_with_fixed_mask():
    x = t64(RNG.standard_normal((3, 4)))

    def f(x):
        tinyae.manual_seed(11)  # the same mask at every evaluation
        return F.dropout(x, 0.5) * x  # a nonlinear use, so that second derivatives are not all zero

    assert tinyae.gradcheck(f, [x])
    assert tinyae.gradgradcheck(f, [x])


# ================================================================== leaky_relu, sigmoid (branch-free forms)
@pytest.mark.parametrize("slope", [0.0, 0.01, 0.2, 1.0, 1.5, -0.3])
def test_leaky_relu_every_slope(slope):
    """max(x, s x) for s <= 1, min(x, s x) above: the same as the two-branch definition."""
    x = spaced((3, 4, 5), seed=3) + 0.05  # no zeros: every value is 0.05 or more away from the kink
    t = t64(x)
    y = F.leaky_relu(t, slope)
    np.testing.assert_array_equal(y.numpy(), np.where(x > 0, x, slope * x))
    gy = RNG.standard_normal(x.shape)
    y.backward(tinyae.tensor(gy))
    np.testing.assert_array_equal(t.grad.numpy(), gy * np.where(x > 0, 1.0, slope))
    assert tinyae.gradcheck(lambda a: F.leaky_relu(a, slope), [t64(x)])
    assert tinyae.gradgradcheck(lambda a: F.leaky_relu(a, slope) * a, [t64(x)])


def test_leaky_relu_matches_torch_float32():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((4, 8, 6, 6)).astype(np.float32)
    x[0, 0, 0, :3] = (0.0, -0.0, np.nan)
    gy = RNG.standard_normal(x.shape).astype(np.float32)
    for slope in (0.2, 0.0, -0.5, 2.0):
        t = tinyae.tensor(x, requires_grad=True)
        tt = torch.tensor(x, requires_grad=True)
        y, ty = F.leaky_relu(t, slope), torch.nn.functional.leaky_relu(tt, slope)
        np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
        y.backward(tinyae.tensor(gy))
        ty.backward(torch.tensor(gy))
        np.testing.assert_array_equal(t.grad.numpy(), tt.grad.numpy())


@pytest.mark.parametrize("slope, frees_input", [(0.2, True), (0.0, True), (-0.5, False)])
def test_leaky_relu_frees_its_input_unless_the_slope_is_negative(slope, frees_input):
    x = t64(spaced((2, 3, 4), seed=4))
    h = x * 1.5  # an intermediate result
    y = F.leaky_relu(h, slope)
    freed = weakref.ref(h.data)
    del h
    gc.collect()
    assert (freed() is None) == frees_input
    (y * y).sum().backward()
    a = x.numpy() * 1.5
    expected = 1.5 * 2 * np.where(a > 0, a, slope * a) * np.where(a > 0, 1, slope)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_full_relative_precision_in_both_tails(dtype):
    """1 / (1 + e^-x): the far negative tail keeps its relative precision (no 1 - tiny cancellation)."""
    x = np.concatenate([-np.logspace(4, -3, 60), [0.0], np.logspace(-3, 4, 60)]).astype(dtype)
    with np.errstate(all="raise"):  # the silenced overflow of e^-x must not leak out
        y = F.sigmoid(tinyae.tensor(x)).numpy()
    ref = 1 / (1 + np.exp(-x.astype(np.longdouble)))  # extended precision: errors far below dtype's
    tiny = np.finfo(dtype).tiny  # below it results are subnormal: compared absolutely
    normal = ref > tiny
    np.testing.assert_allclose(y[normal], ref[normal].astype(np.float64), rtol=4 * np.finfo(dtype).eps)
    assert np.all(np.abs(y[~normal]) <= tiny) and y[0] == 0.0 and y[-1] == 1.0
    assert y.dtype == dtype


def test_sigmoid_matches_torch_and_takes_ints():
    torch = pytest.importorskip("torch")
    x = np.linspace(-120, 120, 2001).astype(np.float32)
    t = tinyae.tensor(x, requires_grad=True)
    tt = torch.tensor(x, requires_grad=True)
    y, ty = F.sigmoid(t), torch.sigmoid(tt)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=4e-7, atol=1e-37)
    y.sum().backward()
    ty.sum().backward()
    # y (1 - y): one rounding step of y near 1 (eps = 1.2e-7) moves it by up to 1.2e-7 absolutely
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-6, atol=2.5e-7)
    y = F.sigmoid(tinyae.tensor(np.array([-3, 0, 3])))  # integers: float64, as np.exp of ints
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), 1 / (1 + np.exp(-np.array([-3.0, 0.0, 3.0]))), rtol=1e-15)
