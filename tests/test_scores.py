"""Sample scores (:mod:`tinyae.train.scores`) and their classifier (:mod:`tinyae.models.classifier`).

Checked: the Inception Score against a plain loop over samples and classes, and its known
values (C for confident, balanced samples; 1 for one class or flat p(y|x)); the Frechet
distance against the closed form for diagonal covariances, against SciPy's ``sqrtm`` and for
its symmetries (arguments swapped, a common rotation or shift); the class histogram; the
classifier's layers against PyTorch with the same weights; random shifts against ``np.roll``;
``get_scorer``'s cache (trained once, then loaded; read-only and uncreatable folders skipped;
corrupt, foreign or pickled files reported and retrained over; one file per training set) and
the caller's random stream left as it was; ``score()``'s checks of its input; and, on a few
thousand real MNIST images, that real test images score better than noise.
"""

from __future__ import annotations

import math
import os
import shutil
import stat

import numpy as np
import pytest

import tinyae
from tinyae.models.classifier import DigitClassifier
from tinyae.serialization import load, save
from tinyae.tensor import Tensor
from tinyae.train import scores
from tinyae.train.datasets import load_images
from tinyae.train.scores import (
    class_histogram,
    dataset_fingerprint,
    frechet_distance,
    gaussian_stats,
    get_scorer,
    inception_score,
    random_shifts,
    train_classifier,
)


def _naive_inception_score(probs: np.ndarray, splits: int) -> tuple[float, float]:
    """The definition, one sample and one class at a time (parts as in np.array_split)."""
    n, c = probs.shape
    sizes = [n // splits + (1 if k < n % splits else 0) for k in range(splits)]
    values, start = [], 0
    for size in sizes:
        part = probs[start : start + size].tolist()
        start += size
        marginal = [sum(row[y] for row in part) / size for y in range(c)]
        kl_sum = 0.0
        for row in part:
            kl_sum += sum(p * (math.log(p) - math.log(marginal[y])) for y, p in enumerate(row) if p > 0)
        values.append(math.exp(kl_sum / size))
    mean = sum(values) / splits
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / splits)


# ------------------------------------------------------------ inception score


@pytest.mark.parametrize("n,c,splits", [(53, 7, 5), (40, 10, 10), (9, 3, 1)])
def test_inception_score_matches_the_definition(n, c, splits):
    rng = np.random.default_rng(n)
    probs = rng.dirichlet(np.full(c, 0.3), size=n)
    probs[::4, 0] = 0.0  # exact zeros: 0 log 0 = 0
    probs /= probs.sum(axis=1, keepdims=True)
    mean, std = inception_score(probs, splits)
    ref_mean, ref_std = _naive_inception_score(probs, splits)
    assert mean == pytest.approx(ref_mean, rel=1e-12)
    assert std == pytest.approx(ref_std, rel=1e-9, abs=1e-12)
    assert 1.0 <= mean <= c


@pytest.mark.parametrize("c", [2, 4, 10])
def test_inception_score_known_values(c):
    balanced = np.tile(np.eye(c), (10, 1))  # each part of 10 splits holds every class once
    assert inception_score(balanced, splits=10) == pytest.approx((c, 0.0), abs=1e-12)
    assert inception_score(balanced, splits=1)[0] == pytest.approx(c, rel=1e-12)
    one_class = np.zeros((30, c))
    one_class[:, 1] = 1.0
    assert inception_score(one_class, splits=3) == pytest.approx((1.0, 0.0), abs=1e-12)
    flat = np.full((30, c), 1.0 / c)  # no sample is confident
    assert inception_score(flat, splits=3)[0] == pytest.approx(1.0, abs=1e-12)


def test_inception_score_rejects_bad_input():
    p = np.full((4, 2), 0.5)
    for bad, splits in [(p[:, :1], 1), (-p, 1), (p * 2, 1), (p, 5), (p, 0), (p[0], 1)]:
        with pytest.raises(ValueError, match="inception_score"):
            inception_score(bad, splits)


# ----------------------------------------------------------- frechet distance


def _random_spd(rng: np.random.Generator, d: int, n: int | None = None) -> np.ndarray:
    a = rng.standard_normal((n or 2 * d, d))
    return np.cov(a, rowvar=False)


def test_frechet_distance_identical_is_zero():
    rng = np.random.default_rng(0)
    mu, s = rng.standard_normal(12), _random_spd(rng, 12)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    low_rank = _random_spd(rng, 12, n=4)  # rank 3: eigenvalues 0 up to rounding
    assert frechet_distance(mu, low_rank, mu, low_rank) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_diagonal_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 3, 9), rng.uniform(0, 3, 9)
    a[0] = b[1] = 0.0  # singular covariances are allowed
    mu1, mu2 = rng.standard_normal(9), rng.standard_normal(9)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s1, s2
    fd = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[0.25]]))
    assert fd == pytest.approx(9.0 + 1.5**2)


def test_frechet_distance_against_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(2)
    for d in (3, 16, 64):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
        covmean = linalg.sqrtm(s1 @ s2)  # the usual FID code's formula
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(covmean))
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_symmetries():
    rng = np.random.default_rng(3)
    d = 10
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d, n=6)  # s2 singular
    fd = frechet_distance(mu1, s1, mu2, s2)
    assert fd > 0
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(fd, rel=1e-9)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))  # a random rotation
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T) == pytest.approx(fd, rel=1e-9)
    shift = rng.standard_normal(d)
    assert frechet_distance(mu1 + shift, s1, mu2 + shift, s2) == pytest.approx(fd, rel=1e-9)


def test_frechet_distance_rejects_bad_shapes():
    z, e = np.zeros(3), np.eye(3)
    for args in [(z, e, np.zeros(2), e), (z, e, z, np.eye(2)), (e, e, e, e), (z, np.ones(3), z, e)]:
        with pytest.raises(ValueError, match="frechet_distance"):
            frechet_distance(*args)


def test_gaussian_stats():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((20, 5)).astype(np.float32)
    mu, sigma = gaussian_stats(f)
    x = f.astype(np.float64)
    centred = x - x.sum(axis=0) / 20
    np.testing.assert_allclose(mu, x.sum(axis=0) / 20, rtol=1e-12)
    np.testing.assert_allclose(sigma, centred.T @ centred / 19, rtol=1e-10)
    assert mu.dtype == sigma.dtype == np.float64
    with pytest.raises(ValueError, match="gaussian_stats"):
        gaussian_stats(f[:1])


# ----------------------------------------------------------- class histogram


def test_class_histogram():
    labels = np.array([0, 2, 2, 3, 2, 0])
    expected = [2 / 6, 0.0, 3 / 6, 1 / 6, 0.0]
    assert class_histogram(labels, 5) == pytest.approx(expected)
    probs = np.eye(5)[labels] * 0.6 + 0.08  # argmax = the label
    hist = class_histogram(probs, 5)
    assert hist == pytest.approx(expected) and sum(hist) == pytest.approx(1.0)
    assert all(isinstance(h, float) for h in hist)
    for bad in (np.array([0, 5]), np.array([-1, 0]), np.array([0.5, 1.0]), np.zeros(0, dtype=int)):
        with pytest.raises(ValueError, match="class_histogram"):
            class_histogram(bad, 5)


# -------------------------------------------------------- classifier, shifts


def test_classifier_shapes_and_layers_against_torch():
    torch = pytest.importorskip("torch")
    tinyae.manual_seed(0)
    net = DigitClassifier().eval()
    assert sum(p.size for p in net.parameters()) == 421_642
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    with tinyae.no_grad():
        feats, logits = net.features(Tensor(x)).numpy(), net(Tensor(x)).numpy()
    assert feats.shape == (3, 128) and logits.shape == (3, 10) and (feats >= 0).all()
    tn = torch.nn
    ref = tn.Sequential(
        tn.Conv2d(1, 32, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2), tn.Conv2d(32, 64, 3, padding=1),
        tn.ReLU(), tn.MaxPool2d(2), tn.Flatten(), tn.Linear(3136, 128), tn.ReLU(),
    )  # fmt: skip
    head = tn.Linear(128, 10)
    w = {k: torch.from_numpy(np.asarray(v)) for k, v in net.state_dict().items()}
    ref.load_state_dict({k[len("body.") :]: v for k, v in w.items() if k.startswith("body.")})
    head.load_state_dict({"weight": w["head.weight"], "bias": w["head.bias"]})
    with torch.no_grad():
        t_feats = ref((torch.from_numpy(x) - 0.1307) / 0.3081)
        t_logits = head(t_feats)
    np.testing.assert_allclose(feats, t_feats.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits, t_logits.numpy(), rtol=1e-4, atol=1e-5)


def test_random_shifts_against_roll():
    rng = np.random.default_rng(0)
    x = np.zeros((50, 2, 12, 12), np.float32)
    x[:, :, 3:9, 3:9] = rng.random((50, 2, 6, 6))  # margins of 3 px: a shift of <= 2 loses nothing
    out = random_shifts(x, np.random.default_rng(7), max_shift=2)
    seen = set()
    for img, moved in zip(x, out):
        matches = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(np.roll(img, (dy, dx), axis=(1, 2)), moved)
        ]
        assert len(matches) == 1  # both channels moved together, by one shift in range
        seen.add(matches[0])
    assert len(seen) > 10
    np.testing.assert_array_equal(random_shifts(x, np.random.default_rng(7), 2), out)  # seeded
    edge = np.ones((200, 1, 5, 5), np.float32)
    assert random_shifts(edge, rng, 2).min() == 0.0  # zero-filled, not wrapped around


# ------------------------------------------------------------ get_scorer cache


@pytest.fixture(scope="module")
def small():
    return load_images("shapes", limit_train=256, limit_test=64)


def _scorer(data, dirs, **kw):
    lines: list[str] = []
    scorer = get_scorer(data, [str(d) for d in dirs], log=lines.append, epochs=1, **kw)
    return scorer, lines


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained although a cached classifier was there")

    monkeypatch.setattr(scores, "train_classifier", fail)


def test_get_scorer_trains_once_then_loads(small, tmp_path, monkeypatch):
    scorer, lines = _scorer(small, [tmp_path / "cache"])
    fp = dataset_fingerprint(small.x_train, small.y_train)
    path = str(tmp_path / "cache" / f"classifier-shapes-{fp}.npz")
    assert scorer.path == path and os.path.isfile(path) and scorer.dataset == "shapes"
    assert lines[0] == f"training the scoring classifier on 256 images (once; cached in {path})..."
    assert lines[1].startswith("  epoch 1/1: loss ")
    assert lines[-1] == f"scoring classifier: test accuracy {100 * scorer.test_accuracy:.2f}% ({path})"
    state = load(path)
    assert state["format"] == scores.CACHE_FORMAT and state["version"] == scores.CACHE_VERSION
    assert (state["fingerprint"], state["n_train"], state["dataset"]) == (fp, 256, "shapes")
    assert state["test_accuracy"] == scorer.test_accuracy
    _no_training(monkeypatch)
    again, lines = _scorer(small, [tmp_path / "cache"])
    assert lines == [f"scoring classifier: test accuracy {100 * scorer.test_accuracy:.2f}% ({path})"]
    assert again.path == path and again.test_accuracy == scorer.test_accuracy
    p1, f1 = scorer.probabilities_and_features(small.x_test)
    p2, f2 = again.probabilities_and_features(small.x_test)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(f1, f2)
    assert p1.dtype == f1.dtype == np.float64 and p1.shape == (64, 4) and f1.shape == (64, 128)
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, rtol=1e-12)
    # looked for in every folder in order: found in the second one
    loaded, _ = _scorer(small, [tmp_path / "empty", tmp_path / "cache"])
    assert loaded.path == path and not (tmp_path / "empty").exists()  # loading creates nothing
    with pytest.raises(FileNotFoundError, match="train_if_missing=True"):
        get_scorer(small, [str(tmp_path / "empty")], train_if_missing=False, log=lines.append)


def test_get_scorer_skips_folders_it_cannot_write(small, tmp_path, monkeypatch):
    read_only, writable = tmp_path / "read-only", tmp_path / "writable"
    read_only.mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    read_only.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
    try:
        scorer, lines = _scorer(small, [read_only, tmp_path / "a-file" / "sub", writable])
        assert os.listdir(read_only) == [] and scorer.path.startswith(str(writable))
        assert str(writable) in lines[0]
        name = os.path.basename(scorer.path)
        read_only.chmod(0o755)
        shutil.copy(scorer.path, read_only / name)
        read_only.chmod(0o555)
        _no_training(monkeypatch)  # a read-only folder is still read
        loaded, _ = _scorer(small, [read_only])
        assert loaded.path == str(read_only / name)
    finally:
        read_only.chmod(0o755)


def test_get_scorer_without_any_writable_folder(small, tmp_path):
    (tmp_path / "a-file").write_text("")
    scorer, lines = _scorer(small, [tmp_path / "a-file" / "cache"])
    assert scorer.path is None and "nowhere: no writable folder" in lines[0]
    assert lines[-1].endswith("(not cached)")


def _pickled_npz(path: str) -> None:
    with open(path, "wb") as f:
        np.savez(f, state=np.array([{"a": 1}], dtype=object))


@pytest.mark.parametrize(
    "spoil,reason",
    [
        (lambda p: open(p, "wb").write(b"PK\x03\x04 garbage"), "corrupt"),
        (lambda p: open(p, "wb").write(open(p + ".good", "rb").read()[:500]), "corrupt"),
        (lambda p: save({"model": np.zeros(3)}, p), "not a scoring-classifier file"),
        (lambda p: save({**load(p + ".good"), "version": 99}, p), "format version 99"),
        (lambda p: save({**load(p + ".good"), "fingerprint": "0" * 16}, p), "trained on other data"),
        (lambda p: save({**load(p + ".good"), "state_dict": {"head.weight": np.zeros(2)}}, p), "Missing"),
        (_pickled_npz, "pickled objects"),
    ],
    ids=["garbage", "truncated", "foreign", "version", "fingerprint", "state_dict", "pickle"],
)
def test_get_scorer_retrains_over_a_bad_cache_file(small, tmp_path, spoil, reason):
    scorer, _ = _scorer(small, [tmp_path])
    path = scorer.path
    shutil.copy(path, path + ".good")
    spoil(path)
    again, lines = _scorer(small, [tmp_path])
    assert lines[0].startswith(f"ignoring the cached scoring classifier {path}: ") and reason in lines[0]
    assert lines[1].startswith("training the scoring classifier on 256 images")
    assert again.path == path and load(path)["fingerprint"] == load(path + ".good")["fingerprint"]
    np.testing.assert_array_equal(load(path)["state_dict"]["head.weight"], scorer.model.head.weight.numpy())


def test_a_cache_file_per_training_set(small, tmp_path):
    fewer = load_images("shapes", limit_train=200, limit_test=64)
    other_test = load_images("shapes", limit_train=256, limit_test=32)
    a, _ = _scorer(small, [tmp_path])
    b, _ = _scorer(fewer, [tmp_path])
    assert a.path != b.path and len(os.listdir(tmp_path)) == 2
    assert _scorer(other_test, [tmp_path])[1][-1].endswith(f"({a.path})")  # only the training set counts
    y = small.y_train.copy()
    y[0] = (y[0] + 1) % 4
    assert dataset_fingerprint(small.x_train, y) != dataset_fingerprint(small.x_train, small.y_train)


def test_training_is_deterministic_and_keeps_the_callers_stream(small):
    tinyae.manual_seed(11)
    expected = np.random.default_rng(11).random(5)
    gen = tinyae.generator()
    first = train_classifier(small, epochs=1, log=lambda m: None)
    assert tinyae.generator() is gen
    np.testing.assert_array_equal(gen.random(5), expected)
    second = train_classifier(small, epochs=1, log=lambda m: None)
    for k, v in first.state_dict().items():
        np.testing.assert_array_equal(np.asarray(v), np.asarray(second.state_dict()[k]))


# ------------------------------------------------------------------- score()


@pytest.fixture(scope="module")
def shapes_scorer(small, tmp_path_factory):
    return _scorer(small, [tmp_path_factory.mktemp("scorer")])[0]


@pytest.mark.parametrize(
    "images,fragment",
    [
        (np.zeros((5, 28, 28), np.float32), "expected images of shape (N, 1, 28, 28), got shape (5, 28, 28)"),
        (np.zeros((5, 3, 28, 28), np.float32), "got shape (5, 3, 28, 28)"),
        (np.zeros((5, 1, 32, 32)), "got shape (5, 1, 32, 32)"),
        (np.zeros((0, 1, 28, 28)), "got shape (0, 1, 28, 28)"),
        (np.zeros((1, 1, 28, 28)), "need at least 2 images"),
        (np.zeros((5, 1, 28, 28), np.uint8), "dtype uint8"),
        (np.full((5, 1, 28, 28), 255.0), "values in [0, 1], got [255, 255]"),
        (np.full((5, 1, 28, 28), -0.5), "rescale it with (x + 1) / 2"),
        (np.full((5, 1, 28, 28), np.nan), "values in [0, 1]"),
    ],
)
def test_score_checks_its_input(shapes_scorer, images, fragment):
    with pytest.raises(ValueError, match="SampleScorer.score") as info:
        shapes_scorer.score(images)
    assert fragment in str(info.value)


def test_score_keys_and_rounding_tolerance(shapes_scorer, small):
    x = small.x_test.astype(np.float64)
    x[x == 1.0] += 1e-7  # a tanh output rescaled by (x + 1) / 2 may round past 1: clipped
    result = shapes_scorer.score(x)
    assert set(result) == {"inception_score", "inception_score_std", "fid", "class_hist"}
    assert len(result["class_hist"]) == 4 and sum(result["class_hist"]) == pytest.approx(1.0)
    assert result["fid"] == pytest.approx(0.0, abs=1e-6)  # the test split itself
    ref = shapes_scorer.reference()
    assert set(ref) == {"real_inception_score", "real_inception_score_std", "real_fid", "real_class_hist"}
    assert ref["real_inception_score"] == pytest.approx(result["inception_score"])
    assert ref["real_class_hist"] == pytest.approx(result["class_hist"])
    assert ref["real_fid"] > 0


def test_real_images_score_better_than_noise(mnist_root, tmp_path):
    data = load_images("mnist", mnist_root, limit_train=3000, limit_test=1000)
    scorer, _ = _scorer(data, [tmp_path])
    assert scorer.test_accuracy > 0.7  # 79% measured: 24 steps
    rng = np.random.default_rng(0)
    real = scorer.score(data.x_test)
    noise = scorer.score(rng.random((1000, 1, 28, 28)))
    ref = scorer.reference()
    assert real["inception_score"] > 2 * noise["inception_score"]
    assert real["fid"] == pytest.approx(0.0, abs=1e-6) and ref["real_fid"] < noise["fid"] / 10
    assert ref["real_inception_score"] == pytest.approx(real["inception_score"])
    assert max(real["class_hist"]) < 0.2 and max(noise["class_hist"]) > 0.5  # noise looks like one digit
