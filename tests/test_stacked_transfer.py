"""``stacked-ae`` and ``transfer``: the models, their recipes, and the CLI runs.

Checked: layer shapes and the copy of pretrained encoders into classifiers; a few
optimizer steps lower every loss the recipes train (each autoencoder of the stack, the
deep classifier, the transfer autoencoder and classifier); balanced labelled subsets;
each CLI run writes every file with the documented ``final`` block; ``tinyae eval``
recomputes it; an interrupted run resumed from its checkpoint ends with exactly the
metrics of an uninterrupted one (inside pretraining, at a phase switch, inside
fine-tuning, inside the classifier epoch); bad options exit with status 2 and one
message. Everything runs on a few dozen Shapes images.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from run_helpers import read_metrics, without_seconds

import tinyae
import tinyae.nn.functional as F
from tinyae import optim
from tinyae.cli import main
from tinyae.data import MaskingNoise, Shapes
from tinyae.models.stacked import StackedAutoencoder, StackedClassifier
from tinyae.models.transfer import TransferAutoencoder, TransferClassifier
from tinyae.serialization import load
from tinyae.tensor import Tensor
from tinyae.train import default_config, evaluate_run, train
from tinyae.train.checkpoint import CHECKPOINT
from tinyae.train.registry import get_recipe
from tinyae.train.stacked import cosine_lr
from tinyae.train.transfer import VARIANTS, balanced_subset

TINY = ["--dataset", "shapes", "--limit-train", "96", "--limit-test", "32", "--batch-size", "32", "--quiet"]
STACKED_ARGS = [*TINY, "--hidden", "16", "8", "--pretrain-epochs", "1", "--epochs", "3"]
TRANSFER_ARGS = [*TINY, "--hidden", "16", "--code-size", "3", "--labels", "8", "20", "--draws", "2",
                 "--steps", "3", "--epochs", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def shapes() -> tuple[np.ndarray, np.ndarray]:
    ds = Shapes(64, train=True, seed=5)
    return ds.data, ds.targets  # (64, 1, 28, 28), (64,)


def _assert_close(a, b) -> None:
    """Nested dicts/lists of numbers equal up to float rounding (JSON round trips)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys()
        for k in a:
            _assert_close(a[k], b[k])
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b)
        for u, v in zip(a, b):
            _assert_close(u, v)
    else:
        assert a == pytest.approx(b, rel=1e-9)


def _adam_losses(params, loss_fn, steps: int, lr: float = 1e-2) -> list[float]:
    opt = optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


# ------------------------------------------------------------------ stacked model


def test_stacked_shapes_and_layer_sizes(shapes):
    tinyae.manual_seed(0)
    x = Tensor(shapes[0][:5])
    stack = StackedAutoencoder([20, 12, 6])
    assert stack.depth == 3 and stack.sizes == [784, 20, 12, 6]
    assert [e.weight.shape for e in stack.encoders] == [(20, 784), (12, 20), (6, 12)]
    assert [d.weight.shape for d in stack.decoders] == [(784, 20), (20, 12), (12, 6)]
    assert stack.encode(x).shape == (5, 6)
    assert stack.encode(x, depth=1).shape == (5, 20)
    assert stack.encode(x, depth=0).shape == (5, 784)  # the flattened images themselves
    r = stack.reconstruct(x)
    assert r.shape == (5, 1, 28, 28) and 0 < r.numpy().min() and r.numpy().max() < 1
    net = StackedClassifier([20, 12, 6], n_classes=4)
    assert net(x).shape == (5, 4)


def test_stacked_output_kinds():
    relu = StackedAutoencoder([8, 4], activation="relu")
    sig = StackedAutoencoder([8, 4], activation="sigmoid")
    assert relu.output_is_probability(0) and not relu.output_is_probability(1)
    assert sig.output_is_probability(0) and sig.output_is_probability(1)
    h = Tensor(np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32))
    assert (relu.decode_layer(1, h).numpy() >= 0).all()  # ReLU codes are reconstructed as ReLU codes


def test_load_encoders_copies_the_pretrained_stack(shapes):
    tinyae.manual_seed(1)
    stack = StackedAutoencoder([10, 7], activation="sigmoid")
    net = StackedClassifier([10, 7], n_classes=3, activation="sigmoid", dropout=0.5)
    head_before = net.head.weight.numpy().copy()
    net.load_encoders(stack)
    for mine, theirs in zip(net.encoders, stack.encoders):
        np.testing.assert_array_equal(mine.weight.numpy(), theirs.weight.numpy())
        np.testing.assert_array_equal(mine.bias.numpy(), theirs.bias.numpy())
    np.testing.assert_array_equal(net.head.weight.numpy(), head_before)
    x = Tensor(shapes[0][:4])
    net.eval()  # no dropout: the classifier's features are the stack's top codes
    np.testing.assert_allclose(net.features(x).numpy(), stack.encode(x).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="load_encoders"):
        StackedClassifier([10, 8], n_classes=3).load_encoders(stack)


@pytest.mark.parametrize("hidden,activation", [([], "relu"), ([4, 0], "relu"), ([4], "tanh")])
def test_stacked_rejects_bad_sizes(hidden, activation):
    with pytest.raises(ValueError, match="StackedAutoencoder"):
        StackedAutoencoder(hidden, activation=activation)
    with pytest.raises(ValueError, match="StackedClassifier"):
        StackedClassifier(hidden, activation=activation)


@pytest.mark.parametrize("k", [0, 1])
def test_each_denoising_autoencoder_loss_falls(shapes, k):
    tinyae.manual_seed(2)
    stack = StackedAutoencoder([24, 12])
    h = Tensor(stack.encode(Tensor(shapes[0]), depth=k).numpy())  # the frozen layer-k inputs
    rng = np.random.default_rng(0)

    def loss():
        noisy = Tensor(MaskingNoise(0.2)(h.data, rng))
        logits = stack.layer_logits(k, noisy)
        if stack.output_is_probability(k):
            return F.binary_cross_entropy_with_logits(logits, h)
        return F.mse_loss(logits, h)

    params = [*stack.encoders[k].parameters(), *stack.decoders[k].parameters()]
    losses = _adam_losses(params, loss, 40)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_stacked_classifier_loss_falls(shapes):
    tinyae.manual_seed(3)
    net = StackedClassifier([32, 16], n_classes=4, dropout=0.1)
    x, y = Tensor(shapes[0]), Tensor(shapes[1])
    losses = _adam_losses(net.parameters(), lambda: F.cross_entropy(net(x), y), 40, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]


def test_cosine_lr():
    assert cosine_lr(0.1, 0, 10) == pytest.approx(0.1)
    assert cosine_lr(0.1, 5, 10) == pytest.approx(0.05)
    assert 0 < cosine_lr(0.1, 9, 10) < 0.003


# ----------------------------------------------------------------- transfer model


def test_transfer_shapes_and_encoder_copy(shapes):
    tinyae.manual_seed(4)
    ae = TransferAutoencoder([20, 10], code_size=3)
    x = Tensor(shapes[0][:6])
    assert ae.encode(x).shape == (6, 3)
    assert ae.decode_logits(ae.encode(x)).shape == (6, 1, 28, 28)
    r = ae(x).numpy()
    assert 0 < r.min() and r.max() < 1
    net = TransferClassifier([20, 10], code_size=3, n_classes=4)
    assert net(x).shape == (6, 4)
    net.load_encoder(ae)
    np.testing.assert_allclose(net.encoder(x).numpy(), ae.encode(x).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="load_encoder"):
        TransferClassifier([20, 10], code_size=4).load_encoder(ae)
    with pytest.raises(ValueError, match="TransferAutoencoder"):
        TransferAutoencoder([20], code_size=0)


def test_transfer_losses_fall(shapes):
    tinyae.manual_seed(5)
    x, y = Tensor(shapes[0]), Tensor(shapes[1])
    ae = TransferAutoencoder([32], code_size=4)
    losses = _adam_losses(
        ae.parameters(), lambda: F.binary_cross_entropy_with_logits(ae.decode_logits(ae.encode(x)), x), 30
    )
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    net = TransferClassifier([32], code_size=4, n_classes=4)
    losses = _adam_losses(net.parameters(), lambda: F.cross_entropy(net(x), y), 40, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0]


def test_balanced_subset():
    labels = np.repeat(np.arange(10), 50)
    idx = balanced_subset(labels, 100, np.random.default_rng(0))
    assert len(np.unique(idx)) == 100
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), np.full(10, 10))
    again = balanced_subset(labels, 100, np.random.default_rng(0))
    other = balanced_subset(labels, 100, np.random.default_rng(1))
    np.testing.assert_array_equal(idx, again)
    assert not np.array_equal(idx, other)
    counts = np.bincount(labels[balanced_subset(labels, 15, np.random.default_rng(2))], minlength=10)
    assert counts.sum() == 15 and counts.max() - counts.min() <= 1
    scarce = np.array([0] * 3 + [1] * 30)  # class 0 runs out: the rest comes from class 1
    picked = balanced_subset(scarce, 20, np.random.default_rng(0))
    assert len(np.unique(picked)) == 20 and (scarce[picked] == 0).sum() == 3
    for n in (0, 34):
        with pytest.raises(ValueError, match="balanced_subset"):
            balanced_subset(scarce, n, np.random.default_rng(0))


# ------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("model,args", [("stacked-ae", STACKED_ARGS), ("transfer", TRANSFER_ARGS)])
def test_cli_writes_every_file(model, args, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", model, "--out", str(out), *args]) == 0
    assert capsys.readouterr().out == ""  # --quiet
    cls = get_recipe(model)
    assert {"metrics.json", CHECKPOINT, *cls.pictures_made} <= set(os.listdir(out))
    for name in cls.pictures_made:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = read_metrics(out)
    assert m["model"] == model and m["dataset"] == "shapes" and len(m["epochs"]) == m["config"]["epochs"]
    final = m["final"]
    phases = [r["phase"] for r in m["epochs"]]
    if model == "stacked-ae":
        assert phases == ["pretrain layer 1", "pretrain layer 2", "fine-tune"]
        for key in ("test_accuracy", "test_error", "scratch_test_accuracy", "scratch_test_error"):
            assert 0.0 <= final[key] <= 1.0
        assert final["test_accuracy"] + final["test_error"] == pytest.approx(1.0)
        assert final["pretraining_gain"] == pytest.approx(
            final["test_accuracy"] - final["scratch_test_accuracy"]
        )
        assert m["epochs"][-1]["test_accuracy"] == final["test_accuracy"]
    else:
        assert phases == ["autoencoder", "classifiers"]
        for n in (8, 20):
            assert set(final[f"labels_{n}"]) == set(VARIANTS)
            for v in VARIANTS:
                assert final[f"test_accuracy_{n}_{v}"] == final[f"labels_{n}"][v]
                draws = final["per_draw"][f"labels_{n}"][v]
                assert len(draws) == 2 and final[f"labels_{n}"][v] == pytest.approx(np.mean(draws))
            assert final[f"finetuned_gain_{n}"] == pytest.approx(
                final[f"labels_{n}"]["finetuned"] - final[f"labels_{n}"]["scratch"]
            )
    assert main(["eval", str(out), "--json"]) == 0
    _assert_close(json.loads(capsys.readouterr().out), final)
    assert main(["eval", str(out)]) == 0
    assert "matches metrics.json" in capsys.readouterr().out


def test_transfer_trains_each_classifier_for_its_steps(tmp_path):
    config = default_config(
        "transfer", dataset="shapes", limit_train=96, limit_test=32, hidden=[8], code_size=2, labels=[8, 40],
        draws=1, steps=5, epochs=2,
    )  # fmt: skip
    result = train(config, str(tmp_path / "r"), quiet=True)
    recipe = result.recipe
    # 2 sizes x 1 draw x (frozen 5 + finetuned 5 + scratch 10) steps; batches of min(n, 64)
    assert [o.state_dict()["state"][0]["step"] for o in recipe.task_optimizers] == [5, 5, 10] * 2
    assert len(recipe.train_loader(1)) == 40
    for j, idx in enumerate(recipe.subsets):
        assert len(idx) == (8, 40)[j] and len(np.unique(idx)) == len(idx)
    # the frozen classifier's encoder is the autoencoder's, unchanged by the classifier epoch
    ae_state = load(tmp_path / "r" / CHECKPOINT)["state"]["modules"]["autoencoder"]
    for k, v in recipe.autoencoder.state_dict().items():
        np.testing.assert_array_equal(v, ae_state[k])


def test_stacked_labels_fine_tune_on_a_repeated_balanced_subset(tmp_path):
    config = _stacked(labels=10, shift=1, epochs=3)
    result = train(config, str(tmp_path / "r"), quiet=True)
    recipe = result.recipe
    labelled = recipe.labelled_set()
    assert len(labelled) == 96  # the labelled images repeated to the training set's size
    idx = np.asarray(labelled.indices)
    counts = np.bincount(idx)[np.unique(idx)]
    assert len(counts) == 10 and set(counts) <= {9, 10}  # 96 = 10 copies of 6 images + 9 of 4
    np.testing.assert_array_equal(
        np.unique(idx), balanced_subset(recipe.data.y_train, 10, np.random.default_rng([0, 10]))
    )
    assert len(recipe.train_loader(0).dataset) == 96  # pretraining sees every image, without labels


def test_transfer_shift_moves_only_the_labelled_images(tmp_path):
    plain = train(_transfer(epochs=2), str(tmp_path / "plain"), quiet=True).recipe
    moved = train(_transfer(epochs=2, shift=2), str(tmp_path / "moved"), quiet=True).recipe
    for k, v in plain.autoencoder.state_dict().items():  # pretraining is the same
        np.testing.assert_array_equal(v, moved.autoencoder.state_dict()[k])
    for net in ("heads", "finetuned", "scratch"):  # the classifiers saw other images
        a, b = getattr(plain, net).state_dict(), getattr(moved, net).state_dict()
        assert any(not np.array_equal(a[k], b[k]) for k in a), net


# ---------------------------------------------------------------------- resume


def _stacked(**kw):
    base = dict(dataset="shapes", limit_train=96, limit_test=32, batch_size=32, hidden=[16, 8],
                pretrain_epochs=1, epochs=4, dropout=0.2)  # fmt: skip
    return default_config("stacked-ae", **{**base, **kw})


def _stacked_few():
    return _stacked(labels=10, shift=2)


def _transfer(**kw):
    base = dict(dataset="shapes", limit_train=96, limit_test=32, batch_size=32, hidden=[16], code_size=3,
                labels=[8, 20], draws=1, steps=2, epochs=3, noise_level=0.3)  # fmt: skip
    return default_config("transfer", **{**base, **kw})


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted run of each model, trained once for all the resume cases."""
    runs: dict[object, object] = {}

    def get(model: str, make):
        if make not in runs:
            runs[make] = train(make(), str(tmp_path_factory.mktemp(model)), quiet=True)
        return runs[make]

    return get


@pytest.mark.parametrize(
    "make,model,stop_at",
    [
        (_stacked, "stacked-ae", (1, 2)),  # inside the pretraining of layer 2 (masking noise drawn)
        (_stacked, "stacked-ae", (1, 3)),  # the last batch of pretraining: then the switch to fine-tuning
        (_stacked, "stacked-ae", (3, 1)),  # inside fine-tuning (dropout drawn, scratch loss half summed)
        (_stacked_few, "stacked-ae", (3, 1)),  # few labels, shifts drawn
        (_transfer, "transfer", (1, 1)),  # inside the autoencoder's epochs
        (_transfer, "transfer", (2, 2)),  # classifier epoch: right after the first frozen classifier
        (_transfer, "transfer", (2, 3)),  # classifier epoch: inside the first finetuned classifier
    ],
)
def test_resume_reproduces_the_uninterrupted_run(tmp_path, uninterrupted, make, model, stop_at):
    full = uninterrupted(model, make)
    assert full.status == "finished"
    run = str(tmp_path / "cut")
    first = train(make(), run, quiet=True, stop=lambda e, b: (e, b) == stop_at)
    assert first.status == "interrupted" and (first.epoch, first.batch) == stop_at
    assert main(["train", model, "--resume", run, "--quiet"]) == 0
    assert without_seconds(read_metrics(run)) == without_seconds(full.metrics)
    _assert_close(evaluate_run(run), full.metrics["final"])


# ----------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["stacked-ae", "--hidden"], "--hidden: expected at least one argument"),
        (["stacked-ae", "--hidden", "100", "0"], "--hidden: give at least one layer width, each >= 1"),
        (["stacked-ae", "--noise-levels", "0.1", "1.0"], "--noise-levels: each level must be in [0, 1)"),
        (["stacked-ae", "--pretrain-epochs", "-1"], "--pretrain-epochs must be >= 0"),
        (["stacked-ae", "--dropout", "1"], "--dropout must be in [0, 1)"),
        (["stacked-ae", "--pretrain-lr", "0"], "--pretrain-lr must be a positive number"),
        (["stacked-ae", "--epochs", "9"], "--epochs 9 leaves no fine-tuning: the first 9 epochs pretrain"),
        (["stacked-ae", "--activation", "tanh"], "invalid choice: 'tanh'"),
        (["stacked-ae", "--labels", "0"], "--labels must be in [1, 60000]"),
        (["stacked-ae", "--limit-train", "50", "--labels", "100"], "--labels must be in [1, 50]"),
        (["stacked-ae", "--shift", "9"], "--shift must be in [0, 8] pixels"),
        (["transfer", "--shift", "-1"], "--shift must be in [0, 8] pixels"),
        (["transfer", "--labels", "0"], "--labels: each labelled-set size must be >= 1"),
        (["transfer", "--labels", "100", "-5"], "--labels: each labelled-set size must be >= 1"),
        (["transfer", "--labels", "70000"], "--labels 70000 is larger than the training set (60000 images)"),
        (
            ["transfer", "--limit-train", "50", "--labels", "100"],
            "--labels 100 is larger than the training set",
        ),
        (["transfer", "--dataset", "shapes", "--labels", "20000"], "larger than the training set (12000"),
        (["transfer", "--labels", "100", "100"], "--labels: sizes must differ"),
        (["transfer", "--draws", "0"], "--draws must be at least 1"),
        (["transfer", "--steps", "0"], "--steps must be at least 1"),
        (["transfer", "--noise-level", "1"], "--noise-level must be in [0, 1)"),
        (["transfer", "--hidden", "8", "-1"], "--hidden: give at least one width, each >= 1"),
        (["transfer", "--code-size", "0"], "--code-size must be at least 1"),
        (["transfer", "--head-lr", "-1"], "--head-lr must be a positive number"),
        (["transfer", "--encoder-lr-factor", "-0.5"], "--encoder-lr-factor must be >= 0"),
        (["transfer", "--epochs", "1"], "--epochs must be at least 2"),
    ],
)
def test_bad_options_exit_2_with_one_message(argv, fragment, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, err
    assert fragment in err
