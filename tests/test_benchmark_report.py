"""``python -m benchmarks.report``: its statistics, its process machinery, its tables.

Fast: the helpers and the markdown run on made-up numbers; the processes time tiny NumPy
products; one end-to-end smoke run (``--quick``, one round, L1 and W1 at one thread) needs
PyTorch and takes about 15 s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report, runs
from benchmarks.report_output import mark, markdown
from benchmarks.runs import Job, pair_ratio, pair_ratio_spread, run_job, time_calls


def test_ratios_are_per_round_and_skip_failed_rounds() -> None:
    a, b = [2.0, 4.0, 6.0, 8.0, 10.0], [2.0] * 5  # per-round ratios 1, 2, 3, 4, 5
    assert pair_ratio(a, b) == 3.0
    assert pair_ratio_spread(a, b) == [1.0, 5.0]  # lowest and highest per-round ratio
    assert pair_ratio([2.0, None, 6.0], [1.0, 1.0, None]) == 2.0  # only round 0 has both sides
    assert pair_ratio_spread([1.0], [1.0]) is None
    assert pair_ratio([], []) is None


def test_marks_follow_the_targets() -> None:
    assert mark(0.95, 1.0, 1.2) == "ok"
    assert mark(1.1, 1.0, 1.2) == "over"
    assert mark(1.25, 1.0, 1.2) == "**miss**"
    assert mark(1.6, 1.5) == "**miss**"  # no miss limit: past the target is a miss
    assert mark(3.2, 3.0, at_least=True) == "ok"
    assert mark(None, 1.0) == "-"
    assert report.TARGETS["layer_ratio"] == report.TARGETS["train_ratio"] == 1.0
    assert report.TARGETS["ratio_miss"] == 1.2 and report.TARGETS["memory_ratio"] == 1.5


def test_time_calls_calibrates_to_the_target() -> None:
    res = time_calls(lambda: time.sleep(0.002), target_s=0.1, warmup=1)
    assert 20 <= res["calls"] <= 60  # ~0.1 s / 2 ms, whatever the sleep's overshoot
    assert 0.002 <= res["s"] < 0.01
    assert time_calls(lambda: None, target_s=10.0, warmup=0, calls=5)["calls"] == 5


def test_thread_env_sizes_every_pool() -> None:
    env = runs.thread_env(3)
    assert {env[k] for k in ("OMP_NUM_THREADS", "TINYAE_NUM_THREADS", "OPENBLAS_NUM_THREADS")} == {"3"}


def test_a_job_runs_in_its_own_process_and_failures_are_reported() -> None:
    res = run_job(Job("peak", "numpy", "L1", 1, target_s=0.05, warmup=1, peak_size=256))
    assert res["peak"]["gflops"] > 0 and res["peak"]["size"] == 256
    assert res["gemm_only"]["L1"]["s"] > 0 and res["job"]["threads"] == 1
    bad = run_job(Job("peak", "numpy", "L9", 1, target_s=0.05, warmup=1, peak_size=256))
    assert "KeyError" in bad["error"]


def _fake_result() -> dict[str, Any]:
    """raw[id][threads][engine] = per-round child results, as run_rounds collects them."""

    def layer(fb: float, f: float) -> dict[str, Any]:
        return {"fb": {"s": fb, "calls": 10}, "f": {"s": f, "calls": 10}}

    raw_l1 = {
        1: {"tinyae": [layer(0.010, 0.004), layer(0.012, 0.005)], "torch": [layer(0.010, 0.005)] * 2},
        2: {"tinyae": [layer(0.008, 0.003), None], "torch": [layer(0.005, 0.002)] * 2},
    }
    peaks = {
        t: [{"peak": {"gflops": 100.0 * t, "size": 2048}, "gemm_only": {"L1": {"s": 0.002}}}] * 2
        for t in (1, 2)
    }
    peak = report.summarise_peaks(peaks)
    raw_w1 = {
        t: {"tinyae": [{"step": {"s": 0.004 * r}} for r in (1, 2)], "torch": [{"step": {"s": 0.004}}] * 2}
        for t in (1, 2)
    }
    meta = report.machine_info("cpu", [1, 2])
    meta.update(rounds=2, target_s=0.6, warmup=3, load_average_end=0.5)
    return {
        "meta": meta,
        "targets": report.TARGETS,
        "skipped": [],
        "matmul_peak": peak,
        "layers": [report.summarise_layer("L1", raw_l1, peaks, peak)],
        "train": [report.summarise_train("W1", raw_w1)],
        "kernels": {"2": [{"id": "L1", "op": "im2col", "cpp_ms": 0.1, "numpy_ms": 0.4, "speedup": 4.0}]},
        "in_process": {"settle_s": 0.15, "rounds": 6, "2": {"layers": [{"id": "L1", "ratio": 0.5}]}},
    }


def test_summaries_pair_rounds_and_give_the_share_of_peak() -> None:
    result = _fake_result()
    one, two = result["layers"][0]["threads"]["1"], result["layers"][0]["threads"]["2"]
    assert one["ratio"] == pytest.approx(1.1)  # rounds 1.0 and 1.2
    assert one["ratio_spread"] == pytest.approx([1.0, 1.2])
    assert two["ratio"] == pytest.approx(1.6) and two["ratio_spread"] is None  # round 2 failed
    flops = result["layers"][0]["flops"]
    assert one["gemm_only_gflops"] == pytest.approx(flops / 0.002 / 1e9)
    assert two["gemm_only_peak_share"] == pytest.approx(flops / 0.002 / 1e9 / 200.0)
    assert one["ratio_bwd"] == pytest.approx((6 / 5 + 7 / 5) / 2)
    assert result["train"][0]["threads"]["2"]["ratio"] == pytest.approx(1.5)


def test_markdown_puts_thread_counts_side_by_side() -> None:
    md = markdown(_fake_result())
    assert "tinyae/torch (1 thr) | range (1 thr) | tinyae ms (2 thr)" in md
    assert "**1.10** over" in md and "**1.60** **miss**" in md
    assert "| L1 | 0.17 | 16 (16%) | 17 (17%) | 87 (87%) |" in md  # GFLOP, GFLOP/s (share of peak)
    assert "sgemm peak" in md and "at 2 thr" in md
    assert "What the extra cores give" in md
    assert "NOT how training runs" in md  # the --in-process table says what it is
    assert "4.0x ok" in md


def test_report_smoke(tmp_path: Path) -> None:
    """``--quick`` on L1 and W1 at one thread writes JSON, markdown and (with matplotlib) a PNG."""
    pytest.importorskip("torch")
    report.main(
        [
            "--quick",
            "--rounds",
            "1",
            "--only",
            "L1,W1",
            "--threads",
            "1",
            "--no-memory",
            "--out",
            str(tmp_path),
        ]
    )
    result = json.loads((tmp_path / "latest.json").read_text())
    (layer,), (train,) = result["layers"], result["train"]
    assert layer["threads"]["1"]["ratio"] > 0 and train["threads"]["1"]["ratio"] > 0
    assert max(layer["max_rel_err"].values()) < 1e-4
    assert train["first_loss"]["tinyae"] == pytest.approx(train["first_loss"]["torch"], rel=1e-5)
    assert result["matmul_peak"]["1"]["gflops"] > 0
    assert "| W1 |" in (tmp_path / "latest.md").read_text()


def test_report_cuda_guard(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a GPU, ``--device cuda`` says why and writes nothing (no traceback)."""
    from tinyae import cuda

    if cuda.is_available():
        pytest.skip("a GPU is available: the guard is not exercised")
    report.main(["--device", "cuda", "--out", str(tmp_path)])
    assert "skipping --device cuda" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())
