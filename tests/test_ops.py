"""Every differentiable op: forward against plain NumPy, gradients against finite differences.

Each case builds float64 inputs, compares ``op(inputs)`` with a NumPy reference, then
runs ``tinyae.gradcheck`` (first derivatives, every element) and
``tinyae.gradgradcheck`` (second derivatives through ``create_graph=True``).

Inputs are drawn so that finite differences never straddle a kink: nonzero for
abs/relu/leaky_relu, off the bounds for clip, distinct for max/maximum, positive for
log/sqrt/pow. Several cases use non-contiguous inputs (strided views), broadcasting
pairs, or one input used several times in a graph.

Every check runs once per device (the ``device`` fixture: "cpu", and "cuda" when a GPU is
there). On the GPU the forward gets device inputs (strided ones stay strided there); the
gradient checks perturb float64 inputs on the host and run the op, its backward and double
backward on the GPU between two differentiable ``.to()`` moves (see ``on_device``).

Notation: shapes are written as tuples, e.g. ``(3, 4) + (4,)`` broadcasts a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import tinyae as ta
from tinyae import backend

RNG_SEED = 1234


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng([RNG_SEED, sum(map(ord, name))])


def normal(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape)


def away(rng: np.random.Generator, *shape: int, low: float = 0.3, high: float = 1.5) -> np.ndarray:
    """Random signs, magnitudes in [low, high]: away from 0 (kinks of abs/relu, poles of 1/x)."""
    return rng.uniform(low, high, shape) * rng.choice([-1.0, 1.0], shape)


def positive(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(0.5, 2.0, shape)


def distinct(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Values at least 0.2 apart (no ties for max/min), shuffled."""
    n = int(np.prod(shape))
    return rng.permutation(np.arange(n) * 0.2 - 0.1 * n).reshape(shape) + rng.uniform(0, 0.05, shape)


def strided(a: np.ndarray) -> np.ndarray:
    """The same values as a non-contiguous view (every other element of a bigger buffer)."""
    buf = np.zeros(a.shape + (2,))
    buf[..., 0] = a
    view = buf[..., 0]
    assert a.ndim == 0 or not view.flags.c_contiguous
    return view


def leaf(a: np.ndarray, device: str = "cpu") -> ta.Tensor:
    """``a`` as a leaf on ``device``; a non-contiguous ``a`` stays a non-contiguous view there."""
    if device == "cpu" or a.flags.c_contiguous:
        return ta.tensor(a, requires_grad=True, device=device)
    buf = backend.to_device(np.stack([a, np.zeros_like(a)], axis=-1), device)  # (..., 2)
    return ta.tensor(buf[..., 0], requires_grad=True)


def on_device(fn: Callable, device: str) -> Callable:
    """``fn`` run on ``device`` for host inputs: inputs moved there, the outputs moved back.

    Both moves are differentiable ops, so ``gradcheck`` / ``gradgradcheck`` of the result check
    the op's backward and double backward as computed on ``device``.
    """
    if device == "cpu":
        return fn
    return lambda *xs: fn(*(x.to(device) for x in xs)).cpu()


@dataclass
class Case:
    name: str
    fn: Callable  # on Tensors
    ref: Callable  # on arrays
    make: Callable[[np.random.Generator], list[np.ndarray]]
    gradgrad: bool = True

    def inputs(self, device: str = "cpu") -> tuple[list[np.ndarray], list[ta.Tensor]]:
        arrays = self.make(_rng(self.name))
        return arrays, [leaf(a, device) for a in arrays]


def C(name, fn, ref, make, **kw) -> Case:  # noqa: N802 - short table constructor
    return Case(name, fn, ref, make, **kw)


def _var(a, axis=None, keepdims=False, ddof=1):
    return np.var(a, axis=axis, keepdims=keepdims, ddof=ddof)


def _logsumexp(a, axis=None, keepdims=False):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _add_at(shape, index, values):
    out = np.zeros(shape)
    np.add.at(out, index, values)
    return out


# fmt: off
BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((3, 1), (1, 4)), ((), (2, 3)),
                   ((2, 3), ())]
# fmt: on

ARITH = {
    "add": (ta.add, np.add, normal),
    "sub": (ta.sub, np.subtract, normal),
    "mul": (ta.mul, np.multiply, normal),
    "div": (ta.div, np.divide, away),
    "pow": (ta.pow, np.power, positive),
    "maximum": (ta.maximum, np.maximum, None),
    "minimum": (ta.minimum, np.minimum, None),
}


def _binary_case(op: str, sa: tuple, sb: tuple, noncontig: bool) -> Case:
    fn, ref, draw_b = ARITH[op]

    def make(rng):
        if op in ("maximum", "minimum"):  # a on integers, b on half-integers: |a - b| >= 0.4, no ties
            a = rng.integers(-2, 3, sa) + rng.uniform(-0.05, 0.05, sa)
            b = rng.integers(-2, 3, sb) + 0.5 + rng.uniform(-0.05, 0.05, sb)
        else:
            a = positive(rng, *sa) if op == "pow" else normal(rng, *sa)
            b = draw_b(rng, *sb)
        if noncontig:
            a, b = strided(a), strided(b)
        return [a, b]

    tag = "strided" if noncontig else "contig"
    return C(f"{op}{sa}{sb}-{tag}", fn, ref, make)


CASES: list[Case] = [
    _binary_case(op, sa, sb, nc)
    for op in ARITH
    for sa, sb in BROADCAST_PAIRS
    for nc in (False, True)
    if not (nc and (sa == () or sb == ()))
]

CASES += [
    # ---------------------------------------------------------------- elementwise unary
    C("neg", ta.neg, np.negative, lambda r: [strided(normal(r, 3, 4))]),
    C("exp", ta.exp, np.exp, lambda r: [normal(r, 3, 4)]),
    C("log", ta.log, np.log, lambda r: [strided(positive(r, 3, 4))]),
    C("sqrt", ta.sqrt, np.sqrt, lambda r: [positive(r, 2, 5)]),
    C("abs", ta.abs, np.abs, lambda r: [strided(away(r, 3, 4))]),
    C("pow-scalar-3", lambda x: x**3, lambda a: a**3, lambda r: [normal(r, 3, 4)]),
    C("pow-scalar-half", lambda x: x**0.5, np.sqrt, lambda r: [positive(r, 3, 4)]),
    C("pow-scalar-neg", lambda x: x**-1.5, lambda a: a**-1.5, lambda r: [positive(r, 3, 4)]),
    C("rpow", lambda x: 2.5**x, lambda a: 2.5**a, lambda r: [normal(r, 3, 4)]),
    C("clip", lambda x: ta.clip(x, -0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5),
      lambda r: [r.choice([-1.2, -0.8, -0.3, 0.1, 0.3, 0.9], (3, 4)) + r.uniform(-0.05, 0.05, (3, 4))]),
    C("clamp-min-only", lambda x: x.clamp(min=0.2), lambda a: np.maximum(a, 0.2),
      lambda r: [r.choice([-1.0, 0.5, 1.5], (4, 3)) + r.uniform(-0.05, 0.05, (4, 3))]),
    C("where", lambda a, b: ta.where(np.array([[True, False, True, False]] * 3), a, b),
      lambda a, b: np.where(np.array([[True, False, True, False]] * 3), a, b),
      lambda r: [normal(r, 4), normal(r, 3, 1)]),
    C("where-tensor-cond", lambda a, b: ta.where(ta.tensor(np.eye(3) > 0, device=a.device), a, b),
      lambda a, b: np.where(np.eye(3) > 0, a, b), lambda r: [strided(normal(r, 3, 3)), normal(r, 3, 3)]),
    # ------------------------------------------------------------------------ matmul
    C("matmul-1d-1d", ta.matmul, np.matmul, lambda r: [normal(r, 4), normal(r, 4)]),
    C("matmul-1d-2d", ta.matmul, np.matmul, lambda r: [normal(r, 4), normal(r, 4, 3)]),
    C("matmul-2d-1d", ta.matmul, np.matmul, lambda r: [normal(r, 3, 4), strided(normal(r, 4))]),
    C("matmul-2d-2d", lambda a, b: a @ b, np.matmul, lambda r: [normal(r, 3, 4), normal(r, 4, 2)]),
    C("matmul-2d-transposed", lambda a, b: a @ b, np.matmul,
      lambda r: [normal(r, 4, 3).T, normal(r, 2, 4).T]),
    C("matmul-batched", ta.matmul, np.matmul, lambda r: [normal(r, 2, 3, 4), normal(r, 2, 4, 2)]),
    C("matmul-batched-2d", ta.matmul, np.matmul, lambda r: [normal(r, 2, 3, 4), normal(r, 4, 2)]),
    C("matmul-2d-batched", ta.matmul, np.matmul, lambda r: [normal(r, 3, 4), normal(r, 2, 4, 2)]),
    C("matmul-broadcast-batch", ta.matmul, np.matmul, lambda r: [normal(r, 2, 1, 2, 3), normal(r, 3, 3, 2)]),
    C("matmul-batched-1d", ta.matmul, np.matmul, lambda r: [normal(r, 2, 3, 4), normal(r, 4)]),
    # --------------------------------------------------------------------- reductions
    C("sum-all", ta.sum, np.sum, lambda r: [strided(normal(r, 3, 4))]),
    C("sum-axis1", lambda x: x.sum(1), lambda a: a.sum(1), lambda r: [normal(r, 3, 4)]),
    C("sum-tuple-keep", lambda x: x.sum(axis=(0, 2), keepdims=True),
      lambda a: a.sum(axis=(0, 2), keepdims=True), lambda r: [normal(r, 2, 3, 2)]),
    C("sum-dim-neg", lambda x: ta.sum(x, dim=-1, keepdim=True), lambda a: a.sum(-1, keepdims=True),
      lambda r: [normal(r, 2, 3, 2)]),
    C("mean-all", lambda x: x.mean(), np.mean, lambda r: [normal(r, 3, 4)]),
    C("mean-dim", lambda x: x.mean(dim=0), lambda a: a.mean(0), lambda r: [strided(normal(r, 3, 4))]),
    C("max-all", lambda x: x.max(), np.max, lambda r: [distinct(r, 3, 4)]),
    C("max-axis", lambda x: x.max(axis=1, keepdims=True), lambda a: a.max(1, keepdims=True),
      lambda r: [strided(distinct(r, 3, 4))]),
    C("min-dim", lambda x: ta.min(x, dim=0), lambda a: a.min(0), lambda r: [distinct(r, 3, 4)]),
    C("var-all", lambda x: x.var(), lambda a: _var(a), lambda r: [normal(r, 3, 4)]),
    C("var-dim", lambda x: x.var(dim=1, keepdim=True), lambda a: _var(a, 1, True),
      lambda r: [normal(r, 3, 4)]),
    C("var-ddof0", lambda x: x.var(axis=0, ddof=0), lambda a: _var(a, 0, ddof=0),
      lambda r: [normal(r, 3, 4)]),
    C("std", lambda x: x.std(dim=1), lambda a: np.std(a, axis=1, ddof=1), lambda r: [normal(r, 3, 4)]),
    C("logsumexp-dim", lambda x: ta.logsumexp(x, dim=1), lambda a: _logsumexp(a, 1),
      lambda r: [normal(r, 3, 4)]),
    C("logsumexp-all-keep", lambda x: ta.logsumexp(x, axis=(0, 1), keepdims=True),
      lambda a: _logsumexp(a, (0, 1), True), lambda r: [normal(r, 3, 4)]),
    # -------------------------------------------------------------------- shape ops
    C("reshape", lambda x: x.reshape(4, 3), lambda a: a.reshape(4, 3), lambda r: [strided(normal(r, 3, 4))]),
    C("reshape-minus1", lambda x: x.reshape((-1, 2)), lambda a: a.reshape(-1, 2),
      lambda r: [normal(r, 3, 4)]),
    C("view", lambda x: x.view(12), lambda a: a.reshape(12), lambda r: [normal(r, 3, 4)]),
    C("flatten", lambda x: x.flatten(1), lambda a: a.reshape(2, -1), lambda r: [normal(r, 2, 3, 2)]),
    C("unflatten", lambda x: x.unflatten(1, (2, 3)), lambda a: a.reshape(2, 2, 3),
      lambda r: [normal(r, 2, 6)]),
    C("permute", lambda x: x.permute(2, 0, 1), lambda a: a.transpose(2, 0, 1),
      lambda r: [normal(r, 2, 3, 4)]),
    C("transpose", lambda x: x.transpose(0, 2), lambda a: a.swapaxes(0, 2), lambda r: [normal(r, 2, 3, 4)]),
    C("T", lambda x: x.T, lambda a: a.T, lambda r: [strided(normal(r, 3, 4))]),
    C("squeeze", lambda x: x.squeeze(), np.squeeze, lambda r: [normal(r, 1, 3, 1)]),
    C("squeeze-dim", lambda x: x.squeeze(0), lambda a: a[0], lambda r: [normal(r, 1, 3, 1)]),
    C("unsqueeze", lambda x: x.unsqueeze(-1), lambda a: a[..., None], lambda r: [normal(r, 2, 3)]),
    C("expand", lambda x: x.expand(2, 3, 4), lambda a: np.broadcast_to(a, (2, 3, 4)),
      lambda r: [normal(r, 3, 1)]),
    C("expand-minus1", lambda x: x.expand(-1, 4), lambda a: np.broadcast_to(a, (3, 4)),
      lambda r: [normal(r, 3, 1)]),
    C("broadcast_to", lambda x: ta.broadcast_to(x, (2, 3)), lambda a: np.broadcast_to(a, (2, 3)),
      lambda r: [normal(r, 3)]),
    C("sum_to", lambda x: ta.sum_to(x, (3, 1)), lambda a: a.sum(0).sum(-1, keepdims=True),
      lambda r: [normal(r, 2, 3, 4)]),
    C("cat-dim0", lambda a, b: ta.cat([a, b]), lambda a, b: np.concatenate([a, b]),
      lambda r: [normal(r, 2, 3), strided(normal(r, 1, 3))]),
    C("cat-axis1-three", lambda a, b: ta.cat([a, b, a], axis=1), lambda a, b: np.concatenate([a, b, a], 1),
      lambda r: [normal(r, 2, 3), normal(r, 2, 1)]),
    C("stack", lambda a, b: ta.stack([a, b], dim=1), lambda a, b: np.stack([a, b], 1),
      lambda r: [normal(r, 2, 3), normal(r, 2, 3)]),
    C("stack-axis-last", lambda a, b: ta.stack([a, b], axis=-1), lambda a, b: np.stack([a, b], -1),
      lambda r: [normal(r, 3), normal(r, 3)]),
    C("pad-last", lambda x: ta.pad(x, (1, 2)), lambda a: np.pad(a, ((0, 0), (1, 2))),
      lambda r: [normal(r, 2, 3)]),
    C("pad-hw-value", lambda x: ta.pad(x, (1, 0, 2, 1), value=0.5),
      lambda a: np.pad(a, ((0, 0), (2, 1), (1, 0)), constant_values=0.5), lambda r: [normal(r, 1, 2, 3)]),
    # ---------------------------------------------------------------------- indexing
    C("getitem-int", lambda x: x[1], lambda a: a[1], lambda r: [normal(r, 3, 4)]),
    C("getitem-slices", lambda x: x[1:, ::-2], lambda a: a[1:, ::-2], lambda r: [strided(normal(r, 3, 4))]),
    C("getitem-neg-ellipsis-none", lambda x: x[..., None, -1], lambda a: a[..., None, -1],
      lambda r: [normal(r, 2, 3, 4)]),
    C("getitem-int-array-repeats", lambda x: x[[0, 2, 0, 0]], lambda a: a[[0, 2, 0, 0]],
      lambda r: [normal(r, 3, 4)]),
    C("getitem-two-int-arrays", lambda x: x[np.array([0, 1, 1]), np.array([3, 3, 0])],
      lambda a: a[[0, 1, 1], [3, 3, 0]], lambda r: [normal(r, 3, 4)]),
    C("getitem-tensor-index-and-slice", lambda x: x[ta.tensor([2, 2]), 1:3], lambda a: a[[2, 2], 1:3],
      lambda r: [normal(r, 3, 4)]),
    C("getitem-bool-mask", lambda x: x[np.array([True, False, True])], lambda a: a[[True, False, True]],
      lambda r: [normal(r, 3, 4)]),
    C("getitem-bool-mask-2d", lambda x: x[ta.tensor(np.arange(12).reshape(3, 4) % 3 == 0)],
      lambda a: a[np.arange(12).reshape(3, 4) % 3 == 0], lambda r: [strided(normal(r, 3, 4))]),
    # -------------------------------------------------------------------- activations
    C("relu", ta.relu, lambda a: np.maximum(a, 0), lambda r: [strided(away(r, 3, 4))]),
    C("leaky_relu", ta.leaky_relu, lambda a: np.where(a > 0, a, 0.01 * a), lambda r: [away(r, 3, 4)]),
    C("leaky_relu-slope", lambda x: x.leaky_relu(0.2), lambda a: np.where(a > 0, a, 0.2 * a),
      lambda r: [away(r, 3, 4)]),
    C("sigmoid", ta.sigmoid, _sigmoid, lambda r: [3 * normal(r, 3, 4)]),
    C("tanh", ta.tanh, np.tanh, lambda r: [strided(normal(r, 3, 4))]),
    C("softplus", ta.softplus, lambda a: np.log1p(np.exp(a)), lambda r: [3 * normal(r, 3, 4)]),
    C("softplus-beta", lambda x: ta.softplus(x, beta=2.0, threshold=5.0),
      lambda a: np.where(2 * a > 5, a, np.log1p(np.exp(2 * a)) / 2),
      lambda r: [r.choice([-3.0, -1.0, 0.2, 1.0, 2.0, 4.0], (3, 4)) + r.uniform(-0.1, 0.1, (3, 4))]),
    C("softmax-dim1", lambda x: ta.softmax(x, dim=1), lambda a: _softmax(a, 1), lambda r: [normal(r, 3, 4)]),
    C("softmax-axis0", lambda x: x.softmax(axis=0), lambda a: _softmax(a, 0),
      lambda r: [strided(normal(r, 3, 4))]),
    C("log_softmax", lambda x: ta.log_softmax(x, dim=-1), lambda a: np.log(_softmax(a, -1)),
      lambda r: [normal(r, 2, 2, 3)]),
    # ------------------------------------------------- one input used several times in a graph
    C("reuse-mul-exp", lambda x: x * x.exp() + x, lambda a: a * np.exp(a) + a, lambda r: [normal(r, 3, 4)]),
    C("reuse-matmul-self", lambda x: x @ x, lambda a: a @ a, lambda r: [strided(normal(r, 3, 3))]),
    C("reuse-matmul-T", lambda x: x @ x.T, lambda a: a @ a.T, lambda r: [normal(r, 2, 3)]),
    C("reuse-index-and-whole", lambda x: x[[1, 1]] * x.sum(0), lambda a: a[[1, 1]] * a.sum(0),
      lambda r: [normal(r, 3, 4)]),
    C("reuse-cat-self", lambda x: ta.cat([x, x.sigmoid(), x]), lambda a: np.concatenate([a, _sigmoid(a), a]),
      lambda r: [normal(r, 2, 2)]),
    C("reuse-two-inputs", lambda x, w: ta.tanh(x @ w) * x.sum() + (w**2).mean(),
      lambda a, b: np.tanh(a @ b) * a.sum() + (b**2).mean(), lambda r: [normal(r, 2, 3), normal(r, 3, 2)]),
    C("reuse-softmax-log", lambda x: (ta.softmax(x, dim=1) * ta.log_softmax(x, dim=1)).sum(1),
      lambda a: (_softmax(a, 1) * np.log(_softmax(a, 1))).sum(1), lambda r: [normal(r, 2, 4)]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_forward_matches_numpy(case: Case, device: str):
    arrays, xs = case.inputs(device)
    y = case.fn(*xs)
    expected = np.asarray(case.ref(*arrays))
    assert y.shape == expected.shape
    assert y.dtype == np.float64 and y.device == xs[0].device
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gradcheck(case: Case, device: str):
    _, xs = case.inputs()
    assert ta.gradcheck(on_device(case.fn, device), xs)


@pytest.mark.parametrize("case", [c for c in CASES if c.gradgrad], ids=[c.name for c in CASES if c.gradgrad])
def test_gradgradcheck(case: Case, device: str):
    _, xs = case.inputs()
    assert ta.gradgradcheck(on_device(case.fn, device), xs)


# ----------------------------------------------------------------- gradients checked by value
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow", "maximum", "minimum"])
@pytest.mark.parametrize("sa,sb", BROADCAST_PAIRS)
def test_broadcast_gradients_take_each_input_shape(op, sa, sb, device):
    case = _binary_case(op, sa, sb, False)
    _, (a, b) = case.inputs(device)
    case.fn(a, b).sum().backward()
    assert a.grad.shape == sa and b.grad.shape == sb
    assert a.grad.device == b.grad.device == a.device


def test_getitem_repeated_indices_scatter_add(device):
    x = ta.tensor(np.zeros((3, 2)), requires_grad=True, device=device)
    index = np.array([0, 2, 0, 0])
    g = np.arange(8.0).reshape(4, 2)
    x[index].backward(ta.tensor(g, device=device))
    np.testing.assert_array_equal(x.grad.numpy(), _add_at((3, 2), index, g))
    assert x.grad.numpy()[0].tolist() == [0 + 4 + 6, 1 + 5 + 7]


def test_getitem_bool_mask_gradient_lands_on_true_positions(device):
    x = ta.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True, device=device)
    mask = x.data % 2 == 1  # an array on x's device
    x[mask].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), backend.to_device(mask, "cpu").astype(float))


def test_max_ties_share_the_gradient(device):
    x = ta.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), requires_grad=True, device=device)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    a, b = (
        ta.tensor(np.array([1.0, 2.0]), requires_grad=True, device=device),
        ta.tensor(np.array([1.0, 3.0]), requires_grad=True, device=device),
    )
    ta.maximum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0.5, 0.0])
    np.testing.assert_allclose(b.grad.numpy(), [0.5, 1.0])


def test_random_mode_gradcheck_on_a_larger_input(device):
    rng = np.random.default_rng(0)
    x = ta.tensor(rng.standard_normal((40, 50)), requires_grad=True)
    w = ta.tensor(rng.standard_normal((50, 30)), requires_grad=True)
    fn = on_device(lambda x, w: ta.log_softmax(ta.tanh(x @ w), dim=1), device)
    assert ta.gradcheck(fn, [x, w], mode="random")
    assert ta.gradgradcheck(on_device(lambda x, w: ta.softplus(x @ w), device), [x, w], mode="random")


# --------------------------------------------------------------- both spellings of reductions
@pytest.mark.parametrize("name", ["sum", "mean", "max", "min", "var", "std", "logsumexp"])
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("keep", [False, True])
def test_axis_keepdims_and_dim_keepdim_agree(name, axis, keep, device):
    x = ta.tensor(distinct(_rng(name), 2, 3, 4), device=device)
    fn = getattr(ta, name)
    a = fn(x, axis=axis, keepdims=keep)
    d = fn(x, dim=axis, keepdim=keep)
    np.testing.assert_array_equal(a.numpy(), d.numpy())
    np_fn = {"logsumexp": _logsumexp, "var": _var}.get(name)
    if name == "std":
        ref = np.std(x.numpy(), axis=axis, keepdims=keep, ddof=1)
    elif np_fn is not None:
        ref = np_fn(x.numpy(), axis=axis, keepdims=keep)
    else:
        ref = getattr(np, name)(x.numpy(), axis=axis, keepdims=keep)
    np.testing.assert_allclose(a.numpy(), ref, rtol=1e-12)
    with pytest.raises(TypeError, match="either"):
        fn(x, axis=0, dim=0)


# ------------------------------------------------------------------------ numerical stability
EXTREME = np.array([-1e4, -1e3, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e3, 1e4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softplus_stable_up_to_1e4(dtype, device):
    x = ta.tensor(EXTREME.astype(dtype), requires_grad=True, device=device)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # any overflow would raise
        s = ta.sigmoid(x)
        sp = ta.softplus(x)
        (s.sum() + sp.sum()).backward()
    xv = EXTREME
    sig = np.where(xv >= 0, 1 / (1 + np.exp(-np.abs(xv))), np.exp(-np.abs(xv)) / (1 + np.exp(-np.abs(xv))))
    soft = np.maximum(xv, 0) + np.log1p(np.exp(-np.abs(xv)))
    for t in (s, sp, x.grad):
        assert t.dtype == dtype and np.isfinite(t.numpy()).all()
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(s.numpy(), sig, rtol=tol, atol=1e-30)
    np.testing.assert_allclose(sp.numpy(), soft, rtol=tol, atol=1e-30)
    np.testing.assert_allclose(x.grad.numpy(), sig * (1 - sig) + sig, rtol=tol, atol=1e-30)
    assert s.numpy()[0] == 0.0 and s.numpy()[-1] == 1.0 and sp.numpy()[-1] == 1e4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_stable_at_large_inputs(dtype, device):
    base = np.array([[0.0, -1.0, -2.0, 0.5], [3.0, 0.0, -3.0, 1.0]])
    for shift in (1e4, -1e4):
        x = ta.tensor((base + shift).astype(dtype), requires_grad=True, device=device)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            p = ta.softmax(x, dim=1)
            lp = ta.log_softmax(x, dim=1)
            lse = ta.logsumexp(x, dim=1)
            (p[:, 0].sum() + lp[:, 1].sum() + lse.sum()).backward()
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(p.numpy(), _softmax(base, 1), rtol=tol)  # softmax is shift-invariant
        np.testing.assert_allclose(lp.numpy(), np.log(_softmax(base, 1)), rtol=tol, atol=tol)
        np.testing.assert_allclose(
            lse.numpy() - shift, _logsumexp(base, 1), rtol=tol, atol=10 * tol * abs(shift)
        )
        assert np.isfinite(x.grad.numpy()).all()
    huge = ta.tensor(np.array([[1e4, -1e4, 0.0]], dtype=dtype), requires_grad=True, device=device)
    ta.log_softmax(huge, dim=1).sum().backward()
    np.testing.assert_allclose(ta.softmax(huge, dim=1).numpy(), [[1.0, 0.0, 0.0]])
    assert np.isfinite(huge.grad.numpy()).all()


@pytest.mark.parametrize(
    "fn",
    [ta.relu, ta.sigmoid, ta.tanh, ta.softplus, ta.exp, lambda x: ta.softmax(x, dim=1), lambda x: x.mean()],
)
def test_float32_stays_float32(fn, device):
    x = ta.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True, device=device)
    y = fn(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


# ----------------------------------------------------------------------- against PyTorch
TORCH_CASES = {
    "softplus-threshold": (lambda x: ta.softplus(x, beta=2.0, threshold=3.0),
                           lambda t, F: F.softplus(t, beta=2.0, threshold=3.0)),
    "leaky_relu-default": (ta.leaky_relu, lambda t, F: F.leaky_relu(t)),
    "var-default": (lambda x: x.var(dim=1), lambda t, F: t.var(dim=1)),
    "std-all": (lambda x: x.std(), lambda t, F: t.std()),
    "pad": (lambda x: ta.pad(x, (1, 2, 0, 1)), lambda t, F: F.pad(t, (1, 2, 0, 1))),
    "transpose": (lambda x: x.transpose(0, 1), lambda t, F: t.transpose(0, 1)),
    "log_softmax": (lambda x: ta.log_softmax(x, dim=0), lambda t, F: F.log_softmax(t, dim=0)),
    "logsumexp": (lambda x: ta.logsumexp(x, 1), lambda t, F: t.logsumexp(1)),
    "max-ties": (lambda x: ta.max(x.clip(-0.5, 0.5)), lambda t, F: t.clamp(-0.5, 0.5).amax()),
    "maximum-ties": (lambda x: ta.maximum(x, x.clip(max=0.0)), lambda t, F: t.maximum(t.clamp(max=0.0))),
    "getitem": (lambda x: x[[2, 0, 2], 1:], lambda t, F: t[[2, 0, 2], 1:]),
    "flatten-unflatten": (lambda x: x.flatten().unflatten(0, (4, 3)),
                          lambda t, F: t.flatten().unflatten(0, (4, 3))),
}  # fmt: skip


@pytest.mark.parametrize("name", list(TORCH_CASES))
def test_matches_torch(name):
    torch = pytest.importorskip("torch")
    ours, theirs = TORCH_CASES[name]
    v = np.round(normal(_rng(name), 3, 4) * 2, 1)  # rounded: a few exact ties on purpose
    x, t = ta.tensor(v, requires_grad=True), torch.tensor(v, requires_grad=True)
    y, yt = ours(x), theirs(t, torch.nn.functional)
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = normal(_rng(name + "g"), *yt.shape)
    y.backward(g)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)
