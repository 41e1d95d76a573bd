"""Regenerate the autograd-graph figures of docs/autograd-graph.md: python docs/figures.py

Needs Graphviz's `dot` program (apt-get install graphviz). Writes docs/images/graph-*.svg.
"""

from __future__ import annotations

import os

import tinyae
from tinyae import viz
from tinyae.models.vae import VAE, negative_elbo

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "images")


def small() -> None:
    """y = sum(relu(x @ w)) and its gradients, taken with create_graph=True."""
    tinyae.manual_seed(0)
    x = tinyae.randn(4, 3, requires_grad=True)
    w = tinyae.randn(3, 2, requires_grad=True)
    y = (x @ w).relu().sum()
    viz.graph(y, names={"x": x, "w": w}, out=os.path.join(HERE, "graph-small.svg"))
    viz.graph(y, names={"x": x, "w": w}, backward=True, out=os.path.join(HERE, "graph-small-backward.svg"))


def vae_loss() -> None:
    """The negative ELBO of a tiny VAE (hidden 8, latent 2) on 3 images."""
    tinyae.manual_seed(0)
    model = VAE(latent=2, hidden=8)
    x = tinyae.rand(3, 1, 28, 28)
    logits, mu, logvar = model(x)
    loss, _, _ = negative_elbo(logits, x, mu, logvar)
    viz.graph(loss, names={"x": x, **dict(model.named_parameters())}, out=os.path.join(HERE, "graph-vae.svg"))


if __name__ == "__main__":
    os.makedirs(HERE, exist_ok=True)
    small()
    vae_loss()
    print(f"wrote the graphs to {HERE}")
