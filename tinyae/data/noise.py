"""Corruptions for the denoising autoencoder, as small composable transforms.

A denoising autoencoder sees a corrupted input ``x~ = noise(x)`` and is trained
to reconstruct the clean ``x`` (Vincent et al., 2008). Each transform here is a
callable ``noise(x, rng) -> new array`` that

- never modifies ``x`` in place (the clean batch is still the target),
- keeps ``x``'s dtype and shape,
- works on NumPy and CuPy arrays alike (the random numbers are drawn by the
  array's own module, so a GPU batch stays on the GPU),
- takes its randomness from ``rng``: a ``numpy.random.Generator``, an int seed,
  or None (fresh randomness). Pass the same seeded generator for reproducible runs.

Example::

    corrupt = Compose([GaussianNoise(0.1), MaskingNoise(0.25)])
    noisy = corrupt(batch, rng)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tinyae.backend import get_array_module

__all__ = ["Compose", "GaussianNoise", "MaskingNoise", "Noise", "SaltAndPepper", "make_rng"]

RngLike = Any  # numpy.random.Generator | cupy.random.Generator | int | None


def make_rng(rng: RngLike, x: Any) -> Any:
    """A random generator of the same library as ``x`` (NumPy or CuPy) from ``rng``."""
    xp = get_array_module(x)
    if xp is np:
        return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if rng is not None and type(rng).__module__.startswith("cupy"):
        return rng
    # A NumPy generator or seed drives a CuPy generator: draw its seed from the
    # NumPy one, so a seeded run stays reproducible on the GPU too.
    # (np.random.default_rng returns a Generator unchanged.)
    seed = int(np.random.default_rng(rng).integers(2**63))
    return xp.random.default_rng(seed)


def _check_probability(value: float, name: str, owner: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{owner}: {name} must be in [0, 1], got {value}")
    return value


class Noise:
    """Base class: unwraps a Tensor, checks the dtype, makes the generator, calls ``apply``."""

    def __call__(self, x: Any, rng: RngLike = None) -> Any:
        tensor_type = None
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"{type(self).__name__}: expected an array or Tensor, got {type(x).__name__}")
        if hasattr(x, "data") and hasattr(x.data, "dtype"):  # a Tensor: corrupt its array
            tensor_type, x = type(x), x.data
        if x.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__}: expected floating-point images in [0, 1], got {x.dtype}")
        out = self.apply(x, make_rng(rng, x))
        return out if tensor_type is None else tensor_type(out)

    def apply(self, x: Any, gen: Any) -> Any:
        raise NotImplementedError


class GaussianNoise(Noise):
    """Add ``N(0, sigma^2)`` noise to every pixel, then clip to [0, 1]."""

    def __init__(self, sigma: float) -> None:
        sigma = float(sigma)
        if not sigma >= 0.0:  # written this way round so that NaN is rejected too
            raise ValueError(f"GaussianNoise: sigma must be >= 0, got {sigma}")
        self.sigma = sigma

    def apply(self, x: Any, gen: Any) -> Any:
        xp = get_array_module(x)
        noise = gen.standard_normal(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
        return xp.clip(x + self.sigma * noise, 0.0, 1.0).astype(x.dtype, copy=False)

    def __repr__(self) -> str:
        return f"GaussianNoise(sigma={self.sigma})"


class SaltAndPepper(Noise):
    """Replace each pixel with probability ``p`` by 0 or 1 (each with probability 1/2)."""

    def __init__(self, p: float) -> None:
        self.p = _check_probability(p, "p", "SaltAndPepper")

    def apply(self, x: Any, gen: Any) -> Any:
        xp = get_array_module(x)
        hit = gen.random(x.shape) < self.p
        salt = gen.random(x.shape) < 0.5  # white (1) when True, black (0) otherwise
        return xp.where(hit, salt.astype(x.dtype), x)

    def __repr__(self) -> str:
        return f"SaltAndPepper(p={self.p})"


class MaskingNoise(Noise):
    """Set each pixel to 0 with probability ``fraction`` (Vincent et al.'s masking noise).

    Each pixel is dropped independently, so on average ``fraction`` of them are zeroed.
    """

    def __init__(self, fraction: float) -> None:
        self.fraction = _check_probability(fraction, "fraction", "MaskingNoise")

    def apply(self, x: Any, gen: Any) -> Any:
        keep = gen.random(x.shape) >= self.fraction
        return x * keep.astype(x.dtype)

    def __repr__(self) -> str:
        return f"MaskingNoise(fraction={self.fraction})"


class Compose(Noise):
    """Apply several corruptions in order, sharing one random generator."""

    def __init__(self, transforms: Sequence[Callable[..., Any]]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"Compose: every transform must be callable, got {t!r}")

    def apply(self, x: Any, gen: Any) -> Any:
        # One generator for the whole chain, so a single seed fixes every step.
        for t in self.transforms:
            x = t(x, gen)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"
