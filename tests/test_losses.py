"""Tests of tinyae.nn.losses: gradients (first and second order), values against independent
NumPy formulas and naive loops, PyTorch when importable, stability at extreme inputs, errors.

Notation: N batch, C classes, D an extra (spatial) dimension; x input, t target, w weight.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyae
from tinyae.nn import losses as L
from tinyae.tensor import Tensor

REDUCTIONS = ["mean", "sum", "none"]


def leaf(a, requires_grad: bool = True) -> Tensor:
    return Tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


def reduce_np(values: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "mean":
        return np.asarray(values.mean())
    if reduction == "sum":
        return np.asarray(values.sum())
    return values


# ------------------------------------------------------------ NumPy references
def ref_bce(x, t, w=None):
    with np.errstate(divide="ignore"):
        log_x, log_1mx = np.maximum(np.log(x), -100.0), np.maximum(np.log(1 - x), -100.0)
    loss = -(t * log_x + (1 - t) * log_1mx)
    return loss if w is None else loss * w


def ref_bce_logits(x, t, w=None, p=None):
    """The textbook definition via sigmoid (fine for moderate logits)."""
    s = 1 / (1 + np.exp(-x))
    p = 1.0 if p is None else p
    loss = -(p * t * np.log(s) + (1 - t) * np.log(1 - s))
    return loss if w is None else loss * w


def ref_log_softmax_loop(x: np.ndarray) -> np.ndarray:
    """log_softmax over axis 1 of (N, C, *rest), element by element."""
    out = np.empty_like(x)
    n, c = x.shape[:2]
    for i in range(n):
        for rest in np.ndindex(*x.shape[2:]):
            row = [x[(i, k, *rest)] for k in range(c)]
            m = max(row)
            lse = m + math.log(sum(math.exp(v - m) for v in row))
            for k in range(c):
                out[(i, k, *rest)] = row[k] - lse
    return out


def ref_nll_loop(logp, t, w=None, ignore_index=-100, reduction="mean"):
    """Per-sample -w[t] logp[t] with ignored samples 0; mean = sum / sum of weights used."""
    losses = np.zeros(t.shape)
    weight_sum = 0.0
    for idx in np.ndindex(*t.shape):
        k = int(t[idx])
        if k == ignore_index:
            continue
        wk = 1.0 if w is None else w[k]
        losses[idx] = -wk * logp[(idx[0], k, *idx[1:])]
        weight_sum += wk
    if reduction == "mean":
        return np.asarray(losses.sum() / weight_sum)
    return reduce_np(losses, reduction)


def ref_cross_entropy_loop(x, t, w=None, ignore_index=-100, reduction="mean", eps=0.0):
    """PyTorch's definition: (1 - eps) nll + eps / C * (sum_c -w_c logp_c), normalised like nll."""
    logp = ref_log_softmax_loop(x)
    nll = ref_nll_loop(logp, t, w, ignore_index, reduction)
    if eps == 0:
        return nll
    c = x.shape[1]
    smooth = np.zeros(t.shape)
    weight_sum = 0.0
    for idx in np.ndindex(*t.shape):
        k = int(t[idx])
        if k == ignore_index:
            continue
        smooth[idx] = -sum((1.0 if w is None else w[j]) * logp[(idx[0], j, *idx[1:])] for j in range(c))
        weight_sum += 1.0 if w is None else w[k]
    smooth_red = (
        np.asarray(smooth.sum() / weight_sum) if reduction == "mean" else reduce_np(smooth, reduction)
    )
    return (1 - eps) * nll + eps / c * smooth_red


def ref_kl(mu, logvar):
    """KL(N(mu, s^2) || N(0, 1)) per element from the densities' definition:
    log(1/s) + (s^2 + mu^2) / 2 - 1/2."""
    s2 = np.exp(logvar)
    return -0.5 * np.log(s2) + (s2 + mu**2) / 2 - 0.5


# --------------------------------------------------------------- the cases
RNG_SEED = 1234


def _cases():
    """(name, fn(*inputs, reduction), inputs, numpy_reference(reduction) or None)."""
    rng = np.random.default_rng(RNG_SEED)
    cases = []

    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    cases.append(("mse", lambda a, b, r: L.mse_loss(a, b, reduction=r), [x, t],
                  lambda r, x=x, t=t: reduce_np((x - t) ** 2, r)))  # fmt: skip

    # l1: keep |x - t| >= 0.2, away from the kink of |.| at 0.
    x = rng.standard_normal((3, 4))
    t = x + rng.choice([-1, 1], (3, 4)) * rng.uniform(0.2, 1.0, (3, 4))
    cases.append(("l1", lambda a, b, r: L.l1_loss(a, b, reduction=r), [x, t],
                  lambda r, x=x, t=t: reduce_np(np.abs(x - t), r)))  # fmt: skip

    # bce: probabilities away from 0 and 1, soft targets, optional weight (broadcast over rows).
    x, t, w = rng.uniform(0.1, 0.9, (3, 4)), rng.uniform(0, 1, (3, 4)), rng.uniform(0.5, 2, (4,))
    cases.append(("bce", lambda a, b, r: L.binary_cross_entropy(a, b, reduction=r), [x, t],
                  lambda r, x=x, t=t: reduce_np(ref_bce(x, t), r)))  # fmt: skip
    cases.append(("bce_weight", lambda a, b, c, r: L.binary_cross_entropy(a, b, c, reduction=r), [x, t, w],
                  lambda r, x=x, t=t, w=w: reduce_np(ref_bce(x, t, w), r)))  # fmt: skip

    x, t = 3 * rng.standard_normal((3, 4)), rng.uniform(0, 1, (3, 4))
    w, p = rng.uniform(0.5, 2, (3, 1)), rng.uniform(0.5, 3, (4,))
    cases.append(("bce_logits", lambda a, b, r: L.binary_cross_entropy_with_logits(a, b, reduction=r), [x, t],
                  lambda r, x=x, t=t: reduce_np(ref_bce_logits(x, t), r)))  # fmt: skip
    cases.append((
        "bce_logits_weights",
        lambda a, b, c, d, r: L.binary_cross_entropy_with_logits(a, b, c, reduction=r, pos_weight=d),
        [x, t, w, p],
        lambda r, x=x, t=t, w=w, p=p: reduce_np(ref_bce_logits(x, t, w, p), r),
    ))  # fmt: skip

    # cross-entropy: (N, C) and (N, C, D) logits, int64 targets, weights, ignore_index, smoothing.
    x = rng.standard_normal((5, 4))
    t = np.array([0, 3, 1, 3, 2])
    w = rng.uniform(0.5, 2, (4,))
    t_ign = np.array([0, -100, 1, 3, -100])
    for name, tt, ww, eps in [
        ("ce", t, None, 0.0),
        ("ce_weight", t, w, 0.0),
        ("ce_ignore", t_ign, None, 0.0),
        ("ce_weight_ignore", t_ign, w, 0.0),
        ("ce_smooth", t, None, 0.1),
        ("ce_ignore_smooth", t_ign, None, 0.3),
        ("ce_weight_ignore_smooth", t_ign, w, 0.25),
    ]:
        cases.append((
            name,
            lambda a, r, tt=tt, ww=ww, eps=eps: L.cross_entropy(a, tt, ww, reduction=r, label_smoothing=eps),
            [x],
            lambda r, x=x, tt=tt, ww=ww, eps=eps: ref_cross_entropy_loop(x, tt, ww, -100, r, eps),
        ))  # fmt: skip
    x3 = rng.standard_normal((2, 3, 4))
    t3 = np.array([[0, 2, 1, 5], [2, 2, 0, 1]])  # 5 is the ignore_index here
    cases.append((
        "ce_spatial_ignore5",
        lambda a, r: L.cross_entropy(a, t3, w[:3], ignore_index=5, reduction=r, label_smoothing=0.2),
        [x3],
        lambda r: ref_cross_entropy_loop(x3, t3, w[:3], 5, r, 0.2),
    ))  # fmt: skip

    # class-probability targets (differentiable in the target as well)
    probs = rng.uniform(0.1, 1, (5, 4))
    probs /= probs.sum(axis=1, keepdims=True)

    def ref_probs(r, x=x, probs=probs, w=w):
        logp = ref_log_softmax_loop(x)
        per = -(probs * 0.9 + 0.1 / 4) * logp * w
        return per.sum(1) if r == "none" else np.asarray(per.sum() / (5 if r == "mean" else 1))

    cases.append(("ce_probs", lambda a, b, r: L.cross_entropy(a, b, w, reduction=r, label_smoothing=0.1),
                  [x, probs], ref_probs))  # fmt: skip

    logp = rng.standard_normal((5, 4)) - 2
    cases.append(("nll", lambda a, r: L.nll_loss(a, t_ign, w, reduction=r), [logp],
                  lambda r, logp=logp: ref_nll_loop(logp, t_ign, w, -100, r)))  # fmt: skip

    mu, logvar = rng.standard_normal((3, 2)), 0.5 * rng.standard_normal((3, 2))
    cases.append(("kl", lambda a, b, r: L.kl_div_normal(a, b, reduction=r), [mu, logvar],
                  lambda r, mu=mu, lv=logvar: reduce_np(ref_kl(mu, lv), r)))  # fmt: skip
    return cases


CASES = _cases()
CASE_IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_matches_numpy_reference(case, reduction):
    name, fn, arrays, ref = case
    out = fn(*[leaf(a) for a in arrays], reduction)
    expected = ref(reduction)
    assert out.shape == expected.shape, name
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradcheck_and_gradgradcheck(case, reduction):
    name, fn, arrays, _ = case

    def f(*xs):
        return fn(*xs, reduction)

    assert tinyae.gradcheck(f, [leaf(a) for a in arrays])
    assert tinyae.gradgradcheck(f, [leaf(a) for a in arrays])


def test_kl_reductions_batchmean_and_default_sum():
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    ref = ref_kl(mu, logvar)
    np.testing.assert_allclose(L.kl_div_normal(leaf(mu), leaf(logvar)).item(), ref.sum(), rtol=1e-12)
    got = L.kl_div_normal(leaf(mu), leaf(logvar), reduction="batchmean").item()
    np.testing.assert_allclose(got, ref.sum() / 4, rtol=1e-12)
    kl = lambda a, b: L.kl_div_normal(a, b, reduction="batchmean")  # noqa: E731
    assert tinyae.gradgradcheck(kl, [leaf(mu), leaf(logvar)])
    # The standard normal itself is at distance 0.
    assert L.kl_div_normal(leaf(np.zeros(3)), leaf(np.zeros(3))).item() == 0.0


# ------------------------------------------------------------- stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_is_exact_at_huge_logits(dtype):
    x = Tensor(np.array([1e4, -1e4, 1e4, -1e4, 1e4, -1e4], dtype=dtype), requires_grad=True)
    t = Tensor(np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.5], dtype=dtype))
    loss = L.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert loss.dtype == dtype
    np.testing.assert_array_equal(loss.numpy(), np.array([0, 0, 1e4, 1e4, 5e3, 5e3], dtype=dtype))
    loss.sum().backward()
    # d/dx = sigmoid(x) - t: exactly 0, 0, 1, -1, 0.5, -0.5 here.
    np.testing.assert_array_equal(x.grad.numpy(), np.array([0, 0, 1, -1, 0.5, -0.5], dtype=dtype))

    p = Tensor(np.full(6, 3.0, dtype=dtype))
    loss_p = L.binary_cross_entropy_with_logits(x, t, reduction="none", pos_weight=p)
    np.testing.assert_array_equal(loss_p.numpy(), np.array([0, 0, 1e4, 3e4, 5e3, 1.5e4], dtype=dtype))
    (gx,) = tinyae.grad(loss_p.sum(), [x])
    assert np.isfinite(gx.numpy()).all()


def test_bce_with_logits_moderate_logits_float32_close_to_float64():
    x = np.linspace(-40, 40, 81)
    t = np.linspace(0, 1, 81)
    lo = L.binary_cross_entropy_with_logits(Tensor(x.astype(np.float32)), Tensor(t.astype(np.float32)),
                                            reduction="none")  # fmt: skip
    hi = L.binary_cross_entropy_with_logits(leaf(x, False), leaf(t, False), reduction="none")
    np.testing.assert_allclose(lo.numpy(), hi.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_bce_with_logits_array_backward_matches_the_tensor_rule(reduction):
    """The one-buffer backward (backward_arrays, every training step) against the Tensor rule
    (what create_graph=True runs), with huge logits, and the cases that fall back to the rule."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(60) * 5, [200.0, -200.0, 0.0, 1e-30]]).reshape(8, 8)
    t = rng.random((8, 8))
    gy = rng.random((8, 8)) if reduction == "none" else None

    def grad(create_graph, pos_weight=None, target_grad=False):
        xs, ts = leaf(x), leaf(t, target_grad)
        loss = L.binary_cross_entropy_with_logits(xs, ts, reduction=reduction, pos_weight=pos_weight)
        out = (loss * leaf(gy, False)).sum() if gy is not None else loss
        wrt = [xs, ts] if target_grad else [xs]
        return [g.numpy() for g in tinyae.grad(out, wrt, create_graph=create_graph)]

    for kwargs in ({}, {"pos_weight": leaf(rng.random(8) + 0.5, False)}, {"target_grad": True}):
        fast, rule = grad(False, **kwargs), grad(True, **kwargs)
        for f, r in zip(fast, rule):
            np.testing.assert_allclose(f, r, rtol=1e-12, atol=1e-300)
    (gx,) = grad(False)
    want = 1 / (1 + np.exp(-x)) - t  # d/dx of the summed loss
    scale = gy if gy is not None else (1 / x.size if reduction == "mean" else 1.0)
    np.testing.assert_allclose(gx, want * scale, rtol=1e-12)


def test_bce_clamps_log_at_minus_100_like_pytorch():
    x = leaf([0.0, 1.0, 0.0, 1.0, 1e-50])
    t = leaf([1.0, 0.0, 0.0, 1.0, 1.0])
    loss = L.binary_cross_entropy(x, t, reduction="none")
    np.testing.assert_array_equal(loss.numpy(), [100.0, 100.0, 0.0, 0.0, 100.0])
    loss.sum().backward()
    # PyTorch's gradient: (x - t) / max(x (1 - x), 1e-12)
    xs, ts = x.numpy(), t.numpy()
    np.testing.assert_allclose(
        x.grad.numpy(), (xs - ts) / np.maximum(xs * (1 - xs), np.float32(1e-12).item()), rtol=1e-12
    )
    assert np.isfinite(x.grad.numpy()).all()
    # The target gradient at x = 0 or 1 is finite (the derivative of the clamped loss), not nan.
    # Also in double backward: dl/dt = log(1 - x) - log(x) with the clamped log contributing 0
    # (not 0/0 = nan) to d(dl/dt)/dx, which is -1/(1 - x) - 1/x restricted to the unclamped log.
    x2, t2 = leaf([0.0, 1.0]), leaf([0.3, 0.7])
    (gt,) = tinyae.grad(L.binary_cross_entropy(x2, t2, reduction="sum"), [t2], create_graph=True)
    np.testing.assert_array_equal(gt.numpy(), [100.0, -100.0])
    (gxt,) = tinyae.grad(gt.sum(), [x2])
    np.testing.assert_array_equal(gxt.numpy(), [-1.0, -1.0])


def test_cross_entropy_large_logits_finite():
    x = Tensor(np.array([[1e4, -1e4, 0.0], [0.0, 0.0, 5e3]], dtype=np.float32), requires_grad=True)
    loss = L.cross_entropy(x, np.array([1, 2]), reduction="none")
    np.testing.assert_allclose(loss.numpy(), [2e4, 0.0])
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


# --------------------------------------------------------- PyTorch parity
def _torch_cases():
    """(tinyae fn, torch fn, arrays) for each loss family; both take (*tensors, reduction)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(7)
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    pr, pt = rng.uniform(0.05, 0.95, (4, 3)), rng.uniform(0, 1, (4, 3))
    w3 = rng.uniform(0.5, 2, (3,))
    t_cls = np.array([0, 2, -100, 1])
    x4 = rng.standard_normal((2, 3, 2, 2))
    t4 = rng.integers(0, 3, (2, 2, 2))
    tw = torch.tensor(w3)
    return torch, [
        ("mse", L.mse_loss, F.mse_loss, [x, t], {}),
        ("l1", L.l1_loss, F.l1_loss, [x, t + 3], {}),
        ("bce", lambda a, b, reduction: L.binary_cross_entropy(a, b, w3, reduction=reduction),
         lambda a, b, reduction: F.binary_cross_entropy(a, b, tw, reduction=reduction), [pr, pt], {}),
        ("bce_logits", lambda a, b, reduction: L.binary_cross_entropy_with_logits(
            a, b, w3, reduction=reduction, pos_weight=2 * w3),
         lambda a, b, reduction: F.binary_cross_entropy_with_logits(
            a, b, tw, reduction=reduction, pos_weight=2 * tw), [3 * x, pt], {}),
        ("ce", lambda a, reduction: L.cross_entropy(a, t_cls, w3, reduction=reduction, label_smoothing=0.1),
         lambda a, reduction: F.cross_entropy(a, torch.tensor(t_cls), tw, reduction=reduction,
                                              label_smoothing=0.1), [x], {}),
        ("ce_4d", lambda a, reduction: L.cross_entropy(a, t4, reduction=reduction),
         lambda a, reduction: F.cross_entropy(a, torch.tensor(t4), reduction=reduction), [x4], {}),
        ("nll", lambda a, reduction: L.nll_loss(a, t_cls, w3, reduction=reduction),
         lambda a, reduction: F.nll_loss(a, torch.tensor(t_cls), tw, reduction=reduction), [x], {}),
    ]  # fmt: skip


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_values_and_gradients_match_torch(reduction):
    torch, cases = _torch_cases()
    rng = np.random.default_rng(3)
    for name, ours, theirs, arrays, _ in cases:
        xs = [leaf(a) for a in arrays]
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        out, ref = ours(*xs, reduction=reduction), theirs(*ts, reduction=reduction)
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), rtol=1e-12, atol=1e-13, err_msg=name)
        g = rng.standard_normal(ref.shape)
        out.backward(Tensor(g))
        ref.backward(torch.tensor(g))
        for a, b in zip(xs, ts):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_extreme_inputs_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for dtype, tdtype in [(np.float32, torch.float32), (np.float64, torch.float64)]:
        x = np.array([1e4, -1e4, 30.0, -30.0, 0.0], dtype=dtype)
        t = np.array([0.0, 1.0, 0.2, 0.9, 0.5], dtype=dtype)
        a = Tensor(x, requires_grad=True)
        b = torch.tensor(x, dtype=tdtype, requires_grad=True)
        ours = L.binary_cross_entropy_with_logits(a, Tensor(t), reduction="sum")
        ref = F.binary_cross_entropy_with_logits(b, torch.tensor(t, dtype=tdtype), reduction="sum")
        np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-6)
        ours.backward()
        ref.backward()
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-7)

    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-13, 0.5])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.25])
    a, b = leaf(p), torch.tensor(p, requires_grad=True)
    ours = L.binary_cross_entropy(a, leaf(t, False), reduction="sum")
    ref = F.binary_cross_entropy(b, torch.tensor(t), reduction="sum")
    np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-12)
    ours.backward()
    ref.backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-12)


def test_all_targets_ignored_gives_nan_mean_like_pytorch():
    x = leaf(np.zeros((2, 3)))
    with np.errstate(invalid="ignore"):
        out = L.cross_entropy(x, np.array([-100, -100]))
    assert math.isnan(out.item())
    assert L.cross_entropy(x, np.array([-100, -100]), reduction="sum").item() == 0.0


def test_unbatched_cross_entropy_and_nll():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(4)
    out = L.cross_entropy(leaf(x), np.int64(2), reduction="none")
    assert out.shape == ()
    ref = ref_cross_entropy_loop(x[None], np.array([2]), reduction="sum")
    np.testing.assert_allclose(out.item(), ref, rtol=1e-12)
    np.testing.assert_allclose(L.nll_loss(leaf(x), np.int64(1)).item(), -x[1], rtol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_losses_on_device_match_cpu(device, reduction):
    """float32 forward and backward on each device equal the CPU result."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    p = rng.uniform(0.1, 0.9, (4, 3)).astype(np.float32)
    t_cls = np.array([0, 2, -100, 1])
    calls = [
        lambda a, b: L.mse_loss(a, b, reduction=reduction),
        lambda a, b: L.l1_loss(a, b + 3, reduction=reduction),
        lambda a, b: L.binary_cross_entropy(a.sigmoid(), b, reduction=reduction),
        lambda a, b: L.binary_cross_entropy_with_logits(a, b, reduction=reduction),
        lambda a, b: L.cross_entropy(a, Tensor(t_cls, device=a.device), reduction=reduction,
                                     label_smoothing=0.1),
        lambda a, b: L.nll_loss(a.log_softmax(1), t_cls, np.ones(3, np.float32), reduction=reduction),
        lambda a, b: L.kl_div_normal(a, b, reduction=reduction),
    ]  # fmt: skip
    for i, call in enumerate(calls):
        results = []
        for dev in ["cpu", device]:
            a = Tensor(x, device=dev, requires_grad=True)
            out = call(a, Tensor(p, device=dev))
            out.sum().backward()
            assert out.device == a.device
            results.append((out.numpy(), a.grad.numpy()))
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-6, err_msg=str(i))
        np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6, err_msg=str(i))


# ----------------------------------------------------------------- errors
def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"mse_loss: input shape \(3, 4\) and target shape \(4, 3\)"):
        L.mse_loss(leaf(np.zeros((3, 4))), leaf(np.zeros((4, 3))))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits.*\(2,\).*\(2, 1\)"):
        L.binary_cross_entropy_with_logits(leaf(np.zeros(2)), leaf(np.zeros((2, 1))))
    with pytest.raises(ValueError, match=r"kl_div_normal: mu shape \(2,\) and logvar shape \(3,\)"):
        L.kl_div_normal(leaf(np.zeros(2)), leaf(np.zeros(3)))
    with pytest.raises(
        ValueError, match=r"weight of shape \(3,\) does not broadcast to input shape \(2, 4\)"
    ):
        L.binary_cross_entropy(leaf(np.full((2, 4), 0.5)), leaf(np.zeros((2, 4))), np.ones(3))


def test_bad_reduction_and_dtypes():
    x = leaf(np.zeros(3))
    with pytest.raises(ValueError, match="l1_loss: reduction must be one of"):
        L.l1_loss(x, x, reduction="avg")
    with pytest.raises(ValueError, match="MSELoss: reduction"):
        L.MSELoss(reduction="batchmean")
    with pytest.raises(TypeError, match="input is float64 but target is float32"):
        L.mse_loss(x, Tensor(np.zeros(3, dtype=np.float32)))
    with pytest.raises(TypeError, match="must be a Tensor"):
        L.mse_loss(np.zeros(3), x)
    with pytest.raises(TypeError, match="positional|keyword"):
        L.mse_loss(x, x, "sum")  # PyTorch's third positional argument is size_average: keyword-only here


def test_bce_input_outside_unit_interval():
    with pytest.raises(
        ValueError, match=r"binary_cross_entropy: all elements of input must lie in \[0, 1\].*1.5"
    ):
        L.binary_cross_entropy(leaf([0.5, 1.5]), leaf([0.0, 1.0]))
    with pytest.raises(ValueError, match="binary_cross_entropy"):
        L.binary_cross_entropy(leaf([0.5, math.nan]), leaf([0.0, 1.0]))


def test_class_target_validation():
    x = leaf(np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"target 4 is out of bounds for 4 classes"):
        L.cross_entropy(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"target -1 is out of bounds"):
        L.nll_loss(x, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"needs a target of shape \(3,\), got \(3, 1\)"):
        L.cross_entropy(x, np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"float target holds class probabilities.*\(3, 4\).*got \(3,\)"):
        L.cross_entropy(x, leaf([0.0, 1.0, 2.0], False))
    with pytest.raises(TypeError, match="integer class indices"):
        L.nll_loss(x, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), one per class, got \(3,\)"):
        L.cross_entropy(x, np.array([0, 1, 2]), np.ones(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        L.cross_entropy(x, np.array([0, 1, 2]), label_smoothing=1.5)


# ----------------------------------------------------------------- Modules
def test_module_forms_equal_functional_forms():
    rng = np.random.default_rng(2)
    x, t = leaf(rng.standard_normal((4, 3))), leaf(rng.uniform(0, 1, (4, 3)), False)
    p = leaf(rng.uniform(0.1, 0.9, (4, 3)))
    w = rng.uniform(0.5, 2, 3)
    cls = np.array([0, 2, 1, -100])
    pairs = [
        (L.MSELoss(reduction="sum")(x, t), L.mse_loss(x, t, reduction="sum")),
        (L.L1Loss()(x, t), L.l1_loss(x, t)),
        (L.BCELoss(weight=w, reduction="none")(p, t), L.binary_cross_entropy(p, t, w, reduction="none")),
        (L.BCEWithLogitsLoss(pos_weight=w)(x, t), L.binary_cross_entropy_with_logits(x, t, pos_weight=w)),
        (L.CrossEntropyLoss(w, label_smoothing=0.2)(x, cls), L.cross_entropy(x, cls, w, label_smoothing=0.2)),
        (L.NLLLoss(ignore_index=2)(x[:3], cls[:3]), L.nll_loss(x[:3], cls[:3], ignore_index=2)),
    ]  # fmt: skip
    for a, b in pairs:
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_module_weight_is_a_buffer_in_state_dict():
    from tinyae.nn.module import Module

    loss = L.CrossEntropyLoss(weight=np.array([1.0, 2.0], dtype=np.float32))
    assert isinstance(loss, Module)
    assert list(loss.state_dict()) == ["weight"]
    assert list(L.BCEWithLogitsLoss(pos_weight=np.ones(2)).state_dict()) == ["pos_weight"]
    assert list(L.MSELoss().parameters()) == []
    assert repr(L.MSELoss()) == "MSELoss()"
