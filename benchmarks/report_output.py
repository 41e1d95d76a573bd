"""The report's markdown tables and chart, from the result dict of :mod:`benchmarks.report`.

Every table puts the thread counts side by side ("1 thr", "2 thr": that many threads for every
pool of each engine). Ratios are tinyae / PyTorch, medians of per-round ratios, lower is better,
marked against the targets: ``ok`` at most the goal (1.0), ``over`` above it, ``**miss**`` above
the limit (1.2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def fmt(v: float | None, digits: int = 2, unit: str = "") -> str:
    return "-" if v is None else f"{v:.{digits}f}{unit}"


def mark(value: float | None, goal: float, miss: float | None = None, at_least: bool = False) -> str:
    """``ok`` when ``value`` meets the goal, ``**miss**`` past ``miss`` (or past the goal without
    one), ``over`` in between; ``-`` when not measured."""
    if value is None:
        return "-"
    if value >= goal if at_least else value <= goal:
        return "ok"
    return "over" if miss is not None and value <= miss else "**miss**"


def ratio_cell(v: float | None, targets: dict[str, float], key: str) -> str:
    """``**0.93** ok``: a ratio in bold and its mark against ``targets[key]`` (time ratios also
    against the miss limit; memory has only its target)."""
    miss = targets["ratio_miss"] if key in ("layer_ratio", "train_ratio") else None
    return "-" if v is None else f"**{v:.2f}** {mark(v, targets[key], miss)}"


def spread_cell(cell: dict[str, Any]) -> str:
    s = cell.get("ratio_spread")
    return "-" if not s else f"{s[0]:.2f}-{s[1]:.2f}"


def _share(cell: dict[str, Any], key: str) -> str:
    gf, share = cell.get(f"{key}_gflops"), cell.get(f"{key}_peak_share")
    if gf is None:
        return "-"
    return f"{gf:.0f} ({100 * share:.0f}%)" if share else f"{gf:.0f}"


def _threads(ts: list[str]) -> str:
    return " and ".join(ts) + (" thread" if ts == ["1"] else " threads")


def _table(header: list[str], rows: list[list[str]], align: list[str]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(align) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def _side_by_side(
    rows: list[dict[str, Any]], ts: list[str], lead: list[tuple[str, Any]], cols: list[tuple[str, Any]]
) -> list[str]:
    """A table with the ``lead`` columns once and the ``cols`` once per thread count: each column
    is (header, function of the row (lead) or of the row's cell at that thread count (cols))."""
    header = [h for h, _ in lead] + [f"{h} ({t} thr)" for t in ts for h, _ in cols]
    body = [[f(r) for _, f in lead] + [f(r["threads"].get(t, {})) for t in ts for _, f in cols] for r in rows]
    return _table(header, body, ["---"] * len(lead) + ["---:"] * (len(cols) * len(ts)))


def header(result: dict[str, Any], ts: list[str]) -> list[str]:
    """Title, machine, versions, the method in one paragraph, load average, sgemm peak."""
    meta, targets = result["meta"], result["targets"]
    kernels = {"cpp": "C++", "numpy": "NumPy"}.get(meta["tinyae_kernels"], meta["tinyae_kernels"])
    direct = "direct convolutions (AVX-512)" if meta.get("tinyae_direct_conv") else "no direct convolutions"
    if meta.get("tinyae_gemm"):
        direct += ", its own float32 matmul (AVX-512)"
    peaks = [
        f"**{fmt(p.get('gflops'), 0)} GFLOP/s** at {t} thr ({p.get('size')}^3)"
        for t, p in result.get("matmul_peak", {}).items()
    ]
    return [
        f"# tinyae vs PyTorch {meta.get('torch') or '(not installed)'} ({meta['device']})",
        "",
        f"**{meta.get('gpu') or meta['cpu']}**, {meta['cores']} cores, {_threads(ts)} for every pool. "
        f"Python {meta['python']}, NumPy {meta['numpy']} ({meta.get('blas') or 'BLAS unknown'}), "
        f"PyTorch {meta.get('torch')} ({meta.get('torch_backends') or '-'}); tinyae {meta['tinyae']} "
        f"(commit {meta.get('git_commit')}, {kernels} kernels, {direct}); {meta['date']}; float32.",
        "",
        "Measured as training runs: each engine in its own process with every thread pool at the "
        f"given count, {meta['warmup']} warm-up calls, then calls back to back for about "
        f"{meta['target_s']} s, timed together; the engines' processes alternate for {meta['rounds']} "
        "rounds. Times are medians over rounds; **ratios** are tinyae / PyTorch, the median of the "
        "per-round ratios (lower is better); *range*: the lowest and highest per-round ratio. Marks: "
        f"ok <= {targets['layer_ratio']:.1f}, over, **miss** > {targets['ratio_miss']:.1f}. "
        f"1-minute load average {fmt(meta.get('load_average_start'), 1)} at the start, "
        f"{fmt(meta.get('load_average_end'), 1)} at the end ({meta['cores']} cores: above that, other "
        "processes competed for the CPU).",
        "",
        f"float32 sgemm peak (NumPy, the best call): {', '.join(peaks) or '-'}.",
        "",
    ]


def _ms(key: str) -> Callable[[dict[str, Any]], str]:
    return lambda c: fmt(c.get(key), 1 if (c.get(key) or 0) >= 10 else 2)


def _max_err(r: dict[str, Any]) -> str:
    return f"{max(r['max_rel_err'].values()):.1e}" if r.get("max_rel_err") else "-"


def layer_tables(layers: list[dict[str, Any]], ts: list[str], targets: dict[str, float]) -> list[str]:
    """Forward + backward against PyTorch; forward, backward, NumPy twin; the physical ceiling."""
    lines = [f"## Layers L1-L6: forward + backward (target <= {targets['layer_ratio']:.1f})", ""]
    lines += _side_by_side(
        layers,
        ts,
        [("L", lambda r: r["id"]), ("layer", lambda r: r["layer"])],
        [
            ("tinyae ms", _ms("tinyae_fb_ms")),
            ("torch ms", _ms("torch_fb_ms")),
            ("tinyae/torch", lambda c: ratio_cell(c.get("ratio"), targets, "layer_ratio")),
            ("range", spread_cell),
        ],
    )
    lines += [
        "Forward alone, backward alone (forward + backward minus forward, in the same process) and "
        "tinyae with its NumPy twin kernels (im2col + GEMM on NumPy, no direct convolutions); "
        "max rel. diff: the largest relative difference of y, dL/dx, dL/dW, dL/db against PyTorch.",
        "",
    ]
    lines += _side_by_side(
        layers,
        ts,
        [("L", lambda r: r["id"]), ("max rel. diff", _max_err)],
        [
            ("fwd ratio", lambda c: fmt(c.get("ratio_fwd"))),
            ("bwd ratio", lambda c: fmt(c.get("ratio_bwd"))),
            ("NumPy-kernels ms", _ms("tinyae_numpy_fb_ms")),
        ],
    )
    lines += [
        "## The physical ceiling: GFLOP/s of forward + backward (share of the sgemm peak)",
        "",
        "GEMM-only: the three matrix products an im2col engine must do for the layer, timed alone with "
        "NumPy on contiguous operands: the ceiling of im2col with this BLAS (tinyae's direct "
        "convolutions and PyTorch's oneDNN do not go through im2col and can pass it).",
        "",
    ]
    return lines + _side_by_side(
        layers,
        ts,
        [("L", lambda r: r["id"]), ("GFLOP", lambda r: fmt(r["flops"] / 1e9, 2))],
        [
            ("tinyae", lambda c: _share(c, "tinyae_fb")),
            ("PyTorch", lambda c: _share(c, "torch_fb")),
            ("GEMM-only", lambda c: _share(c, "gemm_only")),
        ],
    )


def train_table(train: list[dict[str, Any]], ts: list[str], targets: dict[str, float]) -> list[str]:
    lines = [f"## Training steps W1-W5 (target <= {targets['train_ratio']:.1f})", ""]
    return lines + _side_by_side(
        train,
        ts,
        [
            ("W", lambda r: r["id"]),
            ("model (batch)", lambda r: f"{r['title']} ({r['batch']})"),
            ("step-1 loss tinyae / torch", _losses),
        ],
        [
            ("tinyae ms", _ms("tinyae_ms")),
            ("torch ms", _ms("torch_ms")),
            ("tinyae/torch", lambda c: ratio_cell(c.get("ratio"), targets, "train_ratio")),
            ("range", spread_cell),
        ],
    )


def markdown(result: dict[str, Any]) -> str:
    """The whole report as markdown (``latest.md``)."""
    targets = result["targets"]
    ts = [str(t) for t in result["meta"]["threads"]]
    layers, train = result.get("layers", []), result.get("train", [])
    lines = header(result, ts)
    if layers:
        lines += layer_tables(layers, ts, targets)
    if train:
        lines += train_table(train, ts, targets)
    lines += scaling(layers, train, ts)
    if any(r.get("memory") for r in train):
        lines += memory_table(train, ts, targets)
    if result.get("kernels"):
        lines += kernel_table(result["kernels"], targets)
    if result.get("in_process"):
        lines += in_process_table(result["in_process"], ts)
    if result.get("skipped"):
        lines += ["## Skipped", "", *(f"- {s}" for s in result["skipped"]), ""]
    return "\n".join(lines)


def _losses(r: dict[str, Any]) -> str:
    losses = r.get("first_loss") or {}
    return (
        " / ".join(", ".join(f"{v:.5g}" for v in losses[k]) for k in ("tinyae", "torch") if k in losses)
        or "-"
    )


def scaling(layers: list[dict[str, Any]], train: list[dict[str, Any]], ts: list[str]) -> list[str]:
    """Time at 1 thread / time at each higher count, per engine: what the extra cores give."""
    more = [t for t in ts if t != "1"]
    if "1" not in ts or not more:
        return []
    keys = [(r, "tinyae_fb_ms", "torch_fb_ms") for r in layers] + [
        (r, "tinyae_ms", "torch_ms") for r in train
    ]

    def speedup(r: dict[str, Any], key: str, t: str) -> str:
        a, b = r["threads"].get("1", {}).get(key), r["threads"].get(t, {}).get(key)
        return fmt(a / b if a and b else None, 2, "x")

    rows = [[r["id"], *(speedup(r, k, t) for t in more for k in (ka, kb))] for r, ka, kb in keys]
    head = ["id", *(f"{e} 1 -> {t} thr" for t in more for e in ("tinyae", "PyTorch"))]
    return [
        "## What the extra cores give: time at 1 thread / time at more",
        "",
        *_table(head, rows, ["---"] + ["---:"] * (len(head) - 1)),
    ]


def memory_table(train: list[dict[str, Any]], ts: list[str], targets: dict[str, float]) -> list[str]:
    def rss(c: dict[str, Any]) -> str:
        a, b = c.get("tinyae", {}).get("rss_increase_mb"), c.get("torch", {}).get("rss_increase_mb")
        return f"{fmt(a, 1)} / {fmt(b, 1)}"

    rows = [{"id": r["id"], "threads": r.get("memory", {})} for r in train]
    lines = [
        f"## Peak memory per training step, tinyae / PyTorch (target <= {targets['memory_ratio']:g})",
        "",
        "Peak RSS increase during one step (MB), each engine in a fresh process; the allocator-level "
        "peak of live bytes as a cross-check.",
        "",
    ]
    return lines + _side_by_side(
        rows,
        ts,
        [("W", lambda r: r["id"])],
        [
            ("RSS +MB tinyae / torch", rss),
            ("ratio", lambda c: ratio_cell(c.get("rss_increase_mb_ratio"), targets, "memory_ratio")),
            ("alloc ratio", lambda c: fmt(c.get("alloc_peak_mb_ratio"))),
        ],
    )


def kernel_table(kernels: dict[str, list[dict[str, Any]]], targets: dict[str, float]) -> list[str]:
    ts = list(kernels)
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for t, rows in kernels.items():
        for k in rows:
            row = by_key.setdefault((k["id"], k["op"]), {"id": k["id"], "op": k["op"], "threads": {}})
            row["threads"][t] = k
    lines = [
        f"## im2col / col2im alone: C++ vs the NumPy twin (target >= {targets['kernel_speedup']:g}x)",
        "",
    ]

    def speedup_mark(v: float | None) -> str:
        return mark(v, targets["kernel_speedup"], at_least=True)

    return lines + _side_by_side(
        list(by_key.values()),
        ts,
        [("L", lambda r: r["id"]), ("op", lambda r: r["op"])],
        [
            ("C++ ms", lambda c: fmt(c.get("cpp_ms"))),
            ("twin ms", lambda c: fmt(c.get("numpy_ms"))),
            ("twin / C++", lambda c: f"{fmt(c.get('speedup'), 1, 'x')} {speedup_mark(c.get('speedup'))}"),
        ],
    )


def in_process_table(ip: dict[str, Any], ts: list[str]) -> list[str]:
    """The ``--in-process`` numbers, labelled: not how training runs."""
    rows: dict[str, dict[str, Any]] = {}
    for t in ts:
        for r in ip.get(t, {}).get("layers", []) + ip.get(t, {}).get("train", []):
            rows.setdefault(r["id"], {"id": r["id"], "threads": {}})["threads"][t] = r
    if not rows:
        return []
    lines = [
        "## For comparison only: both engines in one process, calls interleaved (`--in-process`)",
        "",
        f"NOT how training runs: both engines imported in one process, one call of each in turn "
        f"({ip['rounds']} rounds), and with several threads a {ip['settle_s']} s pause before every timed "
        "call, so every call starts on sleeping threads (PyTorch pays an OpenMP wake-up per call).",
        "",
    ]
    return lines + _side_by_side(
        list(rows.values()),
        ts,
        [("id", lambda r: r["id"])],
        [
            ("tinyae ms", lambda c: fmt(c.get("tinyae_fb_ms", c.get("tinyae_ms")), 1)),
            ("torch ms", lambda c: fmt(c.get("torch_fb_ms", c.get("torch_ms")), 1)),
            ("tinyae/torch", lambda c: fmt(c.get("ratio"))),
            ("range", spread_cell),
        ],
    )


def bar_chart(result: dict[str, Any], path: Path) -> str | None:
    """Time ratios of L and W per thread count, memory ratios, kernel speed-ups. None if drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: matplotlib is not installed ({exc})"
    targets, meta = result["targets"], result["meta"]
    ts = [str(t) for t in meta["threads"]]
    rows = result.get("layers", []) + result.get("train", [])
    kernel_ts = list(result.get("kernels") or {})
    kernels = result["kernels"][kernel_ts[-1]] if kernel_ts else []
    fig = plt.figure(figsize=(12, 7.5))
    grid = fig.add_gridspec(2, 2, width_ratios=[5, 7])
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])]
    panels = [
        (
            axes[0],
            [r["id"] for r in rows],
            {t: [r["threads"].get(t, {}).get("ratio") for r in rows] for t in ts},
            targets["layer_ratio"],
            "time tinyae / PyTorch, own process each (lower is better)",
        ),
        (
            axes[1],
            [r["id"] for r in result.get("train", [])],
            {
                t: [
                    r.get("memory", {}).get(t, {}).get("rss_increase_mb_ratio")
                    for r in result.get("train", [])
                ]
                for t in ts
            },
            targets["memory_ratio"],
            "peak memory per step, tinyae / PyTorch",
        ),
        (
            axes[2],
            [f"{k['id']} {k['op']}" for k in kernels],
            {kernel_ts[-1] if kernel_ts else "": [k.get("speedup") for k in kernels]},
            targets["kernel_speedup"],
            "C++ kernels: speed-up over NumPy twin",
        ),
    ]
    for ax, labels, series, target, title in panels:
        ax.set_title(title, fontsize=10)
        if not any(v is not None for vs in series.values() for v in vs):
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        higher_is_better = ax is axes[2]
        width = 0.8 / len(series)
        for j, (t, values) in enumerate(series.items()):
            xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(values))]
            vals = [v or 0.0 for v in values]
            colors = [
                "tab:green" if (v >= target if higher_is_better else v <= target) else "tab:red" for v in vals
            ]
            ax.bar(
                xs,
                vals,
                width=width,
                color=colors,
                alpha=1.0 if j == len(series) - 1 else 0.55,
                label=f"{t} thr" if t else None,
                edgecolor="black",
                linewidth=0.3,
            )
            for x, v in zip(xs, vals):
                if v:
                    ax.text(x, v, f"{v:.2f}" if v < 10 else f"{v:.0f}", ha="center", va="bottom", fontsize=6)
        ax.set_xticks(range(len(labels)), labels, fontsize=8, rotation=60 if higher_is_better else 0)
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
        if ax is axes[0]:
            ax.axhline(
                targets["ratio_miss"],
                color="tab:red",
                linestyle=":",
                linewidth=1,
                label=f"miss above {targets['ratio_miss']:g}",
            )
        ax.legend(fontsize=7)
    fig.suptitle(
        f"tinyae vs PyTorch {meta.get('torch')}, {meta['device']}: {meta.get('gpu') or meta['cpu']}, "
        f"{meta['cores']} cores, {meta['date'][:10]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
