"""Tests of tinyae.nn layers and tinyae.nn.init.

* initialisers: bounds and spreads within sampling error, fans as PyTorch computes them;
* every layer: forward (and backward) against PyTorch with the weights copied over when
  PyTorch is importable, otherwise against NumPy formulas; repr text equal to PyTorch's;
* BatchNorm: running statistics after several steps and eval mode equal PyTorch's;
* errors at the layer boundary name the layer, the expected size and the shape given;
* the W1-W5 models of benchmarks/workloads.py, written line for line as in PyTorch, build and run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyae
import tinyae.nn as nn
import tinyae.nn.functional as F
from tinyae.nn import init

RNG = np.random.default_rng(99)


def torch_or_skip():
    return pytest.importorskip("torch")


def load_from_torch(ours: nn.Module, theirs) -> None:
    """Copy a torch module's state into ours (the names must match exactly)."""
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})


def rand32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# ====================================================================== init
def uniform_within_sampling_error(values: np.ndarray, bound: float) -> None:
    """U(-b, b): every value inside, E[w^2] = b^2/3 with Var[w^2] = 4 b^4 / 45."""
    assert np.abs(values).max() <= bound
    assert np.abs(values).max() > 0.99 * bound  # the range is used, not a narrower one
    se = math.sqrt(4 / 45) * bound**2 / math.sqrt(values.size)
    assert abs((values.astype(np.float64) ** 2).mean() - bound**2 / 3) < 5 * se


def normal_within_sampling_error(values: np.ndarray, mean: float, std: float) -> None:
    n = values.size
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(n)
    assert abs(values.std() - std) < 5 * std / math.sqrt(2 * n)


def test_calculate_gain():
    assert init.calculate_gain("linear") == 1 == init.calculate_gain("conv_transpose2d")
    assert init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01**2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", "x")


def test_calculate_gain_matches_torch():
    torch = torch_or_skip()
    for name, param in [("linear", None), ("tanh", None), ("relu", None), ("leaky_relu", None),
                        ("leaky_relu", 0.2), ("selu", None), ("conv2d", None)]:  # fmt: skip
        assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


@pytest.mark.parametrize("shape", [(5, 7), (8, 3, 3, 2), (6, 4, 5, 5), (3, 2, 1)])
def test_fans_match_torch(shape):
    torch = torch_or_skip()
    ours = init.calculate_fan_in_and_fan_out(tinyae.zeros(*shape))
    assert ours == torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))


def test_fans_need_two_dims():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.kaiming_uniform_(tinyae.zeros(5))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_uniform_bound(mode):
    w = tinyae.zeros(300, 200)
    init.kaiming_uniform_(w, a=0.0, mode=mode, nonlinearity="relu")
    fan = 200 if mode == "fan_in" else 300
    uniform_within_sampling_error(w.numpy(), math.sqrt(2) * math.sqrt(3 / fan))


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal_std(mode):
    w = tinyae.zeros(256, 64, 2, 2)
    init.kaiming_normal_(w, mode=mode, nonlinearity="relu")
    fan = 64 * 4 if mode == "fan_in" else 256 * 4
    normal_within_sampling_error(w.numpy(), 0.0, math.sqrt(2 / fan))


def test_xavier_uniform_and_normal():
    w = tinyae.zeros(300, 100)
    init.xavier_uniform_(w, gain=2.0)
    uniform_within_sampling_error(w.numpy(), 2.0 * math.sqrt(6 / 400))
    init.xavier_normal_(w)
    normal_within_sampling_error(w.numpy(), 0.0, math.sqrt(2 / 400))


def test_normal_uniform_constant_in_place():
    w = tinyae.zeros(200, 300)
    array = w.data
    assert init.normal_(w, 2.0, 0.5) is w and w.data is array
    normal_within_sampling_error(w.numpy(), 2.0, 0.5)
    init.uniform_(w, -3.0, 1.0)
    assert w.numpy().min() >= -3 and w.numpy().max() < 1
    assert abs(w.numpy().mean() + 1) < 5 * (4 / math.sqrt(12)) / math.sqrt(w.size)
    init.constant_(w, 0.25)
    assert (w.numpy() == 0.25).all()
    init.ones_(w)
    assert (w.numpy() == 1).all()
    init.zeros_(w)
    assert not w.numpy().any()
    assert w.data is array and w.dtype == np.float32


def test_init_reproducible_records_no_graph_and_checks():
    p = nn.Parameter(tinyae.zeros(4, 3))
    tinyae.manual_seed(5)
    init.kaiming_uniform_(p)
    first = p.numpy().copy()
    tinyae.manual_seed(5)
    init.kaiming_uniform_(p)
    np.testing.assert_array_equal(p.numpy(), first)
    assert p.creator is None and p.requires_grad
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_normal_(p, mode="fan_avg")
    with pytest.raises(TypeError, match="expected a Tensor"):
        init.zeros_(np.zeros(3))
    with pytest.raises(ValueError, match="a <= b"):
        init.uniform_(p, 1.0, 0.0)


# ============================================================ default layer init
@pytest.mark.parametrize(
    "make,fan_in",
    [
        (lambda: nn.Linear(50, 400), 50),
        (lambda: nn.Conv2d(6, 400, 3), 54),
        (lambda: nn.Conv2d(6, 402, (3, 2), groups=3), 2 * 6),
        (lambda: nn.ConvTranspose2d(400, 8, 3), 8 * 9),  # weight (C_in, C_out, KH, KW): fan_in = C_out*KH*KW
        (lambda: nn.ConvTranspose2d(400, 8, (3, 2), groups=2), 4 * 6),
    ],
)
def test_default_init_is_uniform_one_over_sqrt_fan_in(make, fan_in):
    layer = make()
    bound = 1 / math.sqrt(fan_in)
    uniform_within_sampling_error(layer.weight.numpy(), bound)
    assert np.abs(layer.bias.numpy()).max() <= bound
    assert layer.weight.dtype == np.float32 and layer.weight.requires_grad


def test_default_init_fans_match_torch_layouts():
    torch = torch_or_skip()
    pairs = [(nn.ConvTranspose2d(6, 8, (3, 2), groups=2), torch.nn.ConvTranspose2d(6, 8, (3, 2), groups=2)),
             (nn.Conv2d(6, 9, 3, groups=3), torch.nn.Conv2d(6, 9, 3, groups=3)),
             (nn.Linear(5, 7), torch.nn.Linear(5, 7))]  # fmt: skip
    for ours, theirs in pairs:
        assert ours.weight.shape == tuple(theirs.weight.shape)
        assert init.calculate_fan_in_and_fan_out(ours.weight) == torch.nn.init._calculate_fan_in_and_fan_out(
            theirs.weight
        )


def test_layers_reproducible_and_dtype_argument():
    tinyae.manual_seed(3)
    a = nn.Linear(4, 5)
    tinyae.manual_seed(3)
    b = nn.Linear(4, 5)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    np.testing.assert_array_equal(a.bias.numpy(), b.bias.numpy())
    c = nn.Conv2d(2, 3, 3, dtype=np.float64, device="cpu")
    assert c.weight.dtype == np.float64 and c.bias.dtype == np.float64


# ============================================================ layers vs references
def test_linear_forward_backward_matches_numpy():
    lin = nn.Linear(4, 3)
    x = tinyae.tensor(rand32(5, 4), requires_grad=True)
    y = lin(x)
    w, b = lin.weight.numpy(), lin.bias.numpy()
    np.testing.assert_allclose(y.numpy(), x.numpy() @ w.T + b, rtol=1e-5, atol=1e-6)
    gy = rand32(5, 3)
    y.backward(gy)
    np.testing.assert_allclose(x.grad.numpy(), gy @ w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lin.weight.grad.numpy(), gy.T @ x.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lin.bias.grad.numpy(), gy.sum(0), rtol=1e-5, atol=1e-6)
    assert nn.Linear(4, 3, bias=False)(tinyae.ones(2, 7, 4)).shape == (2, 7, 3)


LAYER_PAIRS = [
    ("Linear(6, 3)", (4, 6)),
    ("Linear(6, 3, bias=False)", (2, 5, 6)),
    ("Conv2d(3, 4, 3, stride=2, padding=1)", (2, 3, 9, 8)),
    ("Conv2d(4, 6, (3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2)", (2, 4, 8, 7)),
    ("Conv2d(3, 2, 4, padding='same', bias=False)", (2, 3, 7, 6)),
    ("ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1)", (2, 4, 5, 4)),
    ("ConvTranspose2d(4, 6, 4, 2, 1, groups=2, dilation=2)", (2, 4, 5, 4)),
    ("ReLU()", (3, 5)),
    ("LeakyReLU(0.2)", (3, 5)),
    ("Sigmoid()", (3, 5)),
    ("Tanh()", (3, 5)),
    ("Softplus(beta=2, threshold=3)", (3, 5)),
    ("Flatten()", (2, 3, 4, 5)),
    ("Flatten(0, 2)", (2, 3, 4, 5)),
    ("Unflatten(1, (2, 3))", (4, 6)),
    ("MaxPool2d(2)", (2, 3, 6, 6)),
    ("MaxPool2d(3, stride=2, padding=1)", (2, 3, 7, 6)),
    ("AvgPool2d(2)", (2, 3, 6, 6)),
    ("AvgPool2d(3, 2, 1)", (2, 3, 7, 6)),
    ("Upsample(scale_factor=2)", (2, 3, 4, 5)),
    ("Upsample(size=(7, 9))", (2, 3, 4, 5)),
    ("Identity()", (2, 3)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note about its own speed
@pytest.mark.parametrize("expr,shape", LAYER_PAIRS, ids=[e for e, _ in LAYER_PAIRS])
def test_layer_matches_torch(expr, shape):
    torch = torch_or_skip()
    ours, theirs = eval("nn." + expr), eval("torch.nn." + expr)
    assert repr(ours) == repr(theirs)
    load_from_torch(ours, theirs)
    x = rand32(*shape)
    xt, tx = tinyae.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours(xt), theirs(tx)
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    gy = rand32(*y.shape)
    y.backward(gy)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-4, atol=1e-4)
    for (name, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=name)


def test_conv_transpose2d_output_size():
    layer = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    x = tinyae.randn(1, 3, 7, 7)
    assert layer(x).shape == (1, 2, 13, 13)
    assert layer(x, output_size=(14, 14)).shape == (1, 2, 14, 14)
    assert layer(x, output_size=(1, 2, 14, 14)).shape == (1, 2, 14, 14)
    torch = torch_or_skip()
    theirs = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1)
    load_from_torch(layer, theirs)
    ty = theirs(torch.tensor(x.numpy()), output_size=(14, 14))
    np.testing.assert_allclose(layer(x, output_size=(14, 14)).numpy(), ty.detach().numpy(), atol=1e-5)


def test_activation_modules_match_numpy():
    x = rand32(4, 5)
    t = tinyae.tensor(x)
    np.testing.assert_array_equal(nn.ReLU()(t).numpy(), np.maximum(x, 0))
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(t).numpy(), np.where(x > 0, x, 0.2 * x), rtol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(t).numpy(), 1 / (1 + np.exp(-x)), rtol=1e-6)
    np.testing.assert_allclose(nn.Tanh()(t).numpy(), np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(nn.Softplus()(t).numpy(), np.log1p(np.exp(x)), rtol=1e-5)
    assert nn.Identity(3, foo=1)(t) is t
    assert nn.Flatten()(tinyae.ones(2, 3, 4)).shape == (2, 12)
    assert nn.Unflatten(1, (128, 7, 7))(tinyae.ones(2, 6272)).shape == (2, 128, 7, 7)
    assert nn.Unflatten(1, (-1, 7))(tinyae.ones(2, 21)).shape == (2, 3, 7)


def test_dropout_module_train_and_eval():
    d = nn.Dropout(0.25)
    x = tinyae.ones(100, 400)
    y = d(x).numpy()
    assert abs((y != 0).mean() - 0.75) < 5 * math.sqrt(0.75 * 0.25 / y.size)
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)
    assert d.eval()(x) is x
    with pytest.raises(ValueError, match="Dropout: dropout probability has to be between 0 and 1"):
        nn.Dropout(1.5)


# ================================================================= BatchNorm
BN_CASES = [
    ("BatchNorm1d(3)", (6, 3)),
    ("BatchNorm1d(3, momentum=0.3)", (4, 3, 5)),
    ("BatchNorm2d(3)", (4, 3, 5, 2)),
    ("BatchNorm2d(3, momentum=None)", (4, 3, 2, 2)),
    ("BatchNorm2d(3, affine=False)", (4, 3, 2, 2)),
    ("BatchNorm2d(3, bias=False)", (4, 3, 2, 2)),
    ("BatchNorm2d(3, track_running_stats=False)", (4, 3, 2, 2)),
    ("BatchNorm2d(3, eps=0.1)", (4, 3, 2, 2)),
]


@pytest.mark.parametrize("expr,shape", BN_CASES, ids=[e for e, _ in BN_CASES])
def test_batchnorm_steps_and_eval_match_torch(expr, shape):
    torch = torch_or_skip()
    ours, theirs = eval("nn." + expr), eval("torch.nn." + expr)
    assert repr(ours) == repr(theirs)
    if ours.weight is not None:  # non-trivial affine parameters, copied over
        theirs.weight.data.uniform_(0.5, 1.5)
        if theirs.bias is not None:
            theirs.bias.data.uniform_(-1, 1)
    load_from_torch(ours, theirs)
    for step in range(4):
        x = rand32(*shape) * (step + 1) + step
        xt, tx = tinyae.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        y, ty = ours(xt), theirs(tx)
        np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
        gy = rand32(*shape)
        y.backward(gy)
        ty.backward(torch.tensor(gy))
        np.testing.assert_allclose(xt.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-4)
    for (name, ours_value), (tname, theirs_value) in zip(
        ours.state_dict().items(), theirs.state_dict().items()
    ):
        assert name == tname
        np.testing.assert_allclose(ours_value, theirs_value.numpy(), rtol=1e-5, atol=1e-6, err_msg=name)
    for (name, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-3, atol=1e-4, err_msg=name)
    ours.eval(), theirs.eval()
    x = rand32(*shape)
    np.testing.assert_allclose(ours(tinyae.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


def test_batchnorm_running_stats_formula():
    bn = nn.BatchNorm1d(2, momentum=0.2)
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    xs = [RNG.standard_normal((5, 2)) * 2 + 1 for _ in range(3)]
    mean, var = np.zeros(2), np.ones(2)
    for x in xs:
        bn(tinyae.tensor(x.astype(np.float32)))
        mean = 0.8 * mean + 0.2 * x.mean(0)
        var = 0.8 * var + 0.2 * x.var(0, ddof=1)  # the unbiased batch variance
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), var, rtol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 3
    bn.eval()
    bn(tinyae.tensor(xs[0].astype(np.float32)))
    assert int(bn.num_batches_tracked.item()) == 3  # eval mode changes nothing
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5)


def test_batchnorm_errors():
    with pytest.raises(
        ValueError, match=r"BatchNorm2d: expected a 4-D \(N, C, H, W\) input, got shape \(4, 3\)"
    ):
        nn.BatchNorm2d(3)(tinyae.randn(4, 3))
    with pytest.raises(ValueError, match=r"num_features=3 channels \(dim 1\), got shape \(4, 5\)"):
        nn.BatchNorm1d(3)(tinyae.randn(4, 5))
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(tinyae.randn(1, 3))
    assert int(bn.num_batches_tracked.item()) == 0  # a rejected batch is not counted
    assert bn.eval()(tinyae.randn(1, 3)).shape == (1, 3)  # fine in eval mode


# ================================================================= errors
def test_linear_wrong_features_names_in_features_and_shape():
    with pytest.raises(ValueError) as info:
        nn.Linear(3, 4)(tinyae.randn(2, 5))
    msg = str(info.value)
    assert "Linear(in_features=3, out_features=4, bias=True)" in msg
    assert "in_features=3" in msg and "(2, 5)" in msg


def test_layer_argument_errors():
    with pytest.raises(ValueError, match=r"in_channels=3.*got shape \(2, 4, 8, 8\)"):
        nn.Conv2d(3, 4, 3)(tinyae.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match=r"expected a 4-D \(N, C, H, W\) or 3-D"):
        nn.ConvTranspose2d(3, 4, 3)(tinyae.randn(2, 3))
    with pytest.raises(ValueError, match="in_channels=3 must be divisible by groups=2"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        nn.Conv2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"Conv2d: argument 'kernel_size' must be positive, got 0"):
        nn.Conv2d(3, 4, 0)
    with pytest.raises(TypeError, match="Linear: argument 'in_features' must be an int, got float"):
        nn.Linear(3.0, 4)
    with pytest.raises(ValueError, match="cannot be split into"):
        nn.Unflatten(1, (3, 3))(tinyae.randn(2, 10))
    with pytest.raises(ValueError, match="only mode='nearest'"):
        nn.Upsample(scale_factor=2, mode="bilinear")
    with pytest.raises(TypeError, match="must be a Tensor"):
        nn.Linear(3, 4)(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="same dtype"):
        nn.Conv2d(1, 1, 3)(tinyae.randn(1, 1, 5, 5, dtype=np.float64))


@pytest.mark.skipif(not tinyae.cuda.is_available(), reason="needs a GPU: a CPU input to a GPU model")
def test_device_mismatch_raises_clearly():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).to("cuda")
    with pytest.raises(RuntimeError, match="same device"):
        model(tinyae.randn(2, 3))
    bn = nn.BatchNorm1d(4)
    with pytest.raises(RuntimeError, match="same device"):
        bn(tinyae.randn(2, 4, device="cuda"))


# ================================================================= W1-W5
class VAE(nn.Module):
    """W4, as PyTorch's examples/vae/main.py."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = tinyae.exp(0.5 * logvar)
        eps = tinyae.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return tinyae.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def workload_models(nn):  # noqa: ANN001 - the tinyae.nn or torch.nn module: the same text builds both
    """W1, W2, W3 and W5's G and D exactly as written in benchmarks/workloads.py."""
    w1 = nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(),
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid(),
    )  # fmt: skip
    w2 = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid(),
    )  # fmt: skip
    w3 = nn.Sequential(
        nn.Conv2d(1, 32, 3, stride=1, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
        nn.Conv2d(32, 1, 3, stride=1, padding=1), nn.Sigmoid(),
    )  # fmt: skip
    generator = nn.Sequential(
        nn.Linear(100, 128 * 7 * 7), nn.Unflatten(1, (128, 7, 7)),
        nn.BatchNorm2d(128), nn.ReLU(),
        nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1), nn.Tanh(),
    )  # fmt: skip
    discriminator = nn.Sequential(
        nn.Conv2d(1, 64, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(64, 128, 4, stride=2, padding=1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(6272, 1),
    )  # fmt: skip
    return {"W1": w1, "W2": w2, "W3": w3, "W5-G": generator, "W5-D": discriminator}


INPUTS = {
    "W1": (4, 784),
    "W2": (4, 1, 28, 28),
    "W3": (4, 1, 28, 28),
    "W5-G": (4, 100),
    "W5-D": (4, 1, 28, 28),
}
OUTPUTS = {"W1": (4, 784), "W2": (4, 1, 28, 28), "W3": (4, 1, 28, 28), "W5-G": (4, 1, 28, 28), "W5-D": (4, 1)}
SIZES = {"W1": 2 * (784 * 256 + 256 * 64) + 256 + 64 + 256 + 784}


@pytest.mark.parametrize("name", list(INPUTS))
def test_workload_models_build_run_and_train_one_step(name):
    model = workload_models(nn)[name]
    x = tinyae.rand(*INPUTS[name])
    y = model(x)
    assert y.shape == OUTPUTS[name]
    if name in SIZES:
        assert nn.count_parameters(model) == SIZES[name]
    target = x if y.shape == x.shape else tinyae.rand(*y.shape)
    loss = (
        F.mse_loss(y, target) if name != "W5-D" else F.binary_cross_entropy_with_logits(y, tinyae.ones(4, 1))
    )
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())


@pytest.mark.parametrize("name", list(INPUTS))
def test_workload_models_match_torch(name):
    torch = torch_or_skip()
    ours, theirs = workload_models(nn)[name], workload_models(torch.nn)[name]
    assert repr(ours) == repr(theirs)
    assert nn.count_parameters(ours) == sum(p.numel() for p in theirs.parameters())
    load_from_torch(ours, theirs)  # also proves that every state_dict name is PyTorch's
    x = np.random.default_rng(0).random(INPUTS[name]).astype(np.float32)
    y, ty = ours(tinyae.tensor(x)), theirs(torch.tensor(x))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-4, atol=2e-5)


def test_workload_vae_forward_loss_backward():
    model = VAE()
    x = tinyae.rand(8, 1, 28, 28)
    recon, mu, logvar = model(x)
    assert recon.shape == (8, 784) and mu.shape == (8, 20) and logvar.shape == (8, 20)
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    kld = -0.5 * tinyae.sum(1 + logvar - mu.pow(2) - logvar.exp())
    loss = bce + kld
    np.testing.assert_allclose(kld.item(), F.kl_div_normal(mu, logvar).item(), rtol=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert [n for n, _ in model.named_parameters()][:4] == [
        "fc1.weight",
        "fc1.bias",
        "fc21.weight",
        "fc21.bias",
    ]


def test_workload_vae_matches_torch_deterministic_parts():
    torch = torch_or_skip()
    theirs = torch.nn.ModuleDict({k: torch.nn.Linear(*s) for k, s in
                                  [("fc1", (784, 400)), ("fc21", (400, 20)), ("fc22", (400, 20)),
                                   ("fc3", (20, 400)), ("fc4", (400, 784))]})  # fmt: skip
    ours = VAE()
    load_from_torch(ours, theirs)
    x = np.random.default_rng(1).random((4, 784)).astype(np.float32)
    tx = torch.tensor(x)
    mu, logvar = ours.encode(tinyae.tensor(x))
    h1 = torch.relu(theirs["fc1"](tx))
    np.testing.assert_allclose(mu.numpy(), theirs["fc21"](h1).detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logvar.numpy(), theirs["fc22"](h1).detach().numpy(), rtol=1e-4, atol=1e-5)
    tz = theirs["fc21"](h1)
    recon = torch.sigmoid(theirs["fc4"](torch.relu(theirs["fc3"](tz))))
    np.testing.assert_allclose(ours.decode(mu).numpy(), recon.detach().numpy(), rtol=1e-4, atol=1e-5)
