"""Property-based tests (hypothesis): broadcasting gradients for any pair of shapes.

A strategy draws a broadcast result shape S (up to 3 dims of size 1..3) and derives
two input shapes from it by dropping leading dims and setting some dims to 1 — so
each pair broadcasts to S. For ``add/sub/mul/div`` the properties are:

* the forward equals NumPy's,
* each input's gradient has that input's shape (the broadcast is summed back),
* the gradient equals the hand-derived rule summed back to the input's shape, and
* ``gradcheck`` (finite differences, float64) agrees.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyae as ta

OPS = {
    "add": (ta.add, np.add, lambda a, b, g: (g, g)),
    "sub": (ta.sub, np.subtract, lambda a, b, g: (g, -g)),
    "mul": (ta.mul, np.multiply, lambda a, b, g: (g * b, g * a)),
    "div": (ta.div, np.divide, lambda a, b, g: (g / b, -g * a / b**2)),
}


@st.composite
def broadcastable_pair(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that broadcast together (to a shape of at most 3 dims)."""
    full = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))

    def derive() -> tuple[int, ...]:
        keep = draw(st.integers(0, len(full)))  # drop leading dims
        dims = full[len(full) - keep :]
        return tuple(1 if draw(st.booleans()) else d for d in dims)  # or stretch some from 1

    return derive(), derive()


def reduce_to(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to ``shape`` (the reference for sum_to)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, s in enumerate(shape):
        if s == 1 and g.shape[i] != 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def _draw_inputs(data: st.DataObject, sa: tuple, sb: tuple, op: str) -> tuple[np.ndarray, np.ndarray]:
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(sa)
    b = rng.standard_normal(sb)
    if op == "div":  # keep the denominator away from zero
        b = np.sign(b + (b == 0)) * (np.abs(b) + 0.5)
    return a, b


@settings(max_examples=30, deadline=None)
@given(shapes=broadcastable_pair(), op=st.sampled_from(sorted(OPS)), data=st.data())
def test_broadcast_gradients_reduce_to_each_input_shape(shapes, op, data):
    sa, sb = shapes
    fn, ref, rule = OPS[op]
    av, bv = _draw_inputs(data, sa, sb, op)
    a, b = ta.tensor(av.copy(), requires_grad=True), ta.tensor(bv.copy(), requires_grad=True)
    y = fn(a, b)
    expected = ref(av, bv)
    assert y.shape == np.shape(expected)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)

    g = np.random.default_rng(0).standard_normal(y.shape)
    y.backward(g)
    assert a.grad.shape == sa and b.grad.shape == sb
    ga, gb = rule(np.broadcast_to(av, y.shape), np.broadcast_to(bv, y.shape), g)
    np.testing.assert_allclose(a.grad.numpy(), reduce_to(ga, sa), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), reduce_to(gb, sb), rtol=1e-10, atol=1e-12)

    assert ta.gradcheck(
        fn, [ta.tensor(av.copy(), requires_grad=True), ta.tensor(bv.copy(), requires_grad=True)]
    )


@settings(max_examples=30, deadline=None)
@given(shapes=broadcastable_pair(), data=st.data())
def test_broadcast_to_and_sum_to_are_adjoint(shapes, data):
    """<broadcast_to(x), y> == <x, sum_to(y)>: the identity their backward rules rely on."""
    sa, sb = shapes
    target = np.broadcast_shapes(sa, sb)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, y = rng.standard_normal(sa), rng.standard_normal(target)
    left = float((ta.broadcast_to(ta.tensor(x), target).numpy() * y).sum())
    right = float((x * ta.sum_to(ta.tensor(y), sa).numpy()).sum())
    np.testing.assert_allclose(left, right, rtol=1e-10, atol=1e-12)
