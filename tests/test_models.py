"""The lecture's models (tinyae.models): shapes, building blocks, and that a few steps lower the loss.

Each model is trained for a few optimizer steps on a small fixed slice of the built-in
Shapes images (or the 8 one-hot patterns) and must end with a lower loss than it
started with. The metric helpers of tinyae.train.metrics are checked against direct
NumPy computations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyae
import tinyae.nn as nn
import tinyae.nn.functional as F
from tinyae import optim
from tinyae.data import GaussianNoise, MaskingNoise, SaltAndPepper, Shapes
from tinyae.models import (
    NOISE_KINDS,
    Autoencoder,
    ConvAutoencoder,
    DenoisingAutoencoder,
    Encoder838,
    binary_codes,
    make_noise,
    one_hot_patterns,
)
from tinyae.models.conv_ae import downsampled_sizes
from tinyae.tensor import Tensor
from tinyae.train.metrics import ReconstructionStats, pca_reconstruction_mse, psnr


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return Shapes(64, train=True, seed=3).data  # (64, 1, 28, 28)


def _train(model: nn.Module, x: np.ndarray, loss_fn, steps: int, lr: float, noise=None) -> list[float]:
    """Full-batch Adam steps; the loss before each step."""
    opt = optim.Adam(model.parameters(), lr=lr)
    xt = Tensor(x)
    losses = []
    rng = np.random.default_rng(0)
    for _ in range(steps):
        inp = Tensor(noise(x, rng)) if noise is not None else xt
        loss = loss_fn(model(inp), xt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ------------------------------------------------------------------- encoder838


def test_one_hot_and_binary_codes():
    assert np.array_equal(one_hot_patterns(8), np.eye(8, dtype=np.float32))
    codes = binary_codes(8)
    assert codes.shape == (8, 3)
    # row i read as a binary number (most significant bit first) is i
    assert [int("".join(str(int(b)) for b in row), 2) for row in codes] == list(range(8))
    assert binary_codes(5).shape == (5, 3)


def test_encoder838_shapes_and_range():
    tinyae.manual_seed(0)
    model = Encoder838()
    x = Tensor(one_hot_patterns())
    h = model.encode(x)
    r = model(x)
    assert h.shape == (8, 3) and r.shape == (8, 8)
    assert np.all((h.numpy() > 0) & (h.numpy() < 1)) and np.all((r.numpy() > 0) & (r.numpy() < 1))
    assert model.num_parameters() == 8 * 3 + 3 + 3 * 8 + 8


def test_encoder838_loss_falls_with_gradient_descent():
    tinyae.manual_seed(1)
    model = Encoder838()
    x = Tensor(one_hot_patterns())
    opt = optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(60):
        loss = F.binary_cross_entropy(model(x), x, reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    assert all(b <= a + 1e-6 for a, b in zip(losses, losses[1:]))  # small-lr full-batch GD: monotone


# ------------------------------------------------------------------ dense AE


def test_autoencoder_layout_and_shapes():
    tinyae.manual_seed(0)
    model = Autoencoder(code_size=16, hidden=(64, 32))
    x = Tensor(np.zeros((5, 1, 28, 28), np.float32))
    z = model.encode(x)
    assert z.shape == (5, 16)
    r = model.decode(z)
    assert r.shape == (5, 1, 28, 28)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 64), (64, 32), (32, 16), (16, 32), (32, 64), (64, 784)
    ]  # fmt: skip
    # the code layer is linear: the encoder ends with a Linear, not an activation
    assert isinstance(list(model.encoder)[-1], nn.Linear)


def test_autoencoder_without_hidden_layers_is_linear():
    model = Autoencoder(code_size=4, hidden=())
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 2


def test_autoencoder_rejects_bad_sizes():
    with pytest.raises(ValueError, match="Autoencoder"):
        Autoencoder(code_size=0)


def test_autoencoder_loss_falls(images):
    tinyae.manual_seed(0)
    losses = _train(Autoencoder(code_size=8, hidden=(64,)), images, F.mse_loss, steps=25, lr=3e-3)
    assert losses[-1] < 0.6 * losses[0]


# ------------------------------------------------------------------- conv AE


def test_downsampled_sizes():
    assert downsampled_sizes(28, 3) == [28, 14, 7, 4]
    assert downsampled_sizes(32, 2) == [32, 16, 8]


@pytest.mark.parametrize("channels,code", [((32, 64), 8), ((4,), 2), ((4, 8), None)])
def test_conv_autoencoder_restores_the_image_size(channels, code):
    tinyae.manual_seed(0)
    model = ConvAutoencoder(channels, code)
    x = Tensor(np.zeros((2, 1, 28, 28), np.float32))
    z = model.encode(x)
    assert z.shape == (2, *model.code_shape)
    assert model(x).shape == (2, 1, 28, 28)


def test_conv_autoencoder_default_code_is_8x4x4():
    model = ConvAutoencoder()
    assert model.code_shape == (8, 4, 4)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(convs) == 3 and len(ups) == 3
    assert all(m.stride == (2, 2) for m in convs + ups)


def test_conv_autoencoder_loss_falls(images):
    tinyae.manual_seed(0)
    model = ConvAutoencoder((8, 16), 4)
    losses = _train(model, images[:32], F.binary_cross_entropy, steps=15, lr=5e-3)
    assert losses[-1] < 0.8 * losses[0]


# ----------------------------------------------------------------- denoising


def test_make_noise_kinds_and_levels():
    assert isinstance(make_noise("gaussian"), GaussianNoise)
    assert make_noise("gaussian").sigma == NOISE_KINDS["gaussian"][1]
    assert isinstance(make_noise("salt-pepper", 0.1), SaltAndPepper)
    assert make_noise("masking", 0.3).fraction == 0.3
    assert isinstance(make_noise("masking"), MaskingNoise)


@pytest.mark.parametrize("kind,level", [("gaussian", 1.5), ("masking", -0.1), ("salt-pepper", float("nan"))])
def test_make_noise_rejects_levels_out_of_range(kind, level):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        make_noise(kind, level)


def test_make_noise_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown noise kind"):
        make_noise("speckle")


def test_denoising_autoencoder_shapes():
    model = DenoisingAutoencoder((8, 16))
    x = Tensor(np.zeros((3, 1, 28, 28), np.float32))
    assert model.encode(x).shape == (3, 16, 7, 7)
    assert model(x).shape == (3, 1, 28, 28)


@pytest.mark.parametrize("bottom", [0, 1, 2])
def test_denoising_autoencoder_layers(bottom):
    model = DenoisingAutoencoder((8, 16), bottom=bottom)
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 2 + [(1, 1)] * bottom
    kinds = [type(m).__name__ for m in model.decoder]
    assert kinds == ["ConvTranspose2d", "ReLU", "Conv2d", "ReLU", "ConvTranspose2d", "Sigmoid"]
    x = Tensor(np.zeros((2, 1, 28, 28), np.float32))
    assert model.encode(x).shape == (2, *model.code_shape) == (2, 16, 7, 7)
    assert model(x).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("channels,bottom", [((), 2), ((8, 0), 2), ((8,), -1)])
def test_denoising_autoencoder_rejects_bad_sizes(channels, bottom):
    with pytest.raises(ValueError, match="DenoisingAutoencoder: channel counts must be positive"):
        DenoisingAutoencoder(channels, bottom=bottom)


def test_denoising_autoencoder_loss_falls(images):
    tinyae.manual_seed(0)
    model = DenoisingAutoencoder((8, 16))
    losses = _train(model, images[:32], F.mse_loss, steps=15, lr=5e-3, noise=make_noise("gaussian", 0.5))
    assert losses[-1] < 0.8 * losses[0]


# ------------------------------------------------------------------- metrics


def test_psnr():
    assert psnr(0.01) == pytest.approx(20.0)
    assert psnr(1.0) == pytest.approx(0.0)
    assert psnr(0.0) == math.inf


def test_reconstruction_stats_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.random((6, 1, 4, 4)).astype(np.float32)
    r = rng.uniform(0.05, 0.95, (6, 1, 4, 4)).astype(np.float32)
    stats = ReconstructionStats()
    stats.add(r[:4], x[:4])
    stats.add(r[4:], x[4:])
    x64, r64 = x.astype(np.float64), r.astype(np.float64)
    mse = np.mean((r64 - x64) ** 2)
    bce = np.mean(-(x64 * np.log(r64) + (1 - x64) * np.log(1 - r64)))
    out = stats.summary()
    assert out["test_mse"] == pytest.approx(mse, rel=1e-12)
    assert out["test_bce"] == pytest.approx(bce, rel=1e-9)
    assert out["test_psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)


def test_pca_baseline_matches_a_direct_projection():
    rng = np.random.default_rng(1)
    basis = rng.standard_normal((3, 16))
    train = rng.standard_normal((200, 3)) @ basis + 0.05 * rng.standard_normal((200, 16))
    test = rng.standard_normal((50, 3)) @ basis + 0.05 * rng.standard_normal((50, 16))
    # reference: SVD of the centred data matrix itself (not of its scatter matrix, as the code does)
    mean = train.mean(0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    for k in (1, 3, 8):
        v = vt[:k].T
        expected = np.mean(((test - mean) @ v @ v.T - (test - mean)) ** 2)
        assert pca_reconstruction_mse(train, test, k) == pytest.approx(expected, rel=1e-8)
    # with all directions kept, PCA reconstructs exactly
    assert pca_reconstruction_mse(train, test, 16) == pytest.approx(0.0, abs=1e-20)


def test_pca_baseline_with_fewer_images_than_pixels():
    rng = np.random.default_rng(2)
    train, test = rng.standard_normal((10, 40)), rng.standard_normal((5, 40))
    mean = train.mean(0)
    eigvals, eigvecs = np.linalg.eigh((train - mean).T @ (train - mean))
    v = eigvecs[:, ::-1][:, :3]  # top-3 eigenvectors of the scatter matrix
    expected = np.mean(((test - mean) @ v @ v.T - (test - mean)) ** 2)
    assert pca_reconstruction_mse(train, test, 3) == pytest.approx(expected, rel=1e-8)
