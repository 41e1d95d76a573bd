"""Draw the autograd graph: which ops made a tensor, from which inputs, in which shapes.

Every Tensor made by an op remembers its ``creator`` (a Function), and every Function its
``inputs``; following those links from a result back to the leaves gives the graph that
``backward`` walks in reverse. ``graph`` writes that walk as Graphviz DOT text::

    x = tinyae.randn(4, 3, requires_grad=True)
    w = tinyae.randn(3, 2, requires_grad=True)
    y = (x @ w).relu().sum()
    print(tinyae.viz.graph(y, names={"x": x, "w": w}))                # DOT text
    tinyae.viz.graph(y, names={"x": x, "w": w}, out="graph.svg")     # needs Graphviz's `dot`

In the picture:

* a grey box is a leaf that does not require grad (data, targets, noise);
* a blue box is a leaf that requires grad (a parameter): ``backward`` fills its ``.grad``;
* an ellipse is an op (a Function), named as its class (less a ``Function`` suffix); each
  arrow carries the shape of the tensor that flows along it, from the producer to the op that
  consumes it;
* a green box is the tensor you asked for.

``graph(loss, backward=True)`` also differentiates ``loss`` with ``create_graph=True`` and
draws the graph of the gradients (orange boxes, "d loss / d name"): the ops that backward
records when a gradient must itself be differentiated, as the WGAN-GP penalty does (its
double backward). Forward ops that the gradients reuse appear once, shared.

Draw before calling ``backward``: backward frees each op's saved inputs as it goes (unless
``retain_graph=True``), and a freed op can no longer say what its inputs were.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from tinyae._atomic import atomic_write_bytes, atomic_write_text
from tinyae.autograd import Function, _topological_order, grad
from tinyae.tensor import Tensor

__all__ = ["graph"]

_FORMATS = (".dot", ".gv", ".svg", ".png", ".pdf")
_STYLE = {
    "constant": 'shape=box, style=filled, fillcolor="#e8e8e8"',
    "parameter": 'shape=box, style=filled, fillcolor="#cfe2ff"',
    "op": "shape=ellipse",
    "result": 'shape=box, style=filled, fillcolor="#d1f0d1"',
    "gradient": 'shape=box, style=filled, fillcolor="#ffe0b3"',
}


def _shape(shape: tuple[int, ...]) -> str:
    return str(tuple(int(n) for n in shape))  # (4, 3), (8,), ()


def _op_name(f: Function) -> str:
    """The class name as a label: ``_BinaryCrossEntropy`` -> ``BinaryCrossEntropy``,
    ``LinearFunction`` -> ``Linear``."""
    name = type(f).__name__.lstrip("_")
    return name[: -len("Function")] if name.endswith("Function") and len(name) > len("Function") else name


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Dot:
    """The graph being collected: node lines, edge lines, each node once."""

    def __init__(self, names: Mapping[int, str]) -> None:
        self.names = names
        self.nodes: dict[str, str] = {}
        self.edges: list[str] = []
        self.ops: set[int] = set()
        self.ids: dict[int, str] = {}  # id(object) -> "n0", "n1", ...: short names, in the order met

    def key(self, obj: Any) -> str:
        return self.ids.setdefault(id(obj), f"n{len(self.ids)}")

    def node(self, key: str, label: str, kind: str) -> str:
        self.nodes.setdefault(key, f"  {key} [label={_quote(label)}, {_STYLE[kind]}];")
        return key

    def edge(self, src: str, dst: str, label: str = "") -> None:
        attr = f" [label={_quote(label)}]" if label else ""
        self.edges.append(f"  {src} -> {dst}{attr};")

    def leaf(self, x: Tensor) -> str:
        name = self.names.get(id(x))
        kind = "parameter" if x.requires_grad else "constant"
        label = f"{name or ('leaf' if x.requires_grad else 'constant')}\n{_shape(x.shape)} {x.dtype}"
        return self.node(self.key(x), label, kind)

    def walk(self, root: Function) -> str:
        """Add ``root`` and every op and leaf behind it; returns root's node name."""
        for f in _topological_order([root]):  # the order backward walks, each op once
            if id(f) in self.ops:
                continue
            self.ops.add(id(f))
            if getattr(f, "_released", False):
                raise RuntimeError(
                    f"viz.graph: the op {type(f).__name__} in this graph was freed by backward(); draw the "
                    "graph before calling backward, or call backward(retain_graph=True)"
                )
            op = self.node(self.key(f), _op_name(f), "op")
            for x in f.inputs:  # a Tensor, or an Edge (an input whose values were freed)
                if x.creator is None:
                    self.edge(self.leaf(x), op)
                else:
                    self.edge(self.key(x.creator), op, _shape(x.shape))
        return self.key(root)

    def text(self) -> str:
        head = ["digraph autograd {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=11];',
                '  edge [fontname="Helvetica", fontsize=9];']  # fmt: skip
        return "\n".join(head + list(self.nodes.values()) + self.edges + ["}"]) + "\n"


def _named(names: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None) -> dict[int, str]:
    items = names.items() if isinstance(names, Mapping) else (names or ())
    out: dict[int, str] = {}
    for name, t in items:
        if not isinstance(t, Tensor):
            raise TypeError(f"viz.graph: argument 'names' must map names to Tensors; {name!r} is a "
                            f"{type(t).__name__}")  # fmt: skip
        out.setdefault(id(t), str(name))
    return out


def graph(
    *tensors: Tensor,
    names: Mapping[str, Tensor] | Iterable[tuple[str, Tensor]] | None = None,
    backward: bool = False,
    out: str | os.PathLike[str] | None = None,
) -> str:
    """The autograd graph behind ``tensors`` as Graphviz DOT text (see the module docstring).

    ``names``: labels for leaves, e.g. ``{"x": x}`` or ``model.named_parameters()``.
    ``backward``: also draw the gradients of the (one-element) tensors with respect to every
    leaf that requires grad, taken with ``create_graph=True``.
    ``out``: also write the picture to this file: ``.dot``/``.gv`` (the text), or ``.svg``,
    ``.png``, ``.pdf`` (rendered by Graphviz's ``dot`` program, which must be installed).
    """
    if not tensors:
        raise TypeError("viz.graph: expected at least one Tensor")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"viz.graph: argument {i} must be a Tensor, got {type(t).__name__}")
    fmt = None
    if out is not None:
        fmt = os.path.splitext(os.fspath(out))[1].lower()
        if fmt not in _FORMATS:
            formats = ", ".join(_FORMATS)
            raise ValueError(f"viz.graph: argument 'out' must end in one of {formats}; got {out!r}")
    label_of = _named(names)
    dot = _Dot(label_of)
    for i, t in enumerate(tensors):
        label = f"{label_of.get(id(t), 'result' if len(tensors) == 1 else f'result {i}')}\n{_shape(t.shape)}"
        node = dot.node(f"r{i}", label, "result")
        if t.creator is None:
            dot.edge(dot.leaf(t), node)
        else:
            dot.edge(dot.walk(t.creator), node, _shape(t.shape))
    if backward:
        _draw_gradients(dot, tensors, label_of)
    text = dot.text()
    if out is not None:
        _write(text, os.fspath(out), fmt or ".dot")
    return text


def _leaves(t: Tensor) -> list[Tensor]:
    """The leaves behind ``t`` that require grad, each once."""
    if t.creator is None:
        return [t] if t.requires_grad else []
    found = {id(x): x for f in _topological_order([t.creator]) for x in getattr(f, "inputs", ())
             if x.creator is None and x.requires_grad}  # fmt: skip
    return list(found.values())


def _draw_gradients(dot: _Dot, tensors: tuple[Tensor, ...], label_of: Mapping[int, str]) -> None:
    for i, t in enumerate(tensors):
        if t.size != 1:
            raise ValueError(f"viz.graph: backward=True needs one-element tensors; argument {i} has shape "
                             f"{_shape(t.shape)}")  # fmt: skip
        leaves = _leaves(t)
        if not leaves:
            raise ValueError(f"viz.graph: backward=True, but argument {i} depends on no leaf that "
                             "requires grad")  # fmt: skip
        grads = grad(t, leaves, create_graph=True, retain_graph=True, allow_unused=True)
        top = label_of.get(id(t), "result" if len(tensors) == 1 else f"result {i}")
        for j, (x, g) in enumerate(zip(leaves, grads)):
            if g is None:
                continue
            name = label_of.get(id(x), f"leaf {j}")
            node = dot.node(f"g{i}_{j}", f"d {top} / d {name}\n{_shape(g.shape)}", "gradient")
            if g.creator is None:
                dot.edge(dot.leaf(g), node)
            else:
                dot.edge(dot.walk(g.creator), node, _shape(g.shape))


def _write(text: str, path: str, fmt: str) -> None:
    if fmt in (".dot", ".gv"):
        atomic_write_text(path, text)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise RuntimeError(
            f"viz.graph: writing {path} needs Graphviz's 'dot' program, which is not on PATH; install "
            "Graphviz (e.g. apt-get install graphviz), or write the text with out='graph.dot'"
        )
    done = subprocess.run([exe, f"-T{fmt[1:]}"], input=text.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"viz.graph: dot failed on the graph: {why}")
    atomic_write_bytes(path, done.stdout)
