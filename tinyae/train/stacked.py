"""Recipe ``stacked-ae``: greedy layer-wise pretraining of denoising autoencoders, then fine-tuning.

Notation as in :mod:`tinyae.models.stacked`: L hidden layers, P pretraining epochs per
layer (``--pretrain-epochs``), E the run's ``--epochs``. The run's epochs are phases::

    epochs 1 .. P              pretrain autoencoder 1 on the images x           (masking noise level 1)
    epochs P+1 .. 2P           pretrain autoencoder 2 on the codes h_1 = f_1(x)  (level 2)
    ...                        ... up to autoencoder L
    epochs LP+1 .. E           fine-tune: the pretrained classifier AND the scratch classifier,
                               one step each on the same batch (the same budget)

Phase k trains only encoder k and decoder k (its own Adam, ``--pretrain-lr``); the codes
h_k are computed once per phase from the frozen encoders below. Each autoencoder's loss
compares its reconstruction with its clean input: BCE for pixels (and for sigmoid codes),
MSE for ReLU codes. Fine-tuning starts by copying the L encoders into the classifier
(plus a fresh softmax layer) and trains it with cross-entropy, dropout (``--dropout``)
and Adam whose learning rate follows a cosine from ``--lr`` down over the fine-tuning
epochs::

    lr_t = lr * (1 + cos(pi t / T)) / 2,    t = 0 .. T-1 the fine-tuning epoch, T = E - LP

The *scratch* classifier is the same network from its random initialisation, trained
with the same optimizer, schedule, batches and number of steps. ``--resume`` with a
larger ``--epochs`` adds fine-tuning epochs (the cosine then spans the new total).

Two options change what fine-tuning sees, for both classifiers alike:

    --shift s      each batch's images moved by up to s pixels each way (data augmentation;
                   default 1: a digit moved by a pixel is the same digit)
    --labels n     only n labelled images (balanced over the classes, chosen by the seed),
                   repeated to the training set's size in every epoch, so the number of steps
                   does not change; pretraining still sees every image, without labels

``final``: ``test_accuracy``/``test_error`` of the fine-tuned pretrained network,
``scratch_test_accuracy``/``scratch_test_error`` of the scratch one, their test
cross-entropies and ``pretraining_gain`` (scratch error minus pretrained error).
Pictures: ``filters.png`` (the first autoencoder's filters after pretraining),
``reconstructions.png``, ``codes.png`` (PCA of the top pretrained codes) and ``loss.png``,
redrawn by phase (the loop's single curve would join reconstruction losses of different
layers and the classifiers' cross-entropy): each autoencoder's losses, then the test
errors of both classifiers while fine-tuning.

Measured on MNIST (seeds 0-2; docs/lecture/stacked.md has the table): with the defaults
test error 0.99% pretrained, 0.96% from scratch. With ReLU units, Adam and dropout the scratch
network is as good, even with 1,000 labels; pretraining pays with ``--activation sigmoid``,
the networks of its time (1 error point at ``--labels 1000``, nearly 3 at 100).
"""

from __future__ import annotations

import argparse
import io
import math
import os
from typing import Any

import numpy as np

import tinyae
import tinyae.nn.functional as F
from tinyae import optim
from tinyae._atomic import atomic_write_bytes
from tinyae.data import DataLoader, Subset, TensorDataset
from tinyae.data.noise import MaskingNoise
from tinyae.models.stacked import ACTIVATIONS, StackedAutoencoder, StackedClassifier
from tinyae.optim.lr_scheduler import cosine_lr
from tinyae.tensor import Tensor
from tinyae.train import pictures
from tinyae.train.datasets import balanced_subset, train_size
from tinyae.train.recipe import Recipe, check_shift

__all__ = ["StackedRecipe", "classifier_stats", "cosine_lr"]

N_SHOWN = 10  # images per row of reconstructions.png
N_CODES = 2000  # test images in codes.png
N_FILTERS = 100  # first-layer filters in filters.png


def classifier_stats(recipe: Recipe, net: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(mean cross-entropy, accuracy, error rate) of ``net`` on images ``x`` with labels ``y`` (eval mode)."""
    net.eval()
    loss_sum, correct = 0.0, 0
    with tinyae.no_grad():
        for xb, yb in recipe.batches(x, y):
            logits = net(xb)
            loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += int((logits.numpy().argmax(axis=1) == yb.numpy()).sum())
    n = max(len(y), 1)
    return loss_sum / n, correct / n, (len(y) - correct) / n


class StackedRecipe(Recipe):
    summary = "stacked denoising autoencoder: greedy layer-wise pretraining, then fine-tuning as a classifier"
    description = (
        "Pretrains one denoising autoencoder per hidden layer (masking noise, --noise-levels), each on the "
        "codes of the one below, for --pretrain-epochs epochs each; then stacks the encoders, adds a "
        "softmax layer and fine-tunes the whole network with cross-entropy for the remaining epochs "
        "(--epochs counts ALL epochs: pretraining first). The same network trained from random "
        "initialisation with the same fine-tuning budget is reported beside it (scratch_test_accuracy). "
        "--lr is the fine-tuning learning rate (Adam, cosine schedule down to 0). --labels fine-tunes on "
        "fewer labelled images; --activation sigmoid gives the networks of the literature, where "
        "pretraining matters most."
    )
    # epochs: 3 layers x 3 pretraining epochs, then 20 fine-tuning epochs
    defaults = {"epochs": 9 + 20, "batch_size": 128, "lr": 1e-3}
    pictures_made = ("loss.png", "filters.png", "reconstructions.png", "codes.png")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--hidden",
            type=int,
            nargs="+",
            default=[500, 500, 500],
            help="widths of the hidden layers, bottom to top (default 500 500 500)",
        )
        parser.add_argument(
            "--activation", choices=ACTIVATIONS, default="relu", help="hidden units (default relu)"
        )
        parser.add_argument(
            "--noise-levels",
            type=float,
            nargs="+",
            default=[0.1, 0.2, 0.3],
            help="masking noise per layer: the fraction of each autoencoder's inputs set to 0, in [0, 1); "
            "the last level repeats for deeper layers (default 0.1 0.2 0.3)",
        )
        parser.add_argument(
            "--pretrain-epochs",
            type=int,
            default=3,
            help="pretraining epochs per layer; they come first within --epochs (default 3)",
        )
        parser.add_argument(
            "--pretrain-lr", type=float, default=1e-3, help="Adam learning rate of pretraining (default 1e-3)"
        )
        parser.add_argument(
            "--labels", type=int, default=None,
            help="fine-tune on only this many labelled images (balanced over the classes, chosen by the "
            "seed), repeated to the training set's size in every epoch; pretraining still sees every "
            "image, without labels (default: all)",
        )  # fmt: skip
        parser.add_argument(
            "--shift", type=int, default=1,
            help="augmentation while fine-tuning (both classifiers, the same batches): each image moved "
            "by up to this many pixels each way, afresh at every step (default 1; 0: off)",
        )  # fmt: skip
        parser.add_argument(
            "--dropout",
            type=float,
            default=0.2,
            help="dropout on the hidden layers during fine-tuning, in [0, 1) (default 0.2)",
        )

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        hidden = config["hidden"]
        if not hidden or any(h < 1 for h in hidden):
            return f"--hidden: give at least one layer width, each >= 1; got {list(hidden)}"
        levels = config["noise_levels"]
        if not levels or not all(0.0 <= v < 1.0 for v in levels):
            return f"--noise-levels: each level must be in [0, 1), got {list(levels)}"
        if config["pretrain_epochs"] < 0:
            return f"--pretrain-epochs must be >= 0, got {config['pretrain_epochs']}"
        if not config["pretrain_lr"] > 0 or not math.isfinite(config["pretrain_lr"]):
            return f"--pretrain-lr must be a positive number, got {config['pretrain_lr']}"
        if not 0.0 <= config["dropout"] < 1.0:
            return f"--dropout must be in [0, 1), got {config['dropout']}"
        size = train_size(config)
        if config["labels"] is not None and not 1 <= config["labels"] <= size:
            return f"--labels must be in [1, {size}] (the training set's size), got {config['labels']}"
        if message := check_shift(config):
            return message
        pre = len(hidden) * config["pretrain_epochs"]
        if config["epochs"] <= pre:
            return (
                f"--epochs {config['epochs']} leaves no fine-tuning: the first {pre} epochs pretrain "
                f"({len(hidden)} layers x --pretrain-epochs {config['pretrain_epochs']}); "
                f"use --epochs > {pre}"
            )
        return None

    # ------------------------------------------------------------------ phases
    @property
    def pretrain_total(self) -> int:
        """L * P: the epochs of greedy pretraining, which come first."""
        return len(self.config["hidden"]) * int(self.config["pretrain_epochs"])

    def layer_of(self, epoch: int) -> int | None:
        """The autoencoder (0-based) pretrained in ``epoch``, or None for a fine-tuning epoch."""
        if epoch >= self.pretrain_total:
            return None
        return epoch // int(self.config["pretrain_epochs"])

    def noise_level(self, k: int) -> float:
        levels = self.config["noise_levels"]
        return float(levels[min(k, len(levels) - 1)])

    # ---------------------------------------------------------------- training
    def build(self) -> None:
        c = self.config
        shape = self.data.image_shape
        n_classes = max(len(self.data.classes), int(self.data.y_train.max()) + 1)
        self.stack = StackedAutoencoder(c["hidden"], shape, c["activation"]).to(self.device)
        self.model = StackedClassifier(c["hidden"], n_classes, shape, c["activation"], c["dropout"])
        self.scratch = StackedClassifier(c["hidden"], n_classes, shape, c["activation"], c["dropout"])
        self.model.to(self.device)
        self.scratch.to(self.device)
        self.pretrain_opts = [
            optim.Adam([*enc.parameters(), *dec.parameters()], lr=c["pretrain_lr"])
            for enc, dec in zip(self.stack.encoders, self.stack.decoders)
        ]
        self.optimizer = optim.Adam(self.model.parameters(), lr=c["lr"])
        self.scratch_optimizer = optim.Adam(self.scratch.parameters(), lr=c["lr"])
        self.encoders_copied = False  # set once the pretrained encoders are in self.model
        self.scratch_loss_sum, self.scratch_count = 0.0, 0  # running scratch loss of this epoch
        self._codes: tuple[int, np.ndarray] | None = None  # (k, training inputs of autoencoder k)

    def modules(self) -> dict[str, Any]:
        return {"stack": self.stack, "model": self.model, "scratch": self.scratch}

    def optimizers(self) -> dict[str, Any]:
        opts = {f"pretrain_{k + 1}": o for k, o in enumerate(self.pretrain_opts)}
        return {**opts, "finetune": self.optimizer, "scratch": self.scratch_optimizer}

    def extra_state(self) -> dict[str, Any]:
        return {
            "encoders_copied": self.encoders_copied,
            "scratch_loss_sum": self.scratch_loss_sum,
            "scratch_count": self.scratch_count,
        }

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.encoders_copied = bool(state["encoders_copied"])
        self.scratch_loss_sum = float(state["scratch_loss_sum"])
        self.scratch_count = int(state["scratch_count"])

    def layer_inputs(self, k: int, x: np.ndarray) -> np.ndarray:
        """h_k for images ``x``: the codes of the first k (frozen) encoders, (N, n_k) NumPy."""
        self.stack.eval()
        out = []
        with tinyae.no_grad():
            for (xb,) in self.batches(x):
                out.append(self.stack.encode(xb, depth=k).numpy())
        return np.concatenate(out)

    def train_loader(self, epoch: int) -> DataLoader:
        k = self.layer_of(epoch)
        if k is None:
            t = epoch - self.pretrain_total
            lr = cosine_lr(self.config["lr"], t, int(self.config["epochs"]) - self.pretrain_total)
            for opt in (self.optimizer, self.scratch_optimizer):
                for group in opt.param_groups:
                    group["lr"] = lr
            self._codes = None  # free the last layer's codes
            return self.make_loader(self.labelled_set(), key="train")
        if self._codes is None or self._codes[0] != k:
            # The encoders below k are frozen from now on: compute their codes once per phase.
            self._codes = (k, self.layer_inputs(k, self.data.x_train))
        # Not cached: a new loader per epoch, whose order is still a function of (seed, epoch).
        return self.make_loader(TensorDataset(self._codes[1], self.data.y_train))

    def labelled_set(self) -> Any:
        """The fine-tuning images: all of them, or ``--labels`` n of them repeated to the same size."""
        train, n = self.data.train_set(), self.config.get("labels")  # older runs: no --labels
        if n is None:
            return train
        idx = balanced_subset(self.data.y_train, n, np.random.default_rng([int(self.config["seed"]), n]))
        return Subset(train, np.tile(idx, -(-len(train) // n))[: len(train)])

    def train_step(self, batch: tuple[Tensor, ...], epoch: int) -> float:
        k = self.layer_of(epoch)
        if k is not None:
            return self.pretrain_step(k, batch[0])
        x, y = batch
        x = self.shifted(x)  # both classifiers see the same moved batch
        if not self.encoders_copied:
            self.model.load_encoders(self.stack)
            self.encoders_copied = True
        loss = self.classifier_step(self.model, self.optimizer, x, y)
        scratch_loss = self.classifier_step(self.scratch, self.scratch_optimizer, x, y)
        self.scratch_loss_sum += scratch_loss * len(y)
        self.scratch_count += len(y)
        return loss

    def autoencoder_loss(self, k: int, h: Tensor, rng: np.random.Generator) -> Tensor:
        """Autoencoder k's loss: reconstruct clean ``h`` (N, n_k) from its masked copy."""
        noisy = Tensor(MaskingNoise(self.noise_level(k))(h.data, rng))
        logits = self.stack.layer_logits(k, noisy)
        if self.stack.output_is_probability(k):
            return F.binary_cross_entropy_with_logits(logits, h)
        return F.mse_loss(logits, h)

    def pretrain_step(self, k: int, h: Tensor) -> float:
        self.stack.train()
        loss = self.autoencoder_loss(k, h, tinyae.generator())
        opt = self.pretrain_opts[k]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    @staticmethod
    def classifier_step(net: StackedClassifier, opt: optim.Optimizer, x: Tensor, y: Tensor) -> float:
        net.train()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    # -------------------------------------------------------------- evaluation
    def evaluate(self, epoch: int) -> dict[str, Any]:
        k = self.layer_of(epoch)
        if k is not None:
            # The same masking of the test codes at every evaluation (eval_rng), like the training loss.
            h = self.layer_inputs(k, self.data.x_test)
            rng = self.eval_rng(k)
            total = 0.0
            self.stack.eval()
            with tinyae.no_grad():
                for (hb,) in self.batches(h):
                    total += self.autoencoder_loss(k, hb, rng).item() * len(hb)
            return {"test_loss": total / len(h), "phase": f"pretrain layer {k + 1}"}
        final = self.final_metrics()
        scratch_train = self.scratch_loss_sum / max(self.scratch_count, 1)
        self.scratch_loss_sum, self.scratch_count = 0.0, 0
        return {
            "test_loss": final["test_cross_entropy"],
            "phase": "fine-tune",
            "lr": self.optimizer.param_groups[0]["lr"],
            "test_accuracy": final["test_accuracy"],
            "test_error": final["test_error"],
            "scratch_train_loss": scratch_train,
            "scratch_test_loss": final["scratch_test_cross_entropy"],
            "scratch_test_accuracy": final["scratch_test_accuracy"],
            "scratch_test_error": final["scratch_test_error"],
        }

    def final_metrics(self) -> dict[str, Any]:
        d = self.data
        loss, acc, err = classifier_stats(self, self.model, d.x_test, d.y_test)
        s_loss, s_acc, s_err = classifier_stats(self, self.scratch, d.x_test, d.y_test)
        return {
            "test_accuracy": acc,
            "test_error": err,
            "scratch_test_accuracy": s_acc,
            "scratch_test_error": s_err,
            "test_cross_entropy": loss,
            "scratch_test_cross_entropy": s_loss,
            "pretraining_gain": acc - s_acc,  # = scratch error - pretrained error
        }

    def report(self, final: dict[str, Any]) -> list[str]:
        return [
            f"  {'':<24} {'test error':>10} {'accuracy':>9} {'cross-entropy':>14}",
            f"  {'pretrained + fine-tuned':<24} {100 * final['test_error']:>9.2f}% "
            f"{final['test_accuracy']:>9.4f} {final['test_cross_entropy']:>14.4f}",
            f"  {'scratch (same budget)':<24} {100 * final['scratch_test_error']:>9.2f}% "
            f"{final['scratch_test_accuracy']:>9.4f} {final['scratch_test_cross_entropy']:>14.4f}",
            f"  pretraining_gain         {100 * final['pretraining_gain']:+.2f} error points",
        ]

    # ---------------------------------------------------------------- pictures
    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        d, stack = self.data, self.stack
        stack.eval()
        written = [
            pictures.filters(
                out_dir,
                stack.encoders[0].weight.numpy(),
                max_filters=N_FILTERS,
                title=f"stacked-ae: filters of the first autoencoder after pretraining "
                f"({min(N_FILTERS, stack.hidden[0])} of {stack.hidden[0]})",
            )
        ]
        x = d.x_test[:N_SHOWN]
        with tinyae.no_grad():
            xt = Tensor(x).to(self.device)
            flat = xt.reshape(len(x), -1)
            masked = MaskingNoise(self.noise_level(0))(flat.data, self.eval_rng(0))
            first = stack.decode_layer(0, stack.encode_layer(0, Tensor(masked))).numpy()
            deep = stack.reconstruct(xt).numpy()
        rows = [("original", x), ("masked", _host(masked)), ("layer 1", first), (f"all {stack.depth}", deep)]
        written.append(
            pictures.image_rows(
                out_dir,
                "reconstructions.png",
                rows,
                f"stacked-ae on {d.name}: test images, masked ({self.noise_level(0):g}), the first "
                f"autoencoder's reconstruction, and up and down through all {stack.depth} layers",
            )
        )
        codes = self.layer_inputs(stack.depth, d.x_test[:N_CODES])
        written.append(
            pictures.code_scatter(
                out_dir,
                codes,
                d.y_test[:N_CODES],
                [c.split(" - ")[0] for c in d.classes],
                title=f"stacked-ae: {stack.hidden[-1]}-D top-layer codes of {len(codes)} test images\n"
                "after pretraining (no labels), PCA to 2-D",
            )
        )
        phase_curves(out_dir, history)  # replaces the loop's loss.png, already in the loop's list
        return written


def _host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def phase_curves(out_dir: str, history: list[dict[str, Any]], name: str = "loss.png") -> str:
    """Left: each autoencoder's train/test loss during pretraining. Right: test error while fine-tuning."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    phases = list(dict.fromkeys(r.get("phase") for r in history if r.get("phase", "").startswith("pretrain")))
    for i, phase in enumerate(phases):
        recs = [r for r in history if r.get("phase") == phase]
        ep = [r["epoch"] for r in recs]
        colour = f"C{i}"
        left.plot(ep, [r["train_loss"] for r in recs], "o-", color=colour, ms=3, label=f"{phase[9:]}: train")
        left.plot(ep, [r["test_loss"] for r in recs], "s--", color=colour, ms=3, label=f"{phase[9:]}: test")
    left.set_xlabel("epoch")
    left.set_ylabel("reconstruction loss (BCE or MSE)")
    left.set_title("greedy pretraining, one autoencoder per layer")
    if phases:
        left.legend(fontsize=7)
    left.grid(True, alpha=0.3)
    fine = [r for r in history if r.get("phase") == "fine-tune"]
    if fine:
        ep = [r["epoch"] for r in fine]
        right.plot(ep, [100 * r["test_error"] for r in fine], "o-", ms=3, label="pretrained, fine-tuned")
        right.plot(ep, [100 * r["scratch_test_error"] for r in fine], "s--", ms=3, label="from scratch")
        right.legend(fontsize=8)
    right.set_xlabel("epoch")
    right.set_ylabel("test error (%)")
    right.set_title("fine-tuning as a classifier")
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(os.path.join(out_dir, name), buf.getvalue())
    return name
