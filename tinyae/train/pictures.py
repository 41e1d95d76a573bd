"""Pictures of a run (PNG), drawn with matplotlib's Agg renderer.

matplotlib is imported inside each function, and only its object-oriented API
is used (``Figure`` + ``FigureCanvasAgg``): no pyplot, no global backend switch,
no window. Each file is written atomically. Every function returns the file name
(not the full path) it wrote, which is what :meth:`Recipe.pictures` returns.

Image arrays may be (N, 1, H, W), (N, H, W) or (N, H*W) with a square H*W.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinyae._atomic import atomic_write_bytes

__all__ = ["animated_gif", "bar_chart", "code_scatter", "curves", "encoder_codes", "filters", "grid_array",
           "image_rows", "loss_curves", "manifold", "sample_grid", "save_picture"]  # fmt: skip


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out_dir: str, name: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(os.path.join(out_dir, name), buf.getvalue())
    return name


def _as_images(x: np.ndarray) -> np.ndarray:
    """(N, H, W) from (N, 1, H, W), (N, H, W) or (N, P) with P a perfect square."""
    x = np.asarray(x)
    if x.ndim == 4:
        return x[:, 0]
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"pictures: cannot show vectors of length {x.shape[1]} as square images")
        return x.reshape(len(x), side, side)
    return x


def image_rows(out_dir: str, name: str, rows: Sequence[tuple[str, np.ndarray]], title: str = "") -> str:
    """A grid with one labelled row per ``(label, images)``; e.g. originals above reconstructions."""
    rows = [(label, _as_images(images)) for label, images in rows]
    n_cols = max(len(images) for _, images in rows)
    fig = _figure(1.0 + 0.9 * n_cols, 0.3 + 0.95 * len(rows))
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(images):
                ax.imshow(images[c], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.12, right=0.99, bottom=0.01, top=0.88 if title else 0.99, wspace=0.05,
                        hspace=0.08)  # fmt: skip
    return _save(fig, out_dir, name)


def loss_curves(
    out_dir: str, history: Sequence[dict[str, Any]], name: str = "loss.png", title: str = ""
) -> str:
    """Train and test loss per epoch (log scale when all losses are positive)."""
    fig = _figure(6.0, 4.0)
    ax = fig.add_subplot()
    epochs = [rec["epoch"] for rec in history]
    for key, style in (("train_loss", "o-"), ("test_loss", "s--")):
        values = [rec.get(key) for rec in history]
        if values and all(isinstance(v, int | float) for v in values):
            ax.plot(epochs, values, style, label=key.replace("_", " "), markersize=3)
    values = [rec.get(k) for rec in history for k in ("train_loss", "test_loss")]
    if values and all(isinstance(v, int | float) and v > 0 for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "loss per epoch")
    fig.tight_layout()
    return _save(fig, out_dir, name)


def code_scatter(
    out_dir: str,
    codes: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str] = (),
    name: str = "codes.png",
    title: str = "",
) -> str:
    """The codes as points coloured by label: the codes themselves when 2-D, else their top-2 PCA."""
    codes = np.asarray(codes, dtype=np.float64).reshape(len(codes), -1)
    labels = np.asarray(labels)
    if codes.shape[1] == 2:
        xy, axis_names = codes, ("code 1", "code 2")
    else:
        centred = codes - codes.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        xy, axis_names = centred @ vt[:2].T, ("principal component 1", "principal component 2")
        if xy.shape[1] < 2:  # a 1-D code: plot it against zero
            xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    fig = _figure(6.5, 5.5)
    ax = fig.add_subplot()
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    for k in np.unique(labels):
        sel = labels == k
        name_k = classes[int(k)] if int(k) < len(classes) else str(k)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, alpha=0.6, color=cmap(int(k) % 10), label=name_k)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set_title(title or f"{codes.shape[1]}-D codes of test images, coloured by label")
    fig.tight_layout()
    return _save(fig, out_dir, name)


def filters(
    out_dir: str, weights: np.ndarray, name: str = "filters.png", title: str = "", max_filters: int = 64
) -> str:
    """The first layer's filters as small images: ``weights`` (K, P) of a Linear or (K, 1, KH, KW) of a conv.

    Each filter is scaled to its own symmetric range, so grey is zero, white
    positive and black negative.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w.reshape(w.shape[0], w.shape[-2], w.shape[-1]) if w.ndim == 4 else _as_images(w)
    w = w[:max_filters]
    n = len(w)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = _figure(0.8 * cols + 0.4, 0.8 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        ax.axis("off")
        if i < n:
            m = np.abs(w[i]).max() or 1.0
            ax.imshow(w[i], cmap="gray", vmin=-m, vmax=m)
    fig.suptitle(title or f"first-layer filters ({n} shown)", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, wspace=0.05, hspace=0.05)
    return _save(fig, out_dir, name)


def bar_chart(
    out_dir: str,
    groups: dict[str, dict[str, float]],
    name: str = "accuracy.png",
    title: str = "",
    ylabel: str = "test accuracy",
) -> str:
    """Grouped bars: ``{group: {series: value}}``, e.g. ``{"100 labels": {"scratch": 0.7, ...}}``."""
    group_names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    fig = _figure(1.5 + 1.6 * len(group_names), 4.5)
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    for i, s in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(group_names))]
        values = [groups[g].get(s, np.nan) for g in group_names]
        bars = ax.bar(xs, values, width, label=s)
        ax.bar_label(bars, fmt="%.3f", fontsize=7)
    ax.set_xticks(range(len(group_names)), group_names)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.set_title(title or ylabel)
    fig.tight_layout()
    return _save(fig, out_dir, name)


def encoder_codes(out_dir: str, codes: np.ndarray, name: str = "codes838.png", title: str = "") -> str:
    """The 8-3-8 encoder's learned hidden codes next to the 3-bit binary codes of the slide.

    ``codes`` is (8, 3): the hidden activations (in [0, 1]) for each one-hot input.
    Each cell shows its value; the learned code rounded to bits is printed at the right.
    """
    codes = np.asarray(codes, dtype=np.float64)
    n, k = codes.shape
    binary = ((np.arange(n)[:, None] >> np.arange(k - 1, -1, -1)[None, :]) & 1).astype(np.float64)
    fig = _figure(7.0, 4.2)
    axes = fig.subplots(1, 2)
    panels = ((axes[0], binary, "binary code (slide)", "{:.0f}"), (axes[1], codes, "learned code", "{:.2f}"))
    for ax, values, heading, fmt in panels:
        ax.imshow(values, cmap="gray_r", vmin=0.0, vmax=1.0, aspect="auto")
        for i in range(n):
            for j in range(k):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if values[i, j] > 0.5 else "black")  # fmt: skip
        ax.set_xticks(range(k), [f"h{j + 1}" for j in range(k)])
        ax.set_yticks(range(n), [f"input {i + 1}" for i in range(n)])
        ax.set_title(heading, fontsize=10)
    bits = (codes > 0.5).astype(int)
    for i in range(n):
        axes[1].text(k - 0.3, i, " " + "".join(map(str, bits[i])), ha="left", va="center", fontsize=8)
    fig.suptitle(title or "8-3-8 encoder: hidden codes for the 8 one-hot inputs", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, name)


# ------------------------------------------------------------------ sample grids (Pillow, exact pixels)


def grid_array(images: np.ndarray, ncols: int | None = None, pad: int = 2) -> np.ndarray:
    """Images (N, 1, H, W) in [0, 1] tiled into one uint8 picture, ``ncols`` per row (default ~sqrt N).

    Every image keeps its pixels (no resampling); ``pad`` grey pixels separate them.
    """
    x = _as_images(images)  # (N, H, W)
    n, h, w = x.shape
    ncols = ncols or max(1, math.ceil(math.sqrt(n)))
    nrows = max(1, math.ceil(n / ncols))
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad), 128, np.uint8)
    tiles = np.clip(np.rint(np.nan_to_num(x, nan=0.0) * 255.0), 0, 255).astype(np.uint8)
    for i in range(n):
        r, c = divmod(i, ncols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = tiles[i]
    return grid


def _png_bytes(picture: np.ndarray, scale: int) -> bytes:
    from PIL import Image

    img = Image.fromarray(picture, mode="L")
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_picture(path: str, picture: np.ndarray, scale: int = 2) -> str:
    """Write a uint8 picture (H, W) as a PNG at ``path`` (atomically), each pixel ``scale`` x ``scale``."""
    atomic_write_bytes(path, _png_bytes(np.asarray(picture, np.uint8), scale))
    return path


def sample_grid(out_dir: str, name: str, images: np.ndarray, ncols: int | None = None, scale: int = 2) -> str:
    """``images`` (N, 1, H, W) in [0, 1] as one PNG grid, pixel for pixel (no axes, no title)."""
    save_picture(os.path.join(out_dir, name), grid_array(images, ncols), scale)
    return name


def animated_gif(out_dir: str, name: str, frames: Sequence[np.ndarray], ms_per_frame: int = 500,
                 scale: int = 2) -> str:  # fmt: skip
    """Frames (uint8 pictures of one size, e.g. from :func:`grid_array`) as a looping animated GIF."""
    from PIL import Image

    if not frames:
        raise ValueError("animated_gif: no frames")
    images = [Image.fromarray(np.asarray(f, np.uint8), mode="L") for f in frames]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=ms_per_frame, loop=0)
    atomic_write_bytes(os.path.join(out_dir, name), buf.getvalue())
    return name


def manifold(out_dir: str, images: np.ndarray, values: Sequence[float], name: str = "manifold.png",
             title: str = "") -> str:  # fmt: skip
    """A k x k grid of images decoded from a grid of 2-D codes; ``values`` label both axes (z1, z2).

    ``images`` (k*k, 1, H, W) in row-major order: row i has z2 = values[k - 1 - i] (top = largest),
    column j has z1 = values[j].
    """
    k = len(values)
    grid = grid_array(images, ncols=k, pad=0)
    h = grid.shape[0] / k
    fig = _figure(7.0, 7.4)
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255)
    shown = range(0, k, max(1, k // 5))  # about five labelled ticks per axis
    ticks = [h * (i + 0.5) for i in shown]
    ax.set_xticks(ticks, [f"{values[j]:.2f}" for j in shown], fontsize=7)
    ax.set_yticks(ticks, [f"{values[k - 1 - i]:.2f}" for i in shown], fontsize=7)
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title or "decoded grid of the 2-D latent space", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, name)


def curves(out_dir: str, name: str, panels: Sequence[tuple[str, dict[str, Sequence[float]]]],
           x: Sequence[float], xlabel: str = "step", title: str = "") -> str:  # fmt: skip
    """Side-by-side line plots: ``panels`` = [(y label, {series name: values}), ...] over ``x``."""
    fig = _figure(5.0 * len(panels), 4.0)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (ylabel, series) in zip(axes, panels):
        for label, values in series.items():
            ax.plot(x[: len(values)], values, label=label, linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, name)
