"""The reference workloads of ``benchmarks/workloads.py``, built for tinyae AND PyTorch.

Everything here is written once against the PyTorch API and run on either engine
through a small :class:`Framework` adapter (``fw.nn``, ``fw.F``, ``fw.optim``,
``fw.tensor``), so the two sides execute literally the same Python code: the same
layers, the same initial weights (drawn here, by name, and copied into both), the
same batch, the same loss and the same optimizer settings.

Notation (float32, NCHW):

=========  ===================================================================
N, C       batch size, input channels (C_out: output channels)
H, W       input height and width; OH, OW the output size
K          square kernel size (KH = KW = K); S stride; P padding; OP output_padding
L1..L6     single conv2d / conv_transpose2d layers, forward + backward
W1..W5     full training steps (zero grads, forward, loss, backward, update)
=========  ===================================================================

FLOPs of one convolution (a multiply-add counts 2):
``conv2d``: ``2 * N * C_out * OH * OW * C * K * K``; ``conv_transpose2d`` (the
adjoint, so the same count with the roles swapped): ``2 * N * C * H * W * C_out * K * K``.
The backward pass computes the input gradient and the weight gradient, each one
such product, so forward + backward is ``3x`` the forward count (the bias is negligible).
"""

from __future__ import annotations

import importlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------- frameworks


class Unavailable(RuntimeError):
    """A framework or device cannot run here; the message says why (used as a skip reason)."""


@dataclass
class Framework:
    """One engine on one device, seen through the PyTorch API."""

    name: str  # "tinyae" or "torch"
    device: str  # "cpu" or "cuda"
    nn: Any
    F: Any
    optim: Any
    module: ModuleType  # tinyae or torch itself
    xp: ModuleType = field(default=np)  # array module of tinyae on this device (numpy or cupy)

    def tensor(self, array: np.ndarray, requires_grad: bool = False) -> Any:
        """A tensor on this framework's device holding a copy of ``array``."""
        array = np.array(array, copy=True)
        if self.name == "torch":
            t = self.module.from_numpy(array).to(self.device)
            return t.requires_grad_(requires_grad)
        return self.module.tensor(array, requires_grad=requires_grad, device=self.device)

    def numpy(self, t: Any) -> np.ndarray:
        """A tensor's values as a NumPy array (copied off the GPU when needed)."""
        if self.name == "torch":
            return t.detach().cpu().numpy()
        return t.numpy()

    def synchronize(self) -> None:
        """Wait for queued GPU work, so that a timer around a call measures the work itself."""
        if self.device == "cuda":
            self.module.cuda.synchronize()  # torch.cuda.synchronize / tinyae.cuda.synchronize

    def set_param(self, p: Any, array: np.ndarray) -> None:
        """Overwrite parameter ``p`` in place with ``array`` (same shape)."""
        if tuple(p.shape) != array.shape:
            raise ValueError(f"set_param: parameter has shape {tuple(p.shape)}, array {array.shape}")
        if self.name == "torch":
            with self.module.no_grad():
                p.copy_(self.module.from_numpy(np.ascontiguousarray(array)).to(p.device))
        else:
            p.data[...] = self.xp.asarray(array, dtype=p.data.dtype)


_FUNCTIONAL = ("conv2d", "conv_transpose2d", "linear", "mse_loss", "binary_cross_entropy",
               "binary_cross_entropy_with_logits")  # fmt: skip
_LAYERS = ("Module", "Linear", "Conv2d", "ConvTranspose2d", "BatchNorm2d", "ReLU", "LeakyReLU", "Sigmoid",
           "Tanh", "Flatten", "Unflatten", "Sequential")  # fmt: skip


def _tinyae_functional() -> Any:
    """``tinyae.nn.functional``, or (while it is still being assembled) the modules that define the ops."""
    names: dict[str, Any] = {}
    for mod_name in ("tinyae.nn.conv", "tinyae.nn.losses", "tinyae.nn.functional"):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        names.update({n: getattr(mod, n) for n in _FUNCTIONAL if hasattr(mod, n)})
    try:
        functional = importlib.import_module("tinyae.nn.functional")
        if all(hasattr(functional, n) for n in _FUNCTIONAL):
            return functional
    except ImportError:
        pass
    return SimpleNamespace(**names)


def tinyae_missing(what: str = "all") -> str | None:
    """Why the tinyae pieces the benchmarks need are not importable (None when they are).

    ``what="conv"`` asks only for the functional conv2d / conv_transpose2d (the L workloads).
    """
    F = _tinyae_functional()
    needed = ("conv2d", "conv_transpose2d") if what == "conv" else _FUNCTIONAL
    missing = [n for n in needed if not hasattr(F, n)]
    if what != "conv":
        try:
            nn = importlib.import_module("tinyae.nn")
            importlib.import_module("tinyae.optim").Adam  # noqa: B018 - presence check
        except (ImportError, AttributeError) as exc:
            return f"tinyae.nn / tinyae.optim.Adam not available yet ({exc})"
        missing += [f"nn.{n}" for n in _LAYERS if not hasattr(nn, n)]
    return f"tinyae lacks {', '.join(missing)}" if missing else None


def get_framework(name: str, device: str = "cpu", what: str = "all") -> Framework:
    """The adapter for ``name`` ("tinyae" or "torch") on ``device``; raises :class:`Unavailable`."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"get_framework: device must be 'cpu' or 'cuda', got {device!r}")
    if name == "torch":
        try:
            import torch
        except ImportError as exc:
            raise Unavailable(f"PyTorch is not installed ({exc}); pip install -e '.[bench]'") from None
        if device == "cuda" and not torch.cuda.is_available():
            raise Unavailable("PyTorch sees no CUDA GPU")
        return Framework("torch", device, torch.nn, torch.nn.functional, torch.optim, torch)
    if name == "tinyae":
        import tinyae

        reason = tinyae_missing(what)
        if reason is not None:
            raise Unavailable(reason)
        xp = np
        if device == "cuda":
            reason = tinyae.cuda.unavailable_reason()
            if reason is not None:
                raise Unavailable(f"tinyae has no GPU: {reason}")
            import cupy

            xp = cupy
        # Only the L workloads (what="conv") can run before tinyae.nn's layers and tinyae.optim exist.
        nn = importlib.import_module("tinyae.nn") if what != "conv" else SimpleNamespace()
        optim = importlib.import_module("tinyae.optim") if what != "conv" else SimpleNamespace()
        return Framework("tinyae", device, nn, _tinyae_functional(), optim, tinyae, xp)
    raise ValueError(f"get_framework: unknown framework {name!r}; expected 'tinyae' or 'torch'")


def set_threads(n: int | None = None, engines: tuple[str, ...] = ("torch", "tinyae")) -> int:
    """Give every thread pool in the process the same size ``n`` (default: all cores).

    NumPy's BLAS and any OpenMP runtime (PyTorch's intra-op pool) through threadpoolctl when it
    is installed, PyTorch's own setting, and the pool of tinyae's C++ kernels. ``engines`` names
    the engines whose own setting is applied (each is imported for it): a process that runs one
    engine names only that one, so that the other is not even loaded. Returns ``n``.
    """
    n = int(n or os.cpu_count() or 1)
    global _thread_limiter
    try:
        from threadpoolctl import threadpool_limits

        _thread_limiter = threadpool_limits(limits=n)  # kept alive: the limit lasts while it exists
    except ImportError:
        _thread_limiter = None
    if "torch" in engines:
        try:
            import torch

            torch.set_num_threads(n)
        except ImportError:
            pass
    if "tinyae" in engines:
        try:
            from tinyae import kernels

            kernels.set_num_threads(n)
        except ImportError:
            pass
    return n


_thread_limiter: Any = None


def thread_info() -> list[dict[str, Any]]:
    """The thread pools threadpoolctl sees (library, API, threads); empty without threadpoolctl."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "num_threads", "version", "filepath")
    return [{k: info.get(k) for k in keys} for info in threadpool_info()]


# ---------------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerSpec:
    """One row of the layers table: a conv2d or conv_transpose2d layer with square kernels."""

    id: str
    op: str  # "conv2d" | "conv_transpose2d"
    input: tuple[int, int, int, int]  # (N, C, H, W)
    out_channels: int
    kernel: int
    stride: int
    padding: int
    output_padding: int = 0

    @property
    def in_channels(self) -> int:
        return self.input[1]

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """PyTorch layouts: conv (C_out, C, K, K); transposed conv (C, C_out, K, K)."""
        k = self.kernel
        if self.op == "conv2d":
            return (self.out_channels, self.in_channels, k, k)
        return (self.in_channels, self.out_channels, k, k)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        n, _, h, w = self.input
        k, s, p = self.kernel, self.stride, self.padding
        if self.op == "conv2d":
            oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        else:
            oh = (h - 1) * s - 2 * p + k + self.output_padding
            ow = (w - 1) * s - 2 * p + k + self.output_padding
        return (n, self.out_channels, oh, ow)

    def flops(self, backward: bool = True) -> int:
        """Multiply-adds x 2 of the forward pass (x3 with the input and weight gradients)."""
        k2 = self.kernel * self.kernel
        if self.op == "conv2d":
            n, c_out, oh, ow = self.output_shape
            fwd = 2 * n * c_out * oh * ow * self.in_channels * k2
        else:
            n, c, h, w = self.input
            fwd = 2 * n * c * h * w * self.out_channels * k2
        return 3 * fwd if backward else fwd

    def gemm_shapes(self) -> list[tuple[int, int, int]]:
        """(M, K, N) of the three matrix products an im2col engine needs for fwd + bwd.

        For conv2d with ``col`` of shape (C*K*K, N*OH*OW): y = W @ col, gW = gy @ col^T,
        gcol = W^T @ gy. A transposed conv runs the same three products on its output side.
        """
        k2 = self.kernel * self.kernel
        if self.op == "conv2d":
            n, c_out, oh, ow = self.output_shape
            rows, inner, cols = c_out, self.in_channels * k2, n * oh * ow
        else:
            n, c, h, w = self.input
            rows, inner, cols = c, self.out_channels * k2, n * h * w
        return [(rows, inner, cols), (rows, cols, inner), (inner, rows, cols)]

    def describe(self) -> str:
        extra = f", op={self.output_padding}" if self.op == "conv_transpose2d" else ""
        geometry = f"k{self.kernel} s{self.stride} p{self.padding}{extra}"
        return f"{self.op} {self.input} -> {self.out_channels}, {geometry}"


LAYERS: dict[str, LayerSpec] = {
    "L1": LayerSpec("L1", "conv2d", (128, 1, 28, 28), 32, 3, 1, 1),
    "L2": LayerSpec("L2", "conv2d", (128, 32, 28, 28), 64, 3, 2, 1),
    "L3": LayerSpec("L3", "conv2d", (128, 64, 14, 14), 64, 3, 2, 1),
    "L4": LayerSpec("L4", "conv_transpose2d", (128, 64, 7, 7), 64, 3, 2, 1, 1),
    "L5": LayerSpec("L5", "conv_transpose2d", (64, 128, 7, 7), 64, 4, 2, 1, 0),
    "L6": LayerSpec("L6", "conv2d", (64, 1, 28, 28), 64, 4, 2, 1),
}


def layer_arrays(spec: LayerSpec, seed: int = 0, batch: int | None = None) -> dict[str, np.ndarray]:
    """Input x, weight w, bias b and upstream gradient gy of a layer (float32, fixed seed).

    ``batch`` overrides N (the smoke tests use a small batch).
    """
    rng = np.random.default_rng(seed)
    shape = spec.input if batch is None else (batch, *spec.input[1:])
    fan_in = spec.weight_shape[1] * spec.kernel * spec.kernel
    bound = 1.0 / np.sqrt(fan_in)
    out_shape = (shape[0], *spec.output_shape[1:])
    return {
        "x": rng.standard_normal(shape, dtype=np.float32),
        "w": rng.uniform(-bound, bound, spec.weight_shape).astype(np.float32),
        "b": rng.uniform(-bound, bound, (spec.out_channels,)).astype(np.float32),
        "gy": rng.standard_normal(out_shape, dtype=np.float32),
    }


@dataclass
class LayerCase:
    """A layer ready to run on one framework: ``run()`` does forward (+ backward) once."""

    fw: Framework
    spec: LayerSpec
    x: Any
    w: Any
    b: Any
    gy: Any

    def forward(self) -> Any:
        kwargs: dict[str, Any] = {"stride": self.spec.stride, "padding": self.spec.padding}
        if self.spec.op == "conv2d":
            return self.fw.F.conv2d(self.x, self.w, self.b, **kwargs)
        return self.fw.F.conv_transpose2d(
            self.x, self.w, self.b, output_padding=self.spec.output_padding, **kwargs
        )

    def run(self, backward: bool = True) -> Any:
        """Forward, then backward with the fixed upstream gradient; returns the output tensor."""
        self.x.grad = self.w.grad = self.b.grad = None
        y = self.forward()
        if backward:
            y.backward(self.gy)
        self.fw.synchronize()
        return y

    def results(self) -> dict[str, np.ndarray]:
        """y, gx, gw, gb of one forward + backward as NumPy arrays (for correctness checks)."""
        y = self.run()
        out = {"y": y, "gx": self.x.grad, "gw": self.w.grad, "gb": self.b.grad}
        return {k: self.fw.numpy(v) for k, v in out.items()}


def make_layer_case(fw: Framework, spec: LayerSpec, arrays: dict[str, np.ndarray]) -> LayerCase:
    """Tensors for one layer on ``fw`` (all of x, w, b require gradients, as in training)."""
    x, w, b = (fw.tensor(arrays[k], requires_grad=True) for k in ("x", "w", "b"))
    return LayerCase(fw, spec, x, w, b, fw.tensor(arrays["gy"]))


# -------------------------------------------------------------------------- training steps


@dataclass(frozen=True)
class WorkloadSpec:
    id: str
    title: str
    batch: int


WORKLOADS: dict[str, WorkloadSpec] = {
    "W1": WorkloadSpec("W1", "dense AE 784-256-64-256-784, MSE, Adam", 128),
    "W2": WorkloadSpec("W2", "conv AE small (2 conv + 2 convT), MSE, Adam", 128),
    "W3": WorkloadSpec("W3", "conv AE wide (3 conv + 2 convT + conv), MSE, Adam", 128),
    "W4": WorkloadSpec("W4", "VAE 784-400-20, BCE (with logits) sum + KL, Adam", 128),
    "W5": WorkloadSpec("W5", "DCGAN G + D step, BCE with logits, Adam(0.5, 0.999)", 64),
}


def _dense_ae(nn: ModuleType) -> Any:
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid(),
    )  # fmt: skip


def _conv_ae_small(nn: ModuleType) -> Any:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
    )  # fmt: skip


def _conv_ae_wide(nn: ModuleType) -> Any:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=1, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.Conv2d(32, 1, 3, stride=1, padding=1), nn.Sigmoid(),
    )  # fmt: skip


def _vae(nn: ModuleType) -> tuple[Any, Any]:
    """W4: the encoder and decoder of ``tinyae.models.vae.VAE`` (784-400-20, PyTorch's example), in ``nn``."""
    from tinyae.models.vae import vae_decoder, vae_encoder

    return vae_encoder(nn=nn), vae_decoder(nn=nn)


def _dcgan(nn: ModuleType) -> tuple[Any, Any]:
    """W5: the generator and discriminator of ``tinyae train dcgan``, in ``nn``."""
    from tinyae.models.gan import dcgan_discriminator, dcgan_generator

    return dcgan_generator(nn=nn), dcgan_discriminator(nn=nn)


def initial_value(
    name: str, shape: tuple[int, ...], siblings: dict[str, tuple[int, ...]], seed: int
) -> np.ndarray:
    """The initial value of parameter ``name``, the same on every engine.

    Drawn from a generator seeded by (seed, name), so it does not depend on the order in
    which an engine lists its parameters. Matrices and kernels: U(-1/sqrt(fan_in), +) with
    ``fan_in = shape[1] * K * K`` (PyTorch's rule); 1-D weights (BatchNorm scale) are ones;
    biases are U(-1/sqrt(fan_in), +) of the weight they belong to.
    """
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape).astype(np.float32)
    if name.endswith("weight"):
        return np.ones(shape, np.float32)
    owner = siblings.get(name[: -len("bias")] + "weight", ())
    if len(owner) < 2:  # a BatchNorm shift
        return np.zeros(shape, np.float32)
    bound = 1.0 / np.sqrt(int(np.prod(owner[1:])))
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def load_initial_weights(fw: Framework, model: Any, seed: int) -> dict[str, tuple[int, ...]]:
    """Overwrite every parameter of ``model`` with :func:`initial_value`; returns name -> shape."""
    params = list(model.named_parameters())
    shapes = {name: tuple(p.shape) for name, p in params}
    for name, p in params:
        fw.set_param(p, initial_value(name, shapes[name], shapes, seed))
    return shapes


@dataclass
class TrainCase:
    """One W workload on one framework: ``step()`` runs one optimizer step, returns the loss(es)."""

    fw: Framework
    spec: WorkloadSpec
    models: dict[str, Any]
    step_fn: Callable[[], Any]
    param_shapes: dict[str, dict[str, tuple[int, ...]]]

    def step(self) -> Any:
        losses = self.step_fn()
        self.fw.synchronize()
        return losses

    def loss_values(self, losses: Any) -> list[float]:
        losses = losses if isinstance(losses, tuple) else (losses,)
        return [float(self.fw.numpy(loss)) for loss in losses]


def batch_arrays(wid: str, seed: int = 0, batch: int | None = None) -> dict[str, np.ndarray]:
    """The fixed batch of workload ``wid``: images in [0, 1) (N, 1, 28, 28), noise where needed.

    ``batch`` overrides N (the correctness checks use a small batch to stay quick).
    """
    n = batch or WORKLOADS[wid].batch
    rng = np.random.default_rng([seed, int(wid[1:])])
    out = {"x": rng.random((n, 1, 28, 28), dtype=np.float32)}
    if wid == "W4":
        out["eps"] = rng.standard_normal((n, 20), dtype=np.float32)
    if wid == "W5":
        out["x"] = 2 * out["x"] - 1  # real images in [-1, 1], the range of G's tanh
        out["z"] = rng.standard_normal((n, 100), dtype=np.float32)
    return out


def make_train_case(fw: Framework, wid: str, seed: int = 0, batch: int | None = None) -> TrainCase:
    """Model(s), Adam optimizer(s) and the fixed batch of ``wid`` on ``fw``, ready to step."""
    spec = WORKLOADS[wid]
    nn, F = fw.nn, fw.F
    data = batch_arrays(wid, seed, batch)
    n = data["x"].shape[0]
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}

    def prepare(name: str, model: Any) -> Any:
        model = model.to(fw.device) if fw.device != "cpu" else model
        model.train()
        shapes[name] = load_initial_weights(fw, model, seed)
        return model

    if wid in ("W1", "W2", "W3"):
        build = {"W1": _dense_ae, "W2": _conv_ae_small, "W3": _conv_ae_wide}[wid]
        model = prepare("model", build(nn))
        opt = fw.optim.Adam(model.parameters(), lr=1e-3)
        x = fw.tensor(data["x"].reshape(n, 784) if wid == "W1" else data["x"])

        def step() -> Any:
            opt.zero_grad()
            loss = F.mse_loss(model(x), x)
            loss.backward()
            opt.step()
            return loss

        return TrainCase(fw, spec, {"model": model}, step, shapes)

    if wid == "W4":
        from tinyae.models.vae import negative_elbo, reparameterize

        encoder, decoder = _vae(nn)
        model = prepare("model", nn.Sequential(encoder, decoder))  # one container: .parameters(), .to()
        opt = fw.optim.Adam(model.parameters(), lr=1e-3)
        x = fw.tensor(data["x"])
        eps = fw.tensor(data["eps"])  # the reparameterization noise, fixed so both engines agree
        latent = eps.shape[1]

        def step() -> Any:  # the training step of `tinyae train vae`, with eps given
            opt.zero_grad()
            h = encoder(x)
            mu, logvar = h[:, :latent], h[:, latent:]
            loss = negative_elbo(decoder(reparameterize(mu, logvar, eps)), x, mu, logvar, F=F)[0]
            loss.backward()
            opt.step()
            return loss

        return TrainCase(fw, spec, {"model": model}, step, shapes)

    if wid == "W5":
        g, d = _dcgan(nn)
        g, d = prepare("G", g), prepare("D", d)
        opt_g = fw.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = fw.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
        real, z = fw.tensor(data["x"]), fw.tensor(data["z"])
        ones = fw.tensor(np.ones((n, 1), np.float32))
        zeros = fw.tensor(np.zeros((n, 1), np.float32))
        bce = F.binary_cross_entropy_with_logits

        def step() -> Any:
            # D step: real -> 1, detached fake -> 0 (G gets no gradient here).
            opt_d.zero_grad()
            fake = g(z)
            loss_d = bce(d(real), ones) + bce(d(fake.detach()), zeros)
            loss_d.backward()
            opt_d.step()
            # G step: make D call the same fake real (non-saturating loss).
            opt_g.zero_grad()
            loss_g = bce(d(fake), ones)
            loss_g.backward()
            opt_g.step()
            return loss_d, loss_g

        return TrainCase(fw, spec, {"G": g, "D": d}, step, shapes)

    raise ValueError(f"make_train_case: unknown workload {wid!r}; expected one of {list(WORKLOADS)}")
