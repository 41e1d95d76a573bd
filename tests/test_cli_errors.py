"""Every failure of the ``tinyae`` command: one ``error:`` line, the exit status of its kind.

Damaged checkpoints (wrong shapes, NaN weights, weights that do not give the
stored metrics) for ``eval`` and ``--resume``, internal errors with and without
``--debug``, and the exit-status table in the help. Data failures are in
test_data_hostile.py, training failures (signals, NaN losses, unwritable run
directories) in test_train_reliability.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from run_helpers import read_metrics

from tinyae.cli import main
from tinyae.cli.errors import EXIT_CODES
from tinyae.serialization import load, save
from tinyae.train.checkpoint import CHECKPOINT
from tinyae.train.encoder838 import Encoder838Recipe


def _one_error(err: str) -> str:
    """The single stderr line of a failure (and that there is no other line, no traceback)."""
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and ": error: " in lines[0], err
    return lines[0]


@pytest.fixture
def run(tmp_path):
    """A finished 3-epoch encoder838 run."""
    out = tmp_path / "run"
    assert main(["train", "encoder838", "--out", str(out), "--epochs", "3", "--seeds", "0", "--quiet"]) == 0
    return out


def _edit_weights(run_dir, edit) -> None:
    ckpt = load(run_dir / CHECKPOINT)
    weights = ckpt["state"]["modules"]["model"]
    edit(weights)
    save(ckpt, run_dir / CHECKPOINT)


def test_wrong_shaped_weights_are_a_checkpoint_error_for_eval_and_resume(run, capsys):
    _edit_weights(run, lambda w: w.__setitem__("encoder.0.weight", np.zeros((2, 2), np.float32)))
    capsys.readouterr()
    assert main(["eval", str(run)]) == 4
    line = _one_error(capsys.readouterr().err)
    assert str(run / CHECKPOINT) in line and "does not fit the encoder838 model" in line
    assert "encoder.0.weight" in line and "(2, 2)" in line
    assert main(["train", "encoder838", "--resume", str(run), "--epochs", "5", "--quiet"]) == 4
    assert "does not fit" in _one_error(capsys.readouterr().err)


def test_missing_weights_are_a_checkpoint_error(run, capsys):
    _edit_weights(run, lambda w: w.pop("decoder.0.bias"))
    capsys.readouterr()
    assert main(["eval", str(run)]) == 4
    assert "decoder.0.bias" in _one_error(capsys.readouterr().err)


def test_nan_weights_are_refused(run, capsys):
    _edit_weights(run, lambda w: w["decoder.0.weight"].__setitem__((0, 0), np.nan))
    capsys.readouterr()
    assert main(["eval", str(run)]) == 4
    assert "decoder.0.weight holds NaN or Inf" in _one_error(capsys.readouterr().err)


def test_eval_fails_when_the_checkpoint_does_not_give_the_stored_metrics(run, capsys):
    _edit_weights(run, lambda w: w["decoder.0.weight"].__imul__(0.5))
    capsys.readouterr()
    assert main(["eval", str(run)]) == 7
    captured = capsys.readouterr()
    line = _one_error(captured.err)
    assert "differ from its metrics.json" in line and "test_bce" in line
    stored = read_metrics(run)["final"]["test_bce"]
    assert f"(stored {stored:.6g})" in line
    assert "matches metrics.json" not in captured.out
    assert main(["eval", str(run), "--json"]) == 7  # --json too: the status is what scripts see


def test_eval_of_an_unfinished_run_has_nothing_to_compare(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "encoder838", "--out", str(out), "--epochs", "0", "--seeds", "0", "--quiet"]) == 0
    metrics = read_metrics(out)
    metrics["final"] = None
    (out / "metrics.json").write_text(json.dumps(metrics))
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    assert "no final block" in capsys.readouterr().out


def test_an_internal_error_is_one_line_and_status_1_and_debug_shows_the_traceback(run, monkeypatch, capsys):
    def broken(self, epoch):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Encoder838Recipe, "evaluate", broken)
    argv = ["train", "encoder838", "--resume", str(run), "--epochs", "4", "--quiet"]
    capsys.readouterr()
    assert main(argv) == 1
    line = _one_error(capsys.readouterr().err)
    assert "internal error: ZeroDivisionError: division by zero" in line and "--debug" in line
    assert main([*argv, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.rstrip().splitlines()[-1].startswith("tinyae train: error: internal error")
    assert main(["--debug", *argv]) == 1  # before the command as well
    assert "Traceback" in capsys.readouterr().err


def test_help_documents_every_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    for code, meaning in EXIT_CODES.items():
        assert f"{code} {meaning}" in out


def test_readme_documents_every_exit_status():
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for code, meaning in EXIT_CODES.items():
        assert f"| {code} | {meaning} |" in readme, code


def test_python_warnings_become_one_warning_line(tmp_path, capsys):
    argv = ["train", "conv-ae", "--out", str(tmp_path / "r"), "--epochs", "1", "--lr", "1e30", "--quiet",
            "--dataset", "shapes", "--limit-train", "32", "--limit-test", "16", "--batch-size", "16",
            "--channels", "4", "8", "--code-channels", "2"]  # fmt: skip
    main(argv)
    err = capsys.readouterr().err
    assert all(line.startswith(("warning: ", "tinyae train: error: ")) for line in err.splitlines()), err


def test_an_os_error_on_a_temporary_file_names_the_file_it_was_for():
    import errno

    from tinyae.cli.errors import classify

    exc = OSError(
        errno.ENOSPC, "No space left on device", os.path.join("runs", "r", ".tmp-metrics.json.a1b2")
    )
    assert classify(exc) == (
        5,
        f"cannot write {os.path.join('runs', 'r', 'metrics.json')}: No space left on device",
    )
