"""Soak: 2,000 training steps of a small conv autoencoder keep resident memory flat.

Run in a fresh process (``python -m benchmarks.soak``) so that nothing else the test session
allocates counts. Memory is asserted; step times are only printed (speed belongs to the
benchmarks), for a human to see that they stay flat too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from Linux's /proc")
def test_resident_memory_stays_flat_over_thousands_of_steps() -> None:
    cmd = [sys.executable, "-m", "benchmarks.soak", "--steps", "2000", "--block", "250", "--json"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, check=True)
    blocks = json.loads(out.stdout.strip().splitlines()[-1])
    for b in blocks:
        print(f"step {b['step']}: {b['ms_per_step']:.2f} ms/step, {b['rss_mb']:.1f} MB")
    settled = blocks[1]["rss_mb"]  # after the first block: buffers, pools and caches exist by then
    growth = max(b["rss_mb"] for b in blocks[1:]) - settled
    assert growth < 8.0, f"resident memory grew by {growth:.1f} MB over {blocks[-1]['step']} steps: {blocks}"
    assert blocks[-1]["loss"] < blocks[0]["loss"]  # it trained all along
