"""Tests of tinyae.nn.conv: conv2d, conv_transpose2d and linear.

References: naive direct loops written here (no im2col), PyTorch when importable, and
central differences (gradcheck / gradgradcheck) in float64.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

import tinyae
from tinyae import kernels
from tinyae.kernels import conv_gemm, conv_plan
from tinyae.nn import conv as C
from tinyae.nn.conv import conv2d, conv_transpose2d
from tinyae.nn.linear import linear
from tinyae.tensor import Tensor

# --------------------------------------------------------------------------- references


def pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def ref_conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Direct loops: y[n, o, i, j] = b[o] + sum over the window of x_pad * W[o]."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n, c, h, wd = x.shape
    co, cg, kh, kw = w.shape
    xpad = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xpad[:, :, ph : ph + h, pw : pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, co, oh, ow))
    cog = co // groups
    for o in range(co):
        g = o // cog
        for i in range(oh):
            for j in range(ow):
                rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                window = xpad[:, g * cg : (g + 1) * cg, rows, cols]  # (N, Cg, KH, KW)
                y[:, o, i, j] = (window * w[o]).sum(axis=(1, 2, 3))
        if b is not None:
            y[:, o] += b[o]
    return y


def ref_conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Direct loops: every input pixel scatters W[c] * x into the (padded) output."""
    (sh, sw), (ph, pw), (dh, dw), (oph, opw) = map(pair, (stride, padding, dilation, output_padding))
    n, c, h, wd = x.shape
    _, cog, kh, kw = w.shape
    cig = c // groups
    out_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    out_w = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, cog * groups, out_h + 2 * ph, out_w + 2 * pw))
    for ci in range(c):
        g = ci // cig
        for r in range(h):
            for s in range(wd):
                for i in range(kh):
                    for j in range(kw):
                        full[:, g * cog : (g + 1) * cog, r * sh + i * dh, s * sw + j * dw] += (
                            x[:, ci, r, s, None] * w[ci, :, i, j]
                        )
    y = full[:, :, ph : ph + out_h, pw : pw + out_w]
    if b is not None:
        y = y + b[:, None, None]
    return y


# --------------------------------------------------------------------------- grids
# Tiny, non-square inputs and kernels; every combination of the knobs named in the issue.
CONV_GRID = [
    dict(stride=s, padding=p, dilation=d, groups=g, bias=(i % 2 == 0))
    for i, (s, p, d, g) in enumerate(itertools.product((1, 2, 3), (0, 1, 2), (1, 2), (1, 2)))
]
CONVT_GRID = [
    dict(stride=s, padding=p, dilation=d, groups=g, output_padding=op, bias=(i % 2 == 1))
    for i, (s, p, d, g, op) in enumerate(itertools.product((1, 2, 3), (0, 1, 2), (1, 2), (1, 2), (0, 1)))
    if op < max(s, d)
]


def cfg_id(cfg):
    return "-".join(f"{k[0]}{int(v)}" if k != "output_padding" else f"op{v}" for k, v in cfg.items())


def conv_case(cfg, rng, dtype=np.float64):
    """(x, w, b, kwargs) for conv2d: x (2, 4, 7, 6), kernel (3, 2)."""
    kw = {k: v for k, v in cfg.items() if k != "bias"}
    g = cfg["groups"]
    x = rng.standard_normal((2, 4, 7, 6)).astype(dtype)
    w = rng.standard_normal((6, 4 // g, 3, 2)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype) if cfg["bias"] else None
    return x, w, b, kw


def convt_case(cfg, rng, dtype=np.float64):
    """(x, w, b, kwargs) for conv_transpose2d: x (2, 4, 3, 4), kernel (2, 3), 3 output channels/group."""
    kw = {k: v for k, v in cfg.items() if k != "bias"}
    g = cfg["groups"]
    x = rng.standard_normal((2, 4, 3, 4)).astype(dtype)
    w = rng.standard_normal((4, 3, 2, 3)).astype(dtype)
    b = rng.standard_normal(3 * g).astype(dtype) if cfg["bias"] else None
    return x, w, b, kw


def leaves(*arrays, device="cpu"):
    return [None if a is None else Tensor(a, requires_grad=True, device=device) for a in arrays]


def forward_backward(fn, x, w, b, kw, gy_seed=1, device="cpu"):
    """Run fn forward and backward with a random upstream gradient; return numpy results."""
    tx, tw, tb = leaves(x, w, b, device=device)
    y = fn(tx, tw, tb, **kw)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape).astype(x.dtype)
    y.backward(Tensor(gy, device=device))
    grads = [t.grad.numpy() for t in (tx, tw, tb) if t is not None]
    return y.numpy(), grads, gy


def convt_out_ok(x, w, kw):
    size = [
        (n - 1) * s - 2 * p + d * (k - 1) + op + 1
        for n, k, s, p, d, op in zip(
            x.shape[2:],
            w.shape[2:],
            *(pair(kw[a]) for a in ("stride", "padding", "dilation", "output_padding")),
        )
    ]
    return min(size) >= 1


@pytest.fixture(params=["per_sample", "one_gemm"])
def gemm_path(request, monkeypatch):
    """Force either GEMM strategy (normally chosen by the rows per group, Kg), so both are tested."""
    monkeypatch.setattr(conv_gemm, "PER_SAMPLE_MAX_K", 10**9 if request.param == "per_sample" else 0)
    return request.param


# --------------------------------------------------------------------------- forward vs direct loops


@pytest.mark.parametrize("cfg", CONV_GRID, ids=cfg_id)
def test_conv2d_forward_matches_loops(gemm_path, cfg):
    x, w, b, kw = conv_case(cfg, np.random.default_rng(0))
    y = conv2d(Tensor(x), Tensor(w), None if b is None else Tensor(b), **kw)
    np.testing.assert_allclose(y.numpy(), ref_conv2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cfg", CONVT_GRID, ids=cfg_id)
def test_conv_transpose2d_forward_matches_loops(gemm_path, cfg):
    x, w, b, kw = convt_case(cfg, np.random.default_rng(0))
    if not convt_out_ok(x, w, kw):
        with pytest.raises(ValueError, match="conv_transpose2d: output size"):
            conv_transpose2d(Tensor(x), Tensor(w), None, **kw)
        return
    y = conv_transpose2d(Tensor(x), Tensor(w), None if b is None else Tensor(b), **kw)
    np.testing.assert_allclose(y.numpy(), ref_conv_transpose2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)


def test_on_each_device(device, gemm_path):
    """Forward against the loops, gradients against the CPU, on every available device."""
    rng = np.random.default_rng(3)
    cases = [
        (conv2d, ref_conv2d, *conv_case(dict(stride=2, padding=1, dilation=2, groups=2, bias=True), rng)),
        (
            conv_transpose2d,
            ref_conv_transpose2d,
            *convt_case(dict(stride=2, padding=1, dilation=1, groups=2, output_padding=1, bias=True), rng),
        ),
    ]
    for fn, ref, x, w, b, kw in cases:
        y, grads, _ = forward_backward(fn, x, w, b, kw, device=device)
        np.testing.assert_allclose(y, ref(x, w, b, **kw), rtol=1e-10, atol=1e-10)
        _, cpu_grads, _ = forward_backward(fn, x, w, b, kw)
        for g, cg in zip(grads, cpu_grads):
            np.testing.assert_allclose(g, cg, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("cfg", CONV_GRID, ids=cfg_id)
def test_conv2d_gradcheck(gemm_path, cfg):
    x, w, b, kw = conv_case(cfg, np.random.default_rng(1))
    inputs = [t for t in leaves(x, w, b) if t is not None]
    assert tinyae.gradcheck(lambda *a: conv2d(*a, **kw), inputs)


@pytest.mark.parametrize("cfg", CONVT_GRID, ids=cfg_id)
def test_conv_transpose2d_gradcheck(gemm_path, cfg):
    x, w, b, kw = convt_case(cfg, np.random.default_rng(1))
    if not convt_out_ok(x, w, kw):
        with pytest.raises(ValueError, match="output size .* is not positive"):  # refused, not skipped
            conv_transpose2d(*leaves(x, w), **kw)
        return
    inputs = [t for t in leaves(x, w, b) if t is not None]
    assert tinyae.gradcheck(lambda *a: conv_transpose2d(*a, **kw), inputs)


GRADGRAD_CONV = [
    dict(stride=1, padding=0, dilation=1, groups=1, bias=True),
    dict(stride=2, padding=1, dilation=2, groups=2, bias=True),
    dict(stride=3, padding=2, dilation=1, groups=1, bias=False),
]
GRADGRAD_CONVT = [
    dict(stride=2, padding=1, dilation=1, groups=1, output_padding=1, bias=True),
    dict(stride=1, padding=0, dilation=2, groups=2, output_padding=1, bias=True),  # output_padding >= stride
    dict(stride=3, padding=2, dilation=2, groups=1, output_padding=2, bias=False),
]


@pytest.mark.parametrize("cfg", GRADGRAD_CONV, ids=cfg_id)
def test_conv2d_gradgradcheck(gemm_path, cfg):
    rng = np.random.default_rng(2)
    g = cfg["groups"]
    kw = {k: v for k, v in cfg.items() if k != "bias"}
    x, w = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((2, 2 // g, 2, 3))
    b = rng.standard_normal(2) if cfg["bias"] else None
    inputs = [t for t in leaves(x, w, b) if t is not None]
    assert tinyae.gradgradcheck(lambda *a: conv2d(*a, **kw), inputs)


@pytest.mark.parametrize("cfg", GRADGRAD_CONVT, ids=cfg_id)
def test_conv_transpose2d_gradgradcheck(gemm_path, cfg):
    rng = np.random.default_rng(2)
    g = cfg["groups"]
    kw = {k: v for k, v in cfg.items() if k != "bias"}
    x, w = rng.standard_normal((1, 2, 3, 2)), rng.standard_normal((2, 1, 3, 2))
    b = rng.standard_normal(g) if cfg["bias"] else None
    inputs = [t for t in leaves(x, w, b) if t is not None]
    assert tinyae.gradgradcheck(lambda *a: conv_transpose2d(*a, **kw), inputs)


def test_gradcheck_random_direction_larger_shapes():
    rng = np.random.default_rng(4)
    x, w, b = leaves(
        rng.standard_normal((3, 6, 11, 9)), rng.standard_normal((8, 3, 3, 3)), rng.standard_normal(8)
    )
    assert tinyae.gradcheck(lambda *a: conv2d(*a, stride=2, padding=1, groups=2), [x, w, b], mode="random")
    x, w = leaves(rng.standard_normal((3, 6, 5, 4)), rng.standard_normal((6, 4, 4, 3)))
    fn = lambda *a: conv_transpose2d(*a, stride=2, padding=1, output_padding=1)  # noqa: E731
    assert tinyae.gradcheck(fn, [x, w], mode="random")


def test_gradcheck_only_some_inputs_need_grad():
    rng = np.random.default_rng(5)
    x = Tensor(rng.standard_normal((2, 2, 5, 5)))  # an image: needs no gradient
    (w,) = leaves(rng.standard_normal((3, 2, 3, 3)))
    assert tinyae.gradcheck(lambda w: conv2d(x, w, stride=2), [w])
    (xg,) = leaves(rng.standard_normal((2, 2, 5, 5)))
    wc = Tensor(rng.standard_normal((3, 2, 3, 3)))
    assert tinyae.gradcheck(lambda x: conv2d(x, wc, padding=1), [xg])


# --------------------------------------------------------------------------- against PyTorch


@pytest.fixture(scope="module")
def torch():
    """PyTorch on one thread (tiny float64 convs: its thread pool only adds waiting), or skip."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def torch_results(torch, kind, x, w, b, kw, gy):
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    fn = torch.nn.functional.conv2d if kind == "conv" else torch.nn.functional.conv_transpose2d
    y = fn(tx, tw, tb, **kw)
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), [t.grad.numpy() for t in (tx, tw, tb) if t is not None]


def assert_all_close(ours, theirs, rtol, atol):
    (y, grads), (ty, tgrads) = ours, theirs
    np.testing.assert_allclose(y, ty, rtol=rtol, atol=atol, err_msg="forward")
    assert len(grads) == len(tgrads)
    for name, g, tg in zip(("input", "weight", "bias"), grads, tgrads):
        np.testing.assert_allclose(g, tg, rtol=rtol, atol=atol, err_msg=f"gradient of {name}")


@pytest.mark.parametrize("cfg", CONV_GRID, ids=cfg_id)
def test_conv2d_matches_torch(gemm_path, cfg, torch):
    x, w, b, kw = conv_case(cfg, np.random.default_rng(6))
    y, grads, gy = forward_backward(conv2d, x, w, b, kw)
    assert_all_close((y, grads), torch_results(torch, "conv", x, w, b, kw, gy), 1e-11, 1e-11)


@pytest.mark.parametrize("cfg", CONVT_GRID, ids=cfg_id)
def test_conv_transpose2d_matches_torch(gemm_path, cfg, torch):
    x, w, b, kw = convt_case(cfg, np.random.default_rng(6))
    if not convt_out_ok(x, w, kw):
        with pytest.raises(ValueError, match="output size .* is not positive"):  # refused, not skipped
            conv_transpose2d(*leaves(x, w), **kw)
        return
    y, grads, gy = forward_backward(conv_transpose2d, x, w, b, kw)
    assert_all_close((y, grads), torch_results(torch, "convt", x, w, b, kw, gy), 1e-11, 1e-11)


@pytest.mark.parametrize(
    "kind, xshape, wshape, kw",
    [
        # odd total padding: the extra row and column go at the bottom and right
        ("conv", (2, 3, 9, 8), (4, 3, 4, 3), dict(padding="same")),
        ("conv", (2, 3, 9, 8), (4, 3, 3, 2), dict(padding="same", dilation=(2, 3))),
        ("conv", (2, 3, 9, 8), (4, 3, 3, 2), dict(padding="valid", stride=(2, 1))),
        ("conv", (2, 70, 6, 5), (5, 70, 3, 3), dict(padding=1)),  # many rows per group: one-GEMM path
        ("convt", (2, 70, 4, 3), (70, 5, 3, 3), dict(stride=2, padding=1, output_padding=1)),
        ("conv", (2, 3, 8, 7), (6, 1, 1, 1), dict(groups=3)),  # depthwise-like, 1x1 kernel
        ("conv", (2, 70, 6, 5), (1, 70, 3, 3), dict(padding=1)),  # one output channel: outer-product gx
        ("convt", (2, 1, 4, 3), (1, 70, 3, 3), dict(stride=2)),  # one input channel: outer-product GEMM
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note about its own padded copy
def test_special_configs_match_torch(kind, xshape, wshape, kw, torch):
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal(xshape), rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[0] if kind == "conv" else wshape[1] * kw.get("groups", 1))
    fn = conv2d if kind == "conv" else conv_transpose2d
    y, grads, gy = forward_backward(fn, x, w, b, kw)
    assert_all_close((y, grads), torch_results(torch, kind, x, w, b, kw, gy), 1e-11, 1e-11)


def test_float32_matches_torch(torch):
    rng = np.random.default_rng(8)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 8, 12, 12), (16, 8, 3, 3), (16,)))
    kw = dict(stride=2, padding=1)
    y, grads, gy = forward_backward(conv2d, x, w, b, kw)
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert_all_close((y, grads), torch_results(torch, "conv", x, w, b, kw, gy), 1e-4, 1e-4)
    x = rng.standard_normal((4, 16, 6, 6)).astype(np.float32)
    kw = dict(stride=2, padding=1, output_padding=1)
    y, grads, gy = forward_backward(conv_transpose2d, x, w, b[:8], kw)
    assert_all_close((y, grads), torch_results(torch, "convt", x, w, b[:8], kw, gy), 1e-4, 1e-4)


def test_double_backward_matches_torch(gemm_path, torch):
    """A gradient penalty through a small conv 'discriminator' (conv, convT, conv)."""
    rng = np.random.default_rng(9)
    arrays = [rng.standard_normal(s) for s in ((2, 2, 7, 7), (4, 2, 3, 3), (4, 2, 3, 3), (3, 2, 2, 2), (3,))]

    def model(lib, conv, convt, x, w1, w2, w3, b3):
        h = lib.tanh(conv(x, w1, stride=2, padding=1))
        h = lib.tanh(convt(h, w2, stride=2, padding=1, output_padding=0))
        return conv(h, w3, b3, dilation=2).sum()

    ours = leaves(*arrays)
    d = model(tinyae, conv2d, conv_transpose2d, *ours)
    (gx,) = tinyae.grad(d, ours[0], create_graph=True)
    ((gx * gx).sum()).backward()
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    F = torch.nn.functional
    td = model(torch, F.conv2d, F.conv_transpose2d, *theirs)
    (tgx,) = torch.autograd.grad(td, theirs[0], create_graph=True)
    ((tgx * tgx).sum()).backward()
    np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), rtol=1e-10, atol=1e-10)
    for name, a, t in zip(("x", "w1", "w2", "w3", "b3"), ours, theirs):
        tg = np.zeros(a.shape) if t.grad is None else t.grad.numpy()
        ag = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        np.testing.assert_allclose(ag, tg, rtol=1e-9, atol=1e-10, err_msg=f"second-order gradient of {name}")


# --------------------------------------------------------------------------- output_size, unbatched


def test_output_size_picks_output_padding():
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((3, 2, 3, 3))
    for op_h, op_w in itertools.product(range(2), range(2)):
        want = conv_transpose2d(Tensor(x), Tensor(w), stride=2, padding=1, output_padding=(op_h, op_w))
        for size in (want.shape[2:], want.shape):
            got = conv_transpose2d(Tensor(x), Tensor(w), stride=2, padding=1, output_size=size)
            assert got.shape == want.shape
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    with pytest.raises(ValueError, match=r"conv_transpose2d: requested output_size \(9, 9\).*\[7, 8\]"):
        conv_transpose2d(Tensor(x), Tensor(w), stride=2, padding=1, output_size=(9, 9))
    with pytest.raises(ValueError, match="output_size"):
        conv_transpose2d(Tensor(x), Tensor(w), stride=2, padding=1, output_size=(7,))


def test_conv_backward_pins_input_size():
    """Stride-2 conv of an odd and an even input give the same OH; each gradient keeps its x's size."""
    rng = np.random.default_rng(11)
    w = leaves(rng.standard_normal((2, 1, 3, 3)))[0]
    for h in (7, 8):
        x = leaves(rng.standard_normal((1, 1, h, h)))[0]
        y = conv2d(x, w, stride=2, padding=1)
        assert y.shape == (1, 2, 4, 4)
        y.sum().backward()
        assert x.grad.shape == x.shape


def test_unbatched_input():
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    y = conv2d(Tensor(x), Tensor(w), Tensor(b), padding=1)
    assert y.shape == (4, 6, 5)
    np.testing.assert_allclose(y.numpy(), ref_conv2d(x[None], w, b, padding=1)[0], rtol=1e-12)
    yt = conv_transpose2d(Tensor(x), Tensor(w[:3]), stride=2)
    np.testing.assert_allclose(yt.numpy(), ref_conv_transpose2d(x[None], w[:3], stride=2)[0], rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])  # float32 takes the direct kernels on AVX-512
@pytest.mark.parametrize("c_in,c_out,k,s", [(16, 32, 3, 1), (1, 8, 3, 2), (16, 32, 4, 2)])
def test_empty_batch_gives_empty_outputs_and_zero_weight_gradients(c_in, c_out, k, s, dtype):
    x = Tensor(np.zeros((0, c_in, 8, 8), dtype), requires_grad=True)
    w = Tensor(np.ones((c_out, c_in, k, k), dtype), requires_grad=True)
    b = Tensor(np.ones(c_out, dtype), requires_grad=True)
    y = conv2d(x, w, b, stride=s, padding=1)
    assert y.shape[:2] == (0, c_out)
    y.sum().backward()
    assert x.grad.shape == x.shape
    assert not np.any(w.grad.numpy()) and not np.any(b.grad.numpy())
    xt = Tensor(np.zeros((0, c_out, 5, 5), dtype), requires_grad=True)
    wt = Tensor(np.ones((c_out, c_in, k, k), dtype), requires_grad=True)
    yt = conv_transpose2d(xt, wt, stride=s, padding=1)
    assert yt.shape[:2] == (0, c_in)
    yt.sum().backward()
    assert xt.grad.shape == xt.shape and not np.any(wt.grad.numpy())


# --------------------------------------------------------------------------- memory: chunking, saved columns


@pytest.fixture
def count_kernel_calls(monkeypatch):
    """Count im2col/col2im calls and record the largest column buffer either handled."""
    calls = {"im2col": 0, "col2im": 0, "max_col_bytes": 0}
    real_im2col, real_col2im = kernels.im2col, kernels.col2im
    lock = threading.Lock()  # chunks may run on several threads

    def record(name, col):
        with lock:
            calls[name] += 1
            calls["max_col_bytes"] = max(calls["max_col_bytes"], col.nbytes)

    def im2col(*args, **kwargs):
        col = real_im2col(*args, **kwargs)
        record("im2col", col)
        return col

    def col2im(col, *args, **kwargs):
        record("col2im", col)
        return real_col2im(col, *args, **kwargs)

    monkeypatch.setattr(kernels, "im2col", im2col)
    monkeypatch.setattr(kernels, "col2im", col2im)
    return calls


@pytest.fixture
def restore_workspace_limit():
    previous = C.get_workspace_limit()
    yield
    C.set_workspace_limit(previous)


@pytest.mark.parametrize("kind", ["conv", "convt"])
def test_chunked_equals_unchunked(gemm_path, kind, count_kernel_calls, restore_workspace_limit):
    rng = np.random.default_rng(13)
    if kind == "conv":
        fn, kw = conv2d, dict(stride=2, padding=1, groups=2)
        x, w, b = rng.standard_normal((7, 4, 9, 8)), rng.standard_normal((6, 2, 3, 3)), rng.standard_normal(6)
    else:
        fn, kw = conv_transpose2d, dict(stride=2, padding=1, output_padding=1, groups=2)
        x, w, b = rng.standard_normal((7, 4, 5, 4)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(6)

    def run():
        xs = leaves(x, w, b)

        def loss_fn(x, w, b):  # a second-order term too: the weight-gradient op must chunk as well
            y = fn(x, w, b, **kw)
            (gx,) = tinyae.grad((y * y).sum(), x, create_graph=True)
            return y, gx

        y, gx = loss_fn(*xs)
        ((y * y).sum() + (gx * gx).sum()).backward()
        return [y.numpy(), gx.numpy()] + [t.grad.numpy() for t in xs]

    want = run()
    whole_batch = count_kernel_calls["max_col_bytes"]  # the largest buffer, for all 7 samples
    calls = count_kernel_calls["im2col"] + count_kernel_calls["col2im"]
    cap = whole_batch * 2 // 7  # room for two samples
    C.set_workspace_limit(cap)
    count_kernel_calls.update(im2col=0, col2im=0, max_col_bytes=0)
    got = run()
    assert 0 < count_kernel_calls["max_col_bytes"] <= cap
    assert count_kernel_calls["im2col"] + count_kernel_calls["col2im"] >= 3 * calls  # 4 chunks each
    for a, b_ in zip(got, want):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_chunks_are_cache_sized(threads, count_kernel_calls, monkeypatch, restore_num_threads):
    """On the CPU no column buffer exceeds CPU_CHUNK_BYTES (or one sample's), at any thread count."""
    rng = np.random.default_rng(27)
    arrays = rng.standard_normal((6, 4, 9, 8)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    y, grads, _ = forward_backward(conv2d, *arrays, dict(padding=1))
    one_sample = 4 * 9 * 9 * 8 * 8  # rows * OH * OW * 8 bytes
    monkeypatch.setattr(conv_gemm, "CPU_CHUNK_BYTES", 2 * one_sample)
    count_kernel_calls.update(im2col=0, col2im=0, max_col_bytes=0)
    tinyae.set_num_threads(threads)
    y2, grads2, _ = forward_backward(conv2d, *arrays, dict(padding=1))
    assert count_kernel_calls["max_col_bytes"] == 2 * one_sample
    assert count_kernel_calls["im2col"] == 2 * 3 and count_kernel_calls["col2im"] == 3
    for a, b_ in zip([y2, *grads2], [y, *grads]):
        np.testing.assert_allclose(a, b_, rtol=1e-13, atol=1e-13)


def test_channel_sum_is_the_bias_gradient():
    rng = np.random.default_rng(28)
    (gy,) = leaves(rng.standard_normal((3, 4, 5, 2)))
    np.testing.assert_allclose(C.ChannelSum()(gy).numpy(), gy.numpy().sum(axis=(0, 2, 3)), rtol=1e-14)
    assert tinyae.gradcheck(lambda a: C.ChannelSum()(a), [gy])
    assert tinyae.gradgradcheck(lambda a: C.ChannelSum()(a * a), [gy])


def test_workspace_limit_setting(restore_workspace_limit):
    previous = C.set_workspace_limit(1234)
    assert C.get_workspace_limit() == 1234
    assert C.set_workspace_limit(previous) == 1234
    with pytest.raises(ValueError, match="set_workspace_limit: argument 'nbytes' must be a positive int"):
        C.set_workspace_limit(0)


def test_workspace_limit_from_environment():
    import subprocess
    import sys

    code = "import tinyae.nn.conv as c; print(c.get_workspace_limit())"
    env = {**__import__("os").environ, "TINYAE_WORKSPACE_MB": "3"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout) == 3 * 2**20


def test_forward_columns_reused_and_image_needs_no_col2im(count_kernel_calls):
    rng = np.random.default_rng(14)
    x = Tensor(rng.standard_normal((2, 3, 9, 9)))  # first layer: the image needs no gradient
    (w,) = leaves(rng.standard_normal((4, 3, 3, 3)))
    y = conv2d(x, w, stride=3)  # windows tile x: the column buffer is as big as x, so it is kept
    assert count_kernel_calls["im2col"] == 1 and y.creator.col is not None
    y.sum().backward()
    assert count_kernel_calls == {**count_kernel_calls, "im2col": 1, "col2im": 0}
    with tinyae.no_grad():  # inference keeps nothing
        fn = C.Conv2dFunction(C.Geometry((3, 3), (1, 1), (1, 1)))
        fn(x, w)
        assert fn.col is None


def test_large_columns_recomputed_not_kept(count_kernel_calls, monkeypatch):
    """A 3x3 stride-1 conv's buffer is 9x its input: the backward unfolds x again instead."""
    rng = np.random.default_rng(21)
    x, w = leaves(rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3)))
    y = conv2d(x, w, padding=1)
    assert y.creator.col is None
    gy = rng.standard_normal(y.shape)
    y.backward(Tensor(gy))
    assert count_kernel_calls["im2col"] == 2
    monkeypatch.setattr(conv_plan, "KEEP_COL_RATIO", 100.0)  # the same, keeping col
    x2, w2 = leaves(x.numpy(), w.numpy())
    y2 = conv2d(x2, w2, padding=1)
    assert y2.creator.col is not None
    y2.backward(Tensor(gy))
    np.testing.assert_allclose(w.grad.numpy(), w2.grad.numpy(), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(x.grad.numpy(), x2.grad.numpy(), rtol=1e-13, atol=1e-13)


def test_conv_transpose2d_backward_unfolds_gy_once(count_kernel_calls):
    """The input gradient conv2d(gy, W) and the weight gradient share one im2col(gy)."""
    rng = np.random.default_rng(20)
    x, w = leaves(rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 2, 3, 3)))
    y = conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
    assert (count_kernel_calls["im2col"], count_kernel_calls["col2im"]) == (0, 1)
    y.sum().backward()
    assert (count_kernel_calls["im2col"], count_kernel_calls["col2im"]) == (1, 1)


def test_frozen_weight_keeps_no_columns(count_kernel_calls):
    rng = np.random.default_rng(15)
    (x,) = leaves(rng.standard_normal((2, 3, 8, 8)))
    w = Tensor(rng.standard_normal((4, 3, 3, 3)))  # frozen (transfer learning): no weight gradient
    y = conv2d(x, w, padding=1)
    assert y.creator.col is None
    y.sum().backward()
    assert count_kernel_calls["im2col"] == 1 and count_kernel_calls["col2im"] == 1


# --------------------------------------------------------------------------- stride 1: the flipped kernel
# At stride 1 a transposed conv may run as a conv2d with the flipped kernel (conv_plan.as_flipped_conv picks
# it when the transposed conv has fewer input than output channels). Both forms are checked on the
# same grid, against the loops, central differences and each other.
FLIP_GRID = [
    dict(stride=1, padding=p, dilation=d, groups=g, output_padding=op, bias=(i % 2 == 0))
    for i, (p, d, g, op) in enumerate(itertools.product((0, 1, 2), (1, 2), (1, 2), (0, 1)))
    if op < d  # output_padding < max(stride, dilation) with stride 1
]


@pytest.fixture(params=["flipped", "transposed"])
def stride1_form(request, monkeypatch):
    """Force one form of every stride-1 transposed conv (the flipped one wherever it is possible)."""
    rule = conv_plan.flip_possible if request.param == "flipped" else (lambda geom, w_shape: False)
    monkeypatch.setattr(conv_plan, "as_flipped_conv", rule)
    return request.param


def flip_case(cfg, rng):
    """(x, w, b, kwargs, geometry) for a stride-1 conv_transpose2d: x (2, 4, 5, 4), kernel (3, 2)."""
    kw = {k: v for k, v in cfg.items() if k != "bias"}
    x, w = rng.standard_normal((2, 4, 5, 4)), rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(3 * cfg["groups"]) if cfg["bias"] else None
    geom = C.Geometry(w.shape[2:], (1, 1), pair(kw["padding"]), pair(kw["dilation"]), kw["groups"])
    return x, w, b, kw, geom


@pytest.mark.parametrize("cfg", FLIP_GRID, ids=cfg_id)
def test_stride1_conv_transpose2d_both_forms(stride1_form, count_kernel_calls, cfg):
    x, w, b, kw, geom = flip_case(cfg, np.random.default_rng(22))
    if not convt_out_ok(x, w, kw):
        with pytest.raises(ValueError, match="output size .* is not positive"):  # refused, not skipped
            conv_transpose2d(*leaves(x, w), **kw)
        return
    y, grads, gy = forward_backward(conv_transpose2d, x, w, b, kw)
    np.testing.assert_allclose(y, ref_conv_transpose2d(x, w, b, **kw), rtol=1e-12, atol=1e-12)
    flipped = stride1_form == "flipped" and conv_plan.flip_possible(geom, w.shape)
    assert count_kernel_calls["col2im"] == (0 if flipped else 1)  # the flipped form never folds
    # The transposed-conv Function itself, called directly: the same output and gradients.
    tx, tw, tb = leaves(x, w, b)
    direct = C.ConvTranspose2dFunction(geom, y.shape[2:])(*(t for t in (tx, tw, tb) if t is not None))
    direct.backward(Tensor(gy))
    np.testing.assert_allclose(direct.numpy(), y, rtol=1e-12, atol=1e-12)
    for g, d in zip(grads, [t.grad.numpy() for t in (tx, tw, tb) if t is not None]):
        np.testing.assert_allclose(g, d, rtol=1e-12, atol=1e-12)
    inputs = [t for t in leaves(x, w, b) if t is not None]
    assert tinyae.gradcheck(lambda *a: conv_transpose2d(*a, **kw), inputs)


@pytest.mark.parametrize(
    "cfg",
    [
        dict(padding=1, dilation=1, groups=1, output_padding=0, bias=True),
        dict(padding=0, dilation=2, groups=2, output_padding=1, bias=False),
        dict(padding=2, dilation=2, groups=1, output_padding=1, bias=True),
    ],
    ids=cfg_id,
)
def test_stride1_flipped_form_gradgradcheck(stride1_form, cfg):
    rng = np.random.default_rng(23)
    kw = {k: v for k, v in cfg.items() if k != "bias"}
    g = cfg["groups"]
    x, w = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 2, 2, 3))
    b = rng.standard_normal(2 * g) if cfg["bias"] else None
    inputs = [t for t in leaves(x, w, b) if t is not None]
    assert tinyae.gradgradcheck(lambda *a: conv_transpose2d(*a, **kw), inputs)


def test_flip_kernel_formula_and_inverse():
    rng = np.random.default_rng(24)
    w = rng.standard_normal((4, 3, 2, 3))  # (C, Cog, KH, KW), 2 groups of 2 input channels
    got = conv_plan.flip_kernel(w, 2)
    assert got.shape == (6, 2, 2, 3)
    for g, o, c, u, v in itertools.product(range(2), range(3), range(2), range(2), range(3)):
        assert got[g * 3 + o, c, u, v] == w[g * 2 + c, o, 1 - u, 2 - v]
    np.testing.assert_array_equal(conv_plan.flip_kernel(got, 2), w)  # its own inverse


@pytest.mark.parametrize(
    "xshape, wshape, kw",
    [
        ((2, 6, 7, 6), (1, 6, 3, 3), dict(padding=1)),  # a decoder's last layer: many -> 1 channel
        ((2, 6, 7, 6), (2, 3, 3, 2), dict(padding=(2, 1), dilation=2, groups=2)),
        ((2, 70, 6, 5), (2, 70, 3, 3), dict(padding=1)),  # many rows per group: one-GEMM weight grad
        ((2, 6, 7, 6), (4, 6, 3, 3), dict(padding=(3, 1))),  # padding > DH*(KH-1) - 0: no flipped form
    ],
)
def test_conv2d_stride1_input_gradient_matches_torch(xshape, wshape, kw, count_kernel_calls, torch):
    """conv2d with fewer output than input channels: its input gradient is a flipped-kernel conv."""
    rng = np.random.default_rng(25)
    x, w, b = rng.standard_normal(xshape), rng.standard_normal(wshape), rng.standard_normal(wshape[0])
    y, grads, gy = forward_backward(conv2d, x, w, b, kw)
    assert_all_close((y, grads), torch_results(torch, "conv", x, w, b, kw, gy), 1e-11, 1e-11)
    geom = C.Geometry(wshape[2:], 1, pair(kw["padding"]), pair(kw.get("dilation", 1)), kw.get("groups", 1))
    assert count_kernel_calls["col2im"] == (0 if conv_plan.as_flipped_conv(geom, wshape) else 1)


def test_double_backward_through_flipped_form_matches_torch(torch):
    """A gradient penalty through conv(32 -> ... -> 1)-like layers: second derivatives of the flipped form."""
    rng = np.random.default_rng(26)
    arrays = [rng.standard_normal(s) for s in ((2, 4, 6, 5), (1, 4, 3, 3), (1,), (1, 2, 2, 2))]

    def model(lib, conv, convt, x, w1, b1, w2):
        h = lib.tanh(conv(x, w1, b1, padding=1))  # input gradient: flipped form (4 -> 1 channels)
        return convt(h, w2, padding=1, dilation=2).sum()  # stride 1, 1 -> 2 channels: flipped form

    ours = leaves(*arrays)
    d = model(tinyae, conv2d, conv_transpose2d, *ours)
    (gx,) = tinyae.grad(d, ours[0], create_graph=True)
    ((gx * gx).sum()).backward()
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    F = torch.nn.functional
    td = model(torch, F.conv2d, F.conv_transpose2d, *theirs)
    (tgx,) = torch.autograd.grad(td, theirs[0], create_graph=True)
    ((tgx * tgx).sum()).backward()
    np.testing.assert_allclose(gx.numpy(), tgx.detach().numpy(), rtol=1e-10, atol=1e-10)
    for name, a, t in zip(("x", "w1", "b1", "w2"), ours, theirs):
        tg = np.zeros(a.shape) if t.grad is None else t.grad.numpy()
        ag = np.zeros(a.shape) if a.grad is None else a.grad.numpy()
        np.testing.assert_allclose(ag, tg, rtol=1e-9, atol=1e-10, err_msg=f"second-order gradient of {name}")


# --------------------------------------------------------------------------- kernel backends


def test_numpy_and_cpp_kernels_agree():
    if not kernels.cpp_available():
        pytest.skip(f"C++ kernels not built: {kernels.cpp_unavailable_reason()}")
    rng = np.random.default_rng(16)
    cases = [
        (conv2d, *conv_case(dict(stride=2, padding=1, dilation=2, groups=2, bias=True), rng)),
        (
            conv_transpose2d,
            *convt_case(dict(stride=2, padding=2, dilation=1, groups=2, output_padding=1, bias=True), rng),
        ),
    ]
    previous = kernels.get_kernels()
    try:
        for fn, x, w, b, kw in cases:
            results = {}
            for name in ("numpy", "cpp"):
                kernels.set_kernels(name)
                y, grads, _ = forward_backward(fn, x, w, b, kw)
                results[name] = [y, *grads]
            for a, b_ in zip(results["numpy"], results["cpp"]):
                np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)
    finally:
        kernels.set_kernels(previous)


# --------------------------------------------------------------------------- linear


def test_linear_forward_backward_and_shapes():
    rng = np.random.default_rng(17)
    w, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    for shape in ((4, 5), (5,), (2, 3, 5)):
        x = rng.standard_normal(shape)
        y = linear(Tensor(x), Tensor(w), Tensor(b))
        assert y.shape == shape[:-1] + (3,)
        np.testing.assert_allclose(y.numpy(), np.einsum("...i,oi->...o", x, w) + b, rtol=1e-12)
        inputs = leaves(x, w, b)
        assert tinyae.gradcheck(linear, inputs)
    assert tinyae.gradcheck(lambda x, w: linear(x, w), leaves(rng.standard_normal((4, 5)), w))


def test_linear_gradgradcheck():
    rng = np.random.default_rng(18)
    inputs = leaves(rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2))
    assert tinyae.gradgradcheck(linear, inputs)
    inputs = leaves(rng.standard_normal((2, 2, 3)), rng.standard_normal((2, 3)))
    assert tinyae.gradgradcheck(lambda x, w: linear(x, w), inputs)


def test_linear_matches_torch(torch):
    rng = np.random.default_rng(19)
    x, w, b = rng.standard_normal((2, 4, 6)), rng.standard_normal((3, 6)), rng.standard_normal(3)
    ours = leaves(x, w, b)
    y = linear(*ours)
    gy = rng.standard_normal(y.shape)
    y.backward(Tensor(gy))
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    ty = torch.nn.functional.linear(*theirs)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12)
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- bad input


def t(shape, dtype=np.float64):
    return Tensor(np.ones(shape, dtype=dtype))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda: conv2d(t((2, 3, 8, 8)), t((4, 2, 3, 3))), ValueError,
         r"conv2d: input has 3 channels but weight \(4, 2, 3, 3\) with groups=1 expects 2"),
        (lambda: conv2d(t((2, 4, 8, 8)), t((3, 2, 3, 3)), groups=2), ValueError,
         r"conv2d: groups=2 must divide the output channels \(weight.shape\[0\]\), got 3"),
        (lambda: conv2d(t((2, 3, 8, 8)), t((4, 1, 3, 3)), groups=3), ValueError, None),  # 4 % 3
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), stride=0), ValueError,
         r"conv2d: argument 'stride' must be positive, got 0"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), dilation=(1, -1)), ValueError,
         r"conv2d: argument 'dilation' must be positive, got \(1, -1\)"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), padding=-1), ValueError,
         r"conv2d: argument 'padding' must be non-negative, got -1"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), padding="full"), ValueError,
         r"conv2d: argument 'padding' must be an int, a pair, 'same' or 'valid', got 'full'"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), padding="same", stride=2), ValueError,
         r"conv2d: padding='same' needs stride 1"),
        (lambda: conv2d(t((2, 2, 2, 8)), t((4, 2, 3, 3))), ValueError,
         r"conv2d: kernel \(3, 3\) with dilation \(1, 1\) is larger than the padded input: "
         r"input shape \(2, 2, 2, 8\)"),
        (lambda: conv2d(t((2, 2, 5, 8)), t((4, 2, 3, 3)), dilation=3), ValueError,
         "larger than the padded input"),
        (lambda: conv2d(t((2, 8)), t((4, 2, 3, 3))), ValueError,
         r"conv2d: argument 'input' must be 4-D \(N, C, H, W\) or 3-D \(C, H, W\), got shape \(2, 8\)"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3))), ValueError,
         r"conv2d: argument 'weight' must be 4-D \(C_out, C_in/groups, KH, KW\), got shape \(4, 2, 3\)"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), t((3,))), ValueError,
         r"conv2d: argument 'bias' must have shape \(4,\) to match weight \(4, 2, 3, 3\), got \(3,\)"),
        (lambda: conv2d(t((2, 2, 8, 8), np.int64), t((4, 2, 3, 3))), TypeError,
         r"conv2d: argument 'input' must be float32 or float64, got dtype int64"),
        (lambda: conv2d(t((2, 2, 8, 8), np.float32), t((4, 2, 3, 3))), TypeError,
         r"conv2d: input and weight must have the same dtype, got float32 and float64"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), t((4,), np.float32)), TypeError,
         r"conv2d: input and bias must have the same dtype"),
        (lambda: conv2d([[1.0]], t((4, 2, 3, 3))), TypeError,
         r"conv2d: argument 'input' must be a Tensor, got list"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), stride=1.5), TypeError,
         r"conv2d: argument 'stride' must be an int, got float"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), stride=(1, 2, 3)), ValueError,
         r"conv2d: argument 'stride' must be an int or a pair of ints, got \(1, 2, 3\)"),
        (lambda: conv2d(t((2, 2, 8, 8)), t((4, 2, 3, 3)), groups=0), ValueError,
         r"conv2d: argument 'groups' must be positive, got 0"),
        (lambda: conv_transpose2d(t((2, 3, 4, 4)), t((4, 2, 3, 3))), ValueError,
         r"conv_transpose2d: input has 3 channels but weight \(4, 2, 3, 3\) expects 4"),
        (lambda: conv_transpose2d(t((2, 3, 4, 4)), t((3, 2, 3, 3)), groups=2), ValueError,
         r"conv_transpose2d: groups=2 must divide the input channels \(weight.shape\[0\]\), got 3"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4)), t((4, 2, 3, 3)), t((2,)), groups=2), ValueError,
         r"conv_transpose2d: argument 'bias' must have shape \(4,\)"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4)), t((4, 2, 3, 3)), stride=2, output_padding=2), ValueError,
         r"conv_transpose2d: output_padding \(2, 2\) must be smaller than max\(stride, dilation\)"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4)), t((4, 2, 3, 3)), output_padding=(0, 1)), ValueError,
         r"output_padding \(0, 1\) must be smaller than max\(stride, dilation\) per axis; "
         r"got stride \(1, 1\)"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4)), t((4, 2, 3, 3)), output_padding=-1, stride=2), ValueError,
         r"conv_transpose2d: argument 'output_padding' must be non-negative"),
        (lambda: conv_transpose2d(t((2, 4, 1, 4)), t((4, 2, 3, 3)), padding=2), ValueError,
         r"conv_transpose2d: output size \(-1, 2\) is not positive: input shape \(2, 4, 1, 4\)"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4)), t((4, 2, 3, 3)), padding="same"), ValueError,
         r"conv_transpose2d: argument 'padding' must be an int or a pair of ints, got 'same'"),
        (lambda: conv_transpose2d(t((4, 4)), t((4, 2, 3, 3))), ValueError,
         r"conv_transpose2d: argument 'input' must be 4-D"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4)), t((4, 2, 3, 3), np.float32)), TypeError,
         r"conv_transpose2d: input and weight must have the same dtype"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4), np.int32), t((4, 2, 3, 3))), TypeError,
         r"conv_transpose2d: argument 'input' must be float32 or float64, got dtype int32"),
        (lambda: conv_transpose2d(t((2, 4, 4, 4)), t((4, 2, 3, 3)), dilation=0), ValueError,
         r"conv_transpose2d: argument 'dilation' must be positive"),
        (lambda: linear(t((2, 4)), t((3, 5))), ValueError,
         r"linear: input's last dimension must equal weight.shape\[1\] = 5; got input shape \(2, 4\)"),
        (lambda: linear(t((2, 5)), t((3, 5, 1))), ValueError, r"linear: argument 'weight' must be 2-D"),
        (lambda: linear(t((2, 5)), t((3, 5)), t((2,))), ValueError,
         r"linear: argument 'bias' must have shape \(3,\)"),
        (lambda: linear(t((2, 5), np.float32), t((3, 5))), TypeError,
         "linear: input and weight must have the same dtype"),
        (lambda: linear(t((2, 5), np.int64), t((3, 5))), TypeError,
         "linear: argument 'input' must be float32 or float64"),
    ],
)  # fmt: skip
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match or "groups=3 must divide"):
        call()


# --------------------------------------------------------------------------- the plain reference
@pytest.mark.parametrize(
    "xshape, wshape, kw",
    [
        ((2, 3, 7, 6), (4, 3, 3, 3), dict(stride=1, padding=1)),
        ((3, 2, 9, 8), (5, 2, 3, 2), dict(stride=2, padding=(1, 0), dilation=(1, 2))),
        ((2, 16, 10, 10), (32, 16, 3, 3), dict(stride=2, padding=1)),  # direct kernels where available
        ((2, 70, 6, 5), (2, 70, 3, 3), dict(padding=1)),  # many rows: one GEMM, flipped input gradient
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fast_conv2d_equals_the_plain_reference(xshape, wshape, kw, dtype):
    """conv2d (the planner's choice of algorithm) against conv2d_reference (unfold, product, reshape)."""
    rng = np.random.default_rng(29)
    arrays = [rng.standard_normal(s).astype(dtype) for s in (xshape, wshape, (wshape[0],))]
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-4)
    results = []
    for fn in (conv2d, C.conv2d_reference):
        x, w, b = (tinyae.tensor(a, requires_grad=True) for a in arrays)
        y = fn(x, w, b, **kw)
        gy = tinyae.tensor(np.cos(np.arange(y.size)).reshape(y.shape).astype(dtype))
        y.backward(gy)
        results.append([t.numpy() for t in (y, x.grad, w.grad, b.grad)])
    for fast, ref in zip(*results):
        np.testing.assert_allclose(fast, ref, **tol)


def test_reference_conv2d_second_derivatives_match_the_fast_path():
    rng = np.random.default_rng(30)
    x0, w0 = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3))
    results = []
    for fn in (conv2d, C.conv2d_reference):
        x, w = tinyae.tensor(x0, requires_grad=True), tinyae.tensor(w0, requires_grad=True)
        (gx,) = tinyae.grad((fn(x, w, stride=2, padding=1) ** 2).sum(), x, create_graph=True)
        (gx * gx).sum().backward()  # a gradient penalty: through Conv2dWeightGrad / Col2im
        results.append([gx.numpy(), x.grad.numpy(), w.grad.numpy()])
    for fast, ref in zip(*results):
        np.testing.assert_allclose(fast, ref, rtol=1e-10, atol=1e-10)
