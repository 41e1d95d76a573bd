"""Recipe ``encoder838``: the 8-3-8 encoding problem, trained by full-batch gradient descent.

Data: the 8 one-hot patterns, which are both the training and the test set.
Loss: binary cross-entropy summed over the 8 outputs and over the patterns of
the batch (the classic sum-of-errors form; with the full batch and lr 0.5 this is
the published setup, which solves in essentially every seed)::

    L = -sum_n sum_i [x_ni log r_ni + (1 - x_ni) log(1 - r_ni)]

A pattern counts as *reconstructed* when every one of its 8 outputs is on the
right side of 0.5; the problem is *solved* when all 8 patterns are. ``--seeds K``
also trains K networks with seeds ``seed .. seed+K-1`` (same options) and
reports in how many of them all 8 patterns were solved within ``--epochs``.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

import tinyae
import tinyae.nn.functional as F
from tinyae import optim
from tinyae.data import DataLoader, TensorDataset
from tinyae.models.encoder838 import Encoder838, binary_codes, one_hot_patterns
from tinyae.tensor import Tensor
from tinyae.train import pictures
from tinyae.train.checkpoint import generator_state, restore_generator
from tinyae.train.recipe import Recipe

__all__ = ["Encoder838Recipe"]


class Encoder838Recipe(Recipe):
    summary = "the 8-3-8 encoder: 8 one-hot patterns through 3 hidden units (full-batch gradient descent)"
    description = (
        "Learns a 3-unit code for the 8 one-hot patterns with sigmoid units, BCE and plain gradient descent. "
        "Reports how many patterns are reconstructed, the learned codes next to the binary codes of the "
        "slide (codes838.png), and with --seeds K how many of K seeds solve all 8 patterns. --dataset is "
        "ignored (the data are the 8 patterns)."
    )
    uses_images = False
    defaults = {"epochs": 500, "batch_size": 8, "lr": 0.5}
    loss_reduction = "sum"
    pictures_made = ("loss.png", "codes838.png")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
        parser.add_argument("--patterns", type=int, default=8, help="number of one-hot patterns (default 8)")
        parser.add_argument("--hidden", type=int, default=3, help="hidden units (default 3)")
        parser.add_argument("--momentum", type=float, default=0.0, help="SGD momentum (default 0: plain GD)")
        parser.add_argument(
            "--seeds",
            type=int,
            default=20,
            help="also train this many seeds (seed, seed+1, ...) and report how many solve all patterns "
            "within --epochs (default 20; 0 to skip)",
        )

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> str | None:
        if config["patterns"] < 2:
            return f"--patterns must be at least 2, got {config['patterns']}"
        if config["hidden"] < 1:
            return f"--hidden must be at least 1, got {config['hidden']}"
        if config["seeds"] < 0:
            return f"--seeds must be >= 0, got {config['seeds']}"
        if not 0.0 <= config["momentum"] < 1.0:
            return f"--momentum must be in [0, 1), got {config['momentum']}"
        return None

    # ---------------------------------------------------------------- training
    def build(self) -> None:
        n = self.config["patterns"]
        self.patterns = one_hot_patterns(n)  # (n, n): inputs and targets
        self.model = Encoder838(n, self.config["hidden"]).to(self.device)
        self.optimizer = optim.SGD(
            self.model.parameters(), lr=self.config["lr"], momentum=self.config["momentum"]
        )
        self.solved_epoch: int | None = None  # first epoch after which all patterns were reconstructed

    def extra_state(self) -> dict[str, Any]:
        return {"solved_epoch": self.solved_epoch}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.solved_epoch = state.get("solved_epoch")

    def dataset_name(self) -> str:
        return f"one-hot-{self.config['patterns']}"

    def train_loader(self, epoch: int) -> DataLoader:
        return self.make_loader(TensorDataset(self.patterns, self.patterns), key="patterns")

    @staticmethod
    def loss_fn(r: Tensor, x: Tensor) -> Tensor:
        """BCE summed over outputs and patterns."""
        return F.binary_cross_entropy(r, x, reduction="sum")

    def train_step(self, batch: tuple[Tensor, ...], epoch: int) -> float:
        x, _ = batch
        self.model.train()
        loss = self.loss_fn(self.model(x), x)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def outputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The codes (n, hidden) and reconstructions (n, n) of all patterns."""
        self.model.eval()
        with tinyae.no_grad():
            x = Tensor(self.patterns, device=self.device)
            h = self.model.encode(x)
            r = self.model.decode(h)
        return h.numpy(), r.numpy()

    def patterns_correct(self, r: np.ndarray) -> int:
        return int(np.sum(np.all((r > 0.5) == (self.patterns > 0.5), axis=1)))

    def evaluate(self, epoch: int) -> dict[str, Any]:
        _, r = self.outputs()
        correct = self.patterns_correct(r)
        if correct == len(self.patterns) and self.solved_epoch is None:
            self.solved_epoch = epoch + 1
        return {"test_loss": _bce(r, self.patterns) * len(self.patterns), "patterns_correct": correct}

    # ------------------------------------------------------------------ results
    def final_metrics(self) -> dict[str, Any]:
        h, r = self.outputs()
        correct = self.patterns_correct(r)
        final: dict[str, Any] = {
            "test_bce": _bce(r, self.patterns) / self.patterns.shape[1],  # per output unit
            "test_mse": float(np.mean((r - self.patterns) ** 2)),
            "patterns_correct": correct,
            "all_patterns_correct": correct == len(self.patterns),
            "solved_epoch": self.solved_epoch,
            "codes": np.round(h, 4).tolist(),
            "code_bits": ["".join("1" if v > 0.5 else "0" for v in row) for row in h],
            "distinct_codes": len({tuple(row > 0.5) for row in h}),
        }
        if self.config["seeds"] > 0:
            final["seed_sweep"] = self.seed_sweep(self.config["seeds"])
        return final

    def seed_sweep(self, k: int) -> dict[str, Any]:
        """Train ``k`` fresh networks (seeds seed..seed+k-1); epochs each needed to solve all patterns."""
        saved = generator_state()  # the sweep reseeds the global generator; put it back afterwards
        epochs = int(self.config["epochs"])
        solve: list[int | None] = []
        try:
            for s in range(int(self.config["seed"]), int(self.config["seed"]) + k):
                run = type(self)({**self.config, "seed": s, "seeds": 0}, None, self.device)
                tinyae.manual_seed(s)
                run.build()
                for epoch in range(epochs):
                    loader = run.train_loader(epoch)
                    loader.set_epoch(epoch)
                    for batch in loader:
                        run.train_step(batch, epoch)
                    run.evaluate(epoch)
                    if run.solved_epoch is not None:
                        break
                solve.append(run.solved_epoch)
        finally:
            restore_generator(saved)
        done = sorted(e for e in solve if e is not None)
        return {
            "seeds": k,
            "first_seed": int(self.config["seed"]),
            "epochs": epochs,
            "solved": len(done),
            "median_solve_epoch": float(np.median(done)) if done else None,
            "solve_epochs": solve,
        }

    def report(self, final: dict[str, Any]) -> list[str]:
        n = len(self.patterns)
        since = f" (all since epoch {final['solved_epoch']})" if final["solved_epoch"] else ""
        lines = [f"  patterns reconstructed: {final['patterns_correct']}/{n}{since}"]
        slide = binary_codes(n)
        lines.append("  input   slide code   learned code (bits)")
        for i, row in enumerate(final["codes"]):
            bits = "".join(str(int(b)) for b in slide[i])
            learned = " ".join(f"{v:.2f}" for v in row)
            lines.append(f"  e{i + 1:<5}  {bits:<11}  {learned}  ({final['code_bits'][i]})")
        lines.append(
            f"  distinct codes: {final['distinct_codes']}/{n}   test BCE per output {final['test_bce']:.4g}"
        )
        sweep = final.get("seed_sweep")
        if sweep:
            med = sweep["median_solve_epoch"]
            lines.append(
                f"  seed sweep: {sweep['solved']}/{sweep['seeds']} seeds solve all patterns within "
                f"{sweep['epochs']} epochs" + (f" (median {med:g} epochs)" if med is not None else "")
            )
        return lines

    def pictures(self, out_dir: str, history: list[dict[str, Any]]) -> list[str]:
        h, _ = self.outputs()
        return [pictures.encoder_codes(out_dir, h)]


def _bce(r: np.ndarray, x: np.ndarray) -> float:
    """BCE summed over outputs, averaged over patterns, in float64."""
    rc = np.clip(r.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.sum(x * np.log(rc) + (1 - x) * np.log1p(-rc), axis=1)))
