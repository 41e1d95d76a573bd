"""The scripts in examples/ run in quick mode and their own checks pass.

Each example checks what it shows (backward against the hand-derived gradients, im2col against
conv2d, a loss that falls...) and exits non-zero when that check fails, printing its closing line
only when it passed. Each runs here as a learner runs it: a fresh interpreter, the repository root
as working directory, ``TINYAE_EXAMPLES_QUICK=1`` so that it takes a few seconds.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# script -> lines it prints only when its own check passed
EXPECTED = {
    "autograd_by_hand.py": ["gradients agree"],
    "gradient_check.py": [
        "gradcheck passed",
        "gradcheck caught the wrong gradient of x * x.detach(): True",
        "float32 finite differences are too coarse",
    ],
    "conv_by_hand.py": ["im2col @ kernel matches F.conv2d"],
    "train_autoencoder.py": ["held-out loss fell from", "the autoencoder learned"],
    "encoder_838.py": ["all 8 patterns reproduced after"],
    "vae.py": ["held-out -ELBO per image fell from", "-ELBO fell: the VAE learned"],
    "gan.py": ["D(G(z))", "G learned"],
}


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(ROOT), os.environ.get("PYTHONPATH", "")] if p),
        "OMP_NUM_THREADS": "1",
        "TINYAE_EXAMPLES_QUICK": "1",
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_every_example_is_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_and_its_check_passes(name: str, tmp_path: Path) -> None:
    args = ["--out", str(tmp_path)] if name == "vae.py" else []
    result = run_example(name, *args)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    for line in EXPECTED[name]:
        assert line in result.stdout, f"{name} did not print {line!r}:\n{result.stdout}"
    if name == "vae.py" and importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "vae_samples.png").stat().st_size > 0


def test_a_failed_check_exits_nonzero() -> None:
    # Five steps are far too few to solve the 8-3-8 problem: the script must say so and fail.
    result = run_example("encoder_838.py", "--steps", "5")
    assert result.returncode == 1
    assert "not solved in 5 steps" in result.stderr
    assert "all 8 patterns reproduced" not in result.stdout
