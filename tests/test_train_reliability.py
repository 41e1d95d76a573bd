"""Training runs that go wrong: signals, NaN losses, unwritable or busy run directories, long runs.

Checked: SIGINT and SIGTERM (sent to a real subprocess) save a checkpoint and exit
with 130 / 143, and the run resumes to exactly the metrics of an uninterrupted one;
a NaN loss stops with status 6 naming the step and keeps the last good checkpoint,
or is skipped with --skip-nonfinite; the checkpoint does not grow with the epochs
and metrics.json is rewritten at a bounded cost; temporary files left by a killed
save are removed; history.jsonl survives a torn last line; version-1 checkpoints
still resume.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from run_helpers import read_metrics, without_seconds

from tinyae.cli import main
from tinyae.serialization import load, save
from tinyae.train import default_config, train
from tinyae.train import rundir as rundir_module
from tinyae.train.checkpoint import CHECKPOINT
from tinyae.train.encoder838 import Encoder838Recipe
from tinyae.train.rundir import HISTORY, MetricsWriter, RunDirectory, RunDirError
from tinyae.train.stopping import Interrupted, StopRequest, TrainingDiverged, terminate_as_interrupt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
E838 = ["--seeds", "0", "--quiet"]


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error:" in line]


def _e838(out, epochs: int, *extra: str) -> int:
    return main(["train", "encoder838", "--out", str(out), "--epochs", str(epochs), *E838, *extra])


# ------------------------------------------------------------------------- signals


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"])
def test_signal_saves_a_checkpoint_and_the_run_resumes_exactly(tmp_path, signum, status):
    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    tiny = ["--dataset", "shapes", "--limit-train", "256", "--limit-test", "32", "--batch-size", "8",
            "--hidden", "8", "--code-size", "2"]  # fmt: skip
    cmd = [sys.executable, "-c", "import sys; from tinyae.cli import main; sys.exit(main())", "train", "ae",
           "--out", str(out), "--epochs", "1000", *tiny]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "metrics.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == status, err
    errors = _error_lines(err)
    assert len(errors) == 1 and "interrupted: checkpoint saved" in errors[0] and "--resume" in errors[0], err
    ckpt = load(out / CHECKPOINT)
    assert ckpt["model"] == "ae" and ckpt["epoch"] + ckpt["batch"] > 0

    epochs = ckpt["epoch"] + 1  # finish the epoch that was cut
    assert main(["train", "ae", "--resume", str(out), "--epochs", str(epochs), "--quiet"]) == 0
    config = default_config("ae", dataset="shapes", limit_train=256, limit_test=32, batch_size=8, hidden=[8],
                            code_size=2, epochs=epochs)  # fmt: skip
    full = train(config, str(tmp_path / "full"), quiet=True)
    assert without_seconds(read_metrics(out)) == without_seconds(full.metrics)


def test_a_second_signal_stops_at_once():
    request = StopRequest()
    request.handler(signal.SIGTERM, None)
    assert request.requested and request.signum == signal.SIGTERM
    with pytest.raises(Interrupted) as info:
        request.handler(signal.SIGTERM, None)
    assert info.value.signum == signal.SIGTERM and isinstance(info.value, KeyboardInterrupt)


def test_sigterm_outside_the_loop_raises_instead_of_killing():
    with terminate_as_interrupt(), pytest.raises(Interrupted) as info:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode; this never completes
    assert info.value.signum == signal.SIGTERM


# ------------------------------------------------------------------------- NaN / Inf


@pytest.fixture
def poison_step(monkeypatch):
    """Make the 7th training loss of encoder838 NaN (and so its gradients), the weights still fine."""
    original = Encoder838Recipe.loss_fn
    calls = {"n": 0}

    def poisoned(r, x):
        calls["n"] += 1
        loss = original(r, x)
        return loss * float("nan") if calls["n"] == 7 else loss

    monkeypatch.setattr(Encoder838Recipe, "loss_fn", staticmethod(poisoned))
    return calls


def test_nan_loss_stops_with_status_6_and_keeps_the_last_good_checkpoint(tmp_path, poison_step, capsys):
    out = tmp_path / "r"
    assert _e838(out, 20) == 6
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and err.count("\n") == 1, err
    assert "loss became nan at step 7 (epoch 7, batch 1)" in err and "--skip-nonfinite" in err
    ckpt = load(out / CHECKPOINT)
    assert (ckpt["epoch"], ckpt["batch"]) == (6, 0)  # the state after the last good epoch
    assert all(np.isfinite(w).all() for w in ckpt["state"]["modules"]["model"].values())
    assert len(read_metrics(out)["epochs"]) == 6 and read_metrics(out)["final"] is None


def test_a_loss_that_refuses_nan_inputs_is_divergence_too(tmp_path, capsys):
    # lr 1e30: the weights stay finite, their products overflow, and BCE refuses the NaN "probabilities"
    tiny = ["--dataset", "shapes", "--limit-train", "64", "--limit-test", "32", "--batch-size", "16",
            "--channels", "4", "8", "--code-channels", "2", "--quiet"]  # fmt: skip
    assert (
        main(["train", "conv-ae", "--out", str(tmp_path / "r"), "--epochs", "3", "--lr", "1e30", *tiny]) == 6
    )
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "training diverged" in errors[0] and "failed on NaN/Inf values" in errors[0]
    assert "binary_cross_entropy" in errors[0] and "--skip-nonfinite" not in errors[0]


def test_train_raises_training_diverged(tmp_path, poison_step):
    config = default_config("encoder838", epochs=20, seeds=0)
    with pytest.raises(TrainingDiverged) as info:
        train(config, str(tmp_path / "r"), quiet=True)
    assert (info.value.step, info.value.epoch, info.value.saved_epoch) == (7, 6, 6)


def test_skip_nonfinite_skips_the_step_and_goes_on(tmp_path, poison_step, capsys):
    out = tmp_path / "r"
    assert _e838(out, 12, "--skip-nonfinite") == 0
    assert "warning: epoch 7: skipped 1 batch" in capsys.readouterr().err
    m = read_metrics(out)
    assert [r.get("skipped_batches") for r in m["epochs"]][5:8] == [None, 1, None]
    assert np.isfinite(m["final"]["test_bce"])  # the NaN gradients never reached the weights
    assert all(np.isfinite(w).all() for w in load(out / CHECKPOINT)["state"]["modules"]["model"].values())


def test_a_diverged_run_resumes_with_skip_nonfinite(tmp_path, poison_step):
    out = tmp_path / "r"
    assert _e838(out, 10) == 6
    assert main(["train", "encoder838", "--resume", str(out), "--skip-nonfinite", "--quiet"]) == 0
    m = read_metrics(out)
    assert len(m["epochs"]) == 10 and m["config"]["skip_nonfinite"] is True


# ------------------------------------------------------------------------- cost of long runs


def test_checkpoint_size_does_not_grow_with_the_epochs(tmp_path):
    sizes = []
    for epochs in (2, 60):
        assert _e838(tmp_path / f"r{epochs}", epochs) == 0
        sizes.append(os.path.getsize(tmp_path / f"r{epochs}" / CHECKPOINT))
        ckpt = load(tmp_path / f"r{epochs}" / CHECKPOINT)
        assert "history" not in ckpt and ckpt["history_len"] == epochs
    history = os.path.getsize(tmp_path / "r60" / HISTORY)
    assert abs(sizes[1] - sizes[0]) < 64 < history / 10, (sizes, history)


def test_metrics_json_costs_a_bounded_share_of_the_run(tmp_path, monkeypatch):
    clock = {"t": 0.0}
    monkeypatch.setattr(rundir_module.time, "perf_counter", lambda: clock["t"])
    cost = {"per_epoch": 1e-4}
    epochs_written = []

    def fake_write(run_dir, metrics):  # a write costs time proportional to the history
        clock["t"] += cost["per_epoch"] * len(metrics["epochs"])
        epochs_written.append(len(metrics["epochs"]))

    monkeypatch.setattr(rundir_module, "write_metrics", fake_write)
    writer = MetricsWriter(str(tmp_path))
    history: list[int] = []
    train_time = 0.0
    for epoch in range(20_000):
        clock["t"] += 1e-3  # one epoch of training
        train_time += 1e-3
        history.append(epoch)
        writer.write({"epochs": history})
    writer.write({"epochs": history}, force=True)
    write_time = clock["t"] - train_time
    assert write_time <= train_time / MetricsWriter.EVERY + cost["per_epoch"] * len(history) * 2
    assert epochs_written[0] == 1 and epochs_written[-1] == 20_000  # from the first epoch, and at the end
    # every epoch would have cost sum(1e-4 * k) = 2e4 s here, ten times the training itself
    assert write_time < 0.1 * sum(cost["per_epoch"] * k for k in range(1, 20_001))


# ------------------------------------------------------------------------- the run directory


def test_stale_temporary_files_are_removed_on_resume_and_on_start(tmp_path):
    out = tmp_path / "r"
    assert _e838(out, 2) == 0
    stale = [".tmp-checkpoint.npz.k1LL3d", ".tmp-metrics.json.x9z2ab"]
    for name in stale:
        (out / name).write_bytes(b"half a file")
    assert main(["train", "encoder838", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert not any(name.startswith(".tmp-") for name in os.listdir(out))

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / stale[0]).write_bytes(b"x")
    assert _e838(fresh, 1) == 0
    assert not any(name.startswith(".tmp-") for name in os.listdir(fresh))


def test_a_torn_history_line_and_epochs_after_the_checkpoint_are_dropped(tmp_path):
    full = train(default_config("encoder838", epochs=4, seeds=0), str(tmp_path / "full"), quiet=True)
    out = tmp_path / "r"
    assert _e838(out, 2) == 0
    with open(out / HISTORY, "a", encoding="utf-8") as f:
        f.write(json.dumps({"epoch": 3, "train_loss": 1.0, "test_loss": 1.0, "seconds": 0.0}) + "\n")
        f.write('{"epoch": 4, "train_lo')  # killed mid-line
    assert main(["train", "encoder838", "--resume", str(out), "--epochs", "4", "--quiet"]) == 0
    assert without_seconds(read_metrics(out)) == without_seconds(full.metrics)
    with open(out / HISTORY, encoding="utf-8") as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3, 4]


def test_version_1_checkpoints_with_their_history_still_resume(tmp_path):
    full = train(default_config("encoder838", epochs=3, seeds=0), str(tmp_path / "full"), quiet=True)
    out = tmp_path / "r"
    assert _e838(out, 2) == 0
    ckpt = load(out / CHECKPOINT)
    ckpt["history"] = read_metrics(out)["epochs"]
    for key in ("history_len", "steps"):
        del ckpt[key]
    ckpt["version"] = 1
    save(ckpt, out / CHECKPOINT)
    os.unlink(out / HISTORY)
    assert main(["train", "encoder838", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    assert without_seconds(read_metrics(out)) == without_seconds(full.metrics)


def test_a_second_writer_is_refused(tmp_path):
    with RunDirectory(str(tmp_path / "r")):
        with pytest.raises(RunDirError, match="another process is training into"):
            with RunDirectory(str(tmp_path / "r")):
                pass
    with RunDirectory(str(tmp_path / "r")):  # released on exit
        pass


def test_out_naming_a_file_is_a_bad_option(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SystemExit) as exc:
        _e838(tmp_path / "f", 1)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "is an existing file" in err


def test_out_below_a_file_cannot_be_created(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert _e838(tmp_path / "f" / "run", 1) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot create the run directory" in err and "Not a directory" in err


def test_read_only_run_directory_exits_5_before_loading_data(tmp_path, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rundir_module.tempfile, "mkstemp", read_only)
    argv = ["train", "ae", "--dataset", "mnist", "--data-root", str(tmp_path / "nowhere"), "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 5  # not 3: the data was never looked for
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write to the run directory" in err and "Read-only" in err


def test_disk_full_while_saving_exits_5_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, capsys):
    from tinyae.train import loop

    real = loop.write_checkpoint
    calls = {"n": 0}

    def flaky(run_dir, payload):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(run_dir, CHECKPOINT))
        return real(run_dir, payload)

    monkeypatch.setattr(loop, "write_checkpoint", flaky)
    out = tmp_path / "r"
    assert _e838(out, 5) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert load(out / CHECKPOINT)["epoch"] == 1
