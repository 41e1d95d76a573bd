"""The variational autoencoder (Kingma & Welling 2014): a probabilistic encoder and decoder.

The generative model: a code z ~ p(z) = N(0, I) of L numbers, and a *probabilistic
decoder* p(x | z) = Bernoulli(sigmoid(g(z))) over the P pixels. The encoder q(z | x) =
N(mu(x), diag exp(logvar(x))) guesses which codes could have made x. Training maximises
the evidence lower bound (ELBO) on log p(x); its negative is the loss, per image::

    -ELBO(x) = E_q[-log p(x | z)]   +   KL(q(z | x) || p(z))
             = BCE(g(z), x) summed over pixels   +   -1/2 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j))
               (z = mu + eps * exp(logvar / 2), eps ~ N(0, I): the reparameterisation)

The reparameterisation moves the randomness into eps, so z is a differentiable function
of mu and logvar and backward reaches the encoder. The KL term pulls every q(z | x)
towards N(0, I), which is what makes decoding a random z ~ N(0, I) give a plausible image.

Shapes (N batch, L latent size, P = C * H * W pixels)::

    x (N, C, H, W) -> encoder -> (N, 2L) = [mu | logvar] -> z (N, L) -> decoder -> logits (N, C, H, W)

``VAE`` is the 784-400-20 network of PyTorch's reference example; ``ConvVAE`` puts strided
convolutions in the encoder and transposed convolutions in the decoder. The decoder ends
in *logits*: the loss applies the sigmoid inside ``binary_cross_entropy_with_logits``,
which stays finite where a separate sigmoid would round to 0 or 1.

The builders take ``nn`` (default :mod:`tinyae.nn`), so the benchmarks build the very
same networks in PyTorch (``vae_encoder(nn=torch.nn)``); ``negative_elbo`` and
``reparameterize`` use only Tensor methods that both engines share.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np

import tinyae
import tinyae.nn as tnn
import tinyae.nn.functional as TF
from tinyae.tensor import Tensor

__all__ = [
    "VAE",
    "ConvVAE",
    "VariationalAutoencoder",
    "conv_vae_decoder",
    "conv_vae_encoder",
    "log_importance_weights",
    "negative_elbo",
    "reparameterize",
    "vae_decoder",
    "vae_encoder",
]

IMAGE = (1, 28, 28)


def _pixels(image_shape: tuple[int, ...]) -> int:
    return int(np.prod(image_shape))


# ------------------------------------------------------------------------------ networks


def vae_encoder(
    latent: int = 20, hidden: int = 400, image_shape: tuple[int, ...] = IMAGE, nn: ModuleType = tnn
) -> Any:
    """x (N, C, H, W) -> Flatten -> Linear P-hidden -> ReLU -> Linear hidden-2L -> [mu | logvar] (N, 2L).

    The last Linear is PyTorch example's two heads (fc21 for mu, fc22 for logvar) side by side.
    """
    return nn.Sequential(
        nn.Flatten(), nn.Linear(_pixels(image_shape), hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent)
    )


def vae_decoder(
    latent: int = 20, hidden: int = 400, image_shape: tuple[int, ...] = IMAGE, nn: ModuleType = tnn
) -> Any:
    """z (N, L) -> Linear L-hidden -> ReLU -> Linear hidden-P -> logits (N, C, H, W)."""
    return nn.Sequential(
        nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, _pixels(image_shape)),
        nn.Unflatten(1, tuple(image_shape)),
    )  # fmt: skip


def conv_vae_encoder(latent: int = 20, channels: tuple[int, int] = (32, 64), hidden: int = 256,
                     image_shape: tuple[int, ...] = IMAGE, nn: ModuleType = tnn) -> Any:  # fmt: skip
    """Two stride-2 convolutions (k4 p1 halves the size exactly), then a dense layer to [mu | logvar].

    x (N, C, 28, 28) -> Conv(C, c1, 4, s2, p1) ReLU -> (N, c1, 14, 14)
                     -> Conv(c1, c2, 4, s2, p1) ReLU -> (N, c2, 7, 7) -> Flatten
                     -> Linear(c2*7*7, hidden) ReLU -> Linear(hidden, 2L)
    """
    c, h, w = image_shape
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(c, c1, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent),
    )  # fmt: skip


def conv_vae_decoder(latent: int = 20, channels: tuple[int, int] = (32, 64), hidden: int = 256,
                     image_shape: tuple[int, ...] = IMAGE, nn: ModuleType = tnn) -> Any:  # fmt: skip
    """The encoder mirrored: dense layers up to (c2, 7, 7), two stride-2 transposed convolutions to logits.

    z (N, L) -> Linear(L, hidden) ReLU -> Linear(hidden, c2*7*7) ReLU -> Unflatten (N, c2, 7, 7)
             -> ConvT(c2, c1, 4, s2, p1) ReLU -> (N, c1, 14, 14)
             -> ConvT(c1, C, 4, s2, p1) -> logits (N, C, 28, 28)
    """
    c, h, w = image_shape
    c1, c2 = channels
    return nn.Sequential(
        nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, c2 * (h // 4) * (w // 4)), nn.ReLU(),
        nn.Unflatten(1, (c2, h // 4, w // 4)),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),
    )  # fmt: skip


# ---------------------------------------------------------------------------- the math


def reparameterize(mu: Any, logvar: Any, eps: Any) -> Any:
    """z = mu + eps * sigma with sigma = exp(logvar / 2): differentiable in mu and logvar."""
    return mu + eps * (0.5 * logvar).exp()


def negative_elbo(logits: Any, x: Any, mu: Any, logvar: Any, F: ModuleType = TF) -> tuple[Any, Any, Any]:
    """(-ELBO, reconstruction term, KL term), each summed over the batch (divide by N for per image).

    reconstruction = sum BCE(sigmoid(logits), x) = -log p(x | z) for the Bernoulli decoder
    KL             = -1/2 sum (1 + logvar - mu^2 - exp(logvar))   (closed form, Kingma & Welling app. B)
    ``F`` is the functional module of the engine (tinyae's or torch's).
    """
    reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * (1 + logvar - mu * mu - logvar.exp()).sum()
    return reconstruction + kl, reconstruction, kl


def log_importance_weights(logits: np.ndarray, x: np.ndarray, z: np.ndarray, mu: np.ndarray,
                           logvar: np.ndarray) -> np.ndarray:  # fmt: skip
    """log w = log p(x | z) + log p(z) - log q(z | x) per sample, float64 NumPy (the IWAE bound's terms).

    Shapes: logits and x (..., P) flattened pixels; z, mu, logvar (..., L). With k samples z_i
    of one image, log p(x) >= log (1/k) sum_i w_i (Burda et al. 2016), tighter as k grows;
    k = 1 is the ELBO.
    """
    logits, x = logits.astype(np.float64), x.astype(np.float64)
    z, mu, logvar = z.astype(np.float64), mu.astype(np.float64), logvar.astype(np.float64)
    # log Bernoulli(x | sigmoid(l)) = x l - softplus(l), summed over pixels (stable for any l)
    log_px_z = np.sum(x * logits - np.logaddexp(0.0, logits), axis=-1)
    log_2pi = math.log(2.0 * math.pi)
    log_pz = -0.5 * np.sum(z * z + log_2pi, axis=-1)
    log_qz_x = -0.5 * np.sum((z - mu) ** 2 * np.exp(-logvar) + logvar + log_2pi, axis=-1)
    return log_px_z + log_pz - log_qz_x


# ------------------------------------------------------------------------------ modules


class VariationalAutoencoder(tnn.Module):
    """A VAE from any ``encoder`` (x -> [mu | logvar], (N, 2L)) and ``decoder`` (z -> pixel logits).

    ``model(x)`` -> (logits, mu, logvar) with fresh noise from ``tinyae.generator()``;
    ``model(x, eps)`` uses the given eps (N, L). ``sample(n)`` decodes n codes z ~ N(0, I).
    """

    def __init__(
        self, encoder: tnn.Module, decoder: tnn.Module, latent: int, image_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.latent = latent
        self.image_shape = tuple(image_shape)
        self.encoder = encoder
        self.decoder = decoder

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """q(z | x): (mu, logvar), each (N, L)."""
        h = self.encoder(x)  # (N, 2L)
        return h[:, : self.latent], h[:, self.latent :]

    def decode(self, z: Tensor) -> Tensor:
        """The decoder's pixel logits (N, C, H, W); sigmoid gives the Bernoulli means (the image)."""
        return self.decoder(z)

    def forward(self, x: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        if eps is None:
            eps = tinyae.randn(*mu.shape, device=mu.device)
        return self.decode(reparameterize(mu, logvar, eps)), mu, logvar

    def sample(self, n: int, rng: np.random.Generator | None = None) -> Tensor:
        """n images (n, C, H, W) in (0, 1): decoded z ~ N(0, I) (from ``rng``, else the global generator)."""
        rng = rng if rng is not None else tinyae.generator()
        z = rng.standard_normal((n, self.latent)).astype(np.float32)
        device = next(iter(self.parameters())).device
        return self.decode(tinyae.tensor(z, device=device)).sigmoid()


class VAE(VariationalAutoencoder):
    """The dense VAE P-hidden-L (784-400-20 by default, as PyTorch's reference example)."""

    def __init__(self, latent: int = 20, hidden: int = 400, image_shape: tuple[int, ...] = IMAGE) -> None:
        if latent < 1 or hidden < 1:
            raise ValueError(f"VAE: latent and hidden must be >= 1, got latent={latent}, hidden={hidden}")
        super().__init__(
            vae_encoder(latent, hidden, image_shape),
            vae_decoder(latent, hidden, image_shape),
            latent,
            image_shape,
        )


class ConvVAE(VariationalAutoencoder):
    """The same VAE with a convolutional encoder and a transposed-convolution decoder."""

    def __init__(self, latent: int = 20, channels: tuple[int, int] = (32, 64), hidden: int = 256,
                 image_shape: tuple[int, ...] = IMAGE) -> None:  # fmt: skip
        channels = tuple(channels)
        if latent < 1 or hidden < 1 or len(channels) != 2 or min(channels) < 1:
            raise ValueError(
                f"ConvVAE: latent, hidden and the two channel counts must be >= 1, got latent={latent}, "
                f"channels={channels}, hidden={hidden}"
            )
        if image_shape[1] % 4 or image_shape[2] % 4:
            raise ValueError(
                f"ConvVAE: image height and width must be multiples of 4, got {tuple(image_shape)}"
            )
        encoder = conv_vae_encoder(latent, channels, hidden, image_shape)
        super().__init__(
            encoder, conv_vae_decoder(latent, channels, hidden, image_shape), latent, image_shape
        )
