"""Helpers shared by the CLI tests: read a run directory's metrics.json and compare runs."""

from __future__ import annotations

import json
import os


def read_metrics(run_dir) -> dict:
    """The run's metrics.json as a dict."""
    with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def without_seconds(metrics: dict) -> dict:
    """A copy of ``metrics`` without the per-epoch wall times (the only field two runs may differ in)."""
    out = json.loads(json.dumps(metrics))
    for record in out["epochs"]:
        record.pop("seconds")
    return out
