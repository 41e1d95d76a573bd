"""tinyae on a GPU (CuPy), end to end: the same engine and code paths, checked against the CPU.

Every test here needs CuPy and a visible GPU and is skipped otherwise, with the reason
``tinyae.cuda.unavailable_reason()`` gives. On a GPU machine run ``benchmarks/gpu_check.sh``
(or ``python -m pytest tests/test_gpu.py``). Checked:

* the hand-written CUDA ``im2col`` / ``col2im`` against the NumPy twins over a grid of
  geometries: im2col (a copy) exactly, col2im within 1e-12 relative in float64 and 1e-5 in
  float32, also with the grid-stride loop forced to wrap around;
* one training step of each reference workload W1-W5 (``benchmarks/workloads.py``, built by
  ``benchmarks/workloads.py``) from the same weights and batch on CPU and GPU: the same losses
  (float32 tolerance), the same gradients, the same loss after the optimizer update;
* transfers: a training step copies nothing between host and GPU except the loss value that
  is read back (``loss.item()``, what the progress bar shows). ``TransferCounter`` below wraps
  every entry point of such a copy; a positive-control test first shows that it sees each kind;
* device handling: mixing devices in one op names both devices; ``Module.to("cuda")``,
  ``DataLoader(device="cuda")``, ``tinyae.tensor(..., device="cuda")``, ``.cpu()``, factories;
  the GPU-only code paths (max-pool backward, BCE range check, dropout masks); ``tinyae info``;
  and the command line with ``--device cuda``.

Notation: H2D is a host-to-device copy, D2H device-to-host; W1..W5 the workloads; N batch size.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from geometry_helpers import G

import tinyae as ta
from tinyae import backend
from tinyae import nn as tnn
from tinyae.data import DataLoader, TensorDataset
from tinyae.kernels import numpy_kernels as twin
from tinyae.nn import functional as F

_REASON = ta.cuda.unavailable_reason()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"no GPU: {_REASON}")

WORKLOADS = ["W1", "W2", "W3", "W4", "W5"]
BATCH = 32  # small enough for the CPU side of each comparison to take well under a second


def _cupy() -> Any:
    return backend.cupy_or_none()


def _workloads() -> ModuleType:
    """``benchmarks.workloads`` (the W1-W5 builders), also when pytest was not started from the root."""
    try:
        return importlib.import_module("benchmarks.workloads")
    except ModuleNotFoundError:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        return importlib.import_module("benchmarks.workloads")


def _workload(wid: str, device: str) -> Any:
    """Workload ``wid`` on tinyae and ``device``: model(s), Adam, fixed weights and batch (seed 0)."""
    w = _workloads()
    return w.make_train_case(w.get_framework("tinyae", device), wid, seed=0, batch=BATCH)


def _losses(out: Any) -> tuple[ta.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


# =============================================================================== transfers
@dataclass
class Transfer:
    direction: str  # "H2D" or "D2H"
    via: str  # the entry point that made the copy, e.g. "ndarray.item"
    shape: Any  # of the array copied, or the type of a copied Python number
    where: str  # the innermost tinyae / test / benchmarks lines that asked for it


class TransferCounter:
    """Counts host <-> GPU copies by wrapping every entry point of one.

    * D2H: ``cupy.ndarray.get``, ``.item``, ``.tolist``, ``float()/int()/bool()`` of a GPU array,
      ``cupy.asnumpy``;
    * H2D: ``cupy.asarray`` / ``cupy.array`` of non-CuPy data (a NumPy array or a Python number),
      ``cupy.ndarray.set``;
    * both: ``tinyae.backend.to_device`` when it moves an array between host and GPU.

    A copy made inside another one (``item()`` calls ``get()``, ``to_device`` calls
    ``cupy.asarray``) counts once: only the outermost entry point records. Copies are recorded
    only inside ``with counter.watch():``.
    """

    def __init__(self, cp: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[Transfer] = []
        self._recording = False
        self._depth = 0

        def on_host(a: Any, *args: Any, **kwargs: Any) -> bool:
            return not backend.is_cupy_array(a)

        def on_gpu(a: Any, *args: Any, **kwargs: Any) -> bool:
            return backend.is_cupy_array(a)

        def always(*args: Any, **kwargs: Any) -> bool:
            return True

        def crosses(a: Any, device: Any, *args: Any, **kwargs: Any) -> bool:
            return backend.is_cupy_array(a) != (backend.parse_device(device) != "cpu")

        for name in ("get", "item", "tolist", "__float__", "__int__", "__bool__"):
            monkeypatch.setattr(cp.ndarray, name, self._wrap(getattr(cp.ndarray, name), "D2H", name, always))
        monkeypatch.setattr(cp.ndarray, "set", self._wrap(cp.ndarray.set, "H2D", "set", always))
        monkeypatch.setattr(cp, "asnumpy", self._wrap(cp.asnumpy, "D2H", "cupy.asnumpy", on_gpu))
        monkeypatch.setattr(cp, "asarray", self._wrap(cp.asarray, "H2D", "cupy.asarray", on_host))
        monkeypatch.setattr(cp, "array", self._wrap(cp.array, "H2D", "cupy.array", on_host))
        monkeypatch.setattr(backend, "to_device", self._wrap(backend.to_device, None, "to_device", crosses))

    def _wrap(self, fn: Callable, direction: str | None, via: str, moves: Callable[..., bool]) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self._recording and self._depth == 0 and moves(*args, **kwargs):
                a = args[0] if args else None
                d = direction or ("D2H" if backend.is_cupy_array(a) else "H2D")
                self.events.append(Transfer(d, via, getattr(a, "shape", type(a).__name__), _caller()))
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1

        return wrapper

    @contextlib.contextmanager
    def watch(self) -> Iterator[TransferCounter]:
        """Record the copies made inside the block (forgetting earlier ones)."""
        self.events = []
        self._recording = True
        try:
            yield self
        finally:
            self._recording = False

    def directions(self) -> list[str]:
        return [t.direction for t in self.events]

    def report(self) -> str:
        lines = [f"{len(self.events)} host<->GPU copies:"]
        lines += [f"  {t.direction} via {t.via}, shape {t.shape}, at {t.where}" for t in self.events]
        return "\n".join(lines)


def _caller(depth: int = 3) -> str:
    """The innermost ``depth`` frames of tinyae, the tests or the benchmarks, innermost first."""
    found = []
    for frame in reversed(traceback.extract_stack()[:-2]):
        path = frame.filename.replace("\\", "/")
        mine = path.endswith("tests/test_gpu.py") and frame.name in ("wrapper", "_caller")
        if not mine and any(part in path for part in ("/tinyae/", "/tests/", "/benchmarks/")):
            found.append(f"{'/'.join(path.rsplit('/', 2)[-2:])}:{frame.lineno} ({frame.line})")
            if len(found) == depth:
                break
    return " <- ".join(found) or "?"


@pytest.fixture
def transfers(monkeypatch: pytest.MonkeyPatch) -> TransferCounter:
    return TransferCounter(_cupy(), monkeypatch)


def test_cuda_transfer_counter_sees_each_kind_of_copy(transfers: TransferCounter) -> None:
    """Positive controls: each way of moving data counts exactly once, on-device work not at all."""
    cp = _cupy()
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = ta.tensor(host, device="cuda")
    copies: dict[str, tuple[Callable[[], Any], str]] = {
        "tinyae.tensor(numpy, device='cuda')": (lambda: ta.tensor(host, device="cuda"), "H2D"),
        "Tensor.to('cuda')": (lambda: ta.tensor(host).to("cuda"), "H2D"),
        "tinyae.randn(device='cuda')": (lambda: ta.randn(2, 3, device="cuda"), "H2D"),
        "cupy.asarray(numpy)": (lambda: cp.asarray(host), "H2D"),
        "cupy.asarray(a Python number)": (lambda: cp.asarray(0.5), "H2D"),
        "cupy.array(numpy)": (lambda: cp.array(host), "H2D"),
        "Tensor.item()": (lambda: x.sum().item(), "D2H"),
        "float(Tensor)": (lambda: float(x.sum()), "D2H"),
        "bool(Tensor)": (lambda: bool(x.sum()), "D2H"),
        "Tensor.numpy()": (lambda: x.numpy(), "D2H"),
        "Tensor.cpu()": (lambda: x.cpu(), "D2H"),
        "Tensor.tolist()": (lambda: x.tolist(), "D2H"),
        "cupy.asnumpy": (lambda: cp.asnumpy(x.data), "D2H"),
        "int(GPU array)": (lambda: int(x.data.sum()), "D2H"),
        "bool(GPU array)": (lambda: bool((x.data > 0).all()), "D2H"),
    }
    for name, (copy, direction) in copies.items():
        with transfers.watch():
            copy()
        assert transfers.directions() == [direction], (
            f"{name}: expected one {direction}; {transfers.report()}"
        )
    with transfers.watch():  # work that stays on the GPU
        y = ((x * 2 + 1).exp() - x.mean()).sigmoid()
        ta.zeros(3, device="cuda"), ta.ones(2, 2, device="cuda"), ta.full((2,), 0.5, device="cuda")
        x.to("cuda"), y.to(dtype=np.float64), ta.zeros_like(y)
    assert transfers.events == [], transfers.report()


@pytest.mark.parametrize("wid", WORKLOADS)
def test_cuda_training_step_copies_only_the_loss(wid: str, transfers: TransferCounter) -> None:
    """One optimizer step on a GPU-resident batch: no H2D at all, one D2H per loss read back."""
    case = _workload(wid, "cuda")
    case.step()  # warm-up: compiles the kernels, creates the optimizer state
    with transfers.watch():
        values = [loss.item() for loss in _losses(case.step())]
    assert all(np.isfinite(values))
    assert transfers.directions() == ["D2H"] * len(values), transfers.report()
    assert all(t.shape == () for t in transfers.events), transfers.report()


def test_cuda_loader_batch_is_the_only_upload(transfers: TransferCounter) -> None:
    """With a DataLoader(device="cuda") the step adds exactly one H2D: the batch itself."""
    images = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    loader = DataLoader(TensorDataset(images), batch_size=32, shuffle=True, seed=0, device="cuda")
    model = _workloads()._conv_ae_small(tnn).to("cuda")
    opt = ta.optim.Adam(model.parameters(), lr=1e-3)

    def step(x: ta.Tensor) -> float:
        loss = F.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    batches = iter(loader)
    step(next(batches)[0])  # warm-up
    with transfers.watch():
        (x,) = next(batches)
        step(x)
    assert transfers.directions() == ["H2D", "D2H"], transfers.report()
    assert transfers.events[0].shape == (32, 1, 28, 28)


def test_cuda_classifier_step_copies_only_the_loss(transfers: TransferCounter) -> None:
    """Cross-entropy with ignored targets and label smoothing, then Adam: still only the loss."""
    ta.manual_seed(0)
    model = tnn.Sequential(tnn.Flatten(), tnn.Linear(16, 5)).to("cuda")
    opt = ta.optim.Adam(model.parameters(), lr=1e-3)
    x = ta.randn(8, 1, 4, 4, device="cuda")
    y = ta.tensor([0, 1, 2, 3, 4, -100, 1, 2], device="cuda")  # one ignored target

    def step() -> float:
        loss = F.cross_entropy(model(x), y, label_smoothing=0.1) + F.nll_loss(model(x).log_softmax(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    step()
    with transfers.watch():
        assert np.isfinite(step())
    assert transfers.directions() == ["D2H"], transfers.report()


# ================================================================================= kernels
#: (N, C, H, W, KH, KW) crossed with strides, paddings and dilations below.
KERNEL_SHAPES = [(1, 1, 5, 5, 1, 1), (2, 3, 7, 9, 3, 2), (3, 2, 8, 6, 3, 3), (2, 4, 12, 11, 4, 4)]
#: col2im sums up to KH*KW terms in its own order: float64 to 1e-12, float32 to 1e-5 (relative).
TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


def _geometries() -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(x shape, im2col arguments) over the grid; cases whose output would be empty are left out."""
    for n, c, h, w, kh, kw in KERNEL_SHAPES:
        grid = [(s, s, p, p, d, d) for s in (1, 2, 3) for p in (0, 1, 2) for d in (1, 2)]
        grid.append((2, 1, 1, 0, 1, 2))  # and one with different settings along H and W
        for sh, sw, ph, pw, dh, dw in grid:
            if ta.kernels.out_size(h, kh, sh, ph, dh) >= 1 and ta.kernels.out_size(w, kw, sw, pw, dw) >= 1:
                yield (n, c, h, w), (kh, kw, sh, sw, ph, pw, dh, dw)


def _assert_kernels_match(cp: Any, dtype: Any) -> int:
    rng = np.random.default_rng(7)
    tol = TOLERANCE[dtype]
    checked = 0
    for shape, args in _geometries():
        x = rng.standard_normal(shape).astype(dtype)
        col = ta.kernels.im2col(cp.asarray(x), G(*args))
        assert col.dtype == dtype and backend.is_cupy_array(col)
        np.testing.assert_array_equal(
            cp.asnumpy(col), twin.im2col(x, G(*args)), err_msg=f"im2col {shape} {args}"
        )
        c = rng.standard_normal(col.shape).astype(dtype)
        got = cp.asnumpy(ta.kernels.col2im(cp.asarray(c), shape[2:], G(*args)))
        ref = twin.col2im(c, shape[2:], G(*args))
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * np.abs(ref).max(), err_msg=f"col2im {args}")
        checked += 1
    return checked


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cuda_kernels_match_the_numpy_twins(dtype: Any) -> None:
    assert _assert_kernels_match(_cupy(), dtype) > 60


def test_cuda_kernels_grid_stride_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the grid capped at 2 blocks every thread loops over many elements: same results."""
    from tinyae.kernels import cuda as cuda_kernels

    monkeypatch.setattr(cuda_kernels, "_MAX_BLOCKS", 2)
    assert _assert_kernels_match(_cupy(), np.float64) > 60


# ======================================================================= training steps W1-W5
@pytest.mark.parametrize("wid", WORKLOADS)
def test_cuda_training_step_matches_cpu(wid: str) -> None:
    """Same initial weights and batch: same losses, same gradients, same loss after the update."""
    cpu, gpu = _workload(wid, "cpu"), _workload(wid, "cuda")
    first_cpu, first_gpu = cpu.loss_values(cpu.step()), gpu.loss_values(gpu.step())
    np.testing.assert_allclose(first_gpu, first_cpu, rtol=1e-5, err_msg=f"{wid}: losses of step 1")
    for model in cpu.models:
        params_cpu = dict(cpu.models[model].named_parameters())
        params_gpu = dict(gpu.models[model].named_parameters())
        assert list(params_gpu) == list(params_cpu)
        for name, p in params_gpu.items():
            assert p.device == "cuda:0" and p.grad.device == "cuda:0"
            g_cpu, g_gpu = params_cpu[name].grad.numpy(), p.grad.numpy()
            atol = 1e-4 * np.abs(g_cpu).max() + 1e-12  # float32 sums in another order
            np.testing.assert_allclose(
                g_gpu, g_cpu, rtol=1e-3, atol=atol, err_msg=f"{wid}: grad of {model}.{name}"
            )
    second_cpu, second_gpu = cpu.loss_values(cpu.step()), gpu.loss_values(gpu.step())
    np.testing.assert_allclose(second_gpu, second_cpu, rtol=1e-4, err_msg=f"{wid}: losses of step 2")


# ======================================================================= devices and errors
def test_cuda_device_mismatch_names_both_devices() -> None:
    a = ta.tensor(np.ones((2, 2), np.float32))
    b = a.to("cuda")
    image, kernel = ta.tensor(np.ones((1, 1, 4, 4), np.float32)), ta.ones(1, 1, 2, 2, device="cuda")
    mixes: dict[str, Callable[[], Any]] = {
        "add": lambda: a + b,
        "matmul": lambda: a @ b,
        "cat": lambda: ta.cat([a, b]),
        "where": lambda: ta.where(True, a, b),
        "where condition": lambda: ta.where(ta.tensor([[True, False]] * 2, device="cuda"), a, a),
        "index": lambda: a[ta.tensor([0, 1], device="cuda")],
        "a NumPy operand": lambda: b + np.ones((2, 2), np.float32),
        "mse_loss": lambda: F.mse_loss(b, a),
        "Linear on the GPU, input on the CPU": lambda: tnn.Linear(2, 2).to("cuda")(a),
        "conv2d": lambda: F.conv2d(image, kernel),
        "BatchNorm1d": lambda: tnn.BatchNorm1d(2).to("cuda")(a),
    }
    for name, mix in mixes.items():
        with pytest.raises(RuntimeError) as err:
            mix()
        message = str(err.value)
        assert "cpu" in message and "cuda:0" in message, f"{name}: {message}"


def test_cuda_tensor_creation_and_moves() -> None:
    x = ta.tensor([1.0, 2.0, 3.0], device="cuda")
    assert x.device == "cuda:0" and x.dtype == np.float32 and backend.is_cupy_array(x.data)
    assert ta.tensor(np.zeros(2), device="cuda").dtype == np.float64
    assert ta.tensor([1, 2], device="cuda:0").dtype == np.int64
    assert "device='cuda:0'" in repr(x)
    assert x.cpu().device == "cpu" and x.cpu().tolist() == [1.0, 2.0, 3.0]
    assert x.to("cuda") is x and x.cuda() is x
    for make in (ta.zeros, ta.ones, ta.randn, ta.rand):
        t = make(2, 3, device="cuda")
        assert t.device == "cuda:0" and t.shape == (2, 3) and t.dtype == np.float32
    assert ta.full((2,), 7.0, dtype=np.float64, device="cuda").tolist() == [7.0, 7.0]
    ta.manual_seed(3)
    on_cpu = ta.randn(4).numpy()
    ta.manual_seed(3)
    np.testing.assert_array_equal(ta.randn(4, device="cuda").numpy(), on_cpu)  # drawn on the host
    with pytest.raises(ValueError, match="GPU"):
        ta.tensor([1.0], device=f"cuda:{ta.cuda.device_count()}")


def test_cuda_to_is_differentiable_both_ways() -> None:
    leaf = ta.tensor([1.0, -2.0, 3.0], requires_grad=True)  # on the CPU
    y = leaf.to("cuda")
    assert y.device == "cuda:0" and y.creator is not None
    ((y * y).sum() * 0.5).backward()
    assert leaf.grad.device == "cpu"
    np.testing.assert_allclose(leaf.grad.numpy(), [1.0, -2.0, 3.0])
    g = ta.tensor([0.5, 1.5], requires_grad=True, device="cuda")
    (g.cpu().double() ** 2).sum().backward()
    assert g.grad.device == "cuda:0" and g.grad.dtype == np.float32
    np.testing.assert_allclose(g.grad.numpy(), [1.0, 3.0])


def test_cuda_module_to_moves_parameters_and_buffers_in_place() -> None:
    ta.manual_seed(0)
    model = tnn.Sequential(
        tnn.Conv2d(1, 4, 3), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.Flatten(), tnn.Linear(4 * 6 * 6, 3)
    )
    x = ta.randn(5, 1, 8, 8)
    params = list(model.parameters())
    model.to("cuda")
    assert list(model.parameters()) == params  # the same Parameter objects (an optimizer keeps working)
    for name, t in model.state_dict(keep_vars=True).items():
        assert t.device == "cuda:0", name
    assert model[1].num_batches_tracked.dtype == np.int64
    out_gpu = model(x.to("cuda"))
    out_gpu.sum().backward()
    state_gpu = {k: backend.to_device(v, "cpu") for k, v in model.state_dict().items()}
    grads_gpu = [p.grad.numpy() for p in params]
    model.cpu()
    assert all(p.device == "cpu" and p.grad.device == "cpu" for p in params)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state_gpu[name], err_msg=name)
    for p, g in zip(params, grads_gpu):
        np.testing.assert_array_equal(p.grad.numpy(), g)
    # the same model on the CPU from the same start gives the same output
    ta.manual_seed(0)
    twin_model = tnn.Sequential(
        tnn.Conv2d(1, 4, 3), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.Flatten(), tnn.Linear(4 * 6 * 6, 3)
    )
    np.testing.assert_allclose(out_gpu.numpy(), twin_model(x).numpy(), rtol=1e-5, atol=1e-6)
    # a host state_dict loads into a GPU model
    twin_model.to("cuda").load_state_dict(state_gpu)
    assert all(p.device == "cuda:0" for p in twin_model.parameters())


def test_cuda_loader_gives_the_cpu_batches_on_the_gpu() -> None:
    rng = np.random.default_rng(1)
    images, labels = rng.random((50, 1, 4, 4), dtype=np.float32), rng.integers(0, 3, 50)
    on_cpu = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True, seed=5)
    on_gpu = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True, seed=5, device="cuda")
    for (xc, yc), (xg, yg) in zip(on_cpu, on_gpu, strict=True):
        assert xg.device == "cuda:0" and yg.device == "cuda:0" and yg.dtype == np.int64
        np.testing.assert_array_equal(xg.numpy(), xc.numpy())
        np.testing.assert_array_equal(yg.numpy(), yc.numpy())


# ================================================================= GPU-specific code paths
@pytest.mark.parametrize("kernel,stride,padding", [(3, 1, 1), (3, 2, 1), (2, 2, 0)])
def test_cuda_pooling_matches_cpu(kernel: int, stride: int, padding: int) -> None:
    """Max-pool backward scatters with atomics on the GPU (bincount on the CPU): same gradients."""
    rng = np.random.default_rng(kernel * 10 + stride)
    x_host = np.round(rng.standard_normal((2, 3, 7, 8)), 1)  # rounded: ties on purpose
    oh, ow = ((size + 2 * padding - kernel) // stride + 1 for size in (7, 8))
    g_host = rng.standard_normal((2, 3, oh, ow))
    results = {}
    for device in ("cpu", "cuda"):
        x = ta.tensor(x_host, requires_grad=True, device=device)
        y_max = F.max_pool2d(x, kernel, stride, padding)
        y_avg = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=False)
        (y_max * ta.tensor(g_host, device=device) + y_avg * 0.5).sum().backward()
        results[device] = (y_max.numpy(), y_avg.numpy(), x.grad.numpy())
    for got, want in zip(results["cuda"], results["cpu"]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_cuda_dropout_draws_the_cpu_mask() -> None:
    x = ta.ones(4, 50)
    ta.manual_seed(11)
    on_cpu = F.dropout(x, 0.3).numpy()
    ta.manual_seed(11)
    on_gpu = F.dropout(x.to("cuda"), 0.3)
    assert on_gpu.device == "cuda:0"
    np.testing.assert_array_equal(on_gpu.numpy(), on_cpu)


def test_cuda_bce_outside_zero_one_is_nan_not_an_error() -> None:
    """The range check would read a verdict back from the GPU every call; the loss shows it instead."""
    target = ta.tensor([0.0, 1.0], device="cuda")
    assert np.isnan(F.binary_cross_entropy(ta.tensor([0.5, 1.5], device="cuda"), target).item())
    assert np.isnan(F.binary_cross_entropy(ta.tensor([-0.5, 0.5], device="cuda"), target).item())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.binary_cross_entropy(ta.tensor([0.5, 1.5]), ta.tensor([0.0, 1.0]))


def test_cuda_class_target_out_of_range_is_nan_not_an_error() -> None:
    logits = ta.tensor(np.zeros((2, 3), np.float32))
    target = ta.tensor([0, 7])
    with pytest.raises(ValueError, match="out of bounds"):
        F.cross_entropy(logits, target)
    on_gpu = F.cross_entropy(logits.to("cuda"), target.to("cuda"), reduction="none").numpy()
    assert on_gpu[0] == pytest.approx(np.log(3.0)) and np.isnan(on_gpu[1])
    assert np.isnan(F.nll_loss(logits.to("cuda"), target.to("cuda")).item())


# ===================================================================== info and the CLI
def test_cuda_info_reports_the_gpu() -> None:
    d = ta.info(print_report=False)["gpu"]
    assert d["available"] and d["reason"] is None and d["devices"]
    assert d["cupy"] == _cupy().__version__


def test_cuda_cli_trains_and_evaluates(tmp_path: Any, capsys: pytest.CaptureFixture) -> None:
    """``tinyae train conv-ae --device cuda`` runs, and tracks the same run on the CPU."""
    from tinyae.cli import main

    tiny = ["--dataset", "shapes", "--limit-train", "64", "--limit-test", "32", "--batch-size", "32",
            "--epochs", "2", "--channels", "4", "8", "--code-channels", "2", "--quiet"]  # fmt: skip
    assert main(["train", "conv-ae", "--out", str(tmp_path / "gpu"), *tiny, "--device", "cuda"]) == 0
    assert main(["train", "conv-ae", "--out", str(tmp_path / "cpu"), *tiny]) == 0
    runs = {}
    for name in ("gpu", "cpu"):
        with open(tmp_path / name / "metrics.json", encoding="utf-8") as f:
            runs[name] = json.load(f)
    assert runs["gpu"]["config"]["device"] == "cuda:0" and runs["cpu"]["config"]["device"] == "cpu"
    for key in ("train_loss", "test_loss"):
        got = [e[key] for e in runs["gpu"]["epochs"]]
        np.testing.assert_allclose(got, [e[key] for e in runs["cpu"]["epochs"]], rtol=1e-3, err_msg=key)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "gpu"), "--device", "cuda", "--json"]) == 0
    recomputed = json.loads(capsys.readouterr().out)
    assert recomputed.keys() == runs["gpu"]["final"].keys()
    for key, value in runs["gpu"]["final"].items():
        assert recomputed[key] == pytest.approx(value, rel=1e-6), key
