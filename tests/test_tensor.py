"""The Tensor API and the semantics of reverse-mode autograd.

Notation: ``x``, ``w`` are leaves (tensors made by the user with requires_grad=True),
``y``/``loss`` are results of ops, ``g`` is a gradient. "Freed graph" means a graph
whose Functions dropped their saved inputs after a backward without retain_graph.

Where PyTorch is importable, the semantics (accumulation, retain_graph, double
backward) are compared with it; every test also checks values worked out by hand
or by finite differences, so nothing depends on torch being there. Tests that take the
``device`` fixture run on the CPU and, when there is one, on the GPU.
"""

from __future__ import annotations

import gc
import threading
import tracemalloc
import weakref

import numpy as np
import pytest

import tinyae as ta
from tinyae import backend
from tinyae.autograd import Function


def f64(data, requires_grad: bool = True, device: str = "cpu") -> ta.Tensor:
    return ta.tensor(np.array(data, dtype=np.float64), requires_grad=requires_grad, device=device)


# ------------------------------------------------------------------ construction and dtypes
def test_default_dtypes_follow_pytorch():
    assert ta.tensor([1.0, 2.0]).dtype == np.float32  # Python floats -> float32
    assert ta.tensor(1.5).dtype == np.float32
    assert ta.tensor([1, 2]).dtype == np.int64  # Python ints -> int64
    assert ta.tensor(np.array([1, 2], dtype=np.int32)).dtype == np.int32  # an array keeps its dtype
    assert ta.tensor(np.zeros(3)).dtype == np.float64  # float64 preserved
    assert ta.tensor(np.float64(2.0)).dtype == np.float64  # also for a NumPy scalar
    assert ta.tensor([True, False]).dtype == np.bool_
    assert ta.tensor([1, 2], dtype=np.float64).dtype == np.float64
    assert ta.zeros(2, 3).dtype == np.float32 and ta.ones((2, 3)).shape == (2, 3)
    assert ta.randn(4).dtype == np.float32 and ta.rand(4, dtype=np.float64).dtype == np.float64
    assert ta.arange(3).dtype == np.int64


def test_float64_survives_every_kind_of_op(device):
    x = f64(np.arange(6.0).reshape(2, 3) + 1, device=device)
    outs = [x + 1, 2 * x, x / 3, x**2, 2**x, x.sum(), x.mean(), x.max(), x.var(), x.exp(), x.sigmoid(), x.T]
    for y in outs:
        assert y.dtype == np.float64, y
    (x.sum() * 0.5).backward()
    assert x.grad.dtype == np.float64


def test_scalars_keep_float32(device):
    x = ta.tensor([1.0, 2.0], requires_grad=True, device=device)
    for y in (2 * x, x * 2.5, x + 1, 1 - x, 1 / x, x / 2, x**2, 2**x, np.float64(2.0) * x, -x):
        assert y.dtype == np.float32
    (x * 3.0).sum().backward()
    assert x.grad.dtype == np.float32


def test_requires_grad_only_for_floats():
    with pytest.raises(TypeError, match="floating point"):
        ta.tensor([1, 2], requires_grad=True)
    x = ta.tensor([1.0]).requires_grad_()
    assert x.requires_grad and x.is_leaf
    y = x * 2
    assert y.requires_grad and not y.is_leaf
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad_(False)


def test_non_numeric_data_is_a_type_error():
    with pytest.raises(TypeError, match="tensor"):
        ta.tensor("abc")
    with pytest.raises(TypeError):
        ta.tensor([object()])


# --------------------------------------------------------------------------- small API
def test_properties_and_conversions():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = ta.tensor(a)
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2
    assert x.device == "cpu"
    np.testing.assert_array_equal(x.numpy(), a)
    np.testing.assert_array_equal(np.asarray(x), a)
    assert x.tolist() == a.tolist()
    assert ta.tensor([[2.5]]).item() == 2.5
    assert float(ta.tensor(2.5)) == 2.5 and int(ta.tensor(3.0)) == 3 and bool(ta.tensor(1.0))
    assert not bool(ta.tensor(0.0))
    with pytest.raises(ValueError, match="one-element"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    with pytest.raises(TypeError):
        len(ta.tensor(1.0))
    assert "tensor(" in repr(x) and "requires_grad=True" in repr(ta.tensor([1.0], requires_grad=True))
    assert "grad_fn=<Mul>" in repr(ta.tensor([1.0], requires_grad=True) * 2)


def test_T_reverses_all_dims():
    a = np.arange(24.0).reshape(2, 3, 4)
    np.testing.assert_array_equal(ta.tensor(a).T.numpy(), a.T)
    np.testing.assert_array_equal(ta.tensor(a[0]).T.numpy(), a[0].T)


def test_detach_shares_data_without_history():
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    d = y.detach()
    assert not d.requires_grad and d.creator is None
    assert np.shares_memory(d.data, y.data)


def test_to_dtype_is_differentiable(device):
    x = ta.tensor([1.0, 2.0], requires_grad=True, device=device)
    y = x.double()
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


# ------------------------------------------------------------- operators with mixed operands
def test_scalars_and_arrays_on_both_sides():
    xv = np.array([0.5, 1.0, 2.0])
    x = f64(xv)
    a = np.array([3.0, -1.0, 0.25])
    cases = {
        "2*x": (lambda: 2 * x, 2 * xv, np.full(3, 2.0)),
        "x*2": (lambda: x * 2, 2 * xv, np.full(3, 2.0)),
        "a+x": (lambda: a + x, a + xv, np.ones(3)),
        "x-a": (lambda: x - a, xv - a, np.ones(3)),
        "a-x": (lambda: a - x, a - xv, -np.ones(3)),
        "a/x": (lambda: a / x, a / xv, -a / xv**2),
        "x**2": (lambda: x**2, xv**2, 2 * xv),
        "2**x": (lambda: 2**x, 2.0**xv, 2.0**xv * np.log(2.0)),
        "a**x": (lambda: a[[0, 2]][0] ** x, 3.0**xv, 3.0**xv * np.log(3.0)),
        "x**x": (lambda: x**x, xv**xv, xv**xv * (np.log(xv) + 1)),
        "1-x": (lambda: 1 - x, 1 - xv, -np.ones(3)),
        "-x": (lambda: -x, -xv, -np.ones(3)),
    }
    for name, (make, value, slope) in cases.items():
        x.grad = None
        y = make()
        assert isinstance(y, ta.Tensor), name
        np.testing.assert_allclose(y.numpy(), value, rtol=1e-12, err_msg=name)
        y.sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), slope, rtol=1e-12, err_msg=name)


def test_ndarray_on_the_left_gives_a_tensor():
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    for y in (np.ones(2) + x, np.ones(2) * x, np.ones(2) @ x, np.float32(2.0) * x):
        assert isinstance(y, ta.Tensor) and y.requires_grad


def test_unsupported_operands_are_type_errors():
    x = ta.tensor([1.0, 2.0])
    with pytest.raises(TypeError, match="unsupported operand"):
        x + "a"
    with pytest.raises(TypeError, match="unsupported operand"):
        None * x
    with pytest.raises(TypeError, match="add"):
        ta.add(x, "a")


# ------------------------------------------------------------------------ backward semantics
def test_gradients_accumulate_across_backward_calls(device):
    x = f64([1.0, 2.0, 3.0], device=device)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    (3 * x).sum().backward()  # a new graph: adds to the existing .grad
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy() + 3)
    x.grad = None  # what zero_grad does
    (3 * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(3, 3.0))


def test_accumulation_matches_torch():
    torch = pytest.importorskip("torch")
    v = np.array([0.3, -1.2, 2.0])
    x, xt = f64(v), torch.tensor(v, requires_grad=True)
    for fn in (lambda t: (t * t).sum(), lambda t: (t.exp() * 2).sum(), lambda t: (t * t * t).mean()):
        fn(x).backward()
        fn(xt).backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_one_input_used_many_times_sums_its_gradients(device):
    x = f64([1.5, -2.0], device=device)
    y = x * x + x * 3 + x.exp() * x  # d/dx = 2x + 3 + e^x (1 + x)
    y.sum().backward()
    xv = x.numpy()
    np.testing.assert_allclose(x.grad.numpy(), 2 * xv + 3 + np.exp(xv) * (1 + xv), rtol=1e-12)


def test_leaf_grads_are_own_writable_arrays():
    a, b = f64([1.0, 2.0]), f64([3.0, 4.0])
    (a + b).sum().backward()  # one upstream gradient, a read-only broadcast view, feeds both leaves
    assert a.grad is not b.grad and not np.shares_memory(a.grad.data, b.grad.data)
    a.grad.data *= 0.5  # optimizers scale gradients in place
    np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])
    g = np.ones(2)
    a2 = f64([1.0, 2.0])
    a2.backward(g)  # a leaf as the root: its grad must not alias the caller's array
    a2.grad.data[0] = 7.0
    assert g[0] == 1.0


def test_float32_leaf_gets_float32_grad_in_a_float64_graph():
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    y = x * np.array([2.0, 3.0])  # float64 array -> float64 result, as NumPy promotes
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 3.0])


def test_non_scalar_backward_needs_grad():
    x = f64([1.0, 2.0])
    y = x * 2
    with pytest.raises(RuntimeError, match=r"scalar outputs.*\(2,\)"):
        y.backward()
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 20.0])
    with pytest.raises(ValueError, match="shape"):
        (x * 2).backward(np.ones(3))
    x1 = f64([[4.0]])
    (x1 * 3).backward()  # a one-element tensor of any shape is fine, as in PyTorch
    assert x1.grad.item() == 3.0


def test_backward_without_requires_grad_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (ta.tensor([1.0]) * 2).sum().backward()


def test_second_backward_through_freed_graph_is_an_error(device):
    x = f64([1.0, 2.0], device=device)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_freed_intermediate_cannot_be_reused():
    x = f64([1.0, 2.0])
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="second time"):
        (h * 2).sum().backward()


def test_retain_graph_allows_a_second_backward(device):
    x = f64([1.0, 2.0], device=device)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first)
    xv = x.numpy()
    np.testing.assert_allclose(first, np.exp(xv) * (1 + xv))


def test_retain_graph_matches_torch():
    torch = pytest.importorskip("torch")
    v = np.array([0.5, -1.0])
    x, xt = f64(v), torch.tensor(v, requires_grad=True)
    y, yt = (x.sigmoid() * x).sum(), (xt.sigmoid() * xt).sum()
    for _ in range(3):
        y.backward(retain_graph=True)
        yt.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_retain_grad_on_a_non_leaf(device):
    x = f64([1.0, 2.0], device=device)
    h = x * 3
    h.retain_grad()
    other = x * 2
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * h.numpy())
    assert other.grad is None


# -------------------------------------------------------------------------------- no_grad
def test_no_grad_context_and_enable_grad():
    x = ta.tensor([1.0], requires_grad=True)
    with ta.no_grad():
        y = x * 2
        assert not ta.is_grad_enabled()
        with ta.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad
    assert ta.is_grad_enabled()


def test_no_grad_as_decorator_with_and_without_parentheses():
    x = ta.tensor([1.0], requires_grad=True)

    @ta.no_grad()
    def f(t):
        return t * 2

    @ta.no_grad
    def g(t):
        return t * 2

    assert not f(x).requires_grad and not g(x).requires_grad
    assert (x * 2).requires_grad  # switched back on after the calls


def test_no_grad_decorator_restores_mode_after_recursion_and_errors():
    @ta.no_grad()
    def depth(n):
        return depth(n - 1) if n else ta.is_grad_enabled()

    assert depth(3) is False
    assert ta.is_grad_enabled()

    @ta.no_grad()
    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        boom()
    assert ta.is_grad_enabled()


def test_grad_mode_is_per_thread():
    seen = []
    with ta.no_grad():
        t = threading.Thread(target=lambda: seen.append(ta.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


# ----------------------------------------------------------------------------------- grad()
def test_grad_returns_gradients_and_leaves_dot_grad_alone(device):
    x, w = f64([1.0, 2.0], device=device), f64([3.0, -1.0], device=device)
    y = (x * w).sum()
    gx, gw = ta.grad(y, [x, w])
    np.testing.assert_allclose(gx.numpy(), w.numpy())
    np.testing.assert_allclose(gw.numpy(), x.numpy())
    assert x.grad is None and w.grad is None
    (gx_only,) = ta.grad((x * x).sum(), [x])
    np.testing.assert_allclose(gx_only.numpy(), 2 * x.numpy())


def test_grad_with_respect_to_an_intermediate(device):
    x = f64([1.0, 2.0], device=device)
    h = x * 3
    y = (h * h).sum()
    (gh,) = ta.grad(y, [h])
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())


def test_grad_unused_input():
    x, unused = f64([1.0]), f64([2.0])
    with pytest.raises(RuntimeError, match="allow_unused"):
        ta.grad((x * 2).sum(), [x, unused])
    gx, gu = ta.grad((x * 2).sum(), [x, unused], allow_unused=True)
    assert gu is None and gx.item() == 2.0


def test_grad_with_grad_outputs_and_errors():
    x = f64([1.0, 2.0])
    (g,) = ta.grad(x * 3, x, grad_outputs=ta.tensor(np.array([1.0, -2.0])))
    np.testing.assert_allclose(g.numpy(), [3.0, -6.0])
    with pytest.raises(RuntimeError, match="scalar"):
        ta.grad(x * 3, x)
    with pytest.raises(TypeError, match="Tensors"):
        ta.grad((x * 3).sum(), [x.numpy()])


def _penalty(xv: np.ndarray, wv: np.ndarray) -> float:
    """||d/dx sum(tanh(x w) ** 2)||^2 computed by hand: the 'gradient penalty' of f."""
    t = np.tanh(xv @ wv)
    gx = (2 * t * (1 - t**2)) @ wv.T
    return float((gx**2).sum())


def test_create_graph_gradient_penalty_matches_finite_differences(device):
    rng = np.random.default_rng(0)
    xv, wv = rng.standard_normal((3, 4)) * 0.5, rng.standard_normal((4, 2)) * 0.5
    x, w = f64(xv, device=device), f64(wv, device=device)
    y = (ta.tanh(x @ w) ** 2).sum()
    (gx,) = ta.grad(y, x, create_graph=True)
    assert gx.requires_grad and gx.creator is not None  # the gradient is itself differentiable
    np.testing.assert_allclose((gx * gx).sum().item(), _penalty(xv, wv), rtol=1e-12)
    (gx * gx).sum().backward()
    eps = 1e-6
    for leaf, value, which in ((x, xv, 0), (w, wv, 1)):
        numeric = np.zeros_like(value)
        for k in np.ndindex(*value.shape):
            plus, minus = value.copy(), value.copy()
            plus[k] += eps
            minus[k] -= eps
            args_p = (plus, wv) if which == 0 else (xv, plus)
            args_m = (minus, wv) if which == 0 else (xv, minus)
            numeric[k] = (_penalty(*args_p) - _penalty(*args_m)) / (2 * eps)
        np.testing.assert_allclose(leaf.grad.numpy(), numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
def test_create_graph_matches_torch():
    torch = pytest.importorskip("torch")
    v = np.array([[0.3, -0.7], [1.1, 0.2]])
    x, xt = f64(v), torch.tensor(v, requires_grad=True)
    y, yt = (x.softplus() * x.sigmoid()).sum(), (torch.nn.functional.softplus(xt) * xt.sigmoid()).sum()
    y.backward(create_graph=True)
    yt.backward(create_graph=True)
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.detach().numpy(), rtol=1e-12)
    gx, gxt = x.grad, xt.grad
    x.grad, xt.grad = None, None
    (gx * gx).sum().backward()
    (gxt * gxt).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-10)


# ----------------------------------------------------------------------------- Function API
class _Cube(Function):
    """y = x^3, with dy/dx = 3 x^2 written with Tensor ops (so double backward works)."""

    def forward(self, x):
        return x**3

    def backward(self, gy):
        return gy * 3 * self.inputs[0] ** 2


class _WrongShape(Function):
    def forward(self, x):
        return x.sum()

    def backward(self, gy):
        return gy  # shape () instead of x's shape


class _TwoOutputs(Function):
    """(x + y, x * y): uses needs_input_grad and several outputs."""

    def forward(self, x, y):
        return x + y, x * y

    def backward(self, g_sum, g_prod):
        x, y = self.inputs
        gx = g_sum + g_prod * y if self.needs_input_grad[0] else None
        gy = g_sum + g_prod * x if self.needs_input_grad[1] else None
        return gx, gy


def test_custom_function_first_and_second_derivative(device):
    x = f64([2.0, -1.0], device=device)
    y = _Cube()(x)
    np.testing.assert_allclose(y.numpy(), [8.0, -1.0])
    (g,) = ta.grad(y.sum(), x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), [12.0, 3.0])
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [12.0, -6.0])  # d/dx 3x^2 = 6x


def test_custom_function_with_two_outputs_and_a_constant_input(device):
    x, c = f64([2.0, 3.0], device=device), f64([5.0, 7.0], requires_grad=False, device=device)
    s, p = _TwoOutputs()(x, c)
    (s * 2 + p).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 + c.numpy())
    x.grad = None
    s, _ = _TwoOutputs()(x, c)  # an output without gradient counts as zero
    s.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0, 1.0])


def test_backward_returning_a_wrong_shape_is_reported():
    with pytest.raises(RuntimeError, match=r"_WrongShape.backward.*\(\).*\(3,\)"):
        _WrongShape()(f64([1.0, 2.0, 3.0])).backward()


def test_no_graph_is_recorded_without_requires_grad_or_under_no_grad():
    x = f64([1.0])
    assert (x.detach() * 2).creator is None
    with ta.no_grad():
        assert (x * 2).creator is None


# ------------------------------------------------------------------------------- devices
def test_device_mismatch_names_both_devices(monkeypatch):
    """Pretend one array lives on a GPU: the check itself (Function.__call__) runs for real.

    (b's array is an ndarray subclass, as a GPU array is not a plain ndarray: the all-CPU
    shortcut of the check does not apply to it.)"""

    class FakeDeviceArray(np.ndarray):
        pass

    a, b = ta.tensor([[1.0, 2.0]]), ta.tensor([[3.0, 4.0]])
    b.data = b.data.view(FakeDeviceArray)
    real = backend.device_of
    monkeypatch.setattr(backend, "device_of", lambda arr: "cuda:0" if arr is b.data else real(arr))
    assert b.device == "cuda:0" and a.device == "cpu"
    for op in (
        lambda: a + b,
        lambda: ta.matmul(a.T, b),
        lambda: ta.cat([a, b]),
        lambda: ta.where(True, a, b),
    ):
        with pytest.raises(RuntimeError, match=r"cpu and cuda:0"):
            op()


@pytest.mark.skipif(not ta.cuda.is_available(), reason=f"no GPU: {ta.cuda.unavailable_reason()}")
def test_real_device_mismatch():
    a, b = ta.tensor([1.0, 2.0]), ta.tensor([3.0, 4.0], device="cuda")
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        a + b


# ------------------------------------------------------------------------- depth and memory
def test_chain_100000_ops_deep_has_no_recursion_error():
    x = f64(1.0)
    y = x
    for _ in range(100_000):
        y = y * 1.00001
    y.backward()
    np.testing.assert_allclose(x.grad.item(), 1.00001**100_000, rtol=1e-9)
    deep = x
    for _ in range(100_000):
        deep = deep + 1.0
    del deep  # dropping a deep graph without backward must not crash either


def test_saved_buffers_are_released_after_backward():
    x = f64(np.linspace(-1, 1, 6))
    h = x.exp()  # saved by the Mul below (and read as Exp's output in Exp's backward)
    loss = (h * h).sum()
    mul = loss.creator.inputs[0].creator
    alive_h, alive_data, alive_fn = weakref.ref(h), weakref.ref(h.data), weakref.ref(mul)
    del h, mul
    assert alive_h() is not None  # kept by the graph until backward
    loss.backward()
    assert alive_h() is None and alive_data() is None  # freed by refcounting: no cycles
    del loss
    assert alive_fn() is None
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.exp(2 * x.numpy()))


def test_retained_graph_keeps_buffers_until_dropped():
    x = f64([1.0, 2.0])
    h = x.exp()
    loss = (h * h).sum()
    alive = weakref.ref(h)
    del h
    loss.backward(retain_graph=True)
    assert alive() is not None
    del loss
    gc.collect()
    assert alive() is None


def test_memory_does_not_grow_across_training_steps():
    rng = np.random.default_rng(0)
    w1 = f64(rng.standard_normal((64, 128)) * 0.1)
    w2 = f64(rng.standard_normal((128, 64)) * 0.1)
    data = ta.tensor(rng.standard_normal((256, 64)))  # each step allocates ~0.5 MB of activations

    history = []  # a common habit: keeping every loss Tensor (not .item()) for logging

    def step():
        h = ta.tanh(data @ w1)
        loss = ((h @ w2 - data) ** 2).mean()
        loss.backward()
        with ta.no_grad():
            for w in (w1, w2):
                w.data -= 0.01 * w.grad.data
                w.grad = None
        history.append(loss)  # holds loss.creator: harmless only if backward freed the graph's buffers

    for _ in range(3):  # warm-up: caches, first-call allocations
        step()
    tracemalloc.start()
    try:
        step()
        start = tracemalloc.get_traced_memory()[0]
        for _ in range(20):
            step()
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    # One kept activation per step would be 20 x 256 x 128 x 8 B ~ 5 MB; 24 loss tensors are ~20 kB.
    assert grown < 200_000, f"memory grew by {grown} bytes over 20 steps"


# ------------------------------------------------- post-accumulate-grad hooks
def test_post_accumulate_hook_sees_the_final_gradient_once():
    w = ta.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = ta.tensor([0.5, -1.0, 2.0])
    seen = []
    w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.numpy().copy()))
    ((w * x).sum() + (w * w).sum() + w.sum()).backward()  # w feeds three Functions
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0], x.numpy() + 2 * w.numpy() + 1)


def test_post_accumulate_hook_fires_before_earlier_layers_finish():
    w1 = ta.tensor(np.ones((3, 3)), requires_grad=True)
    w2 = ta.tensor(np.ones((3, 3)), requires_grad=True)
    events = []
    w1.register_post_accumulate_grad_hook(lambda t: events.append("w1"))
    w2.register_post_accumulate_grad_hook(lambda t: events.append("w2"))
    x = ta.tensor(np.ones((2, 3)))
    ((x @ w1).exp() @ w2).sum().backward()
    assert events == ["w2", "w1"]  # the last layer's gradient is ready first


def test_post_accumulate_hook_remove_and_scope():
    w = ta.tensor([1.0, 2.0], requires_grad=True)
    calls = []
    handle = w.register_post_accumulate_grad_hook(lambda t: calls.append(1))
    ta.grad((w * w).sum(), w)  # grad() does not touch .grad, so no hook
    assert calls == []
    w.sum().backward()  # w is fed by one Function
    assert calls == [1]
    handle.remove()
    handle.remove()  # twice is harmless
    (w * 2).sum().backward()
    assert calls == [1]
    with pytest.raises(RuntimeError, match="leaf"):
        (w * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(TypeError, match="callable"):
        w.register_post_accumulate_grad_hook(3)


class _SameArrayTwice(Function):
    """x + y whose array rule hands one new array to both inputs."""

    def forward(self, x, y):
        return x + y

    def backward(self, gy):
        return gy, gy

    def backward_arrays(self, gy):
        g = gy * 1.0
        return g, g


class _Passthrough(Function):
    """The identity, its rule returning the incoming gradient itself."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy


def test_leaf_takes_a_builtin_rules_new_gradient_without_a_copy(monkeypatch):
    made = []
    real = ta.autograd._apply_rule

    def spy(f, gys):
        gxs = real(f, gys)
        made.extend(g.data for g in gxs if g is not None)
        return gxs

    monkeypatch.setattr(ta.autograd, "_apply_rule", spy)
    w = f64(np.arange(6.0).reshape(2, 3))
    (ta.tensor(np.ones((4, 2))) @ w).sum().backward()
    assert any(w.grad.data is a for a in made)  # the matmul rule's result, not a copy of it
    w.grad.data *= 2.0  # and it is writable
    np.testing.assert_allclose(w.grad.numpy(), np.full((2, 3), 8.0))


@pytest.mark.parametrize("leaves", ["two", "one"])
def test_leaf_grads_do_not_share_one_array_from_a_rule(leaves):
    a = f64([1.0, 2.0])
    b = f64([3.0, 4.0]) if leaves == "two" else a
    _SameArrayTwice()(a, b).sum().backward()
    if leaves == "two":
        assert not np.shares_memory(a.grad.data, b.grad.data)
        a.grad.data *= 0.5
        np.testing.assert_allclose(b.grad.numpy(), [1.0, 1.0])
    else:
        np.testing.assert_allclose(a.grad.numpy(), [2.0, 2.0])


def test_leaf_grad_does_not_alias_the_callers_gradient_through_a_rule():
    x = f64([1.0, 2.0])
    g = np.array([1.0, 1.0])
    _Passthrough()(x).backward(g)
    x.grad.data[0] = 7.0
    assert g[0] == 1.0
    y = f64([1.0, 2.0])
    ((y + 0.0) * 1.0).backward(g)  # built-in rules, the incoming gradient passed along
    assert not np.shares_memory(y.grad.data, g)
