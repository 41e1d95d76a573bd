"""Tests of tinyae.serialization (save/load) and tinyae._atomic (atomic writes)."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

from tinyae import _atomic
from tinyae.serialization import MANIFEST_KEY, load, save
from tinyae.tensor import Tensor

# --------------------------------------------------------------------------- helpers


def assert_same(a, b, where: str = "state") -> None:
    """Exact equality, including container types, dtypes and Python scalar types."""
    assert type(a) is type(b) or (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)), where
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray | np.generic):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where  # bit for bit, NaNs included
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def sample_state() -> dict:
    rng = np.random.default_rng(0)
    return {
        "model": {
            "encoder.weight": rng.standard_normal((8, 3)).astype(np.float32),
            "encoder.bias": np.zeros(3, np.float32),
            "bn.running_var": rng.random(4),  # float64
            "bn.num_batches_tracked": np.array(17, dtype=np.int64),  # 0-d
        },
        "optimizer": {
            "state": {0: {"step": 12, "exp_avg": rng.standard_normal(3)}, 1: {"step": 12}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "amsgrad": False, "params": [0, 1]}],
        },
        "epoch": 4,
        "best_loss": float("inf"),
        "nan": float("nan"),
        "huge": 2**70,
        "name": "conv_ae — ü",
        "nothing": None,
        "np_scalar": np.float32(0.25),
        "np_float64": np.float64(1 / 3),
        "flags": np.array([True, False]),
        "bytes": np.arange(5, dtype=np.uint8),
        "empty": np.zeros((0, 4), np.float32),
        "int_vs_str_keys": {1: "one", "1": "string one"},
        "nested": [[1, [2.5, {"deep": np.int64(-3)}]], ()],
    }


# --------------------------------------------------------------------------- round trips


def test_round_trip_is_exact(tmp_path) -> None:
    state = sample_state()
    path = tmp_path / "ckpt.npz"
    save(state, path)
    assert_same(state, load(path))
    assert type(load(path)["np_float64"]) is np.float64


def test_saves_exactly_at_the_given_path(tmp_path) -> None:
    path = tmp_path / "model.ckpt"
    save({"a": 1}, path)
    assert os.listdir(tmp_path) == ["model.ckpt"]  # no ".npz" appended, no temp file left
    save({"a": 2}, str(path))
    assert load(path) == {"a": 2}


def test_tensors_are_saved_as_arrays(tmp_path) -> None:
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    save({"w": Tensor(w), "list": [Tensor(w[0])]}, tmp_path / "t.npz")
    out = load(tmp_path / "t.npz")
    assert type(out["w"]) is np.ndarray and out["w"].dtype == np.float32
    np.testing.assert_array_equal(out["w"], w)
    np.testing.assert_array_equal(out["list"][0], w[0])


def test_top_level_can_be_a_plain_value_or_list(tmp_path) -> None:
    for state in (3, None, [np.ones(2), "x"], (1,)):
        save(state, tmp_path / "s.npz")
        assert_same(state, load(tmp_path / "s.npz"))


def test_file_is_a_plain_npz_without_pickles(tmp_path) -> None:
    save(sample_state(), tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz", allow_pickle=False) as npz:
        assert MANIFEST_KEY in npz.files
        assert all(npz[name].dtype != object for name in npz.files)


def test_plain_numpy_npz_loads_as_dict(tmp_path) -> None:
    np.savez(tmp_path / "plain.npz", x=np.ones(3), y=np.arange(2))
    out = load(tmp_path / "plain.npz")
    assert sorted(out) == ["x", "y"]
    np.testing.assert_array_equal(out["y"], [0, 1])


@pytest.mark.parametrize("bad", [{1, 2}, object(), {"k": np.array([None, 1], dtype=object)}, {(1, 2): 3}])
def test_unsupported_values_are_refused_at_save(tmp_path, bad) -> None:
    path = tmp_path / "s.npz"
    with pytest.raises(TypeError, match="save"):
        save(bad, path)
    assert os.listdir(tmp_path) == []  # nothing written, no temp file


# --------------------------------------------------------------------------- bad files


def write_checkpoint(tmp_path) -> tuple[str, bytes]:
    path = str(tmp_path / "ckpt.npz")
    save(sample_state(), path)
    with open(path, "rb") as f:
        return path, f.read()


def assert_load_fails_and_file_unchanged(path: str, match: str) -> None:
    with open(path, "rb") as f:
        before = f.read()
    mtime = os.stat(path).st_mtime_ns
    with pytest.raises(ValueError, match=match) as info:
        load(path)
    assert path in str(info.value)
    with open(path, "rb") as f:
        assert f.read() == before
    assert os.stat(path).st_mtime_ns == mtime
    assert sorted(os.listdir(os.path.dirname(path))) == [os.path.basename(path)]


@pytest.mark.parametrize("keep", [0.3, 0.9, 0.999])
def test_truncated_file(tmp_path, keep) -> None:
    path, blob = write_checkpoint(tmp_path)
    with open(path, "wb") as f:
        f.write(blob[: int(len(blob) * keep)])
    assert_load_fails_and_file_unchanged(path, "corrupt|truncated")


def test_garbage_file(tmp_path) -> None:
    path = str(tmp_path / "garbage.npz")
    with open(path, "wb") as f:
        f.write(os.urandom(2000))
    assert_load_fails_and_file_unchanged(path, "corrupt|not a")


def test_empty_file(tmp_path) -> None:
    path = str(tmp_path / "empty.npz")
    open(path, "wb").close()
    assert_load_fails_and_file_unchanged(path, "corrupt|not a")


def test_flipped_byte_inside_an_array_is_detected(tmp_path) -> None:
    path, blob = write_checkpoint(tmp_path)
    # Find the stored weight array's bytes in the (uncompressed) zip and flip one.
    weight = sample_state()["model"]["encoder.weight"].tobytes()
    at = blob.index(weight) + 5
    corrupted = bytearray(blob)
    corrupted[at] ^= 0x01
    with open(path, "wb") as f:
        f.write(bytes(corrupted))
    assert_load_fails_and_file_unchanged(path, "CRC")


def test_pickled_object_array_is_refused(tmp_path) -> None:
    path = str(tmp_path / "evil.npz")
    # What an attacker (or torch-style pickling) would produce: an object array, stored as a pickle.
    np.savez(path, weights=np.array([{"payload": 1}, None], dtype=object))
    assert_load_fails_and_file_unchanged(path, "pickle")


def test_pickled_object_next_to_a_manifest_is_refused(tmp_path) -> None:
    path = str(tmp_path / "evil.npz")
    save({"w": np.ones(2)}, path)
    with np.load(path) as npz:
        entries = {name: npz[name] for name in npz.files}
    entries["arr_0"] = np.array([object()], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **entries)
    assert_load_fails_and_file_unchanged(path, "pickle")


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        b'{"format": "other", "version": 1, "tree": {"type": "none"}}',
        b'{"format": "tinyae", "version": 99, "tree": {"type": "none"}}',
        b'{"format": "tinyae", "version": 1, "tree": {"type": "array", "key": "arr_7"}}',
        b'{"format": "tinyae", "version": 1, "tree": {"type": "dict", "keys": ["a"], "items": []}}',
        b'{"format": "tinyae", "version": 1, "tree": {"type": "int", "value": "12"}}',
        b'{"format": "tinyae", "version": 1, "tree": {"type": "function", "value": "os.system"}}',
    ],
)
def test_invalid_manifest(tmp_path, manifest) -> None:
    path = str(tmp_path / "m.npz")
    np.savez(path, **{MANIFEST_KEY: np.frombuffer(manifest, np.uint8), "arr_0": np.ones(1)})
    assert_load_fails_and_file_unchanged(path, "manifest|version")


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError):
        load("/nonexistent/dir/ckpt.npz")


def test_zip_that_is_not_an_npz(tmp_path) -> None:
    path = str(tmp_path / "x.npz")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match=r"x\.npz"):
        load(path)


# --------------------------------------------------------------------------- atomic writes


def test_failed_save_leaves_old_file_and_no_temp(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ckpt.npz"
    save({"version": "old"}, path)

    def explode(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(KeyboardInterrupt):
        save({"version": "new", "w": np.ones(1000)}, path)
    monkeypatch.undo()
    assert load(path) == {"version": "old"}
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_killed_process_before_rename_leaves_old_file(tmp_path) -> None:
    """A process killed after writing the temp file but before the rename (os._exit: no cleanup)."""
    path = tmp_path / "ckpt.npz"
    save({"version": "old", "w": np.zeros(3)}, path)
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from tinyae import _atomic
        from tinyae.serialization import save
        _atomic.os.replace = lambda src, dst: os._exit(9)  # die right before the rename
        save({{"version": "new", "w": np.ones(100_000)}}, {str(path)!r})
        """
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert result.returncode == 9, result.stderr.decode()
    state = load(path)
    assert state["version"] == "old" and (state["w"] == 0).all()
    leftovers = [n for n in os.listdir(tmp_path) if n != "ckpt.npz"]
    assert leftovers and all(n.startswith(_atomic.TEMP_PREFIX) for n in leftovers)  # the orphaned temp


def test_atomic_write_bytes_and_text(tmp_path) -> None:
    target = tmp_path / "sub" / "out.bin"
    _atomic.atomic_write_bytes(target, b"abc")
    assert target.read_bytes() == b"abc"
    _atomic.atomic_write_text(target, "héllo\n")
    assert target.read_text(encoding="utf-8") == "héllo\n"
    assert os.listdir(target.parent) == ["out.bin"]


def test_atomic_open_error_keeps_original(tmp_path) -> None:
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), _atomic.atomic_open(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("crash")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["metrics.json"]


def test_atomic_open_modes_and_permissions(tmp_path) -> None:
    with pytest.raises(ValueError, match="mode"):
        with _atomic.atomic_open(tmp_path / "x", "a"):
            pass
    target = tmp_path / "new.txt"
    with _atomic.atomic_open(target, "x") as f:
        f.write("once")
    with pytest.raises(FileExistsError), _atomic.atomic_open(target, "x"):
        pass
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    os.chmod(target, 0o640)
    _atomic.atomic_write_text(target, "again")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # an existing file keeps its mode
