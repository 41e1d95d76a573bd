"""Recipes ``gan`` and ``dcgan``: a generator and a discriminator trained in alternation.

The networks are in :mod:`tinyae.models.gan`. Real images are rescaled from [0, 1] to
[-1, 1], the range of G's tanh. With l = D's logit and sigma the sigmoid, D(x) = sigma(l(x)).
One batch of real images x (N, 1, 28, 28) is one *discriminator step*; every ``--d-steps``
K-th discriminator step is followed by one *generator step* (the slide's "k steps of D,
then one step of G")::

    z ~ N(0, I) (N, L);  fake = G(z)
    D step:  loss_D = BCE(l(x), 1 - s) + BCE(l(fake), 0)     fake detached: only D learns here
                                                             (s: one-sided label smoothing, default 0)
    G step:  loss_G = BCE(l(fake), 1) = -log D(G(z))         non-saturating (the default)
         or  loss_G = -BCE(l(fake), 0) = log(1 - D(G(z)))    saturating: the minimax game as written

Why the non-saturating loss: when D confidently rejects the fakes, D(G(z)) ~ 0 and
log(1 - D(G(z))) is flat there, so the saturating loss gives G almost no gradient exactly
when it most needs one; -log D(G(z)) is steep there (Goodfellow et al. 2014, section 3).

``--loss wgan-gp`` (Gulrajani et al. 2017) makes D a *critic* f with no sigmoid and no
BatchNorm, trained to estimate the Wasserstein distance, with a gradient penalty that keeps
f 1-Lipschitz along lines between real and fake images::

    x^ = a x + (1 - a) fake,  a ~ U(0, 1) per image
    loss_D = mean f(fake) - mean f(x) + lambda * mean (||grad_x^ f(x^)||_2 - 1)^2
    loss_G = -mean f(G(z))

The penalty differentiates a gradient: ``tinyae.grad(f(x^).sum(), x^, create_graph=True)``
builds the graph of grad f, and loss_D.backward() then runs backward through that graph
(double backward through the convolutions). Defaults then follow the paper: K = 5 critic
steps, Adam(1e-4, betas (0.5, 0.9)), lambda = 10.

Per epoch metrics.json records d_loss, g_loss, d_real = mean D(x) and d_fake = mean
D(G(z)) (critic_real, critic_fake, wasserstein and gradient_penalty for WGAN-GP), the
discriminator's loss on the test images against fixed fakes (``test_loss``) and, when
the scoring classifier is there, the Inception Score (``sample_is``) and the classes of
1,000 fixed-noise samples. It warns when
it sees a collapse: D(G(z)) below 0.05 all epoch long (D has won; G gets no gradient), or
a class histogram with a class missing or one class over half the samples (mode collapse).

Pictures: ``samples/epoch-NNN.png`` (64 samples of one fixed noise batch after every epoch),
``progress.gif`` (those grids animated), ``samples.png`` (100 samples), ``curves.png``
(D and G losses, and D(x) and D(G(z)), every 50 discriminator steps).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

import tinyae
import tinyae.nn.functional as F
from tinyae import optim
from tinyae.models.gan import (
    dcgan_discriminator,
    dcgan_generator,
    dcgan_init_,
    mlp_discriminator,
    mlp_generator,
)
from tinyae.tensor import Tensor
from tinyae.train import pictures
from tinyae.train.generative import GenerativeRecipe

__all__ = ["DCGANRecipe", "GANRecipe", "gradient_penalty"]

LOSSES = ("gan", "wgan-gp")
G_LOSSES = ("non-saturating", "saturating")
SEGMENT = 50  # discriminator steps per point of curves.png
N_GRID = 64  # fixed-noise samples drawn after every epoch
N_CHECK = 1000  # fixed-noise samples classified after every epoch (collapse check)
N_TEST = 2000  # test images for the per-epoch test_loss
GRID_TAG, CHECK_TAG, TEST_TAG, PICTURE_TAG = 4, 5, 6, 3  # eval_rng streams
D_FAKE_COLLAPSED = 0.05  # mean D(G(z)) below this in every segment of an epoch: D has won


def gradient_penalty(critic: Any, real: Tensor, fake: Tensor, alpha: Tensor) -> Tensor:
    """mean_i (||grad f(x^_i)||_2 - 1)^2 at x^ = alpha * real + (1 - alpha) * fake (WGAN-GP).

    ``alpha`` (N, 1, 1, 1) in [0, 1]. The result is differentiable with respect to the
    critic's parameters (``create_graph=True``): backward through it is a double backward.
    A tiny constant inside the square root keeps its derivative finite at a zero gradient.
    """
    with tinyae.enable_grad():  # the penalty IS a gradient: it needs the graph even under no_grad
        x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_()
        (g,) = tinyae.grad(critic(x_hat).sum(), x_hat, create_graph=True)  # (N, C, H, W)
        norms = ((g * g).reshape(len(g), -1).sum(dim=1) + 1e-12).sqrt()  # (N,)
        return ((norms - 1) ** 2).mean()


class GANRecipe(GenerativeRecipe):
    summary = "GAN (fully connected): a generator and a discriminator trained in alternation"
    description = (
        "The original GAN with fully connected networks: G 100-256-512-1024-784 (LeakyReLU, tanh output), "
        "D 784-512-256-1 (LeakyReLU). --d-steps discriminator steps per generator step, the non-saturating "
        "generator loss (--g-loss saturating for the minimax loss as written), optional one-sided label "
        "smoothing, Adam with betas (0.5, 0.999); --loss wgan-gp trains a Wasserstein critic with the "
        "gradient penalty instead. Writes a grid of fixed-noise samples after every epoch, an animated GIF "
        "of them, the loss and D(x) / D(G(z)) curves, and warns when training collapses."
    )
    defaults = {"epochs": 30, "batch_size": 64, "lr": None}
    default_notes = {"lr": "2e-4; 1e-4 with --loss wgan-gp"}
    # The defaults of the options left None, per --loss: the original GAN's (Goodfellow et al.;
    # Adam as in Radford et al.) and WGAN-GP's (Gulrajani et al. 2017, Algorithm 1).
    tuned: dict[str, dict[str, Any]] = {
        "gan": {"lr": 2e-4, "d_steps": 1, "betas": (0.5, 0.999), "d_lr_scale": 1.0, "label_smoothing": 0.0},
        "wgan-gp": {"lr": 1e-4, "d_steps": 5, "betas": (0.5, 0.9), "d_lr_scale": 1.0, "label_smoothing": 0.0},
    }
    pictures_made = ("loss.png", "samples.png", "curves.png", "progress.gif")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument("--latent", type=int, default=100, help="size of the noise z (default 100)")
        parser.add_argument(
            "--loss",
            choices=LOSSES,
            default="gan",
            help="gan: the cross-entropy game; wgan-gp: a Wasserstein critic with gradient penalty "
            "(default gan)",
        )
        parser.add_argument(
            "--g-loss",
            choices=G_LOSSES,
            default="non-saturating",
            help="the generator's loss with --loss gan: -log D(G(z)) or log(1 - D(G(z))) "
            "(default non-saturating)",
        )
        parser.add_argument(
            "--d-steps",
            type=int,
            default=None,
            metavar="K",
            help="discriminator steps per generator step (default 1; 5 with --loss wgan-gp)",
        )
        parser.add_argument(
            "--label-smoothing",
            type=float,
            default=None,
            metavar="S",
            help="one-sided label smoothing: D's target for real images is 1 - S "
            f"(default {cls.tuned['gan']['label_smoothing']:g}; 0 with --loss wgan-gp)",
        )
        parser.add_argument(
            "--betas",
            type=float,
            nargs=2,
            default=None,
            metavar=("B1", "B2"),
            help="Adam's betas for both networks (default 0.5 0.999; 0.5 0.9 with --loss wgan-gp)",
        )
        parser.add_argument(
            "--gp-weight", type=float, default=10.0, help="lambda of the gradient penalty (default 10)"
        )
        parser.add_argument(
            "--d-lr-scale",
            type=float,
            default=None,
            metavar="F",
            help="the discriminator's learning rate is F x --lr "
            f"(default {cls.tuned['gan']['d_lr_scale']:g}; 1 with --loss wgan-gp)",
        )
        cls.add_score_arguments(parser)

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        if config["latent"] < 1:
            return f"--latent must be at least 1, got {config['latent']}"
        if config["d_steps"] is not None and config["d_steps"] < 1:
            return f"--d-steps must be at least 1, got {config['d_steps']}"
        if config["label_smoothing"] is not None and not 0.0 <= config["label_smoothing"] < 1.0:
            return f"--label-smoothing must be in [0, 1), got {config['label_smoothing']}"
        if config["betas"] is not None and not all(0.0 <= b < 1.0 for b in config["betas"]):
            return f"--betas must be in [0, 1), got {config['betas']}"
        if not config["gp_weight"] >= 0.0:
            return f"--gp-weight must be >= 0, got {config['gp_weight']}"
        if config["d_lr_scale"] is not None and not config["d_lr_scale"] > 0.0:
            return f"--d-lr-scale must be > 0, got {config['d_lr_scale']}"
        return cls.check_score_config(config)

    @classmethod
    def resolve_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Options left None take the defaults of their ``--loss`` (:attr:`tuned`)."""
        config = dict(config)
        for key, value in cls.tuned[config["loss"]].items():
            if config.get(key) is None:
                config[key] = list(value) if isinstance(value, tuple) else value
        return config

    # ------------------------------------------------------------------- build
    def make_networks(self) -> tuple[Any, Any]:
        shape = self.data.image_shape
        return mlp_generator(self.config["latent"], image_shape=shape), mlp_discriminator(image_shape=shape)

    def build(self) -> None:
        c = self.config
        self.wgan = c["loss"] == "wgan-gp"
        g, d = self.make_networks()
        self.G, self.D = g.to(self.device), d.to(self.device)
        betas = tuple(c["betas"])
        self.opt_g = optim.Adam(self.G.parameters(), lr=c["lr"], betas=betas)
        self.opt_d = optim.Adam(self.D.parameters(), lr=c["lr"] * c["d_lr_scale"], betas=betas)
        self.d_steps = 0  # discriminator steps so far (every d_steps-th is followed by a G step)
        self.frames: list[np.ndarray] = []  # the fixed-noise grid after each epoch (uint8)
        self.curves: dict[str, list[float]] = {
            k: [] for k in ("step", "d_loss", "g_loss", "d_real", "d_fake")
        }
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        # Running sums: the epoch's (all D steps) and the current curve segment's.
        self.sums = dict.fromkeys(("d", "d_n", "g", "g_n", "real", "fake", "gp"), 0.0)
        self.segment = dict.fromkeys(("d", "d_n", "g", "g_n", "real", "fake"), 0.0)
        self.segment_fakes: list[float] = []  # mean D(G(z)) of each finished segment of this epoch

    def modules(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D}

    def optimizers(self) -> dict[str, Any]:
        return {"G": self.opt_g, "D": self.opt_d}

    def extra_state(self) -> dict[str, Any]:
        return {
            "d_steps": self.d_steps,
            "frames": np.stack(self.frames) if self.frames else np.zeros((0, 1, 1), np.uint8),
            "curves": self.curves,
            "sums": self.sums,
            "segment": self.segment,
            "segment_fakes": self.segment_fakes,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.d_steps = int(state["d_steps"])
        self.frames = list(np.asarray(state["frames"], np.uint8))
        self.curves = {k: [float(v) for v in vs] for k, vs in state["curves"].items()}
        self.sums = {k: float(v) for k, v in state["sums"].items()}
        self.segment = {k: float(v) for k, v in state["segment"].items()}
        self.segment_fakes = [float(v) for v in state["segment_fakes"]]

    # ------------------------------------------------------------------ losses
    def discriminator_loss(self, real: Tensor, fake: Tensor) -> tuple[Tensor, dict[str, float]]:
        """loss_D on a real and a (detached) fake batch, and what it saw: D(x), D(G(z)), the penalty."""
        real_out, fake_out = self.D(real), self.D(fake)
        if self.wgan:
            alpha = tinyae.rand(len(real), 1, 1, 1, device=self.device)
            gp = gradient_penalty(self.D, real, fake, alpha)
            loss = fake_out.mean() - real_out.mean() + self.config["gp_weight"] * gp
            return loss, {"real": real_out.mean().item(), "fake": fake_out.mean().item(), "gp": gp.item()}
        target = tinyae.full(real_out.shape, 1.0 - self.config["label_smoothing"], device=self.device)
        loss = F.binary_cross_entropy_with_logits(real_out, target) + F.binary_cross_entropy_with_logits(
            fake_out, tinyae.zeros(*fake_out.shape, device=self.device)
        )
        return loss, {"real": real_out.sigmoid().mean().item(), "fake": fake_out.sigmoid().mean().item()}

    def generator_loss(self, fake_out: Tensor) -> Tensor:
        """loss_G from D's outputs on the fakes (logits, or critic values for WGAN-GP)."""
        if self.wgan:
            return -fake_out.mean()
        if self.config["g_loss"] == "saturating":  # log(1 - D(G(z))) = -BCE(l, 0)
            return -F.binary_cross_entropy_with_logits(
                fake_out, tinyae.zeros(*fake_out.shape, device=self.device)
            )
        return F.binary_cross_entropy_with_logits(fake_out, tinyae.ones(*fake_out.shape, device=self.device))

    # -------------------------------------------------------------- training
    def train_step(self, batch: tuple[Tensor, ...], epoch: int) -> float:
        real = batch[0] * 2 - 1  # [0, 1] -> [-1, 1]
        self.G.train()
        self.D.train()
        z = tinyae.randn(len(real), self.config["latent"], device=self.device)
        fake = self.G(z)

        loss_d, seen = self.discriminator_loss(real, fake.detach())  # D step: G gets no gradient
        self.opt_d.zero_grad()
        loss_d.backward()
        self.opt_d.step()
        self.d_steps += 1
        d_loss = loss_d.item()
        self._record(d=d_loss, d_n=1, real=seen["real"], fake=seen["fake"], gp=seen.get("gp", 0.0))

        if self.d_steps % self.config["d_steps"] == 0:  # G step: make D call the fakes real
            self.D.requires_grad_(False)  # D's weights get no gradient from G's loss
            loss_g = self.generator_loss(self.D(fake))
            self.D.requires_grad_(True)
            self.opt_g.zero_grad()
            loss_g.backward()
            self.opt_g.step()
            self._record(g=loss_g.item(), g_n=1)
        if self.d_steps % SEGMENT == 0:
            self._close_segment()
        return d_loss

    def _record(self, **values: float) -> None:
        for k, v in values.items():
            self.sums[k] += v
            if k in self.segment:
                self.segment[k] += v

    def _close_segment(self) -> None:
        s = self.segment
        if s["d_n"] == 0:
            return
        self.curves["step"].append(float(self.d_steps))
        self.curves["d_loss"].append(s["d"] / s["d_n"])
        self.curves["g_loss"].append(s["g"] / s["g_n"] if s["g_n"] else float("nan"))
        self.curves["d_real"].append(s["real"] / s["d_n"])
        self.curves["d_fake"].append(s["fake"] / s["d_n"])
        self.segment_fakes.append(s["fake"] / s["d_n"])
        self.segment = dict.fromkeys(self.segment, 0.0)

    # ------------------------------------------------------------ evaluation
    def generate(self, n: int, rng: np.random.Generator) -> np.ndarray:
        self.G.eval()
        out = []
        with tinyae.no_grad():
            for start in range(0, n, 1000):
                z = rng.standard_normal((min(1000, n - start), self.config["latent"])).astype(np.float32)
                images = self.G(tinyae.tensor(z, device=self.device)).numpy()
                out.append((images + 1) / 2)  # [-1, 1] -> [0, 1]
        return np.concatenate(out) if out else np.zeros((0, *self.data.image_shape), np.float32)

    def d_outputs(self, images: np.ndarray) -> np.ndarray:
        """D's outputs (logits, or critic values) for images in [0, 1], eval mode."""
        self.D.eval()
        with tinyae.no_grad():
            return np.concatenate([self.D(xb * 2 - 1).numpy().ravel() for (xb,) in self.batches(images)])

    def test_stats(self) -> dict[str, float]:
        """D on ``N_TEST`` test images against as many fixed-noise fakes: its loss, and its mean outputs."""
        real = self.d_outputs(self.data.x_test[:N_TEST]).astype(np.float64)
        fake = self.d_outputs(self.generate(len(real), self.eval_rng(TEST_TAG))).astype(np.float64)
        if self.wgan:
            return {"test_loss": float(fake.mean() - real.mean()), "test_critic_real": float(real.mean()),
                    "test_critic_fake": float(fake.mean())}  # fmt: skip
        # BCE(l, 1) = softplus(-l), BCE(l, 0) = softplus(l)
        loss = np.logaddexp(0, -real).mean() + np.logaddexp(0, fake).mean()
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        return {
            "test_loss": float(loss),
            "test_d_real": float(sig(real).mean()),
            "test_d_fake": float(sig(fake).mean()),
        }

    def evaluate(self, epoch: int) -> dict[str, Any]:
        if self.segment["d_n"]:
            self._close_segment()  # the epoch's last, partial segment
        s = self.sums
        record: dict[str, Any] = {"d_loss": s["d"] / max(s["d_n"], 1), "g_loss": s["g"] / max(s["g_n"], 1)}
        names = ("critic_real", "critic_fake") if self.wgan else ("d_real", "d_fake")
        record[names[0]] = s["real"] / max(s["d_n"], 1)
        record[names[1]] = s["fake"] / max(s["d_n"], 1)
        if self.wgan:
            record["wasserstein"] = record["critic_real"] - record["critic_fake"]
            record["gradient_penalty"] = s["gp"] / max(s["d_n"], 1)
        record.update(self.test_stats())
        warnings = []
        if not self.wgan and self.segment_fakes and max(self.segment_fakes) < D_FAKE_COLLAPSED:
            warnings.append(
                f"D(G(z)) stayed below {D_FAKE_COLLAPSED} all epoch (mean {record['d_fake']:.3f}): the "
                "discriminator rejects every sample and the generator is barely learning (collapse)"
            )
        self.frames.append(pictures.grid_array(self.generate(N_GRID, self.eval_rng(GRID_TAG)), ncols=8))
        if getattr(self, "_scorer", None) is not None:
            check = self.scorer().score(self.generate(N_CHECK, self.eval_rng(CHECK_TAG)))
            hist = check["class_hist"]
            record.update({"sample_is": check["inception_score"], "sample_class_min": min(hist),
                           "sample_class_max": max(hist), "sample_class_hist": hist})  # fmt: skip
            if min(hist) < 0.1 / len(hist) or (len(hist) > 2 and max(hist) > 0.5):
                shares = " ".join(f"{100 * h:.0f}%" for h in hist)
                warnings.append(f"mode collapse: the classes of {N_CHECK} samples are {shares}")
        if warnings:
            record["warning"] = "; ".join(warnings)
        self._reset_epoch()
        return record

    def final_metrics(self) -> dict[str, Any]:
        final = {k: v for k, v in self.test_stats().items() if k != "test_loss"}
        final.update(self.sample_scores())
        return final

    # ---------------------------------------------------------------- pictures
    def epoch_pictures(self, out_dir: str, epoch: int) -> list[str]:
        os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)
        name = os.path.join("samples", f"epoch-{epoch + 1:03d}.png")
        pictures.save_picture(os.path.join(out_dir, name), self.frames[-1])
        return [name, pictures.animated_gif(out_dir, "progress.gif", self.frames)]

    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        samples = self.generate(100, self.eval_rng(PICTURE_TAG))
        written = [pictures.sample_grid(out_dir, "samples.png", samples, ncols=10)]
        if self.frames:
            written.append(pictures.animated_gif(out_dir, "progress.gif", self.frames))
        c = self.curves
        if c["step"]:
            d_names = ("critic(x)", "critic(G(z))") if self.wgan else ("D(x)", "D(G(z))")
            y_label = "mean critic value" if self.wgan else "mean D output"
            panels = [
                ("loss", {"D loss": c["d_loss"], "G loss": c["g_loss"]}),
                (y_label, {d_names[0]: c["d_real"], d_names[1]: c["d_fake"]}),
            ]
            title = f"{self.name} ({self.config['loss']}) on {self.data.name}, every {SEGMENT} D steps"
            written.append(
                pictures.curves(out_dir, "curves.png", panels, c["step"], "discriminator step", title)
            )
        return written


class DCGANRecipe(GANRecipe):
    summary = "DCGAN: transposed-conv generator with BatchNorm, strided-conv discriminator"
    description = (
        "The DCGAN of the benchmark's W5 (Radford et al. 2016): G = Linear(100, 128x7x7), BatchNorm, ReLU, "
        "two stride-2 4x4 transposed convolutions (BatchNorm, ReLU between) and tanh; D = two stride-2 4x4 "
        "convolutions with LeakyReLU(0.2) and BatchNorm, then a Linear to one logit. Weights start from "
        "N(0, 0.02). The same alternating training, options and pictures as gan, with a generator learning "
        "twice as fast as the discriminator (4e-4 and 2e-4) and one-sided label smoothing 0.1 by default; "
        "with --loss wgan-gp the critic has no BatchNorm."
    )
    defaults = {"epochs": 8, "batch_size": 64, "lr": None}
    default_notes = {"lr": "4e-4 (the discriminator's 2e-4, --d-lr-scale 0.5); 1e-4 with --loss wgan-gp"}
    # A generator twice as fast as the discriminator and one-sided label smoothing: in 3-epoch
    # trials on MNIST these raised the Inception Score from 6.1 to 6.6 (docs/generative.md).
    tuned = {
        **GANRecipe.tuned,
        "gan": {**GANRecipe.tuned["gan"], "lr": 4e-4, "d_lr_scale": 0.5, "label_smoothing": 0.1},
    }

    def make_networks(self) -> tuple[Any, Any]:
        shape = self.data.image_shape
        if shape[1] % 4 or shape[2] % 4:
            raise ValueError(f"dcgan: image sides must be multiples of 4, got {shape}")
        g = dcgan_generator(self.config["latent"], image_shape=shape)
        d = dcgan_discriminator(image_shape=shape, batch_norm=self.config["loss"] != "wgan-gp")
        return dcgan_init_(g), dcgan_init_(d)
