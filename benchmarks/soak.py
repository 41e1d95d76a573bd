"""Soak: thousands of training steps back to back, with resident memory and step time per block.

A leak (a graph kept alive by a reference, a cache that only grows, buffers piling up in a
thread) shows as resident memory that climbs block after block; a slowdown (subnormal floats,
a fragmenting heap, a growing Python structure) as step times that do. The model is a small
convolutional autoencoder trained with Adam, so the conv kernels, the thread pool, batch norm
and the optimizer all run every step.

    python -m benchmarks.soak                  # 4,000 steps, a line per 500
    python -m benchmarks.soak --steps 2000 --block 250 --json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def _rss_mb() -> float:
    """Resident memory of this process in MB (Linux: /proc/self/statm)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def soak(steps: int, block: int, batch: int = 32, seed: int = 0) -> list[dict[str, float]]:
    """Train ``steps`` steps; return, per block of ``block`` steps, the step time and the RSS."""
    import tinyae
    import tinyae.nn as nn
    import tinyae.nn.functional as F

    tinyae.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1),
    )  # fmt: skip
    opt = tinyae.optim.Adam(model.parameters(), lr=1e-3)
    data = np.random.default_rng(seed).random((8, batch, 1, 28, 28), dtype=np.float32)
    blocks = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        x = tinyae.tensor(data[step % len(data)])
        loss = F.binary_cross_entropy_with_logits(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % block == 0:
            now = time.perf_counter()
            blocks.append({"step": step, "ms_per_step": (now - t0) / block * 1e3, "rss_mb": _rss_mb(),
                           "loss": float(loss)})  # fmt: skip
            t0 = time.perf_counter()
    return blocks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="tinyae soak: memory and step time over many steps")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--block", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the blocks as JSON")
    args = parser.parse_args(argv)
    blocks = soak(args.steps, args.block)
    if args.json:
        print(json.dumps(blocks))
        return
    for b in blocks:
        line = f"step {b['step']:6d}: {b['ms_per_step']:6.2f} ms/step, RSS {b['rss_mb']:7.1f} MB"
        print(f"{line}, loss {b['loss']:.4f}")


if __name__ == "__main__":
    main()
