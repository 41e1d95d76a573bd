"""Tests of tinyae.memory: freed memory kept in the process (glibc only).

Each case runs a fresh interpreter, since the allocator settings are made once, at import. Page
faults are counted (``ru_minflt``), not timed: a count does not depend on the machine's load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import tinyae
from tinyae import memory

glibc_only = pytest.mark.skipif(memory._glibc() is None, reason="the allocator settings are glibc's")

# Allocate, touch and free arrays of mixed sizes (1-7 MB, 28 MB a round), as a training step does;
# report the page faults of 5 rounds after 2 warm-up rounds, and the pages one round touches.
_ROUNDS = """
import json, resource
import numpy as np
import tinyae

sizes_mb = [3, 5, 1, 7, 2, 6, 4]

def one_round():
    arrays = [np.ones(s * 2**20 // 4, dtype=np.float32) for s in sizes_mb]
    del arrays

for _ in range(2):
    one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    one_round()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
print(json.dumps({"kept": tinyae.memory.keeps_freed_memory(), "faults": faults,
                  "pages": sum(sizes_mb) * 2**20 // 4096, "released": tinyae.memory.release()}))
"""


def _run(keep: str | None) -> dict:
    env = dict(os.environ)
    env.pop("TINYAE_KEEP_FREED_MEMORY", None)
    if keep is not None:
        env["TINYAE_KEEP_FREED_MEMORY"] = keep
    out = subprocess.run([sys.executable, "-c", _ROUNDS], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@glibc_only
def test_freed_memory_is_reused_without_page_faults():
    r = _run(None)
    assert r["kept"] is True
    # Every page was touched once before: a reused one costs no fault. (Under glibc's defaults this
    # pattern faults on about a third of the pages each round.)
    assert r["faults"] < 0.02 * r["pages"], r
    assert isinstance(r["released"], bool)


@glibc_only
def test_opt_out_leaves_the_c_library_alone():
    r = _run("0")
    assert r["kept"] is False


def test_in_this_process_and_in_info():
    expected = memory._glibc() is not None and os.environ.get("TINYAE_KEEP_FREED_MEMORY", "1").strip() != "0"
    assert memory.keeps_freed_memory() is expected
    d = tinyae.info(print_report=False)
    assert d["keeps_freed_memory"] is expected
    if expected:
        assert memory.keep_freed_memory() is True  # calling again is harmless
