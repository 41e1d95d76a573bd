"""Recipes ``ae``, ``conv-ae`` and ``denoise``: autoencoders of images, trained with Adam.

All three share one training step, with x the clean batch (N, 1, 28, 28)::

    x~ = corrupt(x)          identity for ae and conv-ae; the chosen noise for denoise
    r  = model(x~)           the reconstruction, in (0, 1)
    loss(r, x)               MSE or BCE, averaged over pixels (--loss)

and the same test metrics (per pixel, on the whole test split; see
:mod:`tinyae.train.metrics`): ``test_mse``, ``test_bce``, ``test_psnr``. ``ae`` adds the
PCA baseline with the same code size (``pca_test_mse``); ``denoise`` reports the
PSNR of the noisy inputs and of the denoised outputs against the clean images
(``test_psnr_noisy``, ``test_psnr_denoised``; the test noise is the same at every
evaluation: it comes from :meth:`Recipe.eval_rng`).

Pictures: ``reconstructions.png`` (test originals above their reconstructions),
``codes.png`` (test codes coloured by label, PCA to 2-D), ``loss.png``; ``denoise``
adds ``denoising.png`` (noisy / denoised / clean).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import tinyae
import tinyae.nn.functional as F
from tinyae import optim
from tinyae.models.autoencoder import Autoencoder
from tinyae.models.conv_ae import ConvAutoencoder
from tinyae.models.denoise import NOISE_KINDS, DenoisingAutoencoder, make_noise
from tinyae.optim.lr_scheduler import cosine_lr
from tinyae.tensor import Tensor
from tinyae.train import pictures
from tinyae.train.metrics import ReconstructionStats, pca_reconstruction_mse, psnr
from tinyae.train.recipe import Recipe

__all__ = ["AutoencoderRecipe", "ConvAutoencoderRecipe", "DenoiseRecipe", "ImageAutoencoderRecipe"]

LOSSES = ("mse", "bce")
N_SHOWN = 10  # images per row in the pictures
N_CODES = 2000  # test images in the code scatter plot


class ImageAutoencoderRecipe(Recipe):
    """What ae, conv-ae and denoise share; subclasses define ``make_model`` (and ``corrupt``)."""

    pictures_made = ("loss.png", "reconstructions.png", "codes.png")
    default_loss = "mse"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--loss",
            choices=LOSSES,
            default=cls.default_loss,
            help=f"reconstruction loss, averaged over pixels (default {cls.default_loss})",
        )

    def make_model(self) -> Any:
        raise NotImplementedError

    def build(self) -> None:
        self.model = self.make_model().to(self.device)
        self.optimizer = optim.Adam(self.model.parameters(), lr=self.config["lr"])

    def corrupt(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        """The network's input for clean ``x``; identity unless the recipe denoises."""
        return x

    def loss_fn(self, r: Tensor, x: Tensor) -> Tensor:
        if self.config["loss"] == "bce":
            return F.binary_cross_entropy(r, x)
        return F.mse_loss(r, x)

    def train_step(self, batch: tuple[Tensor, ...], epoch: int) -> float:
        x, _ = batch
        self.model.train()
        r = self.model(self.corrupt(x, tinyae.generator()))
        loss = self.loss_fn(r, x)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    # -------------------------------------------------------------- evaluation
    def reconstruct(self, x: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, ...]:
        """(network input, reconstruction, code) as NumPy arrays for images ``x``, in eval mode."""
        self.model.eval()
        inputs, recons, codes = [], [], []
        with tinyae.no_grad():
            for (xb,) in self.batches(x):
                xin = self.corrupt(xb, rng) if rng is not None else xb
                z = self.model.encode(xin)
                inputs.append(xin.numpy())
                codes.append(z.numpy())
                recons.append(self.model.decode(z).numpy())
        return np.concatenate(inputs), np.concatenate(recons), np.concatenate(codes)

    def test_metrics(self) -> dict[str, Any]:
        """Per-pixel MSE, BCE and PSNR of the test reconstructions (streamed, batch by batch)."""
        stats = ReconstructionStats()
        self.model.eval()
        with tinyae.no_grad():
            for (xb,) in self.batches(self.data.x_test):
                stats.add(self.model(xb).numpy(), xb.numpy())
        return stats.summary()

    def evaluate(self, epoch: int) -> dict[str, Any]:
        m = self.test_metrics()
        return {"test_loss": m[f"test_{self.config['loss']}"], **m}

    def final_metrics(self) -> dict[str, Any]:
        return self.test_metrics()

    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        x = self.data.x_test[:N_SHOWN]
        _, r, _ = self.reconstruct(x)
        title = f"{self.name} on {self.data.name}: test images (top) and their reconstructions (bottom)"
        written = [
            pictures.image_rows(out_dir, "reconstructions.png", [("original", x), ("reconstr.", r)], title)
        ]
        _, _, z = self.reconstruct(self.data.x_test[:N_CODES])
        written.append(
            pictures.code_scatter(
                out_dir,
                z.reshape(len(z), -1),
                self.data.y_test[:N_CODES],
                _short_classes(self.data.classes),
                title=f"{self.name}: {int(np.prod(z.shape[1:]))}-D codes of {len(z)} test images "
                + ("(PCA to 2-D)" if np.prod(z.shape[1:]) > 2 else ""),
            )
        )
        return written


class AutoencoderRecipe(ImageAutoencoderRecipe):
    summary = "dense autoencoder r = g(f(x)); test MSE compared with PCA of the same code size"
    description = (
        "A dense autoencoder 784-256-CODE-256-784 (ReLU hidden layers, linear code, sigmoid output) "
        "trained with Adam on the reconstruction loss. The evaluation also fits PCA with the same code "
        "size on the training images (NumPy SVD) and reports its test MSE beside the autoencoder's."
    )
    defaults = {"epochs": 10, "batch_size": 128, "lr": 1e-3}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--code-size", type=int, default=32, help="size of the code z = f(x) (default 32)"
        )
        parser.add_argument(
            "--hidden",
            type=int,
            nargs="*",
            default=[256],
            help="widths of the hidden layers between image and code (default 256; none for a linear AE)",
        )
        super().add_arguments(parser)

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        if config["code_size"] < 1:
            return f"--code-size must be at least 1, got {config['code_size']}"
        if any(h < 1 for h in config["hidden"]):
            return f"--hidden widths must be at least 1, got {config['hidden']}"
        return None

    def make_model(self) -> Autoencoder:
        return Autoencoder(self.config["code_size"], self.config["hidden"], self.data.image_shape)

    def final_metrics(self) -> dict[str, Any]:
        final = self.test_metrics()
        k = self.config["code_size"]
        pca = pca_reconstruction_mse(self.data.x_train, self.data.x_test, k)
        final.update({"pca_code_size": k, "pca_test_mse": pca, "pca_test_psnr": psnr(pca)})
        final["beats_pca"] = final["test_mse"] < pca
        return final


class ConvAutoencoderRecipe(ImageAutoencoderRecipe):
    summary = "convolutional autoencoder: strided convolutions down, transposed convolutions up"
    description = (
        "Conv2d(1,16,3,s2,p1) ReLU, Conv2d(16,32,3,s2,p1) ReLU, Conv2d(32,CODE,3,s2,p1) to a CODE x 4 x 4 "
        "code, then three ConvTranspose2d layers back to 28 x 28 with a sigmoid; trained with Adam on "
        "per-pixel BCE."
    )
    defaults = {"epochs": 10, "batch_size": 128, "lr": 2e-3}
    default_loss = "bce"

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--channels",
            type=int,
            nargs="+",
            default=[16, 32],
            help="channels of the conv layers (default 16 32)",
        )
        parser.add_argument(
            "--code-channels",
            type=int,
            default=8,
            help="channels of the code maps (default 8: an 8x4x4 code)",
        )
        super().add_arguments(parser)

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        if any(c < 1 for c in config["channels"]) or config["code_channels"] < 1:
            return f"--channels and --code-channels must be at least 1, got {config['channels']}, " + str(
                config["code_channels"]
            )
        return None

    def make_model(self) -> ConvAutoencoder:
        return ConvAutoencoder(self.config["channels"], self.config["code_channels"], self.data.image_shape)


class DenoiseRecipe(ImageAutoencoderRecipe):
    summary = (
        "denoising autoencoder: reconstruct clean images from corrupted ones (gaussian, salt-pepper, masking)"
    )
    description = (
        "A convolutional autoencoder (stride-2 convs down, two stride-1 convs at the bottom, transposed "
        "convs up, each followed by a stride-1 conv) trained on corrupted inputs to reproduce the clean "
        "image; fresh noise at every step. BCE by default: with a sigmoid output its gradient (r - x) "
        "never vanishes, where MSE's can stall the network at an all-black output. Adam with the "
        "learning rate on a cosine from --lr to 0 over the epochs. Reports the PSNR of the noisy test "
        "inputs and of the denoised outputs against the clean images."
    )
    defaults = {"epochs": 24, "batch_size": 128, "lr": 2e-3}
    default_loss = "bce"
    pictures_made = ("loss.png", "reconstructions.png", "codes.png", "denoising.png")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--noise", choices=list(NOISE_KINDS), default="gaussian", help="the corruption (default gaussian)"
        )
        levels = ", ".join(f"{k} {v[1]:g}" for k, v in NOISE_KINDS.items())
        parser.add_argument(
            "--noise-level",
            type=float,
            default=None,
            help=f"in [0, 1]: sigma for gaussian, the pixel probability for salt-pepper and masking "
            f"(default {levels})",
        )
        parser.add_argument(
            "--channels",
            type=int,
            nargs="+",
            default=[32, 64],
            help="channels of the conv layers (default 32 64)",
        )
        super().add_arguments(parser)

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        try:
            make_noise(config["noise"], config["noise_level"])
        except ValueError as exc:
            return f"--noise-level: {str(exc).removeprefix('make_noise: ')}"
        if any(c < 1 for c in config["channels"]):
            return f"--channels must be at least 1, got {config['channels']}"
        return None

    def build(self) -> None:
        self.noise = make_noise(self.config["noise"], self.config["noise_level"])
        super().build()

    def make_model(self) -> DenoisingAutoencoder:
        return DenoisingAutoencoder(self.config["channels"], self.data.image_shape)

    def train_loader(self, epoch: int) -> Any:
        # the cosine schedule, a pure function of the epoch (nothing to save for --resume)
        lr = cosine_lr(self.config["lr"], epoch, int(self.config["epochs"]))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return super().train_loader(epoch)

    def corrupt(self, x: Tensor, rng: np.random.Generator) -> Tensor:
        return Tensor(self.noise(x.data, rng))

    def test_metrics(self) -> dict[str, Any]:
        """Metrics of the denoised outputs against the clean images, plus the noisy inputs' PSNR.

        The test noise is the same at every call (``eval_rng``), so epochs and runs compare fairly.
        """
        rng = self.eval_rng()
        denoised, noisy = ReconstructionStats(), ReconstructionStats()
        self.model.eval()
        with tinyae.no_grad():
            for (xb,) in self.batches(self.data.x_test):
                xn = self.corrupt(xb, rng)
                clean = xb.numpy()
                denoised.add(self.model(xn).numpy(), clean)
                noisy.add(xn.numpy(), clean)
        out = denoised.summary()
        out["test_psnr_noisy"] = psnr(noisy.mse)
        out["test_psnr_denoised"] = out["test_psnr"]
        out["psnr_gain_db"] = out["test_psnr_denoised"] - out["test_psnr_noisy"]
        return out

    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        written = super().pictures(out_dir, history)
        x = self.data.x_test[:N_SHOWN]
        noisy, denoised, _ = self.reconstruct(x, self.eval_rng())
        level = self.noise
        written.append(
            pictures.image_rows(
                out_dir,
                "denoising.png",
                [("noisy", noisy), ("denoised", denoised), ("clean", x)],
                f"denoise on {self.data.name}, {level!r}: noisy input, network output, clean image",
            )
        )
        return written


def _short_classes(classes: list[str]) -> list[str]:
    return [c.split(" - ")[0] for c in classes]
