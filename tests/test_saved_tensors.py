"""What a Function keeps for backward: only what its backward reads.

A forward names what its backward reads with ``save_for_backward``. A non-leaf input it
does not save is kept as an ``Edge`` (no array), and a saved output that the user dropped
is rebuilt from the saved array. gradcheck on leaf inputs never exercises either path, so here every op
runs on *non-leaf* inputs (``a * 1``) whose intermediate Tensors are dropped.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import tinyae
from tinyae.autograd import Edge

rng = np.random.default_rng(7)


def _leaf(*shape: int, low: float = -2.0, high: float = 2.0) -> tinyae.Tensor:
    return tinyae.tensor(rng.uniform(low, high, shape), requires_grad=True)


# Each case: (name, fn on non-leaf inputs, input factories). Inputs kept away from kinks.
CASES = [
    ("add", lambda a, b: a + b, [(3, 4), (4,)]),
    ("sub", lambda a, b: a - b, [(3, 4), (3, 1)]),
    ("neg", lambda a: -a, [(3, 4)]),
    ("exp", lambda a: a.exp(), [(3, 4)]),
    ("sqrt", lambda a: (a * a + 1).sqrt(), [(3, 4)]),
    ("pow", lambda a, b: (a * a + 1) ** b, [(3, 4), (4,)]),
    ("sum", lambda a: a.sum(dim=1), [(3, 4)]),
    ("max", lambda a: a.max(dim=0), [(3, 4)]),
    ("reshape/permute", lambda a: a.reshape(2, 6).permute(1, 0) * 2, [(3, 4)]),
    ("broadcast/sum_to", lambda a: a.expand(2, 3, 4).sum_to((3, 4)), [(3, 4)]),
    ("cat/pad", lambda a, b: tinyae.pad(tinyae.cat([a, b], 0), (1, 1)), [(3, 4), (2, 4)]),
    ("getitem", lambda a: a[[0, 0, 2], 1:], [(3, 4)]),
    ("where", lambda a, b: tinyae.where(np.arange(4) % 2 == 0, a, b), [(3, 4), (3, 4)]),
    ("relu", lambda a: tinyae.relu(a) * a, [(3, 4)]),
    ("sigmoid", lambda a: tinyae.sigmoid(a), [(3, 4)]),
    ("tanh", lambda a: tinyae.tanh(a), [(3, 4)]),
    ("softmax", lambda a: tinyae.softmax(a, dim=1), [(3, 4)]),
    ("log_softmax", lambda a: tinyae.log_softmax(a, dim=0), [(3, 4)]),
]


@pytest.mark.parametrize("name,fn,shapes", CASES, ids=[c[0] for c in CASES])
def test_ops_on_non_leaf_inputs_with_dropped_intermediates(name, fn, shapes):
    leaves = [_leaf(*s) for s in shapes]
    for x in leaves:  # keep relu's input away from its kink
        x.data[np.abs(x.data) < 0.1] += 0.3

    def wrapped(*xs):
        # `x * 1` makes each input a non-leaf whose Tensor is dropped right after the op.
        return fn(*[x * 1.0 for x in xs]) * 1.0

    assert tinyae.gradcheck(wrapped, leaves)
    assert tinyae.gradgradcheck(wrapped, leaves)


def test_shape_only_op_keeps_an_edge_not_the_array():
    x = _leaf(3, 4)
    h = x * 2.0  # a non-leaf
    y = h.reshape(12)
    kept = y.creator.inputs[0]
    assert isinstance(kept, Edge)
    assert kept.shape == (3, 4) and kept.creator is h.creator
    with pytest.raises(RuntimeError, match="save_for_backward"):
        kept.data  # noqa: B018 - reading it is the error under test


def test_intermediate_array_is_freed_before_backward():
    """relu(x * 2): relu keeps its output, not its input, so x * 2's array can go."""
    x = _leaf(64, 64)
    h = x * 2.0
    ref = weakref.ref(h.data)
    y = tinyae.relu(h)
    del h
    gc.collect()
    assert ref() is None, "the pre-activation array is still alive"
    y.sum().backward()
    np.testing.assert_allclose(x.grad.data, 2.0 * (x.data > 0))


def test_output_is_rebuilt_when_the_user_dropped_it():
    x = _leaf(5)
    loss = (x * 1.0).exp().sum()  # exp's output Tensor is not held by anyone but Sum (as an Edge)
    gc.collect()
    loss.backward()
    np.testing.assert_allclose(x.grad.data, np.exp(x.data), rtol=1e-12)


def test_reading_an_input_that_was_not_saved_is_a_clear_error():
    from tinyae.autograd import Function

    class Square(Function):  # reads its input but does not save it
        def forward(self, x):
            return x * x

        def backward(self, gy):
            return gy * 2 * self.inputs[0].data

    x = _leaf(3, low=0.5, high=1.0)
    y = Square()(x * 1.0).sum()
    gc.collect()
    with pytest.raises(RuntimeError, match="save_for_backward"):
        y.backward()


def test_saved_tensors_sorts_inputs_outputs_and_arrays():
    from tinyae.autograd import Edge, Function

    class Probe(Function):
        def forward(self, a, b):
            y = a * b
            self.save_for_backward(b, y, None, np.ones(3))  # an input, the output, nothing, a constant
            return y

        def backward(self, gy):
            b, y, nothing, ones = self.saved_tensors
            assert nothing is None and ones.creator is None and not ones.requires_grad
            assert y.creator is self  # the output keeps its place in the graph
            return gy * b, None

    a, b = _leaf(3), _leaf(3)
    y = Probe()(a * 1.0, b * 1.0)
    assert isinstance(y.creator.inputs[0], Edge) and not isinstance(y.creator.inputs[1], Edge)
    y.sum().backward()
    np.testing.assert_allclose(a.grad.data, b.data)


def test_nothing_is_saved_without_a_graph():
    from tinyae.autograd import Function

    class Keep(Function):
        def forward(self, x):
            self.save_for_backward(x)
            return x * 2

        def backward(self, gy):
            return gy * 2

    fn = Keep()
    with tinyae.no_grad():
        fn(_leaf(3))
    assert not hasattr(fn, "_to_save") and not hasattr(fn, "_saved")
