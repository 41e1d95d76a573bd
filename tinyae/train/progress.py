"""Progress reporting: a tqdm bar per epoch on a terminal, one line per epoch otherwise.

``quiet=True`` silences both. tqdm is imported only when a bar is shown (and a
missing tqdm just means no bar).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress"]


class Progress:
    """Per-epoch progress: ``start(epoch, total, n_batches)``, ``update(loss)``, ``end(line)``."""

    def __init__(self, quiet: bool = False, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.quiet = quiet
        self.use_bar = not quiet and _is_tty(self.stream) and _has_tqdm()
        self.bar: Any = None
        self.loss_sum = 0.0
        self.count = 0

    def start(self, epoch: int, total: int, n_batches: int, done: int = 0) -> None:
        """Epoch ``epoch`` (1-based) of ``total``, ``n_batches`` batches of which ``done`` are done."""
        self.loss_sum, self.count = 0.0, 0
        if self.use_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=n_batches,
                initial=done,
                desc=f"epoch {epoch}/{total}",
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
            )

    def update(self, loss: float | None) -> None:
        """One batch done; ``loss`` None: a skipped batch (not in the running mean)."""
        if self.bar is not None:
            self.bar.update(1)
        if loss is None:
            return
        self.loss_sum += loss
        self.count += 1
        if self.bar is not None and (self.count % 5 == 1 or self.count < 5):  # the postfix costs
            self.bar.set_postfix(loss=f"{self.loss_sum / self.count:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def end(self, line: str, show: bool = True) -> None:
        """Close the bar and print the epoch's summary line (when ``show``)."""
        self.close()
        if show:
            self.print(line)

    def print(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _has_tqdm() -> bool:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return True
