"""Every Function has a gradient check here, and a line in the catalogue of gradient rules.

The other test files check each op thoroughly (shapes, broadcasting, edge cases, PyTorch); this
one makes sure that none is left out. It finds every subclass of ``tinyae.autograd.Function`` in
the package and requires, for each:

* a case in CASES below: a float64 function whose graph contains that Function, checked with
  ``tinyae.gradcheck``. Functions that only appear inside a backward (a weight gradient, the
  adjoint of a pooling) are reached through a first or second gradient taken with
  ``create_graph=True``, so the check differentiates through them;
* a row in docs/gradients.md, the one-line-per-op table of derivatives.

A new Function without both fails ``test_every_function_has_a_case_and_a_catalogue_line``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import tinyae
import tinyae.nn.functional as F
from tinyae.autograd import Function, _topological_order
from tinyae.distributed.sync_bn import _SyncBatchNormFunction
from tinyae.nn.conv import conv2d_reference

CATALOGUE = Path(__file__).resolve().parents[1] / "docs" / "gradients.md"
ABSTRACT = {"_Binary"}  # shared base classes, never instantiated
ONE_RANK = SimpleNamespace(size=1)  # a process group of one, for SyncBatchNorm without MPI


def all_functions() -> dict[str, type]:
    for m in pkgutil.walk_packages(tinyae.__path__, "tinyae."):
        importlib.import_module(m.name)
    found: dict[str, type] = {}
    stack = [Function]
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub.__module__.startswith("tinyae.") and sub.__name__ not in ABSTRACT:
                found[sub.__name__] = sub
            stack.append(sub)
    return found


_rng = np.random.default_rng(0)


def r(*shape: int, low: float | None = None) -> tinyae.Tensor:
    """A float64 leaf that requires grad: standard normal, or uniform in [low, low + 1]."""
    a = _rng.standard_normal(shape) if low is None else low + _rng.random(shape)
    return tinyae.tensor(a, dtype=np.float64, requires_grad=True)


def grad1(y: tinyae.Tensor, x: tinyae.Tensor) -> tinyae.Tensor:
    return tinyae.grad(y, x, create_graph=True)[0]


def _max_pool_second(x, c, d):
    g = grad1((F.max_pool2d(x, 2) * c).sum(), x)  # _ScatterToWinners(c)
    return grad1((g * d).sum(), c)  # its adjoint: _GatherWinners(d)


# name: (function of the inputs, the inputs, extra gradcheck arguments)
CASES = {
    "Add": (lambda a, b: a + b, lambda: [r(3, 4), r(4)], {}),
    "Sub": (lambda a, b: a - b, lambda: [r(3, 4), r(3, 1)], {}),
    "Mul": (lambda a, b: a * b, lambda: [r(3, 4), r(3, 4)], {}),
    "Div": (lambda a, b: a / b, lambda: [r(3, 4), r(3, 4, low=1.0)], {}),
    "Neg": (lambda a: -a, lambda: [r(5)], {}),
    "Exp": (lambda a: a.exp(), lambda: [r(5)], {}),
    "Log": (lambda a: a.log(), lambda: [r(5, low=0.5)], {}),
    "Sqrt": (lambda a: a.sqrt(), lambda: [r(5, low=0.5)], {}),
    "Abs": (lambda a: a.abs(), lambda: [r(5, low=0.2)], {}),
    "Pow": (lambda a, b: a**b, lambda: [r(5, low=0.5), r(5)], {}),
    "PowScalar": (lambda a: a**3, lambda: [r(5)], {}),
    "Clip": (
        lambda a: a.clip(-0.3, 0.3),
        lambda: [tinyae.tensor([-0.9, -0.1, 0.2, 0.7], dtype=np.float64, requires_grad=True)],
        {},
    ),  # fmt: skip
    "Maximum": (lambda a, b: tinyae.maximum(a, b), lambda: [r(6), r(6)], {}),
    "Where": (lambda a, b: tinyae.where(np.arange(6) % 2 == 0, a, b), lambda: [r(6), r(6)], {}),
    "MatMul": (lambda a, b: a @ b, lambda: [r(2, 3, 4), r(4, 5)], {}),
    "ReLU": (lambda a: a.relu(), lambda: [r(6, low=0.1) * np.array([1, -1, 1, -1, 1, -1.0])], {}),
    "LeakyReLU": (
        lambda a: F.leaky_relu(a, 0.1),
        lambda: [r(6, low=0.1) * np.array([1, -1, 1, -1, 1, -1.0])],
        {},
    ),  # fmt: skip
    "Sigmoid": (lambda a: a.sigmoid(), lambda: [r(5)], {}),
    "Tanh": (lambda a: a.tanh(), lambda: [r(5)], {}),
    "Softplus": (lambda a: F.softplus(a), lambda: [r(5)], {}),
    "Softmax": (lambda a: F.softmax(a, dim=1), lambda: [r(3, 4)], {}),
    "LogSoftmax": (lambda a: F.log_softmax(a, dim=1), lambda: [r(3, 4)], {}),
    "GetItem": (lambda a: a[1:3, ::2], lambda: [r(4, 5)], {}),
    "ScatterAdd": (lambda a, w: grad1((a[1:3, ::2] * w).sum(), a), lambda: [r(4, 5), r(2, 3)], {}),
    "Max": (lambda a: tinyae.max(a, dim=1), lambda: [r(3, 4)], {}),
    "Sum": (lambda a: a.sum(dim=0), lambda: [r(3, 4)], {}),
    "BroadcastTo": (lambda a: tinyae.broadcast_to(a, (3, 4)), lambda: [r(1, 4)], {}),
    "SumTo": (lambda a: tinyae.sum_to(a, (1, 4)), lambda: [r(3, 4)], {}),
    "Cat": (lambda a, b: tinyae.cat([a, b], dim=1), lambda: [r(2, 3), r(2, 2)], {}),
    "Pad": (lambda a: tinyae.pad(a, (1, 2)), lambda: [r(2, 3)], {}),
    "Permute": (lambda a: tinyae.permute(a, 2, 0, 1), lambda: [r(2, 3, 4)], {}),
    "Reshape": (lambda a: a.reshape(6, 2), lambda: [r(3, 4)], {}),
    # float64 -> float32 -> float64: a linear map, so a large step loses nothing but rounding.
    "To": (
        lambda a: a.to(dtype=np.float32).to(dtype=np.float64),
        lambda: [r(4)],
        {"eps": 1e-2, "atol": 1e-5},
    ),  # fmt: skip
    "LinearFunction": (lambda x, w, b: F.linear(x, w, b), lambda: [r(3, 4), r(2, 4), r(2)], {}),
    "Conv2dFunction": (
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        lambda: [r(2, 2, 5, 5), r(3, 2, 3, 3), r(3)],
        {},
    ),  # fmt: skip
    "ConvTranspose2dFunction": (
        lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
        lambda: [r(2, 3, 3, 3), r(3, 2, 3, 3), r(2)],
        {},
    ),  # fmt: skip
    # The plain conv2d of the lecture: unfold (Im2col), one product, reshape; its double backward folds.
    "Im2col": (
        lambda x, w: conv2d_reference(x, w, stride=2, padding=1),
        lambda: [r(2, 2, 5, 5), r(3, 2, 3, 3)],
        {},
    ),
    "Col2im": (
        lambda x, w: grad1((conv2d_reference(x, w, padding=1) ** 2).sum(), x),
        lambda: [r(1, 2, 4, 4), r(2, 2, 3, 3)],
        {},
    ),  # fmt: skip
    "Conv2dWeightGrad": (
        lambda x, w: grad1((F.conv2d(x, w, stride=2) ** 2).sum(), w),
        lambda: [r(2, 2, 5, 5), r(3, 2, 3, 3)],
        {},
    ),  # fmt: skip
    "ChannelSum": (
        lambda x, w, b: grad1((F.conv2d(x, w, b) ** 2).sum(), b),
        lambda: [r(2, 2, 4, 4), r(3, 2, 3, 3), r(3)],
        {},
    ),  # fmt: skip
    "_BinaryCrossEntropy": (
        lambda p, t: F.binary_cross_entropy(p, t),
        lambda: [r(6, low=0.0) * 0.8 + 0.1, r(6, low=0.0)],
        {},
    ),  # fmt: skip
    "_BinaryCrossEntropyWithLogits": (
        lambda z, t: F.binary_cross_entropy_with_logits(z, t),
        lambda: [r(6), r(6, low=0.0)],
        {},
    ),  # fmt: skip
    "_ClampedLog": (
        lambda p, t: grad1(F.binary_cross_entropy(p, t, reduction="sum"), t),
        lambda: [r(6, low=0.0) * 0.8 + 0.1, r(6, low=0.0)],
        {},
    ),  # fmt: skip
    "BatchNormFunction": (
        lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
        lambda: [r(4, 3, 2, 2), r(3), r(3)],
        {},
    ),  # fmt: skip
    # SyncBatchNorm's Function on a group of one rank (tests/test_distributed.py runs 2 and 3)
    "_SyncBatchNormFunction": (lambda x, w, b: _SyncBatchNormFunction(ONE_RANK, 1e-5, True, True)(x, w, b),
                               lambda: [r(4, 3, 2, 2), r(3), r(3)], {}),  # fmt: skip
    "MaxPool2dFunction": (lambda x: F.max_pool2d(x, 2), lambda: [r(2, 2, 4, 4)], {}),
    "AvgPool2dFunction": (lambda x: F.avg_pool2d(x, 2), lambda: [r(2, 2, 4, 4)], {}),
    "_AvgPool2dAdjoint": (
        lambda x, c: grad1((F.avg_pool2d(x, 2) * c).sum(), x),
        lambda: [r(1, 2, 4, 4), r(1, 2, 2, 2)],
        {},
    ),  # fmt: skip
    "_ScatterToWinners": (
        lambda x, c: grad1((F.max_pool2d(x, 2) * c).sum(), x),
        lambda: [r(1, 2, 4, 4), r(1, 2, 2, 2)],
        {},
    ),  # fmt: skip
    "_GatherWinners": (_max_pool_second, lambda: [r(1, 2, 4, 4), r(1, 2, 2, 2), r(1, 2, 4, 4)], {}),
}


def ops_in_graph(*ys: tinyae.Tensor) -> set[str]:
    return {type(f).__name__ for f in _topological_order([y.creator for y in ys if y.creator is not None])}


def catalogue_names() -> set[str]:
    return set(re.findall(r"^\| `(\w+)` \|", CATALOGUE.read_text(), flags=re.M))


def test_every_function_has_a_case_and_a_catalogue_line():
    functions = set(all_functions())
    assert len(functions) >= 40
    assert functions - set(CASES) == set(), "Functions without a gradient check case here"
    assert set(CASES) - functions == set(), "cases for Functions that no longer exist"
    assert functions - catalogue_names() == set(), "Functions missing from docs/gradients.md"
    assert catalogue_names() - functions == set(), "docs/gradients.md lists Functions that do not exist"


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_of(name):
    fn, make, kwargs = CASES[name]
    inputs = make()
    inputs = [x.detach().requires_grad_() if x.creator is not None else x for x in inputs]
    y = fn(*inputs)
    ys = y if isinstance(y, tuple) else (y,)
    assert name in ops_in_graph(*ys), f"the case for {name} does not run {name}"
    # gradcheck evaluates fn under no_grad for the finite differences; the cases that take a
    # gradient inside need their graph there too.
    assert tinyae.gradcheck(tinyae.enable_grad()(fn), inputs, **kwargs)


# SyncBatchNorm has only the array rule: its double backward is not supported (and says so).
FAST_PATHS = sorted(
    n for n, f in all_functions().items() if f.backward_arrays is not None and n != "_SyncBatchNormFunction"
)


@pytest.mark.parametrize("name", FAST_PATHS)
def test_array_fast_path_equals_the_rule(name):
    """An op's optional ``backward_arrays`` (used when no graph of the gradient is recorded) gives
    what its Tensor rule ``backward`` gives (used with create_graph=True)."""
    fn, make, _ = CASES[name]
    inputs = make()
    inputs = [x.detach().requires_grad_() if x.creator is not None else x for x in inputs]
    with tinyae.enable_grad():
        y = fn(*inputs)
    gy = tinyae.tensor(_rng.standard_normal(y.shape), dtype=y.dtype)
    fast = tinyae.grad(y, inputs, gy, retain_graph=True, allow_unused=True)
    rule = tinyae.grad(y, inputs, gy, create_graph=True, allow_unused=True)
    for a, b in zip(fast, rule):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
