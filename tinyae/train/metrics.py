"""Metrics of reconstructions and classifiers, and the ``metrics.json`` file.

Notation: ``x`` the clean images and ``r`` the reconstructions, both (N, 1, H, W)
with values in [0, 1]; P = H * W pixels per image. All metrics are means *per pixel*.

    MSE  = mean (r - x)^2
    BCE  = mean -[x log r + (1 - x) log(1 - r)]     (r clipped to [eps, 1 - eps], as PyTorch clamps the log)
    PSNR = 10 log10(MAX^2 / MSE) dB, MAX = 1         (computed from the mean MSE over the whole split)

PCA baseline for an autoencoder with a code of size k: centre the training images
(mean m), take the top k right singular vectors V_k (P, k) of the centred
training matrix, and reconstruct a test image as m + (x - m) V_k V_k^T. This is the
best *linear* k-dimensional code in the MSE sense, so a nonlinear autoencoder
should beat it.

``metrics.json`` (written atomically after every epoch)::

    {"model": "ae", "dataset": "mnist", "config": {...},
     "epochs": [{"epoch": 1, "train_loss": ..., "test_loss": ..., "seconds": ..., <model metrics>}, ...],
     "final": {"test_mse": ..., "test_bce": ..., "test_psnr": ..., ...}}   (null until the run ends)
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from tinyae._atomic import atomic_write_text

__all__ = ["METRICS", "ReconstructionStats", "jsonable", "pca_reconstruction_mse", "psnr", "read_metrics",
           "write_metrics"]  # fmt: skip

METRICS = "metrics.json"
BCE_EPS = 1e-7


def psnr(mse: float, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error (inf when mse is 0)."""
    return math.inf if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


class ReconstructionStats:
    """Accumulates per-pixel MSE and BCE over batches; NumPy arrays (N, ...) in [0, 1]."""

    def __init__(self) -> None:
        self.sq = 0.0
        self.bce = 0.0
        self.pixels = 0

    def add(self, recon: np.ndarray, target: np.ndarray) -> None:
        r = recon.astype(np.float64)
        x = target.astype(np.float64)
        self.sq += float(np.sum((r - x) ** 2))
        rc = np.clip(r, BCE_EPS, 1.0 - BCE_EPS)
        self.bce += float(-np.sum(x * np.log(rc) + (1.0 - x) * np.log1p(-rc)))
        self.pixels += x.size

    @property
    def mse(self) -> float:
        return self.sq / max(self.pixels, 1)

    def summary(self, prefix: str = "test_") -> dict[str, float]:
        bce = self.bce / max(self.pixels, 1)
        return {f"{prefix}mse": self.mse, f"{prefix}bce": bce, f"{prefix}psnr": psnr(self.mse)}


def pca_reconstruction_mse(x_train: np.ndarray, x_test: np.ndarray, k: int) -> float:
    """Per-pixel test MSE of the best rank-``k`` linear code fitted on ``x_train`` (NumPy SVD)."""
    a = x_train.reshape(len(x_train), -1).astype(np.float64)  # (N, P)
    b = x_test.reshape(len(x_test), -1).astype(np.float64)  # (M, P)
    mean = a.mean(axis=0)
    centred = a - mean
    if len(a) > a.shape[1]:
        # The right singular vectors of the centred data are the eigenvectors of its
        # scatter matrix; decomposing the (P, P) scatter is cheaper than the (N, P) data for N >> P.
        _, _, vt = np.linalg.svd(centred.T @ centred, hermitian=True)
    else:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)  # few images: (N, P) is the small one
    v = vt[:k].T  # (P, k), top-k principal directions
    bc = b - mean
    recon = bc @ v @ v.T  # (M, P)
    return float(np.mean((recon - bc) ** 2))


def jsonable(value: Any) -> Any:
    """JSON-ready copy: NumPy scalars -> Python numbers, non-finite floats -> strings JSON can hold."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return value


def write_metrics(run_dir: str, metrics: dict[str, Any]) -> str:
    """Write ``run_dir/metrics.json`` atomically (strict JSON: inf/nan become strings)."""
    path = os.path.join(run_dir, METRICS)
    atomic_write_text(path, json.dumps(jsonable(metrics), indent=2) + "\n")
    return path


def read_metrics(run_dir: str) -> dict[str, Any]:
    with open(os.path.join(run_dir, METRICS), encoding="utf-8") as f:
        return json.load(f)
