"""What the generative recipes (``vae``, ``conv-vae``, ``gan``, ``dcgan``) share: sampling and scoring.

A generative model is judged by its samples. Each generative recipe implements one method,

    generate(n, rng) -> images (n, C, H, W), float32 in [0, 1]

(decode z ~ N(0, I) for a VAE; G(z) rescaled from [-1, 1] for a GAN), and gets from here:

- ``tinyae sample RUN_DIR``: :func:`write_samples` turns ``generate`` into a PNG grid or a
  ``.npy`` array;
- sample scores (``--score-samples N``, 10,000 by default): N samples from a fixed generator
  are classified by a CNN that tinyae trains once per dataset and caches next to the data
  (:mod:`tinyae.train.scores`), giving the classifier Inception Score, the class histogram
  and the Frechet distance of the classifier's features to the test split's, each beside
  the real data's own value (``real_*``: what a perfect generator would score).

The cache of the classifier: the folder the dataset was read from when it is writable, else
``$TINYAE_CACHE`` (default ``~/.cache/tinyae``).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from tinyae._atomic import atomic_open
from tinyae.train import pictures
from tinyae.train.recipe import Recipe

__all__ = ["GenerativeRecipe", "cache_dirs", "write_samples"]

CACHE_ENV = "TINYAE_CACHE"
SAMPLE_TAG = 2  # eval_rng tag of the scored samples (the same samples at every evaluation)


def cache_dirs(data_root: str | None) -> list[str]:
    """Where the scoring classifier is looked for and cached: the data's folder, then the user cache."""
    user = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "tinyae")
    return list(dict.fromkeys([d for d in (data_root, user) if d]))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class GenerativeRecipe(Recipe):
    """A recipe whose model makes new images: implement :meth:`generate`; scores come with it."""

    generative = True

    @classmethod
    def add_score_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--score-samples",
            type=int,
            default=10_000,
            metavar="N",
            help="samples scored at the end (Inception Score, FID, class histogram against the test "
            "split; 0 = no scores) (default 10000)",
        )

    @classmethod
    def check_score_config(cls, config: dict[str, Any]) -> str | None:
        if config["score_samples"] < 0 or config["score_samples"] == 1:
            return f"--score-samples must be 0 (no scores) or at least 2, got {config['score_samples']}"
        return None

    def generate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` new images (n, C, H, W), float32 in [0, 1], drawing all randomness from ``rng``."""
        raise NotImplementedError

    # ------------------------------------------------------------------- scoring
    def scorer(self) -> Any:
        """The dataset's scoring classifier (trained once and cached when missing)."""
        if getattr(self, "_scorer", None) is None:
            from tinyae.train.scores import get_scorer

            self._scorer = get_scorer(self.data, cache_dirs(self.data.root), log=_log, device=self.device)
        return self._scorer

    def before_training(self) -> None:
        """Train or load the scoring classifier before the first epoch (so epoch times exclude it)."""
        if self.config.get("score_samples", 0) > 0:
            self.scorer()

    def sample_scores(self) -> dict[str, Any]:
        """IS, FID and class histogram of ``score_samples`` samples, with the real test split's values."""
        n = int(self.config.get("score_samples", 0))
        if n <= 0:
            return {}
        scorer = self.scorer()
        images = self.generate(n, self.eval_rng(SAMPLE_TAG))
        return {
            "score_samples": n,
            **scorer.score(images),
            **scorer.reference(),
            "classifier_test_accuracy": scorer.test_accuracy,
        }

    def report(self, final: dict[str, Any]) -> list[str]:
        lines = super().report(final)
        hist = final.get("class_hist")
        if hist:
            lines.append("  class_hist               " + " ".join(f"{100 * h:.1f}%" for h in hist))
        return lines


def write_samples(recipe: GenerativeRecipe, n: int, path: str, seed: int = 0) -> np.ndarray:
    """Write ``n`` samples of a trained recipe to ``path``: a PNG grid, or a float32 array (``.npy``)."""
    images = recipe.generate(n, np.random.default_rng(seed)).astype(np.float32)
    if path.lower().endswith(".npy"):
        with atomic_open(path, "wb") as f:
            np.save(f, images)
    else:
        pictures.save_picture(path, pictures.grid_array(images))
    return images
