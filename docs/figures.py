"""Regenerate the documentation's figures: python docs/figures.py [--runs DIR] [--only NAME ...]

Two kinds of figure land in docs/images/:

* the autograd graphs of docs/autograd.md, drawn by tinyae.viz.graph (needs Graphviz's `dot`
  program: apt-get install graphviz); a second or two;
* the pictures of real training runs, one per lecture page: for each entry of RUNS below, the
  script runs the listed `tinyae train` command into DIR/NAME (default DIR: runs/docs) unless
  that run already finished, then copies the listed pictures. The runs take about 40 minutes
  on two cores in all, MNIST required (TINYAE_DATA pointing at the four IDX files).

The numbers quoted next to the figures come from the same runs' metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGES = os.path.join(HERE, "images")

# name: (the arguments of `tinyae train`, the pictures to copy as images/NAME-PICTURE)
RUNS: dict[str, tuple[list[str], list[str]]] = {
    "encoder838": (["encoder838"], ["codes838.png", "loss.png"]),
    "ae": (["ae"], ["reconstructions.png", "codes.png"]),
    "stacked-ae": (["stacked-ae"], ["filters.png"]),
    "transfer": (["transfer"], ["accuracy.png"]),
    "conv-ae": (["conv-ae"], ["reconstructions.png"]),
    "denoise": (["denoise"], ["denoising.png"]),
    "vae": (["vae"], ["reconstructions.png", "samples.png", "interpolation.png"]),
    "vae-latent2": (["vae", "--latent", "2", "--score-samples", "0", "--iw-samples", "0"],
                    ["manifold.png", "codes.png"]),  # fmt: skip
    "gan": (["gan"], ["samples/epoch-001.png", "samples.png"]),
    "dcgan": (["dcgan"], ["samples.png", "curves.png"]),
    "dcgan-collapse": (["dcgan", "--epochs", "3", "--limit-train", "20000", "--g-loss", "saturating",
                        "--d-lr-scale", "10"], ["samples.png"]),  # fmt: skip
}


LAYERS = """digraph layers {
  rankdir=BT; node [shape=box, style=filled, fillcolor="#f4f4f4", fontname="Helvetica", fontsize=11];
  core [label="tensor.py: Tensor, Function, backward, grad", fillcolor="#cfe2ff"];
  ops [label="ops/: arithmetic, activation, reduce, shape, index", fillcolor="#cfe2ff"];
  kernels [label="kernels/: im2col, col2im (NumPy spec, C++, CUDA)"];
  nn [label="nn/: conv2d, Linear, Conv2d, BatchNorm2d, losses, Module"];
  optim [label="optim/: SGD, Adam, RMSprop"];
  data [label="data/: MNIST, Shapes, DataLoader, noise"];
  models [label="models/: 8-3-8, autoencoders, VAE, GAN"];
  train [label="train/, cli.py: the loop, metrics, pictures, tinyae train"];
  backend [label="backend.py, parallel.py: NumPy or CuPy, threads", fillcolor="#e8e8e8"];
  backend -> core -> ops -> nn; backend -> kernels -> nn; nn -> models; nn -> optim;
  optim -> train; data -> train; models -> train;
}
"""


def layers() -> None:
    """The package's layers, bottom up (a hand-written DOT graph)."""
    exe = shutil.which("dot")
    if exe is None:
        raise SystemExit("docs/figures.py: Graphviz's dot program is needed (apt-get install graphviz)")
    svg = subprocess.run([exe, "-Tsvg"], input=LAYERS.encode(), capture_output=True, check=True).stdout
    with open(os.path.join(IMAGES, "layers.svg"), "wb") as f:
        f.write(svg)


def graphs() -> None:
    """y = sum(relu(x @ w)) with and without its gradient graph, and a small VAE's loss."""
    import tinyae
    from tinyae import viz
    from tinyae.models.vae import VAE, negative_elbo

    tinyae.manual_seed(0)
    x = tinyae.randn(4, 3, requires_grad=True)
    w = tinyae.randn(3, 2, requires_grad=True)
    y = (x @ w).relu().sum()
    viz.graph(y, names={"x": x, "w": w}, out=os.path.join(IMAGES, "graph-small.svg"))
    viz.graph(y, names={"x": x, "w": w}, backward=True, out=os.path.join(IMAGES, "graph-small-backward.svg"))

    tinyae.manual_seed(0)
    model = VAE(latent=2, hidden=8)
    x = tinyae.rand(3, 1, 28, 28)
    logits, mu, logvar = model(x)
    loss, _, _ = negative_elbo(logits, x, mu, logvar)
    names = {"x": x, **dict(model.named_parameters())}
    viz.graph(loss, names=names, out=os.path.join(IMAGES, "graph-vae.svg"))


def _finished(run_dir: str) -> bool:
    try:
        with open(os.path.join(run_dir, "metrics.json")) as f:
            return "final" in json.load(f)
    except (OSError, ValueError):
        return False


def run_pictures(runs_dir: str, name: str) -> None:
    args, pictures = RUNS[name]
    out = os.path.join(runs_dir, name)
    if not _finished(out):
        if os.path.isfile(os.path.join(out, "checkpoint.npz")):
            cmd = ["tinyae", "train", *args, "--resume", out]  # an interrupted run continues
        else:
            cmd = ["tinyae", "train", *args, "--out", out]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    for picture in pictures:
        target = f"{name}-{picture.replace('/', '-')}"  # samples/epoch-001.png -> NAME-samples-epoch-001.png
        shutil.copyfile(os.path.join(out, picture), os.path.join(IMAGES, target))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=os.path.join("runs", "docs"), help="where the training runs go")
    parser.add_argument("--only", nargs="*", choices=["graphs", *RUNS], help="just these figures")
    ns = parser.parse_args(argv)
    os.makedirs(IMAGES, exist_ok=True)
    for name in ns.only or ["graphs", *RUNS]:
        if name == "graphs":
            layers()
            graphs()
        else:
            run_pictures(ns.runs, name)
    print(f"figures written to {IMAGES}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
