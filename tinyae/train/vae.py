"""Recipes ``vae`` and ``conv-vae``: variational autoencoders trained on the negative ELBO.

One training step, on a batch x (N, 1, 28, 28) of pixels in [0, 1] (the model and its
loss are in :mod:`tinyae.models.vae`)::

    mu, logvar = encoder(x)                   each (N, L)
    z = mu + eps * exp(logvar / 2)            eps ~ N(0, I) from tinyae.generator()
    loss = BCE(decoder(z), x) + KL            summed over the batch, as PyTorch's example does
    Adam step                                 (the loss is reported per image: loss / N)

Metrics, in nats per image over the test split: ``test_nelbo`` (one z per image, from a
fixed generator, so every evaluation sees the same noise), its two terms
``test_reconstruction`` and ``test_kl``, and at the end ``test_nll_iwae``: the
importance-weighted bound (Burda et al. 2016) with k = ``--iw-samples`` codes per image,

    -log p(x)  <=  -log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x),   z_i ~ q(z | x),

an upper bound on the negative log-likelihood that tightens as k grows (k = 1 is the
negative ELBO). Plus the sample scores of :mod:`tinyae.train.generative`.

Pictures: ``reconstructions.png`` (test digits above their reconstructions), ``samples.png``
(decoded z ~ N(0, I)), ``interpolation.png`` (decoded points on the line between the codes
of two test digits), ``codes.png`` (the test codes mu coloured by digit; PCA when L > 2) and,
with ``--latent 2``, ``manifold.png`` (a grid of codes decoded: the learned 2-D manifold).
"""

from __future__ import annotations

import argparse
from statistics import NormalDist
from typing import Any

import numpy as np

import tinyae
from tinyae import optim
from tinyae.models.vae import VAE, ConvVAE, VariationalAutoencoder, log_importance_weights, negative_elbo
from tinyae.tensor import Tensor
from tinyae.train import pictures
from tinyae.train.generative import GenerativeRecipe

__all__ = ["ConvVAERecipe", "VAERecipe"]

N_SHOWN = 10  # test images in reconstructions.png and steps of interpolation.png
N_SAMPLES = 100  # images in samples.png
N_CODES = 5000  # test codes in codes.png
MANIFOLD_SIDE = 20  # manifold.png decodes a 20 x 20 grid of codes
EVAL_TAG, IW_TAG, PICTURE_TAG = 0, 1, 3  # eval_rng streams: test ELBO noise, IWAE noise, pictures


class VAERecipe(GenerativeRecipe):
    summary = "variational autoencoder 784-400-L: a probabilistic decoder you can sample"
    description = (
        "The VAE of Kingma & Welling (the architecture of PyTorch's reference example): an encoder "
        "784-400-(mu, logvar) and a decoder L-400-784 to pixel logits, trained with Adam on the negative "
        "ELBO (summed BCE with logits + the analytic KL) with the reparameterisation z = mu + eps * "
        "exp(logvar / 2). Reports the test loss in nats per image, an importance-weighted bound on the test "
        "log-likelihood, and sample scores; --latent 2 adds the picture of the learned 2-D manifold."
    )
    defaults = {"epochs": 10, "batch_size": 128, "lr": 1e-3}
    loss_reduction = "sum"  # the negative ELBO summed over the batch (PyTorch's example)
    pictures_made = ("loss.png", "reconstructions.png", "samples.png", "interpolation.png", "codes.png")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument("--latent", type=int, default=20, help="size L of the code z (default 20)")
        cls.add_network_arguments(parser)
        parser.add_argument(
            "--iw-samples",
            type=int,
            default=100,
            metavar="K",
            help="codes per test image of the importance-weighted log-likelihood bound (test_nll_iwae; "
            "0 = skip it) (default 100)",
        )
        cls.add_score_arguments(parser)

    @classmethod
    def add_network_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--hidden", type=int, default=400, help="width of the hidden layers (default 400)"
        )

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        if config["latent"] < 1:
            return f"--latent must be at least 1, got {config['latent']}"
        if config["hidden"] < 1:
            return f"--hidden must be at least 1, got {config['hidden']}"
        if config["iw_samples"] < 0:
            return f"--iw-samples must be >= 0, got {config['iw_samples']}"
        return cls.check_score_config(config)

    def make_model(self) -> VariationalAutoencoder:
        return VAE(self.config["latent"], self.config["hidden"], self.data.image_shape)

    def build(self) -> None:
        self.model = self.make_model().to(self.device)
        self.optimizer = optim.Adam(self.model.parameters(), lr=self.config["lr"])

    def train_step(self, batch: tuple[Tensor, ...], epoch: int) -> float:
        x, _ = batch
        self.model.train()
        logits, mu, logvar = self.model(x)  # eps drawn from tinyae.generator()
        loss, _, _ = negative_elbo(logits, x, mu, logvar)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item() / len(x)

    # -------------------------------------------------------------- evaluation
    def _eps(self, rng: np.random.Generator, *shape: int) -> Tensor:
        return tinyae.tensor(rng.standard_normal(shape).astype(np.float32), device=self.device)

    def test_elbo(self) -> dict[str, float]:
        """Negative ELBO and its two terms in nats per test image (one z per image, fixed noise)."""
        rng = self.eval_rng(EVAL_TAG)
        total = rec_sum = kl_sum = 0.0
        self.model.eval()
        with tinyae.no_grad():
            for (xb,) in self.batches(self.data.x_test):
                mu, logvar = self.model.encode(xb)
                z = mu + self._eps(rng, *mu.shape) * (0.5 * logvar).exp()
                loss, rec, kl = negative_elbo(self.model.decode(z), xb, mu, logvar)
                total, rec_sum, kl_sum = total + loss.item(), rec_sum + rec.item(), kl_sum + kl.item()
        n = max(len(self.data.x_test), 1)
        return {"test_nelbo": total / n, "test_reconstruction": rec_sum / n, "test_kl": kl_sum / n}

    def test_nll_iwae(self, k: int, batch_size: int = 100) -> float:
        """The importance-weighted bound on -log p(x) with ``k`` codes per image, nats per test image.

        For each image: log w_i for z_i ~ q(z | x), i = 1..k, then log (1/k) sum exp(log w_i) with
        the max subtracted first (log-sum-exp) so that no exp overflows.
        """
        rng = self.eval_rng(IW_TAG)
        nll = 0.0
        self.model.eval()
        with tinyae.no_grad():
            for (xb,) in self.batches(self.data.x_test, batch_size=batch_size):
                mu, logvar = self.model.encode(xb)
                n, latent = mu.shape
                mu_np, logvar_np = mu.numpy(), logvar.numpy()  # (n, L)
                eps = rng.standard_normal((k, n, latent)).astype(np.float32)
                z = mu_np[None] + eps * np.exp(0.5 * logvar_np)[None]  # (k, n, L)
                logits = self.model.decode(tinyae.tensor(z.reshape(k * n, latent), device=self.device))
                logits_np = logits.numpy().reshape(k, n, -1)  # (k, n, P)
                x_np = xb.numpy().reshape(1, n, -1)
                log_w = log_importance_weights(logits_np, x_np, z, mu_np[None], logvar_np[None])  # (k, n)
                top = log_w.max(axis=0)
                log_px = top + np.log(np.mean(np.exp(log_w - top), axis=0))  # (n,)
                nll -= float(log_px.sum())
        return nll / max(len(self.data.x_test), 1)

    def evaluate(self, epoch: int) -> dict[str, Any]:
        m = self.test_elbo()
        return {"test_loss": m["test_nelbo"], **m}

    def final_metrics(self) -> dict[str, Any]:
        final: dict[str, Any] = self.test_elbo()
        k = int(self.config["iw_samples"])
        if k > 0:
            final.update({"test_nll_iwae": self.test_nll_iwae(k), "iw_samples": k})
        final.update(self.sample_scores())
        return final

    def generate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        self.model.eval()
        out = []
        with tinyae.no_grad():
            for start in range(0, n, 1000):
                out.append(self.model.sample(min(1000, n - start), rng).numpy())
        return np.concatenate(out) if out else np.zeros((0, *self.data.image_shape), np.float32)

    # ---------------------------------------------------------------- pictures
    def codes(self, x: np.ndarray) -> np.ndarray:
        """The means mu (N, L) of q(z | x) for images ``x``."""
        self.model.eval()
        with tinyae.no_grad():
            return np.concatenate([self.model.encode(xb)[0].numpy() for (xb,) in self.batches(x)])

    def decode_images(self, z: np.ndarray) -> np.ndarray:
        """sigmoid(decoder(z)): the images (N, C, H, W) in (0, 1) of codes ``z`` (N, L)."""
        self.model.eval()
        with tinyae.no_grad():
            t = tinyae.tensor(np.asarray(z, np.float32), device=self.device)
            return self.model.decode(t).sigmoid().numpy()

    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        data, name = self.data, f"{self.name} on {self.data.name}"
        x = data.x_test[:N_SHOWN]
        z = self.codes(x)
        rows = [("original", x), ("decoded mu", self.decode_images(z))]
        title = f"{name}: test images and the decoding of their mean codes"
        written = [pictures.image_rows(out_dir, "reconstructions.png", rows, title)]

        samples = self.generate(N_SAMPLES, self.eval_rng(PICTURE_TAG))
        written.append(pictures.sample_grid(out_dir, "samples.png", samples, ncols=10))

        # the line from the first test image's code to that of the first image of another class
        b = int(np.argmax(data.y_test[:N_SHOWN] != data.y_test[0]))
        t = np.linspace(0.0, 1.0, N_SHOWN)[:, None]
        line = (1 - t) * z[0] + t * z[b]
        title = f"{name}: decoded codes on the line between two test images' codes"
        written.append(
            pictures.image_rows(out_dir, "interpolation.png", [("z", self.decode_images(line))], title)
        )

        codes = self.codes(data.x_test[:N_CODES])
        title = f"{name}: mean codes of {len(codes)} test images" + (
            " (PCA to 2-D)" if codes.shape[1] > 2 else ""
        )
        classes = [c.split(" - ")[0] for c in data.classes]
        written.append(pictures.code_scatter(out_dir, codes, data.y_test[:N_CODES], classes, title=title))
        if self.config["latent"] == 2:
            # Codes at evenly spaced quantiles of N(0, 1): equal prior mass between neighbours.
            q = [NormalDist().inv_cdf(p) for p in np.linspace(0.05, 0.95, MANIFOLD_SIDE)]
            grid = np.array([[z1, z2] for z2 in q[::-1] for z1 in q], np.float32)  # top row: largest z2
            title = f"{name}: decoded {MANIFOLD_SIDE} x {MANIFOLD_SIDE} grid of codes (quantiles of N(0, 1))"
            written.append(pictures.manifold(out_dir, self.decode_images(grid), q, title=title))
        return written


class ConvVAERecipe(VAERecipe):
    summary = "convolutional VAE: strided-conv encoder, transposed-conv decoder, same loss"
    description = (
        "The VAE with a convolutional encoder (two stride-2 4x4 convolutions, 32 and 64 channels, then a "
        "dense layer of 256) and the mirrored decoder (dense layers to 64 x 7 x 7, two stride-2 transposed "
        "convolutions to pixel logits); the same loss, optimizer, metrics and pictures as vae."
    )

    @classmethod
    def add_network_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--channels",
            type=int,
            nargs=2,
            default=[32, 64],
            help="channels of the two convolutions (default 32 64)",
        )
        parser.add_argument("--hidden", type=int, default=256, help="width of the dense layer (default 256)")

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        if min(config["channels"]) < 1:
            return f"--channels must be at least 1, got {config['channels']}"
        return super().check_config(config)

    def make_model(self) -> VariationalAutoencoder:
        shape = self.data.image_shape
        if shape[1] % 4 or shape[2] % 4:
            raise ValueError(f"conv-vae: image sides must be multiples of 4, got {shape}")
        return ConvVAE(self.config["latent"], tuple(self.config["channels"]), self.config["hidden"], shape)
