"""Benchmark full training steps W1-W5: tinyae against PyTorch, and peak memory per step.

Each workload of ``benchmarks/workloads.py`` is built once per engine from the same
Python code (:mod:`benchmarks.workloads`), with the same initial weights and the same batch.
One benchmarked call is one optimizer step: zero grads, forward, loss, backward, update
(W5: one discriminator step and one generator step).

* ``test_train_step``: pytest-benchmark timing, one group per workload;
* ``test_losses_match_torch``: three steps on each engine give the same losses (float32
  tolerance): the engines run the same model, so the timings compare like with like;
* ``test_peak_memory``: peak memory of one step, each engine in a fresh subprocess (the
  method is described in :mod:`benchmarks.memory`); the numbers go to the test's
  ``user_properties`` and stdout. Memory targets are reported, not asserted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.conftest import framework_or_skip
from benchmarks.memory import measure_memory
from benchmarks.workloads import WORKLOADS, make_train_case, set_threads


@pytest.mark.parametrize("framework", ["tinyae", "torch"])
@pytest.mark.parametrize("wid", list(WORKLOADS))
def test_train_step(benchmark: Any, wid: str, framework: str) -> None:
    case = make_train_case(framework_or_skip(framework), wid)
    case.step()  # warm-up: Adam state, PyTorch's oneDNN primitives
    benchmark.group = f"train step {wid}: {WORKLOADS[wid].title}, batch {WORKLOADS[wid].batch}"
    benchmark(case.step)


@pytest.mark.parametrize("wid", list(WORKLOADS))
def test_losses_match_torch(wid: str) -> None:
    """Step 1 (identical weights) agrees tightly; steps 2-3 (after Adam updates) within 1e-3.

    Batch 16 instead of the workload's: the same code paths, a fraction of the time.
    """
    mine, ref = framework_or_skip("tinyae"), framework_or_skip("torch")
    a, b = make_train_case(mine, wid, batch=16), make_train_case(ref, wid, batch=16)
    assert a.param_shapes == b.param_shapes, "the two models must have the same parameter names and shapes"
    for step in range(3):
        got, want = a.loss_values(a.step()), b.loss_values(b.step())
        np.testing.assert_allclose(
            got, want, rtol=1e-5 if step == 0 else 1e-3, err_msg=f"{wid} step {step + 1}"
        )


@pytest.mark.parametrize("wid", list(WORKLOADS))
def test_peak_memory(wid: str, record_property: Any, request: pytest.FixtureRequest) -> None:
    if request.config.getoption("benchmark_disable", False) and wid != "W1":
        pytest.skip("smoke run (--benchmark-disable): peak memory is measured for W1 only")
    framework_or_skip("tinyae")
    framework_or_skip("torch")
    threads = set_threads()
    results = {name: measure_memory(name, wid, "cpu", threads) for name in ("tinyae", "torch")}
    for name, res in results.items():
        assert "error" not in res, f"{name}: {res.get('error')}"
        assert res["alloc_peak_mb"] > 0, res
        record_property(f"{name}_peak_mb", res)
    ratio = {
        key: results["tinyae"].get(key, 0) / max(results["torch"].get(key, 0), 1e-9)
        for key in ("rss_increase_mb", "alloc_peak_mb")
    }
    print(f"{wid} peak memory: {results} ratios tinyae/torch {ratio}")
