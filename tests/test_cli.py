"""The ``tinyae`` command and the training loop behind it (tinyae.cli, tinyae.train).

Every run here is tiny (a few dozen Shapes images, one or two epochs, ``--quiet``)
and offline. Checked: each model's run directory holds every file the issue lists,
metrics.json has the documented schema, ``tinyae eval`` recomputes ``final``, an
interrupted run resumed with ``--resume`` ends with exactly the metrics of an
uninterrupted one, and bad options exit with status 2 and one ``error:`` line.
Signals, NaN losses and file-system failures: test_train_reliability.py; damaged
checkpoints and the other exit statuses: test_cli_errors.py.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from run_helpers import read_metrics, without_seconds

from tinyae.cli import main
from tinyae.data import MNIST
from tinyae.serialization import load
from tinyae.train import default_config, load_images, recipe_names, train
from tinyae.train.checkpoint import CHECKPOINT
from tinyae.train.registry import get_recipe

TINY = ["--dataset", "shapes", "--limit-train", "64", "--limit-test", "32", "--batch-size", "32", "--quiet"]
#: per model: extra options that keep the run tiny
MODEL_ARGS = {
    "encoder838": ["--epochs", "3", "--seeds", "2", "--quiet"],
    "ae": [*TINY, "--epochs", "1", "--hidden", "16", "--code-size", "4"],
    "conv-ae": [*TINY, "--epochs", "1", "--channels", "4", "8", "--code-channels", "2"],
    "denoise": [*TINY, "--epochs", "1", "--channels", "4", "8", "--noise", "masking", "--noise-level", "0.3"],
}
FINAL_NAMES = {
    "encoder838": {"test_bce", "test_mse", "patterns_correct"},
    "ae": {"test_mse", "test_bce", "test_psnr", "pca_test_mse"},
    "conv-ae": {"test_mse", "test_bce", "test_psnr"},
    "denoise": {"test_mse", "test_bce", "test_psnr", "test_psnr_noisy", "test_psnr_denoised"},
}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error:" in line]


# -------------------------------------------------------------------- help


def test_top_level_help_lists_commands_and_models(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("train", "eval", "info", "--dataset auto", "Exit status"):
        assert word in out


def test_train_help_lists_every_model(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for name in recipe_names():
        assert name in out
        assert get_recipe(name).summary[:30] in " ".join(out.split())


@pytest.mark.parametrize("model", recipe_names())
def test_model_help_shows_common_and_own_options(model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", model, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--dataset", "--epochs", "--batch-size", "--lr", "--seed", "--device", "--out", "--quiet",
                   "--resume", "--limit-train", "--data-root"):  # fmt: skip
        assert option in out
    own = {
        "encoder838": "--seeds",
        "ae": "--code-size",
        "conv-ae": "--code-channels",
        "denoise": "--noise-level",
        "stacked-ae": "--pretrain-epochs",
        "transfer": "--labels",
        "vae": "--iw-samples",
        "conv-vae": "--latent",
        "gan": "--d-steps",
        "dcgan": "--loss {gan,wgan-gp}",
    }
    assert own[model] in out


def test_eval_help(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "RUN_DIR" in capsys.readouterr().out


# ------------------------------------------------------- every model's files


@pytest.mark.parametrize("model", ["encoder838", "ae", "conv-ae", "denoise"])
def test_train_writes_every_file_and_the_schema(model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", model, "--out", str(out), *MODEL_ARGS[model]]) == 0
    assert capsys.readouterr().out == ""  # --quiet
    cls = get_recipe(model)
    files = set(os.listdir(out))
    assert {"metrics.json", CHECKPOINT, *cls.pictures_made} <= files
    for name in cls.pictures_made:
        with open(out / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    m = read_metrics(out)
    assert set(m) == {"model", "dataset", "config", "epochs", "final"}
    assert m["model"] == model
    assert m["dataset"] == ("one-hot-8" if model == "encoder838" else "shapes")
    assert m["config"]["model"] == model and m["config"]["epochs"] == len(m["epochs"])
    for i, record in enumerate(m["epochs"]):
        assert list(record)[:4] == ["epoch", "train_loss", "test_loss", "seconds"]
        assert record["epoch"] == i + 1
        assert all(isinstance(record[k], float) for k in ("train_loss", "test_loss", "seconds"))
    assert FINAL_NAMES[model] <= set(m["final"])
    ckpt = load(out / CHECKPOINT)
    assert ckpt["model"] == model and ckpt["epoch"] == len(m["epochs"]) and ckpt["batch"] == 0


def test_encoder838_reports_codes_and_the_seed_sweep(tmp_path):
    out = tmp_path / "r"
    assert main(["train", "encoder838", "--out", str(out), "--epochs", "4", "--seeds", "3", "--quiet"]) == 0
    final = read_metrics(out)["final"]
    assert np.array(final["codes"]).shape == (8, 3)
    assert len(final["code_bits"]) == 8
    sweep = final["seed_sweep"]
    assert sweep["seeds"] == 3 and sweep["epochs"] == 4 and len(sweep["solve_epochs"]) == 3


def test_printed_summary_names_the_pictures(tmp_path, capsys):
    out = tmp_path / "r"
    args = [a for a in MODEL_ARGS["ae"] if a != "--quiet"]
    assert main(["train", "ae", "--out", str(out), *args]) == 0
    text = capsys.readouterr().out
    assert "test_mse" in text and "pca_test_mse" in text
    assert str(out) in text and "reconstructions.png" in text


# -------------------------------------------------------------------- eval


def test_eval_recomputes_final(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "conv-ae", "--out", str(out), *MODEL_ARGS["conv-ae"]]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    recomputed = json.loads(capsys.readouterr().out)
    stored = read_metrics(out)["final"]
    assert recomputed.keys() == stored.keys()
    for k, v in stored.items():
        assert recomputed[k] == pytest.approx(v, rel=1e-9)
    assert main(["eval", str(out)]) == 0
    assert "matches metrics.json" in capsys.readouterr().out


# ------------------------------------------------------------------- resume


def _config(**kw):
    base = {"dataset": "shapes", "limit_train": 96, "limit_test": 32, "batch_size": 32, "epochs": 2}
    return default_config("denoise", channels=[4, 8], **{**base, **kw})


@pytest.mark.parametrize("stop_at", [(0, 2), (1, 0)], ids=["inside-epoch-1", "after-epoch-1"])
def test_resume_reproduces_the_uninterrupted_metrics(tmp_path, stop_at):
    # denoise draws its training noise from the global generator: the hardest case for resuming
    full = train(_config(), str(tmp_path / "full"), quiet=True)
    assert full.status == "finished"

    run = str(tmp_path / "cut")
    epoch_stop, batch_stop = stop_at
    if batch_stop == 0:  # stop at the epoch boundary: train 1 epoch, then extend the run to 2
        first = train(_config(epochs=1), run, quiet=True)
        assert first.status == "finished"
    else:
        first = train(_config(), run, quiet=True, stop=lambda e, b: (e, b) == stop_at)
        assert first.status == "interrupted" and (first.epoch, first.batch) == stop_at
        ckpt = load(os.path.join(run, CHECKPOINT))
        assert (ckpt["epoch"], ckpt["batch"]) == stop_at
        assert read_metrics(run)["final"] is None
    assert main(["train", "denoise", "--resume", run, "--epochs", "2", "--quiet"]) == 0
    assert without_seconds(read_metrics(run)) == without_seconds(full.metrics)


def test_denoise_defaults_to_bce_on_a_cosine_schedule(tmp_path):
    result = train(_config(epochs=3, lr=4e-3), str(tmp_path / "r"), quiet=True)
    assert result.metrics["config"]["loss"] == "bce"
    # the learning rate of the last epoch (t = 2 of 3): 4e-3 (1 + cos(2 pi / 3)) / 2 = 1e-3
    assert result.recipe.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_checkpoint_holds_the_generator_state_as_plain_numbers(tmp_path):
    train(_config(epochs=1), str(tmp_path / "r"), quiet=True)
    rng = load(tmp_path / "r" / CHECKPOINT)["rng"]
    assert rng["bit_generator"] == "PCG64"
    assert isinstance(rng["state"]["state"], int) and isinstance(rng["state"]["inc"], int)
    json.dumps(rng)  # JSON-able
    np.random.default_rng().bit_generator.state = rng  # and a valid state


# -------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["train", "vqvae"], "invalid choice: 'vqvae'"),
        (["train", "ae", "--dataset", "cifar"], "invalid choice: 'cifar'"),
        (["train", "ae", "--epochs", "-1"], "--epochs: must be >= 0"),
        (["train", "ae", "--batch-size", "0"], "--batch-size: must be a positive integer"),
        (["train", "ae", "--lr", "nan"], "--lr: must be a positive number"),
        (
            ["train", "denoise", "--noise-level", "1.5"],
            "--noise-level: gaussian noise level must be in [0, 1]",
        ),
        (["train", "denoise", "--noise", "masking", "--noise-level", "-0.2"], "must be in [0, 1]"),
        (["train", "ae", "--device", "tpu"], "--device tpu"),
        (["train", "ae", "--code-size", "0"], "--code-size must be at least 1"),
        (["train", "ae", "--resume"], "--resume needs the run directory"),
        (["eval"], "RUN_DIR"),
        (["train", "ae", "--noise", "gaussian"], "unrecognized arguments: --noise gaussian"),
    ],
)
def test_bad_options_exit_2_with_one_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1, err
    assert fragment in err


def test_resume_of_a_missing_directory(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "ae", "--resume", str(tmp_path / "nope")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "does not exist" in err


def test_resume_of_foreign_directories(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    with pytest.raises(SystemExit) as exc:
        main(["train", "ae", "--resume", str(plain)])
    assert exc.value.code == 2
    assert "not a tinyae run directory" in capsys.readouterr().err

    other = tmp_path / "other"
    assert main(["train", "encoder838", "--out", str(other), "--epochs", "1", "--seeds", "0", "--quiet"]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["train", "ae", "--resume", str(other)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "run of model 'encoder838', not 'ae'" in err

    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / CHECKPOINT).write_bytes(b"not a zip file")
    assert main(["eval", str(garbage)]) == 4  # a damaged checkpoint, not a bad option
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "not a .npz file" in err and str(garbage) in err


def test_resume_refuses_changed_options_and_out_refuses_an_existing_run(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", "encoder838", "--out", str(run), "--epochs", "1", "--seeds", "0", "--quiet"]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["train", "encoder838", "--resume", str(run), "--lr", "0.1"])
    assert exc.value.code == 2
    assert "--lr 0.1 differs from the saved run's 0.5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "encoder838", "--resume", str(run), "--epochs", "0"])
    assert exc.value.code == 2
    assert "--epochs 0 is fewer than the 1 epochs already done" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "encoder838", "--out", str(run), "--quiet"])
    assert exc.value.code == 2
    assert "already holds a run" in capsys.readouterr().err


# ------------------------------------------------------------------- data


def test_auto_falls_back_to_shapes_with_a_notice(tmp_path, monkeypatch):
    monkeypatch.setattr(MNIST, "mirrors", ("http://127.0.0.1:9/",))  # nothing listens on port 9
    data = load_images("auto", root=str(tmp_path), limit_train=8, limit_test=4)
    assert data.name == "shapes" and len(data.x_train) == 8 and len(data.x_test) == 4
    assert data.notice.startswith("note: MNIST is") and "Shapes" in data.notice
    assert "\n" not in data.notice


def test_explicit_mnist_that_is_missing_fails_with_status_3(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(MNIST, "mirrors", ())
    argv = ["train", "ae", "--dataset", "mnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "r")]
    assert main([*argv, "--quiet"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(_error_lines(err)) == 1, err
    assert "MNIST is not in" in err and str(tmp_path) in err and "--data-root" in err


def test_train_with_auto_and_no_mnist_says_why_on_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(MNIST, "mirrors", ("http://127.0.0.1:9/",))
    out = tmp_path / "r"
    argv = ["train", "ae", "--dataset", "auto", "--data-root", str(tmp_path / "empty"), "--out", str(out)]
    tiny = [a for a in MODEL_ARGS["ae"] if a not in ("--dataset", "shapes")]
    assert main([*argv, *tiny]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: MNIST")]
    assert len(notes) == 1 and "Shapes" in notes[0]
    assert read_metrics(out)["dataset"] == "shapes" and read_metrics(out)["config"]["dataset"] == "auto"
