"""Benchmark conv2d / conv_transpose2d forward + backward on layers L1-L6.

Three implementations of each layer of ``benchmarks/workloads.py`` (float32, full batch):
tinyae with the C++ im2col/col2im kernels, tinyae with the NumPy twin kernels, and
PyTorch CPU when it is installed. One call = forward, then backward with a fixed upstream
gradient, producing the gradients of the input, the weight and the bias.

``pytest benchmarks/bench_conv.py`` times them (pytest-benchmark groups one layer per
table); ``--benchmark-disable`` runs each once as a smoke test. The ``test_matches_torch``
checks hold tinyae's output and three gradients to PyTorch's within float32 tolerance.
For side-by-side ratios use ``python -m benchmarks.report`` (each engine in its own process).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.conftest import framework_or_skip
from benchmarks.workloads import LAYERS, layer_arrays, make_layer_case

IMPLS = ["tinyae-cpp", "tinyae-numpy", "torch"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layer", list(LAYERS))
def test_conv_fwd_bwd(benchmark: Any, layer: str, impl: str) -> None:
    spec = LAYERS[layer]
    fw = framework_or_skip("torch" if impl == "torch" else "tinyae", what="conv")
    case = make_layer_case(fw, spec, layer_arrays(spec))
    run = case.run
    if impl.startswith("tinyae"):
        from tinyae import kernels

        name = impl.split("-")[1]
        if name == "cpp" and not kernels.cpp_available():
            pytest.skip(f"C++ kernels: {kernels.cpp_unavailable_reason()}")

        def run() -> Any:
            previous = kernels.get_kernels()
            kernels.set_kernels(name)
            try:
                return case.run()
            finally:
                kernels.set_kernels(previous)

    benchmark.group = f"conv fwd+bwd {layer}: {spec.describe()}"
    benchmark.extra_info["gflop"] = spec.flops() / 1e9
    run()  # warm-up (PyTorch builds its oneDNN primitives on the first call)
    benchmark(run)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_matches_torch(layer: str) -> None:
    """tinyae's y, dL/dx, dL/dW, dL/db equal PyTorch's on the layer (batch 8, same data)."""
    spec = LAYERS[layer]
    mine, ref = framework_or_skip("tinyae", what="conv"), framework_or_skip("torch")
    arrays = layer_arrays(spec, seed=1, batch=8)
    got = make_layer_case(mine, spec, arrays).results()
    want = make_layer_case(ref, spec, arrays).results()
    for key in ("y", "gx", "gw", "gb"):
        assert got[key].shape == want[key].shape, key
        scale = float(np.abs(want[key]).max())
        np.testing.assert_allclose(
            got[key], want[key], rtol=1e-4, atol=1e-5 * scale, err_msg=f"{layer} {key}"
        )
