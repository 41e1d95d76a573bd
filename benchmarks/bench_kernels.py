"""Benchmark im2col / col2im: C++ (tinyae._C) against the NumPy twin.

Shapes are those of layers L1-L6 in ``shared/bench/workloads.md`` (float32). For a
convolution the kernels work on the layer's input image; for a transposed
convolution (L4, L5) on its output image (col2im is its forward pass).

Two ways to run it:

* ``pytest benchmarks/bench_kernels.py`` - pytest-benchmark, one test per (layer, op, impl);
* ``python benchmarks/bench_kernels.py`` - prints a markdown table of medians and the
  NumPy / C++ time ratio, measured interleaved (A B A B ...) in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tinyae.kernels import cpp, numpy_kernels, out_size

# id -> (image shape (N, C, H, W), kernel, stride, padding)
LAYERS: dict[str, tuple[tuple[int, int, int, int], int, int, int]] = {
    "L1": ((128, 1, 28, 28), 3, 1, 1),
    "L2": ((128, 32, 28, 28), 3, 2, 1),
    "L3": ((128, 64, 14, 14), 3, 2, 1),
    "L4": ((128, 64, 14, 14), 3, 2, 1),  # conv_transpose2d (128, 64, 7, 7) -> (128, 64, 14, 14)
    "L5": ((64, 64, 14, 14), 4, 2, 1),  # conv_transpose2d (64, 128, 7, 7) -> (64, 64, 14, 14)
    "L6": ((64, 1, 28, 28), 4, 2, 1),
}

IMPLS: dict[str, Any] = {"cpp": cpp, "numpy": numpy_kernels}


def naive_im2col(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """Pixel-by-pixel Python loops: the baseline the vectorised versions replace (tiny shapes only)."""
    n, c, h, w = x.shape
    oh, ow = out_size(h, k, s, p, 1), out_size(w, k, s, p, 1)
    col = np.zeros((c, k, k, n, oh, ow), dtype=x.dtype)
    for ci in range(c):
        for i in range(k):
            for j in range(k):
                for ni in range(n):
                    for a in range(oh):
                        for b in range(ow):
                            ih, iw = a * s - p + i, b * s - p + j
                            if 0 <= ih < h and 0 <= iw < w:
                                col[ci, i, j, ni, a, b] = x[ni, ci, ih, iw]
    return col


def make_case(layer: str, op: str, impl: Any) -> Callable[[], Any]:
    """A zero-argument function running one kernel on one layer's shape (inputs made once)."""
    (n, c, h, w), k, s, p = LAYERS[layer]
    rng = np.random.default_rng(0)
    if op == "im2col":
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        return lambda: impl.im2col(x, k, k, s, s, p, p, 1, 1)
    oh, ow = out_size(h, k, s, p, 1), out_size(w, k, s, p, 1)
    col = rng.standard_normal((c, k, k, n, oh, ow), dtype=np.float32)
    return lambda: impl.col2im(col, h, w, s, s, p, p, 1, 1)


# ---------------------------------------------------------------- pytest-benchmark


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("op", ["im2col", "col2im"])
@pytest.mark.parametrize("layer", list(LAYERS))
def test_kernel(benchmark: Any, layer: str, op: str, impl: str) -> None:
    if impl == "cpp" and not cpp.AVAILABLE:
        pytest.skip(cpp.UNAVAILABLE_REASON)
    benchmark.group = f"{op} {layer}"
    benchmark(make_case(layer, op, IMPLS[impl]))


def test_naive_tiny(benchmark: Any) -> None:
    """The naive loops on a tiny shape only: they are ~1000x slower."""
    x = np.random.default_rng(0).standard_normal((2, 2, 8, 8), dtype=np.float32)
    benchmark.group = "im2col tiny"
    benchmark(naive_im2col, x, 3, 1, 1)


# ---------------------------------------------------------------- table


def interleaved(a: Callable[[], Any], b: Callable[[], Any], repeats: int) -> tuple[list[float], list[float]]:
    """Time a and b alternately (after a warm-up), so both see the same machine load."""
    a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, times in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return ta, tb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    if not cpp.AVAILABLE:
        raise SystemExit(f"cannot benchmark: {cpp.UNAVAILABLE_REASON}")
    print(f"float32, OpenMP threads: {cpp.openmp_threads()}, median of {args.repeats} interleaved runs\n")
    # The median of per-pair ratios is the number to quote (workloads.md); the ratio of the best
    # times is shown too because on a busy shared machine it is far less noisy.
    print("| layer | op | image (N, C, H, W) | k/s/p | C++ ms | NumPy ms | NumPy / C++ | best / best |")
    print("|---|---|---|---|---:|---:|---:|---:|")
    for layer, (shape, k, s, p) in LAYERS.items():
        for op in ("im2col", "col2im"):
            tc, tn = interleaved(make_case(layer, op, cpp), make_case(layer, op, numpy_kernels), args.repeats)
            ratio = statistics.median(n / c for c, n in zip(tc, tn, strict=True))
            print(
                f"| {layer} | {op} | {shape} | {k}/{s}/{p} | {1e3 * statistics.median(tc):.2f} "
                f"| {1e3 * statistics.median(tn):.2f} | {ratio:.1f}x | {min(tn) / min(tc):.1f}x |"
            )


if __name__ == "__main__":
    main()
