"""Bad input is reported at the boundary, in the engine's words.

Shape mismatches raise ``ValueError`` naming the op and both shapes; wrong argument
types raise ``TypeError``; out-of-range indices raise ``IndexError`` (as Python and
PyTorch do). None of the messages may be NumPy's own text without the op's name.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import tinyae as ta

A = ta.tensor(np.ones((2, 3)), requires_grad=True)
B = ta.tensor(np.ones((4,)), requires_grad=True)

# NumPy phrases that must never reach the user on their own.
NUMPY_TEXT = re.compile(
    r"operands could not be broadcast|cannot reshape array|ufunc|invalid literal|mismatch in"
)


def _check(exc_info: pytest.ExceptionInfo, op: str, *shapes: tuple) -> None:
    msg = str(exc_info.value)
    assert msg.startswith(f"{op}:") or f"{op}:" in msg, msg
    for shape in shapes:
        assert str(tuple(shape)) in msg, f"{shape} not named in: {msg}"
    assert not NUMPY_TEXT.search(msg), f"NumPy's own wording leaked: {msg}"


# ------------------------------------------------------------------------ shape mismatches
BROADCAST_CALLS = {
    "add": lambda: A + B,
    "sub": lambda: ta.sub(A, B),
    "mul": lambda: B * A,
    "div": lambda: A / B,
    "pow": lambda: A**B,
    "maximum": lambda: ta.maximum(A, B),
    "where": lambda: ta.where(np.ones((2, 3), dtype=bool), A, B),
}


@pytest.mark.parametrize("op", list(BROADCAST_CALLS))
def test_broadcast_mismatch_names_op_and_shapes(op):
    with pytest.raises(ValueError) as info:
        BROADCAST_CALLS[op]()
    _check(info, op, (2, 3), (4,))
    assert "cannot be broadcast" in str(info.value)


@pytest.mark.parametrize(
    "a,b",
    [
        ((2, 3), (2, 3)),
        ((4,), (2, 3)),
        ((2, 3), (4,)),
        ((5,), (4,)),
        ((2, 3, 4), (3, 4, 5)),
        ((2, 2, 3), (4, 3, 2)),
    ],
)
def test_matmul_mismatch_names_both_shapes(a, b):
    with pytest.raises(ValueError) as info:
        ta.matmul(ta.ones(*a), ta.ones(*b))
    _check(info, "matmul", a, b)
    with pytest.raises(ValueError):
        ta.ones(*a) @ ta.ones(*b)


def test_matmul_needs_one_dimension():
    with pytest.raises(ValueError) as info:
        ta.matmul(ta.tensor(2.0), ta.ones(3))
    _check(info, "matmul", (), (3,))


@pytest.mark.parametrize(
    "call,op,shapes",
    [
        (lambda: A.reshape(4, 2), "reshape", [(2, 3), (4, 2)]),
        (lambda: A.reshape(-1, 4), "reshape", [(2, 3), (-1, 4)]),
        (lambda: A.reshape(-1, -1), "reshape", [(2, 3), (-1, -1)]),
        (lambda: A.view(7), "reshape", [(2, 3)]),
        (lambda: A.unflatten(1, (2, 2)), "reshape", [(2, 3)]),
        (lambda: A.expand(3, 3), "expand", [(2, 3), (3, 3)]),
        (lambda: ta.broadcast_to(A, (3,)), "broadcast_to", [(2, 3), (3,)]),
        (lambda: ta.sum_to(A, (4,)), "sum_to", [(2, 3), (4,)]),
        (lambda: ta.cat([A, B]), "cat", [(2, 3), (4,)]),
        (lambda: ta.stack([A, B]), "stack", [(2, 3), (4,)]),
        (lambda: A.permute(0, 0), "permute", [(2, 3)]),
        (lambda: (A * 2).backward(np.ones(3)), "backward", [(3,), (2, 3)]),
        (lambda: ta.max(ta.zeros(0)), "max", [(0,)]),
    ],
)
def test_shape_errors_are_value_errors_naming_the_op(call, op, shapes):
    with pytest.raises(ValueError) as info:
        call()
    _check(info, op, *shapes)


@pytest.mark.parametrize(
    "call,op",
    [
        (lambda: A.sum(axis=3), "sum"),
        (lambda: A.mean(dim=-3), "mean"),
        (lambda: A.transpose(0, 5), "transpose"),
        (lambda: A.squeeze(4), "squeeze"),
        (lambda: A.unsqueeze(4), "unsqueeze"),
        (lambda: A.flatten(1, 0), "flatten"),
        (lambda: ta.pad(A, (1,)), "pad"),
        (lambda: ta.pad(A, (1, 1, 1, 1, 1, 1)), "pad"),
        (lambda: ta.pad(A, (-1, 1)), "pad"),
        (lambda: ta.pad(A, (1, 1), mode="reflect"), "pad"),
        (lambda: ta.cat([]), "cat"),
        (lambda: ta.clip(A), "clip"),
        (lambda: ta.gradcheck(lambda x: x, [ta.tensor(np.ones(2))]), "gradcheck"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_op(call, op):
    with pytest.raises(ValueError) as info:
        call()
    _check(info, op)


# ---------------------------------------------------------------------------- wrong types
@pytest.mark.parametrize(
    "call,op",
    [
        (lambda: ta.add(A, "a"), "add"),
        (lambda: ta.mul(None, A), "mul"),
        (lambda: ta.matmul(A, {}), "matmul"),
        (lambda: ta.where(True, A, "b"), "where"),
        (lambda: ta.cat([A, "x"]), "cat"),
        (lambda: A.reshape("ab"), "reshape"),
        (lambda: A.reshape(2.5, 2), "reshape"),
        (lambda: A.permute(0, 1.0), "permute"),
        (lambda: A.sum(axis=1.5), "sum"),
        (lambda: A.mean(axis="a"), "mean"),
        (lambda: A.var(ddof=1, correction=1), "var"),
        (lambda: A.sum(axis=0, dim=0), "sum"),
        (lambda: A.sum(keepdims=True, keepdim=True), "sum"),
        (lambda: A[1.5], "getitem"),
        (lambda: A["a"], "getitem"),
        (lambda: A[np.array([0.0, 1.0])], "getitem"),
        (lambda: ta.softmax(A), "softmax"),
        (lambda: ta.clip(A, "a", 1.0), "clip"),
        (lambda: ta.leaky_relu(A, "a"), "leaky_relu"),
        (lambda: ta.tensor({"a": 1}), "tensor"),
        (lambda: ta.tensor("text"), "tensor"),
        (lambda: ta.tensor([1, 2], requires_grad=True), "requires_grad_"),
        (lambda: ta.grad((A * 2).sum(), [np.ones(3)]), "grad"),
        (lambda: ta.gradcheck(lambda x: x, [ta.tensor([1.0], requires_grad=True)]), "gradcheck"),
    ],
)
def test_wrong_types_are_type_errors_naming_the_op(call, op):
    with pytest.raises(TypeError) as info:
        call()
    _check(info, op)


@pytest.mark.parametrize("other", ["a", None, {}, object()])
def test_operators_with_unsupported_operands(other):
    for apply in (lambda: A + other, lambda: A @ other, lambda: A**other, lambda: other - A):
        with pytest.raises(TypeError, match="unsupported operand"):
            apply()
    with pytest.raises(TypeError):  # for a str, Python reports "can't multiply sequence by non-int"
        other * A


def test_out_of_range_index_is_an_index_error_naming_getitem():
    with pytest.raises(IndexError) as info:
        A[5]
    _check(info, "getitem", (2, 3))
    with pytest.raises(IndexError, match="getitem"):
        A[[0, 7]]


def test_backward_errors_are_runtime_errors_with_a_reason():
    with pytest.raises(RuntimeError, match="scalar outputs"):
        (A * 2).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        ta.tensor([1.0]).backward()
    with pytest.raises(ValueError, match="one-element"):
        A.item()
