"""The generative half: VAE / conv-VAE / GAN / DCGAN models, their losses, recipes and ``tinyae sample``.

Checked against independent references: the negative ELBO and the importance weights
against NumPy formulas written here, the networks and losses against PyTorch (when
installed) with the same weights, the WGAN-GP gradient penalty by float64 gradcheck and
against PyTorch's double backward. The recipes run tiny and offline (Shapes, --quiet):
every file, exact --resume, the collapse warning, and the bad-input errors.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from run_helpers import read_metrics, without_seconds

import tinyae
import tinyae.nn.functional as F
from tinyae.cli import main
from tinyae.models.gan import (
    dcgan_discriminator,
    dcgan_generator,
    dcgan_init_,
    mlp_discriminator,
    mlp_generator,
)
from tinyae.models.vae import (
    VAE,
    ConvVAE,
    conv_vae_decoder,
    conv_vae_encoder,
    log_importance_weights,
    negative_elbo,
    reparameterize,
    vae_decoder,
    vae_encoder,
)
from tinyae.train import default_config, train
from tinyae.train.checkpoint import CHECKPOINT
from tinyae.train.gan import gradient_penalty
from tinyae.train.registry import get_recipe

TINY = ["--dataset", "shapes", "--limit-train", "64", "--limit-test", "32", "--batch-size", "16", "--quiet",
        "--score-samples", "0"]  # fmt: skip
MODEL_ARGS = {
    "vae": [*TINY, "--epochs", "1", "--hidden", "16", "--latent", "2", "--iw-samples", "3"],
    "conv-vae": [*TINY, "--epochs", "1", "--channels", "4", "8", "--hidden", "16", "--iw-samples", "2"],
    "gan": [*TINY, "--epochs", "2", "--latent", "8"],
    "dcgan": [*TINY, "--epochs", "1", "--latent", "8"],
}


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error:" in line]


# -------------------------------------------------------------------- the VAE's math


def test_negative_elbo_matches_the_formula_in_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 1, 4, 4)).astype(np.float64) * 3
    x = rng.random((5, 1, 4, 4))
    mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    total, rec, kl = negative_elbo(*(tinyae.tensor(a) for a in (logits, x, mu, logvar)))
    p = 1 / (1 + np.exp(-logits))
    want_rec = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p))
    want_kl = sum(
        0.5 * (math.exp(lv) + m * m - 1 - lv) for m, lv in zip(mu.ravel(), logvar.ravel())
    )  # KL(N(m, e^lv) || N(0, 1)) per dimension, summed
    assert rec.item() == pytest.approx(want_rec, rel=1e-10)
    assert kl.item() == pytest.approx(want_kl, rel=1e-10)
    assert total.item() == pytest.approx(want_rec + want_kl, rel=1e-10)


def test_negative_elbo_is_finite_for_saturated_logits():
    logits = tinyae.tensor(np.array([[-200.0, 200.0, 0.0]], np.float32), requires_grad=True)
    x = tinyae.tensor(np.array([[1.0, 0.0, 0.5]], np.float32))
    zero = tinyae.zeros(1, 2)
    total, rec, _ = negative_elbo(logits, x, zero, zero)
    total.backward()
    assert np.isfinite(rec.item()) and rec.item() == pytest.approx(400 + math.log(2), rel=1e-5)
    assert np.all(np.isfinite(logits.grad.numpy()))


def test_log_importance_weights_against_gaussian_and_bernoulli_densities():
    rng = np.random.default_rng(1)
    k, n, latent, pixels = 3, 2, 4, 6
    logits = rng.normal(size=(k, n, pixels))
    x = rng.random((1, n, pixels))
    mu, logvar = rng.normal(size=(1, n, latent)), rng.normal(size=(1, n, latent)) * 0.5
    z = mu + rng.normal(size=(k, n, latent)) * np.exp(0.5 * logvar)
    got = log_importance_weights(logits, x, z, mu, logvar)
    assert got.shape == (k, n)
    for i in range(k):
        for j in range(n):
            p = 1 / (1 + np.exp(-logits[i, j]))
            log_px = np.sum(x[0, j] * np.log(p) + (1 - x[0, j]) * np.log(1 - p))
            normal = lambda v, m, s: -0.5 * ((v - m) / s) ** 2 - math.log(s * math.sqrt(2 * math.pi))  # noqa: E731
            log_pz = sum(normal(v, 0.0, 1.0) for v in z[i, j])
            sd = np.exp(0.5 * logvar[0, j])
            log_q = sum(normal(v, m, s) for v, m, s in zip(z[i, j], mu[0, j], sd))
            assert got[i, j] == pytest.approx(log_px + log_pz - log_q, rel=1e-10)


def test_reparameterize_is_differentiable_in_mu_and_logvar():
    mu = tinyae.tensor(np.array([0.5, -1.0]), requires_grad=True)
    logvar = tinyae.tensor(np.array([0.2, -0.4]), requires_grad=True)
    eps = tinyae.tensor(np.array([1.5, -0.3]))
    assert tinyae.gradcheck(lambda m, lv: reparameterize(m, lv, eps), [mu, logvar])
    assert tinyae.gradgradcheck(lambda m, lv: reparameterize(m, lv, eps), [mu, logvar])


def test_vae_shapes_sampling_and_bad_sizes():
    x = tinyae.rand(3, 1, 28, 28)
    for model in (VAE(latent=5, hidden=16), ConvVAE(latent=5, channels=(4, 8), hidden=16)):
        logits, mu, logvar = model(x)
        assert logits.shape == (3, 1, 28, 28) and mu.shape == logvar.shape == (3, 5)
        images = model.sample(7, np.random.default_rng(0)).numpy()
        assert images.shape == (7, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
        again = model.sample(7, np.random.default_rng(0)).numpy()
        np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match="VAE: latent and hidden must be >= 1"):
        VAE(latent=0)
    with pytest.raises(ValueError, match="multiples of 4"):
        ConvVAE(image_shape=(1, 30, 30))


# ------------------------------------------------------------- against PyTorch


def _copy_weights(src, dst, torch):
    """Copy tinyae module ``src``'s parameters and buffers into torch module ``dst`` (same names)."""
    state = {k: torch.from_numpy(np.array(v)) for k, v in src.state_dict().items()}
    dst.load_state_dict(state)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_vae_loss_and_gradients_match_pytorch(kind):
    torch = pytest.importorskip("torch")
    enc_fn, dec_fn = (vae_encoder, vae_decoder) if kind == "dense" else (conv_vae_encoder, conv_vae_decoder)
    kwargs = (
        {"latent": 3, "hidden": 12} if kind == "dense" else {"latent": 3, "channels": (4, 6), "hidden": 12}
    )
    tinyae.manual_seed(0)
    t_enc, t_dec = enc_fn(**kwargs), dec_fn(**kwargs)
    p_enc, p_dec = enc_fn(**kwargs, nn=torch.nn), dec_fn(**kwargs, nn=torch.nn)
    _copy_weights(t_enc, p_enc, torch)
    _copy_weights(t_dec, p_dec, torch)
    rng = np.random.default_rng(0)
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    eps = rng.standard_normal((4, 3), dtype=np.float32)

    def run(enc, dec, xt, et, functional):
        h = enc(xt)
        mu, logvar = h[:, :3], h[:, 3:]
        return negative_elbo(dec(reparameterize(mu, logvar, et)), xt, mu, logvar, F=functional)[0]

    ours = run(t_enc, t_dec, tinyae.tensor(x), tinyae.tensor(eps), F)
    theirs = run(p_enc, p_dec, torch.from_numpy(x), torch.from_numpy(eps), torch.nn.functional)
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    grads = dict(p_enc.named_parameters())
    for name, p in t_enc.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), grads[name].grad.numpy(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_gan_networks_match_pytorch(kind):
    torch = pytest.importorskip("torch")
    if kind == "mlp":
        build = [lambda nn: mlp_generator(8, (16, 32), nn=nn), lambda nn: mlp_discriminator((32, 16), nn=nn)]
    else:
        build = [
            lambda nn: dcgan_generator(8, (16, 8), nn=nn),
            lambda nn: dcgan_discriminator((8, 16), nn=nn),
        ]
    tinyae.manual_seed(1)
    z = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    g_t, d_t = (b(tinyae.nn) for b in build)
    g_p, d_p = (b(torch.nn) for b in build)
    _copy_weights(g_t, g_p, torch)
    _copy_weights(d_t, d_p, torch)
    out_t = d_t(g_t(tinyae.tensor(z)))
    out_p = d_p(g_p(torch.from_numpy(z)))
    np.testing.assert_allclose(out_t.numpy(), out_p.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert out_t.shape == (5, 1)


def test_dcgan_init_draws_small_normal_weights():
    tinyae.manual_seed(0)
    g = dcgan_init_(dcgan_generator())
    w = g[0].weight.numpy()
    assert abs(w.std() - 0.02) < 0.002 and abs(w.mean()) < 0.002
    assert np.all(g[0].bias.numpy() == 0)
    bn = g[2].weight.numpy()
    assert abs(bn.mean() - 1) < 0.01 and 0.005 < bn.std() < 0.05


# ---------------------------------------------------------------- WGAN-GP


def _small_critic(w1, b1, w2, b2):
    """A conv critic written with the functional API, so gradcheck can vary its weights."""

    def critic(x):
        h = F.leaky_relu(F.conv2d(x, w1, b1, stride=2, padding=1), 0.2)  # (N, 2, 3, 3)
        return F.linear(h.flatten(1), w2, b2)  # (N, 1)

    return critic


def _penalty_inputs(dtype=np.float64):
    rng = np.random.default_rng(3)
    arrays = {
        "w1": rng.normal(size=(2, 1, 4, 4)) * 0.5, "b1": rng.normal(size=(2,)) * 0.1,
        "w2": rng.normal(size=(1, 18)) * 0.5, "b2": rng.normal(size=(1,)) * 0.1,
        "real": rng.random((3, 1, 6, 6)) * 2 - 1, "fake": rng.random((3, 1, 6, 6)) * 2 - 1,
        "alpha": rng.random((3, 1, 1, 1)),
    }  # fmt: skip
    return {k: v.astype(dtype) for k, v in arrays.items()}


def test_gradient_penalty_gradcheck_through_the_conv_critic():
    a = _penalty_inputs()
    params = [tinyae.tensor(a[k], requires_grad=True) for k in ("w1", "b1", "w2", "b2")]
    real, fake, alpha = (tinyae.tensor(a[k]) for k in ("real", "fake", "alpha"))

    def penalty(w1, b1, w2, b2):
        return gradient_penalty(_small_critic(w1, b1, w2, b2), real, fake, alpha)

    assert tinyae.gradcheck(penalty, params, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradient_penalty_matches_its_definition_and_pytorch():
    a = _penalty_inputs()
    t = {k: tinyae.tensor(v, requires_grad=k.startswith(("w", "b"))) for k, v in a.items()}
    gp = gradient_penalty(_small_critic(t["w1"], t["b1"], t["w2"], t["b2"]), t["real"], t["fake"], t["alpha"])
    # definition, by central differences of the critic in x^ (float64)
    x_hat = a["alpha"] * a["real"] + (1 - a["alpha"]) * a["fake"]
    critic = _small_critic(*(tinyae.tensor(a[k]) for k in ("w1", "b1", "w2", "b2")))
    f = lambda v: critic(tinyae.tensor(v)).numpy().sum()  # noqa: E731 - the critic is per-image
    grad = np.zeros_like(x_hat)
    for idx in np.ndindex(x_hat.shape):
        step = np.zeros_like(x_hat)
        step[idx] = 1e-6
        grad[idx] = (f(x_hat + step) - f(x_hat - step)) / 2e-6
    norms = np.sqrt((grad.reshape(3, -1) ** 2).sum(axis=1))
    assert gp.item() == pytest.approx(np.mean((norms - 1) ** 2), rel=1e-6)

    torch = pytest.importorskip("torch")
    p = {k: torch.tensor(v, requires_grad=k.startswith(("w", "b"))) for k, v in a.items()}
    xh = (p["alpha"] * p["real"] + (1 - p["alpha"]) * p["fake"]).requires_grad_()
    tf = torch.nn.functional
    h = tf.leaky_relu(tf.conv2d(xh, p["w1"], p["b1"], stride=2, padding=1), 0.2)
    out = tf.linear(h.flatten(1), p["w2"], p["b2"])
    (g,) = torch.autograd.grad(out.sum(), xh, create_graph=True)
    gp_torch = ((g.flatten(1).norm(dim=1) - 1) ** 2).mean()
    gp_torch.backward()
    gp.backward()
    assert gp.item() == pytest.approx(gp_torch.item(), rel=1e-9)
    for k in ("w1", "w2"):
        np.testing.assert_allclose(t[k].grad.numpy(), p[k].grad.numpy(), rtol=1e-7, atol=1e-10)
    # grad_x f is piecewise constant in the biases (LeakyReLU's slope only switches), so the
    # penalty's gradient in them is 0: neither engine delivers one
    for k in ("b1", "b2"):
        assert t[k].grad is None and (p[k].grad is None or not p[k].grad.any())


# ------------------------------------------------------------------ recipes


@pytest.mark.parametrize("model", list(MODEL_ARGS))
def test_generative_runs_write_every_file(model, tmp_path):
    out = tmp_path / "run"
    assert main(["train", model, "--out", str(out), *MODEL_ARGS[model]]) == 0
    cls = get_recipe(model)
    files = set(os.listdir(out))
    assert {"metrics.json", CHECKPOINT, *cls.pictures_made} <= files
    magic = {".png": b"\x89PNG\r\n\x1a\n", ".gif": b"GIF89a"}
    for name in cls.pictures_made:
        with open(out / name, "rb") as f:
            assert f.read(8).startswith(magic[os.path.splitext(name)[1]])
    m = read_metrics(out)
    if model.endswith("vae"):
        assert {"test_nelbo", "test_reconstruction", "test_kl", "test_nll_iwae"} <= set(m["final"])
        assert m["final"]["test_nelbo"] == pytest.approx(
            m["final"]["test_reconstruction"] + m["final"]["test_kl"]
        )
        assert m["epochs"][-1]["test_loss"] == pytest.approx(m["final"]["test_nelbo"])
        if model == "vae":  # --latent 2
            assert "manifold.png" in files
    else:
        assert sorted(os.listdir(out / "samples")) == [
            f"epoch-{e:03d}.png" for e in range(1, len(m["epochs"]) + 1)
        ]
        assert {"d_loss", "g_loss", "d_real", "d_fake", "test_d_real"} <= set(m["epochs"][0])


def test_iwae_bound_is_tighter_than_the_elbo_and_tightens_with_k(tmp_path):
    config = default_config("vae", dataset="shapes", limit_train=128, limit_test=64, epochs=2, hidden=32,
                            latent=4, score_samples=0, iw_samples=1)  # fmt: skip
    recipe = train(config, str(tmp_path / "r"), quiet=True).recipe
    elbo = recipe.test_elbo()["test_nelbo"]
    bounds = [recipe.test_nll_iwae(k) for k in (1, 10, 100)]
    assert bounds[0] == pytest.approx(elbo, rel=0.05)  # k = 1: a one-sample -ELBO (other noise)
    assert bounds[2] < bounds[1] < bounds[0]


@pytest.mark.parametrize("model,extra", [("gan", []), ("dcgan", ["--loss", "wgan-gp"])])
def test_gan_resume_inside_an_epoch_is_exact(model, extra, tmp_path):
    options = {"dataset": "shapes", "limit_train": 96, "limit_test": 32, "batch_size": 16, "epochs": 2,
               "latent": 8, "score_samples": 0}  # fmt: skip
    if extra:
        options.update(loss="wgan-gp", d_steps=2)
    full = train(default_config(model, **options), str(tmp_path / "full"), quiet=True)
    run = str(tmp_path / "cut")
    first = train(default_config(model, **options), run, quiet=True, stop=lambda e, b: (e, b) == (0, 3))
    assert first.status == "interrupted"
    assert main(["train", model, "--resume", run, "--quiet"]) == 0
    assert without_seconds(read_metrics(run)) == without_seconds(full.metrics)
    np.testing.assert_array_equal(
        np.asarray(tinyae.load(os.path.join(run, CHECKPOINT))["state"]["extra"]["frames"]),
        np.asarray(tinyae.load(os.path.join(tmp_path / "full", CHECKPOINT))["state"]["extra"]["frames"]),
    )


def test_defaults_follow_the_loss():
    gan = default_config("dcgan")
    wgan = default_config("dcgan", loss="wgan-gp")
    fc = default_config("gan")
    assert (gan["lr"], gan["d_steps"], gan["betas"]) == (4e-4, 1, [0.5, 0.999])
    assert (gan["d_lr_scale"], gan["label_smoothing"]) == (0.5, 0.1)
    assert (fc["d_lr_scale"], fc["label_smoothing"]) == (1, 0)
    assert (fc["lr"], wgan["lr"], wgan["d_steps"], wgan["betas"]) == (2e-4, 1e-4, 5, [0.5, 0.9])
    assert (wgan["d_lr_scale"], wgan["label_smoothing"]) == (1.0, 0.0)
    given = default_config("dcgan", loss="wgan-gp", d_steps=3, lr=1e-3, d_lr_scale=2.0)
    assert (given["d_steps"], given["lr"], given["d_lr_scale"]) == (3, 1e-3, 2.0)


def test_the_collapse_warning(tmp_path, capsys):
    config = default_config("gan", dataset="shapes", limit_train=32, limit_test=16, batch_size=16, epochs=1,
                            latent=4, score_samples=0)  # fmt: skip
    recipe = train(config, str(tmp_path / "r"), quiet=True).recipe
    recipe.segment_fakes = [0.01, 0.03]  # D(G(z)) of every segment of an epoch near 0: D has won
    recipe.sums.update(d=1.0, d_n=2, real=1.9, fake=0.04)
    record = recipe.evaluate(1)
    assert "D(G(z)) stayed below 0.05 all epoch" in record["warning"]
    recipe.segment_fakes = [0.01, 0.2]
    recipe.sums.update(d_n=2)
    assert "warning" not in recipe.evaluate(2)


class _FixedScorer:
    """Stands in for the digit classifier: every batch of samples gets the same scores."""

    def __init__(self, hist):
        self.hist = hist

    def score(self, images):
        return {"inception_score": 1.0 + sum(h > 0 for h in self.hist), "class_hist": self.hist}


def test_the_mode_collapse_warning(tmp_path):
    config = default_config("gan", dataset="shapes", limit_train=32, limit_test=16, batch_size=16, epochs=1,
                            latent=4, score_samples=0)  # fmt: skip
    recipe = train(config, str(tmp_path / "r"), quiet=True).recipe
    recipe.segment_fakes = [0.3]
    recipe._scorer = _FixedScorer([0.0, 0.55, 0.45])  # a class missing (and one over half)
    record = recipe.evaluate(1)
    assert "mode collapse: the classes of 1000 samples are 0% 55% 45%" in record["warning"]
    assert (record["sample_class_min"], record["sample_class_max"], record["sample_is"]) == (0.0, 0.55, 3.0)
    recipe.segment_fakes = [0.3]
    recipe._scorer = _FixedScorer([0.3, 0.3, 0.4])
    assert "warning" not in recipe.evaluate(2)


def test_the_loop_prints_a_recipes_warning(tmp_path, capsys, monkeypatch):
    from tinyae.train.gan import GANRecipe

    original = GANRecipe.evaluate
    monkeypatch.setattr(GANRecipe, "evaluate", lambda self, e: {**original(self, e), "warning": "it broke"})
    config = default_config("gan", dataset="shapes", limit_train=16, limit_test=8, batch_size=16, epochs=1,
                            latent=4, score_samples=0)  # fmt: skip
    train(config, str(tmp_path / "r"), quiet=True)
    assert "warning: epoch 1: it broke" in capsys.readouterr().err
    assert read_metrics(tmp_path / "r")["epochs"][0]["warning"] == "it broke"


# ------------------------------------------------------------------ sample


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dcgan") / "run"
    assert main(["train", "dcgan", "--out", str(out), *MODEL_ARGS["dcgan"]]) == 0
    return out


@pytest.mark.parametrize("n", [1, 5])
def test_sample_writes_an_array_in_the_unit_interval(dcgan_run, tmp_path, n, capsys):
    path = tmp_path / "s.npy"
    assert main(["sample", str(dcgan_run), "--n", str(n), "--out", str(path), "--seed", "3"]) == 0
    x = np.load(path)
    assert x.dtype == np.float32 and x.shape == (n, 1, 28, 28)
    assert x.min() >= 0 and x.max() <= 1
    assert (
        main(["sample", str(dcgan_run), "--n", str(n), "--out", str(tmp_path / "t.npy"), "--seed", "3"]) == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "t.npy"), x)  # the seed fixes the samples
    assert (
        main(["sample", str(dcgan_run), "--n", str(n), "--out", str(tmp_path / "u.npy"), "--seed", "4"]) == 0
    )
    assert n == 1 or not np.array_equal(np.load(tmp_path / "u.npy"), x)


def test_sample_writes_a_png_grid(dcgan_run, tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "grid.png"
    assert main(["sample", str(dcgan_run), "--n", "12", "--out", str(path)]) == 0
    assert "wrote 12 samples of dcgan" in capsys.readouterr().out
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 4 * 28 and img.height > 3 * 28


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["--n", "0"], "--n: must be a positive integer, got 0"),
        (["--n", "-3"], "--n: must be a positive integer, got -3"),
        (["--n", "2", "--out", "x.jpg"], "must end in .png"),
    ],
)
def test_sample_bad_options_exit_2_and_write_nothing(dcgan_run, tmp_path, argv, fragment, capsys):
    out = tmp_path / "keep.npy"
    out.write_bytes(b"precious")
    if "--out" not in argv:
        argv = [*argv, "--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        main(["sample", str(dcgan_run), *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and fragment in err, err
    assert out.read_bytes() == b"precious"


def test_sample_of_a_run_that_does_not_generate(tmp_path, capsys):
    run = tmp_path / "ae"
    tiny = ["--dataset", "shapes", "--limit-train", "32", "--limit-test", "16", "--epochs", "1", "--quiet"]
    assert main(["train", "ae", "--out", str(run), *tiny, "--hidden", "8", "--code-size", "2"]) == 0
    with pytest.raises(SystemExit) as exc:
        main(["sample", str(run), "--n", "4", "--out", str(tmp_path / "s.png")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "run of 'ae', which does not generate new images" in err
    assert not (tmp_path / "s.png").exists()


# -------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["train", "vae", "--latent", "0"], "--latent must be at least 1, got 0"),
        (["train", "conv-vae", "--latent", "-2"], "--latent must be at least 1, got -2"),
        (["train", "dcgan", "--d-steps", "0"], "--d-steps must be at least 1, got 0"),
        (["train", "gan", "--loss", "hinge"], "argument --loss: invalid choice: 'hinge'"),
        (["train", "gan", "--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
        (["train", "vae", "--iw-samples", "-1"], "--iw-samples must be >= 0"),
        (["train", "dcgan", "--score-samples", "1"], "--score-samples must be 0 (no scores) or at least 2"),
        (["train", "vae", "--loss", "wgan-gp"], "unrecognized arguments: --loss wgan-gp"),
    ],
)
def test_bad_generative_options_exit_2_with_one_message(argv, fragment, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "r")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and fragment in err, err
    assert not (tmp_path / "r").exists()


def test_resuming_a_checkpoint_of_another_model_is_refused(dcgan_run, capsys):
    before = (dcgan_run / CHECKPOINT).read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["train", "vae", "--resume", str(dcgan_run)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(_error_lines(err)) == 1 and "run of model 'dcgan', not 'vae'" in err
    assert (dcgan_run / CHECKPOINT).read_bytes() == before
