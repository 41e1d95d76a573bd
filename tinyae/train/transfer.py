"""Recipe ``transfer``: pretrain an autoencoder without labels, then classify with few labels.

Notation: E the run's ``--epochs``, S ``--steps``, K classes, and for each labelled-set
size n (``--labels``, default 100 and 1000) ``--draws`` R different labelled sets, each
balanced over the classes and chosen by the seed.

The run's epochs::

    epochs 1 .. E-1    the autoencoder (model: tinyae.models.transfer) learns to reconstruct ALL
                       training images; no labels are used (BCE per pixel, Adam, --lr)
    epoch E            the classifier epoch: for every n and every draw, in this order,
                         frozen      a linear softmax layer on the frozen codes z = f(x):
                                     S steps, Adam --head-lr (a linear probe of the codes)
                         finetuned   starts from the frozen classifier and unfreezes f: S more steps,
                                     Adam --classifier-lr for the head, times --encoder-lr-factor
                                     for the pretrained encoder (small steps keep what it learned)
                         scratch     the same network from random initialisation: 2S steps, Adam
                                     --classifier-lr (as many steps as frozen + finetuned)
                       each on mini-batches of min(n, 64) of its n labelled images

Fine-tuning from the frozen classifier (first fit the head, then unfreeze) keeps a random
head from sending large gradients into the pretrained encoder at the start.

``final`` (every accuracy recomputed from the checkpoint's weights, on the whole test split)::

    "labels_100":  {"frozen": acc, "finetuned": acc, "scratch": acc}      means over the R draws
    "labels_1000": {...}
    "test_accuracy_100_frozen": acc, ...                                 the same numbers, flat
    "finetuned_gain_100": finetuned - scratch, ...                       in accuracy (fraction)
    "per_draw": {"labels_100": {"frozen": [acc, ...], ...}, ...}
    "autoencoder_test_bce": ...

Measured on MNIST with the defaults (seeds 0-2, 3 draws each; docs/lecture/transfer.md):
fine-tuned 88.5% at 100 labels against 69.9% from scratch, 94.6% against 89.2% at 1,000.

Pictures: ``accuracy.png`` (bar chart), ``reconstructions.png``, ``codes.png`` (PCA of the
codes of test images, coloured by label) and ``loss.png``, redrawn with the autoencoder's
epochs only (the loop's version ends with the classifiers' cross-entropy, another scale).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from typing import Any

import numpy as np

import tinyae
import tinyae.nn as nn
import tinyae.nn.functional as F
from tinyae import optim
from tinyae.data import DataLoader, Subset
from tinyae.data.noise import MaskingNoise
from tinyae.models.transfer import TransferAutoencoder, TransferClassifier
from tinyae.tensor import Tensor
from tinyae.train import pictures
from tinyae.train.datasets import balanced_subset, train_size
from tinyae.train.metrics import ReconstructionStats
from tinyae.train.recipe import Recipe, check_shift

__all__ = ["VARIANTS", "TransferRecipe", "balanced_subset"]

VARIANTS = ("frozen", "finetuned", "scratch")
CLASSIFIER_BATCH = 64  # mini-batch of the classifiers (or n, when fewer labels)
N_SHOWN = 10
N_CODES = 2000


class _TaskChain:
    """The classifier epoch's loader: each task's DataLoader in turn; batches are ``(x, y, task)``."""

    def __init__(self, loaders: list[DataLoader]) -> None:
        self.loaders = loaders

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders)

    def set_epoch(self, epoch: int) -> None:
        for loader in self.loaders:
            loader.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        for t, loader in enumerate(self.loaders):
            for batch in loader:
                yield (*batch, t)


class TransferRecipe(Recipe):
    summary = (
        "transfer learning: an autoencoder pretrained without labels, then classifiers on 100/1000 labels"
    )
    description = (
        "Trains a dense autoencoder with a small code on all training images (no labels) for --epochs - 1 "
        "epochs. The last epoch trains, for each --labels count and each of --draws labelled sets "
        "(balanced over the classes), three classifiers with the encoder's architecture plus a softmax "
        "layer: 'frozen' (only the softmax layer, on the pretrained codes), 'finetuned' (the frozen one "
        "with the encoder unfrozen at a smaller learning rate) and 'scratch' (the same network from "
        "random initialisation). Reports their test accuracies (means over the draws) and draws a bar chart. "
        "--lr and --batch-size are the autoencoder's."
    )
    # 64 autoencoder epochs: the codes keep getting better for the classifiers after the
    # reconstruction loss has nearly flattened (docs/lecture/transfer.md has the curve).
    defaults = {"epochs": 65, "batch_size": 128, "lr": 1e-3}
    pictures_made = ("loss.png", "accuracy.png", "reconstructions.png", "codes.png")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument(
            "--hidden", type=int, nargs="+", default=[512, 256],
            help="widths of the encoder's hidden layers (the decoder mirrors them) (default 512 256)",
        )  # fmt: skip
        parser.add_argument(
            "--code-size", type=int, default=10, help="size of the code z = f(x) (default 10)"
        )
        parser.add_argument(
            "--noise-level", type=float, default=0.0,
            help="masking noise while pretraining: the fraction of pixels set to 0, in [0, 1) (default 0)",
        )  # fmt: skip
        parser.add_argument(
            "--labels", type=int, nargs="+", default=[100, 1000],
            help="sizes of the labelled training sets (default 100 1000)",
        )  # fmt: skip
        parser.add_argument(
            "--draws", type=int, default=3,
            help="labelled sets drawn per size; accuracies are averaged over them (default 3)",
        )  # fmt: skip
        parser.add_argument(
            "--steps", type=int, default=300,
            help="optimizer steps of the frozen and of the finetuned classifier (scratch gets twice as many) "
            "(default 300)",
        )  # fmt: skip
        parser.add_argument(
            "--head-lr",
            type=float,
            default=1e-2,
            help="Adam learning rate of the frozen classifier (default 0.01)",
        )
        parser.add_argument(
            "--classifier-lr", type=float, default=1e-3,
            help="Adam learning rate of the finetuned head and of the scratch network (default 0.001)",
        )  # fmt: skip
        parser.add_argument(
            "--shift", type=int, default=0,
            help="augmentation of the labelled images while the classifiers train (all three alike): "
            "each moved by up to this many pixels each way, afresh at every step (default 0: off; 2 "
            "lifts scratch most, and the dense code of the frozen and finetuned ones least)",
        )  # fmt: skip
        parser.add_argument(
            "--encoder-lr-factor", type=float, default=0.1,
            help="the pretrained encoder's learning rate while fine-tuning, relative to --classifier-lr "
            "(default 0.1)",
        )  # fmt: skip

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        if not config["hidden"] or any(h < 1 for h in config["hidden"]):
            return f"--hidden: give at least one width, each >= 1; got {list(config['hidden'])}"
        if config["code_size"] < 1:
            return f"--code-size must be at least 1, got {config['code_size']}"
        if not 0.0 <= config["noise_level"] < 1.0:
            return f"--noise-level must be in [0, 1), got {config['noise_level']}"
        labels = list(config["labels"])
        size = train_size(config)
        if not labels or any(n < 1 for n in labels):
            return f"--labels: each labelled-set size must be >= 1, got {labels}"
        if max(labels) > size:
            return f"--labels {max(labels)} is larger than the training set ({size} images)"
        if len(set(labels)) != len(labels):
            return f"--labels: sizes must differ, got {labels}"
        if config["draws"] < 1:
            return f"--draws must be at least 1, got {config['draws']}"
        if config["steps"] < 1:
            return f"--steps must be at least 1, got {config['steps']}"
        for key in ("head_lr", "classifier_lr"):
            if not (config[key] > 0 and math.isfinite(config[key])):
                return f"--{key.replace('_', '-')} must be a positive number, got {config[key]}"
        if not (config["encoder_lr_factor"] >= 0 and math.isfinite(config["encoder_lr_factor"])):
            return f"--encoder-lr-factor must be >= 0, got {config['encoder_lr_factor']}"
        if message := check_shift(config):
            return message
        if config["epochs"] < 2:
            return (
                f"--epochs must be at least 2 (autoencoder epochs, then one classifier epoch), "
                f"got {config['epochs']}"
            )
        return None

    # ------------------------------------------------------------------- tasks
    def pairs(self) -> list[tuple[int, int]]:
        """(labelled-set size, draw) in training order; classifiers are stored by this index."""
        return [(n, d) for n in self.config["labels"] for d in range(int(self.config["draws"]))]

    def tasks(self) -> list[tuple[int, str, int]]:
        """(pair index, variant, optimizer steps) of the classifier epoch, in training order."""
        s = int(self.config["steps"])
        steps = {"frozen": s, "finetuned": s, "scratch": 2 * s}
        return [(j, v, steps[v]) for j in range(len(self.pairs())) for v in VARIANTS]

    @property
    def classifier_epoch(self) -> int:
        """The last epoch (0-based); the ones before it pretrain the autoencoder."""
        return int(self.config["epochs"]) - 1

    # ---------------------------------------------------------------- training
    def build(self) -> None:
        c, d = self.config, self.data
        if max(c["labels"]) > len(d.y_train):
            raise ValueError(
                f"transfer: --labels {max(c['labels'])} is larger than the training set "
                f"({len(d.y_train)} images)"
            )
        k = max(len(d.classes), int(d.y_train.max()) + 1)
        self.autoencoder = TransferAutoencoder(c["hidden"], c["code_size"], d.image_shape).to(self.device)
        self.optimizer = optim.Adam(self.autoencoder.parameters(), lr=c["lr"])
        heads, finetuned, scratch = [], [], []
        for _ in self.pairs():
            heads.append(nn.Linear(c["code_size"], k))
            finetuned.append(TransferClassifier(c["hidden"], c["code_size"], k, d.image_shape))
            scratch.append(TransferClassifier(c["hidden"], c["code_size"], k, d.image_shape))
        self.heads = nn.ModuleList(heads).to(self.device)  # the frozen classifiers: f is the autoencoder's
        self.finetuned = nn.ModuleList(finetuned).to(self.device)
        self.scratch = nn.ModuleList(scratch).to(self.device)
        self.task_optimizers = []
        for j, variant, _ in self.tasks():
            if variant == "frozen":
                opt = optim.Adam(self.heads[j].parameters(), lr=c["head_lr"])
            elif variant == "finetuned":
                net = self.finetuned[j]
                opt = optim.Adam(
                    [
                        {
                            "params": list(net.encoder.parameters()),
                            "lr": c["classifier_lr"] * c["encoder_lr_factor"],
                        },
                        {"params": list(net.head.parameters())},
                    ],
                    lr=c["classifier_lr"],
                )
            else:
                opt = optim.Adam(self.scratch[j].parameters(), lr=c["classifier_lr"])
            self.task_optimizers.append(opt)
        # The labelled sets: a pure function of (seed, n, draw), independent of the training randomness.
        self.subsets = [
            balanced_subset(d.y_train, n, np.random.default_rng([c["seed"], n, r])) for n, r in self.pairs()
        ]
        self.tasks_started = 0

    def modules(self) -> dict[str, Any]:
        return {"autoencoder": self.autoencoder, "heads": self.heads, "finetuned": self.finetuned,
                "scratch": self.scratch}  # fmt: skip

    def optimizers(self) -> dict[str, Any]:
        return {"autoencoder": self.optimizer, **{f"task_{t}": o for t, o in enumerate(self.task_optimizers)}}

    def extra_state(self) -> dict[str, Any]:
        return {"tasks_started": self.tasks_started}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.tasks_started = int(state["tasks_started"])

    def train_loader(self, epoch: int) -> DataLoader | _TaskChain:
        if epoch < self.classifier_epoch:
            return self.make_loader(self.data.train_set(), key="train")
        loaders = []
        for t, (j, _, steps) in enumerate(self.tasks()):
            idx = self.subsets[j]
            b = min(CLASSIFIER_BATCH, len(idx))
            # The labelled set repeated until it fills `steps` batches; the loader shuffles the copies.
            reps = -(-steps * b // len(idx))
            items = np.tile(idx, reps)[: steps * b]
            loaders.append(
                self.make_loader(Subset(self.data.train_set(), items), key=("task", t), batch_size=b)
            )
        return _TaskChain(loaders)

    def train_step(self, batch: tuple[Any, ...], epoch: int) -> float:
        if epoch < self.classifier_epoch:
            return self.autoencoder_step(batch[0])
        x, y, t = batch
        x = self.shifted(x)
        while self.tasks_started <= t:  # the first step of task t
            self.start_task(self.tasks_started)
        j, variant, _ = self.tasks()[t]
        if variant == "frozen":
            self.autoencoder.eval()
            with tinyae.no_grad():
                z = self.autoencoder.encode(x)  # f is frozen: no graph through it
            logits = self.heads[j](z)
        else:
            logits = (self.finetuned if variant == "finetuned" else self.scratch)[j](x)
        loss = F.cross_entropy(logits, y)
        opt = self.task_optimizers[t]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def start_task(self, t: int) -> None:
        """Before task t's first step: the finetuned classifier takes the pretrained f and the frozen head."""
        j, variant, _ = self.tasks()[t]
        if variant == "finetuned":
            self.finetuned[j].load_encoder(self.autoencoder)
            self.finetuned[j].head.load_state_dict(self.heads[j].state_dict())
        self.tasks_started = t + 1

    def autoencoder_step(self, x: Tensor) -> float:
        ae = self.autoencoder
        ae.train()
        level = float(self.config["noise_level"])
        xin = Tensor(MaskingNoise(level)(x.data, tinyae.generator())) if level > 0 else x
        loss = F.binary_cross_entropy_with_logits(ae.decode_logits(ae.encode(xin)), x)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    # -------------------------------------------------------------- evaluation
    def reconstruction_metrics(self) -> dict[str, float]:
        stats = ReconstructionStats()
        self.autoencoder.eval()
        with tinyae.no_grad():
            for (xb,) in self.batches(self.data.x_test):
                stats.add(self.autoencoder(xb).numpy(), xb.numpy())
        return stats.summary()

    def classifier_results(self) -> dict[tuple[int, str], list[tuple[float, float]]]:
        """{(n, variant): [(test cross-entropy, test accuracy) per draw]} from the current weights."""
        d = self.data
        ae = self.autoencoder
        ae.eval()
        nets = {
            "frozen": lambda j, x: self.heads[j](ae.encode(x)),
            "finetuned": lambda j, x: self.finetuned[j](x),
            "scratch": lambda j, x: self.scratch[j](x),
        }
        out: dict[tuple[int, str], list[tuple[float, float]]] = {}
        with tinyae.no_grad():
            for j, (n, _) in enumerate(self.pairs()):
                for variant, net in nets.items():
                    loss_sum, correct = 0.0, 0
                    for xb, yb in self.batches(d.x_test, d.y_test):
                        logits = net(j, xb)
                        loss_sum += F.cross_entropy(logits, yb, reduction="sum").item()
                        correct += int((logits.numpy().argmax(axis=1) == yb.numpy()).sum())
                    out.setdefault((n, variant), []).append(
                        (loss_sum / len(d.y_test), correct / len(d.y_test))
                    )
        return out

    def evaluate(self, epoch: int) -> dict[str, Any]:
        if epoch < self.classifier_epoch:
            m = self.reconstruction_metrics()
            return {"test_loss": m["test_bce"], "phase": "autoencoder", **m}
        results = self.classifier_results()
        record: dict[str, Any] = {
            "test_loss": float(np.mean([ce for runs in results.values() for ce, _ in runs])),
            "phase": "classifiers",
        }
        for (n, variant), runs in results.items():
            record[f"test_accuracy_{n}_{variant}"] = float(np.mean([acc for _, acc in runs]))
        return record

    def final_metrics(self) -> dict[str, Any]:
        results = self.classifier_results()
        final: dict[str, Any] = {}
        per_draw: dict[str, dict[str, list[float]]] = {}
        for n in self.config["labels"]:
            accs = {v: [acc for _, acc in results[(n, v)]] for v in VARIANTS}
            final[f"labels_{n}"] = {v: float(np.mean(a)) for v, a in accs.items()}
            per_draw[f"labels_{n}"] = accs
        for n in self.config["labels"]:
            for v in VARIANTS:
                final[f"test_accuracy_{n}_{v}"] = final[f"labels_{n}"][v]
        for n in self.config["labels"]:
            final[f"finetuned_gain_{n}"] = final[f"labels_{n}"]["finetuned"] - final[f"labels_{n}"]["scratch"]
        final["draws"] = int(self.config["draws"])
        final["per_draw"] = per_draw
        final["autoencoder_test_bce"] = self.reconstruction_metrics()["test_bce"]
        return final

    def report(self, final: dict[str, Any]) -> list[str]:
        lines = [f"  test accuracy (mean of {final['draws']} labelled draws)"]
        lines.append(f"  {'labels':>8} " + " ".join(f"{v:>10}" for v in VARIANTS) + f" {'gain':>10}")
        for n in self.config["labels"]:
            row = final[f"labels_{n}"]
            lines.append(
                f"  {n:>8} " + " ".join(f"{row[v]:>10.4f}" for v in VARIANTS)
                + f" {100 * final[f'finetuned_gain_{n}']:>+9.2f}p"
            )  # fmt: skip
        lines.append("  (gain: finetuned minus scratch, in accuracy points)")
        lines.append(f"  autoencoder_test_bce     {final['autoencoder_test_bce']:.5g}")
        return lines

    # ---------------------------------------------------------------- pictures
    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        d, draws = self.data, self.config["draws"]
        last = history[-1] if history and history[-1].get("phase") == "classifiers" else None
        if last is None:  # no classifier epoch in this run's history: evaluate now
            last = {f"test_accuracy_{n}_{v}": acc for n in self.config["labels"]
                    for v, acc in self.final_metrics()[f"labels_{n}"].items()}  # fmt: skip
        groups = {
            f"{n} labels": {v: last[f"test_accuracy_{n}_{v}"] for v in VARIANTS}
            for n in self.config["labels"]
        }
        ae_epochs = [r for r in history if r.get("phase") == "autoencoder"]
        # loss.png again, without the classifier epoch, whose cross-entropy is not comparable with the
        # BCE (the loop already lists the file).
        pictures.loss_curves(out_dir, ae_epochs, title=f"transfer on {d.name}: autoencoder BCE per pixel")
        written = [
            pictures.bar_chart(
                out_dir,
                groups,
                title=f"transfer ({d.name}): test accuracy\nmean of {draws} labelled draws",
            ),
        ]
        ae = self.autoencoder
        ae.eval()
        x = d.x_test[:N_SHOWN]
        codes = []
        with tinyae.no_grad():
            r = ae(Tensor(x).to(self.device)).numpy()
            for (xb,) in self.batches(d.x_test[:N_CODES]):
                codes.append(ae.encode(xb).numpy())
        written.append(
            pictures.image_rows(
                out_dir,
                "reconstructions.png",
                [("original", x), ("reconstr.", r)],
                f"transfer: the pretrained autoencoder ({ae.code_size}-D code) on test images",
            )
        )
        z = np.concatenate(codes)
        written.append(
            pictures.code_scatter(
                out_dir,
                z,
                d.y_test[:N_CODES],
                [c.split(" - ")[0] for c in d.classes],
                title=f"transfer: {z.shape[1]}-D codes of {len(z)} test images\n(learned without labels"
                + (", PCA to 2-D)" if z.shape[1] > 2 else ")"),
            )
        )
        return written
