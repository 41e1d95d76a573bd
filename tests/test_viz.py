"""tinyae.viz.graph: the DOT text names every op and leaf once, with the shapes on the arrows."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import tinyae
from tinyae import viz


def parse(dot: str) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Node name -> label, and (src, dst, edge label) triples, read back from the DOT text."""
    nodes = dict(re.findall(r'^  (\w+) \[label="([^"]*)"', dot, flags=re.M))
    found = re.findall(r'^  (\w+) -> (\w+)(?: \[label="([^"]*)"\])?;', dot, flags=re.M)
    edges = [(a, b, lab or "") for a, b, lab in found]
    return nodes, edges


def labels(nodes: dict[str, str]) -> list[str]:
    return sorted(nodes.values())


def leaves(n=4):
    x = tinyae.tensor(np.arange(n * 3, dtype=np.float32).reshape(n, 3) / 10, requires_grad=True)
    w = tinyae.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    return x, w


def test_small_expression_ops_leaves_and_shapes():
    x, w = leaves()
    y = (x @ w).relu().sum()
    nodes, edges = parse(viz.graph(y, names={"x": x, "w": w}))
    assert labels(nodes) == sorted(["MatMul", "ReLU", "Sum", "x\\n(4, 3) float32", "w\\n(3, 2) float32",
                                    "result\\n()"])  # fmt: skip
    by_label = {lab.split("\\n")[0]: name for name, lab in nodes.items()}
    want = {("x", "MatMul", ""), ("w", "MatMul", ""), ("MatMul", "ReLU", "(4, 2)"), ("ReLU", "Sum", "(4, 2)"),
            ("Sum", "result", "()")}  # fmt: skip
    got = {(nodes[a].split("\\n")[0], nodes[b].split("\\n")[0], lab) for a, b, lab in edges}
    assert got == want and len(edges) == len(want)
    assert 'fillcolor="#cfe2ff"' in viz.graph(y).split(f"  {by_label['x']} [")[1].split("\n")[0]


def test_constants_shared_subexpressions_and_freed_inputs():
    x, _ = leaves()
    c = tinyae.tensor(np.full((4, 3), 2.0, np.float32))  # requires_grad False: a constant
    a = x.exp()
    y = (a * a + (x * c).exp()).sum()  # `a` used twice; Add keeps its inputs only as Edges
    nodes, edges = parse(viz.graph(y))
    names = labels(nodes)
    assert names.count("Exp") == 2 and names.count("Mul") == 2 and names.count("Add") == 1
    assert "constant\\n(4, 3) float32" in names and "leaf\\n(4, 3) float32" in names
    exp_to_mul = [e for e in edges if nodes[e[0]] == "Exp" and nodes[e[1]] == "Mul"]
    assert len(exp_to_mul) == 2 and len({e[0] for e in exp_to_mul}) == 1  # one Exp node, two arrows
    assert sum(nodes[b] == "Add" for _, b, _ in edges) == 2


def test_named_parameters_of_a_vae_loss():
    from tinyae.models.vae import VAE, negative_elbo

    tinyae.manual_seed(0)
    model = VAE(latent=2, hidden=8)
    x = tinyae.rand(3, 1, 28, 28)
    logits, mu, logvar = model(x)
    loss, _, _ = negative_elbo(logits, x, mu, logvar)
    nodes, edges = parse(viz.graph(loss, names=model.named_parameters()))
    shown = {lab.split("\\n")[0] for lab in nodes.values()}
    params = dict(model.named_parameters())
    assert set(params) <= shown  # every parameter, by name
    for name, p in params.items():
        assert f"{name}\\n{tuple(p.shape)} float32" in nodes.values()
    assert len(edges) > len(params)
    loss.backward()  # the graph was left intact


def test_backward_draws_the_double_backward_graph():
    x, w = leaves()
    y = ((x @ w).sigmoid() ** 2).sum()
    plain = parse(viz.graph(y, names={"x": x, "w": w}))[0]
    nodes, edges = parse(viz.graph(y, names={"x": x, "w": w}, backward=True))
    grads = sorted(lab for lab in nodes.values() if lab.startswith("d result"))
    assert grads == ["d result / d w\\n(3, 2)", "d result / d x\\n(4, 3)"]
    assert len(nodes) > len(plain) + 2  # the backward's own ops
    # the gradients reuse the forward's sigmoid output: an arrow from the forward Sigmoid node
    sig = [n for n, lab in nodes.items() if lab == "Sigmoid"]
    assert len(sig) == 1 and sum(a == sig[0] for a, _, _ in edges) >= 2
    y.backward()  # still possible: the drawing kept the graph
    assert x.grad is not None


def test_a_freed_graph_and_bad_arguments_raise_clear_errors(tmp_path):
    x, w = leaves()
    y = (x @ w).sum()
    with pytest.raises(ValueError, match="'out' must end in one of"):
        viz.graph(y, out=str(tmp_path / "g.jpeg"))
    with pytest.raises(TypeError, match="argument 0 must be a Tensor, got ndarray"):
        viz.graph(np.ones(3))
    with pytest.raises(TypeError, match="at least one Tensor"):
        viz.graph()
    with pytest.raises(TypeError, match="'names' must map names to Tensors; 'x' is a int"):
        viz.graph(y, names={"x": 3})
    with pytest.raises(ValueError, match=r"one-element tensors; argument 0 has shape \(4, 2\)"):
        viz.graph(x @ w, backward=True)
    with pytest.raises(ValueError, match="depends on no leaf that requires grad"):
        viz.graph(tinyae.ones(2).sum(), backward=True)
    y.backward()
    with pytest.raises(RuntimeError, match=r"freed by backward\(\).*retain_graph=True"):
        viz.graph(y)


def test_writes_dot_text_and_needs_graphviz_for_pictures(tmp_path, monkeypatch):
    x, w = leaves()
    y = (x @ w).sum()
    text = viz.graph(y, out=tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == text
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs Graphviz's 'dot' program"):
        viz.graph(y, out=tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_renders_svg_with_graphviz(tmp_path):
    x, w = leaves()
    viz.graph((x @ w).relu().sum(), names={"x": x, "w": w}, backward=True, out=tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "MatMul" in svg and "d result / d x" in svg
