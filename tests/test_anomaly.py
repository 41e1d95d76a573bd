"""tinyae.detect_anomaly: the first op that makes a NaN or an Inf is named, with where it was called."""

from __future__ import annotations

import numpy as np
import pytest

import tinyae
import tinyae.nn.functional as F

# NumPy's own warnings about the NaN and Inf these tests make on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def test_forward_names_the_op_its_shapes_and_this_line():
    x = tinyae.tensor([1.0, -1.0, 4.0], requires_grad=True)
    with tinyae.detect_anomaly():
        y = x * 2
        with pytest.raises(RuntimeError) as info:
            y.log()  # log(-2) = NaN: the op, its input shape and this file are named
    msg = str(info.value)
    assert "Log produced NaN in output 0 (shape (3,))" in msg
    assert "inputs of shapes ((3,))" in msg
    assert "test_anomaly.py" in msg and "y.log()" in msg


def test_forward_inf_and_a_bad_leaf_are_told_apart():
    with tinyae.detect_anomaly():
        with pytest.raises(RuntimeError, match="Div produced Inf"):
            tinyae.tensor([1.0]) / tinyae.tensor([0.0])
        with pytest.raises(RuntimeError, match=r"Mul received NaN in input 0 .*data or a parameter"):
            tinyae.tensor([np.nan, 1.0]) * 2


def test_backward_names_the_op_whose_gradient_overflows():
    x = tinyae.tensor([0.0, 1.0], requires_grad=True)
    with tinyae.detect_anomaly():
        y = x.sqrt()  # finite forward; d sqrt(x)/dx = 1 / (2 sqrt(x)) is Inf at 0
        loss = y.sum()
        with pytest.raises(RuntimeError) as info:
            loss.backward()
    msg = str(info.value)
    assert "the backward of Sqrt returned Inf for input 0 (shape (2,))" in msg
    assert "from finite gradients" in msg and "x.sqrt()" in msg  # where the op was made


def test_inside_a_model_the_site_is_the_model_code_not_the_library():
    model = tinyae.nn.Sequential(tinyae.nn.Linear(3, 2))
    x = tinyae.tensor([[1.0, 2.0, np.inf]])
    with tinyae.detect_anomaly(), pytest.raises(RuntimeError) as info:
        model(x)
    msg = str(info.value)
    assert "LinearFunction received Inf in input 0" in msg
    assert "model(x)" in msg
    assert "nn/linear.py" not in msg and "autograd.py" not in msg


def test_off_by_default_and_restored_after_the_block():
    assert not tinyae.is_anomaly_enabled()
    y = tinyae.tensor([-1.0]).log()  # no check: NaN passes silently, as in PyTorch
    assert np.isnan(y.numpy()).all()
    with tinyae.detect_anomaly():
        assert tinyae.is_anomaly_enabled()
        with tinyae.detect_anomaly(check_nan=False):
            assert not tinyae.is_anomaly_enabled()
            tinyae.tensor([-1.0]).log()
        assert tinyae.is_anomaly_enabled()
    assert not tinyae.is_anomaly_enabled()
    tinyae.set_detect_anomaly(True)
    try:
        with pytest.raises(RuntimeError, match="Log produced NaN"):
            tinyae.tensor([-1.0]).log()
    finally:
        tinyae.set_detect_anomaly(False)
    with pytest.raises(TypeError, match="set_detect_anomaly: argument 'mode'"):
        tinyae.set_detect_anomaly(1)


def test_as_a_decorator_and_on_a_clean_training_step():
    @tinyae.detect_anomaly()
    def step(model, x):
        loss = F.mse_loss(model(x), x)
        loss.backward()
        return float(loss)

    model = tinyae.nn.Sequential(tinyae.nn.Linear(4, 2), tinyae.nn.ReLU(), tinyae.nn.Linear(2, 4))
    x = tinyae.randn(8, 4)
    assert np.isfinite(step(model, x))  # a healthy step raises nothing
    assert all(p.grad is not None for p in model.parameters())
    assert not tinyae.is_anomaly_enabled()
