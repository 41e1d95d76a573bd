"""The public gradient checker itself: it must catch wrong backward rules and say where.

A checker that always passes is worse than none, so most tests here plant a bug in
a ``Function``'s backward and require ``gradcheck`` / ``gradgradcheck`` to fail with
a message naming the worst element's index, the analytic and numeric values, and
both errors. The numbers in the message are checked against values derived
independently (by hand) from the planted bug.

Notation: ``L = sum(v * f(x))`` is the scalar the checker differentiates, with a
random upstream gradient ``v``; ``dL/dx`` is compared with central differences.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import tinyae as ta
from tinyae.autograd import Function
from tinyae.gradcheck import GradcheckError
from tinyae.tensor import Tensor

# index (i, j), analytic A, numeric N, abs error E, rel error R
MESSAGE = re.compile(
    r"input (?P<input>\d+) is wrong at index \((?P<index>[\d, ]*)\): analytic (?P<analytic>\S+), "
    r"numeric (?P<numeric>\S+), abs error (?P<abs>\S+) \(atol [^)]*\), rel error (?P<rel>\S+) \(rtol"
)


def f64(a, requires_grad: bool = True) -> Tensor:
    return ta.tensor(np.array(a, dtype=np.float64), requires_grad=requires_grad)


class Square(Function):
    """y = x^2, dy/dx = 2x — correct."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        return gy * 2 * self.inputs[0]


class SquarePlantedBump(Function):
    """y = x^2 with a wrong backward: adds ``bump[k]`` to the gradient, largest at (1, 2)."""

    bump = np.array([[0.0, 0.1, 0.0], [0.0, 0.0, 0.7]])

    def forward(self, x):
        return x * x

    def backward(self, gy):
        return gy * 2 * self.inputs[0] + Tensor(self.bump, device=gy.device)


class SquareDetachedBackward(Function):
    """Right first derivative, but built from raw data: the gradient is a constant, so
    double backward (d/dx of 2x) silently gives 0 instead of 2."""

    def forward(self, x):
        return x * x

    def backward(self, gy):
        return gy * Tensor(2 * self.inputs[0].data)


class WrongSecondInput(Function):
    """x * w with the gradient of w missing a factor: only input 1 is wrong."""

    def forward(self, x, w):
        return x * w

    def backward(self, gy):
        x, w = self.inputs
        return gy * w, gy * x * 1.01


def _parse(err: pytest.ExceptionInfo) -> dict:
    m = MESSAGE.search(str(err.value))
    assert m, f"unexpected message: {err.value}"
    d = m.groupdict()
    return {
        "input": int(d["input"]),
        "index": tuple(int(i) for i in d["index"].split(",") if i.strip()),
        "analytic": float(d["analytic"]),
        "numeric": float(d["numeric"]),
        "abs": float(d["abs"]),
        "rel": float(d["rel"]),
    }


X = np.array([[0.5, -1.0, 1.5], [2.0, -0.3, 0.8]])


def test_passes_on_a_correct_backward():
    assert ta.gradcheck(lambda x: Square()(x), [f64(X)]) is True
    assert ta.gradgradcheck(lambda x: Square()(x), [f64(X)]) is True


def test_checks_inputs_on_any_device(device):
    """Inputs on the GPU are checked where they live: a correct rule passes, a planted bug fails."""
    x = ta.tensor(X, requires_grad=True, device=device)
    assert ta.gradcheck(lambda t: Square()(t), [x]) and ta.gradgradcheck(lambda t: Square()(t), [x])
    assert ta.gradcheck(lambda t: Square()(t).tanh(), [x], mode="random")
    with pytest.raises(GradcheckError) as err:
        ta.gradcheck(lambda t: SquarePlantedBump()(t), [x])
    assert _parse(err)["index"] == (1, 2)
    assert x.device == ta.tensor(X, device=device).device  # still where it was


def test_fails_on_a_planted_bug_and_reports_the_worst_element():
    x = f64(X)
    with pytest.raises(GradcheckError) as err:
        ta.gradcheck(lambda t: SquarePlantedBump()(t), [x])
    r = _parse(err)
    assert r["input"] == 0 and r["index"] == (1, 2)
    # For L = sum(v * x^2) the true gradient is 2 v x; numeric recovers it, analytic has the bump.
    v = r["numeric"] / (2 * X[1, 2])
    assert r["analytic"] == pytest.approx(2 * v * X[1, 2] + 0.7, abs=1e-6)
    assert r["abs"] == pytest.approx(0.7, rel=1e-3)
    assert r["rel"] == pytest.approx(0.7 / abs(r["numeric"]), rel=1e-2)
    assert "2 of 6 elements fail" in str(err.value)  # (0, 1) with bump 0.1 fails too
    assert isinstance(err.value, AssertionError)  # so a bare call inside a test fails it


def test_reports_which_input_is_wrong():
    with pytest.raises(GradcheckError) as err:
        ta.gradcheck(lambda x, w: WrongSecondInput()(x, w), [f64(X), f64(X[::-1] + 3)])
    assert _parse(err)["input"] == 1


def test_raise_exception_false_returns_false():
    assert ta.gradcheck(lambda t: SquarePlantedBump()(t), [f64(X)], raise_exception=False) is False


def test_tolerances_decide():
    """A bump of 0.1 everywhere passes only when atol allows it."""

    class Bump(Function):
        def forward(self, x):
            return x * 1.0

        def backward(self, gy):
            return gy + 0.1

    x = f64(X)
    assert ta.gradcheck(lambda t: Bump()(t), [x], atol=0.2)
    with pytest.raises(GradcheckError):
        ta.gradcheck(lambda t: Bump()(t), [x], atol=0.05)


def test_gradgradcheck_catches_a_backward_that_is_not_differentiable():
    x = f64(X)
    assert ta.gradcheck(lambda t: SquareDetachedBackward()(t), [x])  # first order is right
    with pytest.raises(GradcheckError) as err:
        ta.gradgradcheck(lambda t: SquareDetachedBackward()(t), [x])
    r = _parse(err)
    assert r["input"] == 0 and r["analytic"] == 0.0  # d/dx of a constant gradient
    assert r["numeric"] != 0.0


def test_random_direction_mode_passes_and_fails():
    rng = np.random.default_rng(3)
    big = rng.standard_normal((30, 40))
    assert ta.gradcheck(lambda t: Square()(t).tanh(), [f64(big)], mode="random")
    assert ta.gradgradcheck(lambda t: Square()(t).tanh(), [f64(big)], mode="random")
    with pytest.raises(GradcheckError, match="random direction"):
        ta.gradcheck(lambda t: SquarePlantedBump()(t), [f64(X)], mode="random")


def test_random_mode_costs_two_evaluations_per_input():
    calls = []

    def fn(x, w):
        calls.append(1)
        return x * w

    x, w = f64(np.ones((50, 60))), f64(np.full((50, 60), 2.0))
    ta.gradcheck(fn, [x, w], mode="random")
    assert len(calls) == 1 + 2 * 2
    calls.clear()
    x_small = f64(np.ones((2, 3)))
    ta.gradcheck(fn, [x_small, f64(np.ones(3), requires_grad=False)])
    assert len(calls) == 1 + 2 * x_small.size  # full mode: two evaluations per element


def test_inputs_are_restored_afterwards():
    x = f64(X.T)  # a non-contiguous view: perturbed and restored in place
    before = x.numpy().copy()
    ta.gradcheck(lambda t: (t * t).sum(), [x])
    ta.gradcheck(lambda t: (t * t).sum(), [x], mode="random")
    np.testing.assert_array_equal(x.numpy(), before)


def test_only_inputs_requiring_grad_are_checked():
    c = f64(X, requires_grad=False)
    c32 = ta.tensor(X.astype(np.float32))  # a float32 constant is fine: it is not differentiated
    assert ta.gradcheck(lambda x, c, k: x * c + k.double(), [f64(X), c, c32])


def test_several_outputs():
    assert ta.gradcheck(lambda x: (x.exp(), x.sum(), x * 2), [f64(X)])
    with pytest.raises(GradcheckError):
        ta.gradcheck(lambda x: (x.exp(), SquarePlantedBump()(x)), [f64(X)])


def test_float32_inputs_are_rejected():
    with pytest.raises(TypeError, match="float64"):
        ta.gradcheck(lambda t: t * 2, [ta.tensor(X.astype(np.float32), requires_grad=True)])
    with pytest.raises(TypeError, match="float64"):
        ta.gradgradcheck(lambda t: t * 2, [ta.tensor(X.astype(np.float32), requires_grad=True)])


def test_argument_errors():
    with pytest.raises(ValueError, match="requires_grad"):
        ta.gradcheck(lambda t: t * 2, [f64(X, requires_grad=False)])
    with pytest.raises(ValueError, match="mode"):
        ta.gradcheck(lambda t: t * 2, [f64(X)], mode="fast")


def test_inputs_sharing_memory_or_read_only_are_rejected():
    """Perturbing one would move the other: the numeric gradient would silently be wrong."""
    base = np.array(X)
    x, c = ta.tensor(base, requires_grad=True), ta.tensor(base[0])
    with pytest.raises(ValueError, match="share memory"):
        ta.gradcheck(lambda a, b: a * b, [x, c])
    ro = ta.tensor(np.broadcast_to(np.ones(3), (2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="read-only"):
        ta.gradcheck(lambda a: a * 2, [ro])
