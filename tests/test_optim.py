"""Tests of tinyae.optim (SGD, Adam, AdamW, RMSprop, schedulers) and tinyae.nn.utils (gradient clipping).

Every trajectory is checked against a reference written in this file from the published
update rules in plain NumPy (sharing no code with tinyae), and against PyTorch when it is
importable. The test problem has two parameters: w (2,) on a Rosenbrock valley and M (2, 3)
on a scaled quadratic:

    f(w, M) = (1 - w0)^2 + 5 (w1 - w0^2)^2 + 1/2 sum((A * M - B)^2)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinyae
from tinyae import optim
from tinyae.nn.utils import clip_grad_norm_, clip_grad_value_
from tinyae.optim.lr_scheduler import CosineAnnealingLR, ExponentialLR, StepLR
from tinyae.tensor import Tensor

STEPS = 20
W0 = np.array([-0.5, 0.8])
M0 = np.array([[0.3, -1.2, 0.7], [1.5, 0.1, -0.4]])
A = np.array([[1.0, 2.0, 0.5], [0.8, 1.5, 3.0]])
B = np.array([[0.5, -0.3, 1.0], [0.2, 0.9, -0.6]])


def f_tinyae(w: Tensor, m: Tensor, sign: float = 1.0) -> Tensor:
    # The constants go where the parameters are (a NumPy array next to a GPU tensor is an error).
    r = Tensor(A, device=m.device) * m - Tensor(B, device=m.device)
    return sign * ((1 - w[0]) ** 2 + 5 * (w[1] - w[0] ** 2) ** 2 + 0.5 * (r * r).sum())


def grad_numpy(w: np.ndarray, m: np.ndarray, sign: float = 1.0) -> list[np.ndarray]:
    """df/dw and df/dM by hand."""
    gw = np.array([-2 * (1 - w[0]) - 20 * w[0] * (w[1] - w[0] ** 2), 10 * (w[1] - w[0] ** 2)])
    gm = A * (A * m - B)
    return [sign * gw, sign * gm]


# ---------------------------------------------------------------- references
def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False, lrs=None):
    """torch.optim.SGD's documented algorithm; ``lrs``: one lr per parameter (groups)."""
    params = [W0.copy(), M0.copy()]
    bufs = [None, None]
    lrs = lrs or [lr, lr]
    sign = -1.0 if maximize else 1.0
    out = []
    for _ in range(STEPS):
        grads = grad_numpy(*params, sign)
        for i, g in enumerate(grads):
            if maximize:
                g = -g
            if weight_decay:
                g = g + weight_decay * params[i]
            if momentum:
                bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + (1 - dampening) * g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            params[i] = params[i] - lrs[i] * g
        out.append([p.copy() for p in params])
    return out


def ref_adam(
    lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled=False
):
    """Adam / AdamW as in PyTorch's documentation (eps added to sqrt(v) / sqrt(1 - b2^k))."""
    b1, b2 = betas
    params = [W0.copy(), M0.copy()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    vmax = [np.zeros_like(p) for p in params]
    sign = -1.0 if maximize else 1.0
    out = []
    for k in range(1, STEPS + 1):
        grads = grad_numpy(*params, sign)
        for i, g in enumerate(grads):
            if maximize:
                g = -g
            if decoupled:
                params[i] = params[i] * (1 - lr * weight_decay)
            elif weight_decay:
                g = g + weight_decay * params[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            second = v[i]
            if amsgrad:
                vmax[i] = np.maximum(vmax[i], v[i])
                second = vmax[i]
            denom = np.sqrt(second) / math.sqrt(1 - b2**k) + eps
            params[i] = params[i] - lr / (1 - b1**k) * m[i] / denom
        out.append([p.copy() for p in params])
    return out


def ref_rmsprop(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    params = [W0.copy(), M0.copy()]
    sq = [np.zeros_like(p) for p in params]
    ga = [np.zeros_like(p) for p in params]
    buf = [np.zeros_like(p) for p in params]
    sign = -1.0 if maximize else 1.0
    out = []
    for _ in range(STEPS):
        grads = grad_numpy(*params, sign)
        for i, g in enumerate(grads):
            if maximize:
                g = -g
            if weight_decay:
                g = g + weight_decay * params[i]
            sq[i] = alpha * sq[i] + (1 - alpha) * g * g
            if centered:
                ga[i] = alpha * ga[i] + (1 - alpha) * g
                avg = np.sqrt(sq[i] - ga[i] ** 2) + eps
            else:
                avg = np.sqrt(sq[i]) + eps
            if momentum > 0:
                buf[i] = momentum * buf[i] + g / avg
                params[i] = params[i] - lr * buf[i]
            else:
                params[i] = params[i] - lr * g / avg
        out.append([p.copy() for p in params])
    return out


# ---------------------------------------------------------------- runners
def make_params(dtype=np.float64, device="cpu") -> list[Tensor]:
    return [Tensor(W0.astype(dtype), requires_grad=True, device=device),
            Tensor(M0.astype(dtype), requires_grad=True, device=device)]  # fmt: skip


def run(opt, params, steps=STEPS, sign=1.0, sched=None) -> list[list[np.ndarray]]:
    out = []
    for _ in range(steps):
        opt.zero_grad()
        f_tinyae(*params, sign).backward()
        opt.step()
        if sched is not None:
            sched.step()
        out.append([p.numpy().copy() for p in params])
    return out


def assert_trajectories_close(ours, ref, rtol=1e-10, atol=1e-12):
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        for i, (x, y) in enumerate(zip(a, b)):
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=f"step {k + 1}, parameter {i}")


# (optimizer class, kwargs, reference function) -- every option combination we promise
CONFIGS = [
    ("SGD", dict(lr=0.01), lambda: ref_sgd(0.01)),
    ("SGD", dict(lr=0.01, momentum=0.9), lambda: ref_sgd(0.01, momentum=0.9)),
    ("SGD", dict(lr=0.01, momentum=0.9, dampening=0.3), lambda: ref_sgd(0.01, 0.9, 0.3)),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True), lambda: ref_sgd(0.01, 0.9, nesterov=True)),
    ("SGD", dict(lr=0.02, weight_decay=0.1), lambda: ref_sgd(0.02, weight_decay=0.1)),
    ("SGD", dict(lr=0.01, momentum=0.5, weight_decay=0.1, nesterov=True),
     lambda: ref_sgd(0.01, 0.5, weight_decay=0.1, nesterov=True)),
    ("SGD", dict(lr=0.01, momentum=0.9, weight_decay=0.05, maximize=True),
     lambda: ref_sgd(0.01, 0.9, weight_decay=0.05, maximize=True)),
    ("Adam", dict(lr=0.05), lambda: ref_adam(0.05)),
    ("Adam", dict(lr=0.05, weight_decay=0.1), lambda: ref_adam(0.05, weight_decay=0.1)),
    ("Adam", dict(lr=0.05, amsgrad=True), lambda: ref_adam(0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, betas=(0.5, 0.9), eps=1e-3, amsgrad=True, weight_decay=0.05),
     lambda: ref_adam(0.05, (0.5, 0.9), 1e-3, 0.05, amsgrad=True)),
    ("Adam", dict(lr=0.05, maximize=True), lambda: ref_adam(0.05, maximize=True)),
    ("AdamW", dict(lr=0.05), lambda: ref_adam(0.05, weight_decay=1e-2, decoupled=True)),
    ("AdamW", dict(lr=0.05, weight_decay=0.2, amsgrad=True),
     lambda: ref_adam(0.05, weight_decay=0.2, amsgrad=True, decoupled=True)),
    ("RMSprop", dict(lr=0.01), lambda: ref_rmsprop(0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9), lambda: ref_rmsprop(0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True), lambda: ref_rmsprop(0.01, centered=True)),
    ("RMSprop", dict(lr=0.005, alpha=0.9, eps=1e-6, centered=True, momentum=0.5, weight_decay=0.1),
     lambda: ref_rmsprop(0.005, 0.9, 1e-6, 0.1, momentum=0.5, centered=True)),
    ("RMSprop", dict(lr=0.01, maximize=True, weight_decay=0.1), lambda: ref_rmsprop(0.01, weight_decay=0.1,
                                                                                    maximize=True)),
]  # fmt: skip
CONFIG_IDS = [f"{name}-" + ",".join(f"{k}={v}" for k, v in kw.items()) for name, kw, _ in CONFIGS]


def sign_of(kwargs) -> float:
    """With maximize=True the tests maximise -f, which walks the same valley."""
    return -1.0 if kwargs.get("maximize") else 1.0


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_published_rule(config):
    name, kwargs, ref = config
    params = make_params()
    ours = run(getattr(optim, name)(params, **kwargs), params, sign=sign_of(kwargs))
    expected = ref()
    assert_trajectories_close(ours, expected)
    # The problem is not trivial: every run moves the parameters a good deal.
    assert np.abs(expected[-1][0] - W0).max() > 1e-2


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_torch(config):
    torch = pytest.importorskip("torch")
    name, kwargs, _ = config
    params = make_params()
    ours = run(getattr(optim, name)(params, **kwargs), params, sign=sign_of(kwargs))
    tw, tm = torch.tensor(W0, requires_grad=True), torch.tensor(M0, requires_grad=True)
    topt = getattr(torch.optim, name)([tw, tm], **kwargs)
    ta, tb = torch.tensor(A), torch.tensor(B)
    theirs = []
    for _ in range(STEPS):
        topt.zero_grad()
        r = ta * tm - tb
        (
            sign_of(kwargs) * ((1 - tw[0]) ** 2 + 5 * (tw[1] - tw[0] ** 2) ** 2 + 0.5 * (r * r).sum())
        ).backward()
        topt.step()
        theirs.append([tw.detach().numpy().copy(), tm.detach().numpy().copy()])
    assert_trajectories_close(ours, theirs)


def test_defaults_are_pytorch_defaults():
    p = make_params()
    assert optim.SGD(p).defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                                         nesterov=False, maximize=False)  # fmt: skip
    adam = optim.Adam(p).defaults
    assert (adam["lr"], adam["betas"], adam["eps"], adam["weight_decay"], adam["amsgrad"]) == (
        1e-3, (0.9, 0.999), 1e-8, 0.0, False)  # fmt: skip
    adamw = optim.AdamW(p).defaults
    assert (adamw["weight_decay"], adamw["decoupled_weight_decay"]) == (1e-2, True)
    rms = optim.RMSprop(p).defaults
    assert (rms["lr"], rms["alpha"], rms["eps"], rms["weight_decay"], rms["momentum"], rms["centered"]) == (
        1e-2, 0.99, 1e-8, 0.0, 0.0, False)  # fmt: skip


def test_param_groups_with_their_own_lr_and_add_param_group():
    w, m = make_params()
    opt = optim.SGD([{"params": [w]}, {"params": m, "lr": 0.002}], lr=0.01, momentum=0.9)
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["lr"] == 0.002
    assert_trajectories_close(run(opt, [w, m]), ref_sgd(None, 0.9, lrs=[0.01, 0.002]))

    w, m = make_params()
    opt = optim.SGD([w], lr=0.01, momentum=0.9)
    opt.add_param_group({"params": [m], "lr": 0.002})
    assert_trajectories_close(run(opt, [w, m]), ref_sgd(None, 0.9, lrs=[0.01, 0.002]))


# ----------------------------------------------------------- update hygiene
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_in_place_update_shared_grad_untouched_and_none_grads_skipped(config):
    name, kwargs, _ = config
    a, b, c = (Tensor(np.array([0.5, -1.0, 2.0]), requires_grad=True) for _ in range(3))
    data_a = a.data
    shared = Tensor(np.array([0.3, -0.2, 0.1]))
    a.grad = b.grad = shared  # one gradient array for two leaves
    before_c = c.data.copy()
    opt = getattr(optim, name)([a, b, c], **kwargs)
    for _ in range(3):
        opt.step()
    np.testing.assert_array_equal(shared.data, [0.3, -0.2, 0.1])
    assert a.data is data_a  # updated in place: whoever holds the array sees the change
    np.testing.assert_array_equal(a.data, b.data)  # same gradient, same update
    assert not np.array_equal(a.data, [0.5, -1.0, 2.0])
    np.testing.assert_array_equal(c.data, before_c)  # grad None: untouched, no state
    assert c not in opt.state


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_float32_parameters_stay_float32_and_match_float64(name):
    kwargs = dict(lr=0.01) if name != "SGD" else dict(lr=0.01, momentum=0.9, nesterov=True)
    p32, p64 = make_params(np.float32), make_params()
    ours32 = run(getattr(optim, name)(p32, **kwargs), p32)
    ours64 = run(getattr(optim, name)(p64, **kwargs), p64)
    assert all(p.dtype == np.float32 for p in p32)
    assert all(v.dtype == np.float32 for s in getattr(optim, name)(p32, **kwargs).state.values()
               for v in s.values() if hasattr(v, "dtype"))  # fmt: skip
    assert_trajectories_close(ours32, ours64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_on_device_matches_cpu(device, name):
    kwargs = dict(lr=0.01, momentum=0.9, weight_decay=0.1) if name != "Adam" else dict(lr=0.05, amsgrad=True)
    cpu, dev = make_params(np.float32), make_params(np.float32, device)
    ours_cpu = run(getattr(optim, name)(cpu, **kwargs), cpu)
    opt = getattr(optim, name)(dev, **kwargs)
    ours_dev = run(opt, dev)
    assert all(p.device == dev[0].device for p in dev)
    assert_trajectories_close(ours_dev, ours_cpu, rtol=1e-5, atol=1e-6)


def test_zero_grad_set_to_none_or_fresh_zeros():
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    shared = Tensor(np.array([1.0, 2.0, 3.0]))
    a.grad = b.grad = shared
    opt = optim.SGD([a, b], lr=0.1)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad.data, np.zeros(3))
    assert a.grad is not shared and a.grad.data is not b.grad.data
    np.testing.assert_array_equal(shared.data, [1.0, 2.0, 3.0])  # not zeroed in place
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_closure_is_evaluated_with_grad_and_its_loss_returned():
    w, m = make_params()
    opt = optim.SGD([w, m], lr=0.01)

    def closure():
        opt.zero_grad()
        loss = f_tinyae(w, m)
        loss.backward()
        return loss

    with tinyae.no_grad():
        loss = opt.step(closure)
    np.testing.assert_allclose(loss.item(), f_tinyae(Tensor(W0), Tensor(M0)).item())
    assert_trajectories_close([[w.numpy(), m.numpy()]], ref_sgd(0.01)[:1])


# -------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: optim.SGD(p, lr=-0.1), "lr=-0.1"),
        (lambda p: optim.SGD(p, momentum=-0.5), "momentum=-0.5"),
        (lambda p: optim.SGD(p, weight_decay=-1), "weight_decay=-1"),
        (lambda p: optim.SGD(p, nesterov=True), "nesterov=True requires momentum > 0"),
        (lambda p: optim.SGD(p, momentum=0.9, dampening=0.1, nesterov=True), "dampening"),
        (lambda p: optim.Adam(p, lr=-1e-3), "lr=-0.001"),
        (lambda p: optim.Adam(p, betas=(1.0, 0.999)), r"betas\[0\]=1.0"),
        (lambda p: optim.Adam(p, betas=(0.9, -0.1)), r"betas\[1\]=-0.1"),
        (lambda p: optim.Adam(p, betas=(0.9,)), "betas must be a pair"),
        (lambda p: optim.AdamW(p, eps=-1e-8), "eps="),
        (lambda p: optim.RMSprop(p, alpha=-0.1), "alpha=-0.1"),
        (lambda p: optim.RMSprop(p, momentum=-0.1), "momentum=-0.1"),
        (lambda p: optim.SGD([], lr=0.1), "empty parameter list"),
        (lambda p: optim.SGD([p[0], p[0]], lr=0.1), "more than one parameter group"),
        (lambda p: optim.SGD([{"params": p[:1]}, {"params": p}], lr=0.1), "more than one parameter group"),
        (lambda p: optim.SGD([p[0] * 2], lr=0.1), "non-leaf"),
    ],
)
def test_bad_hyperparameters_raise_value_error_naming_them(make, match):
    with pytest.raises(ValueError, match=match):
        make(make_params())


def test_bad_params_argument_types():
    w, m = make_params()
    with pytest.raises(TypeError, match="iterable of Tensors"):
        optim.SGD(w, lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        optim.Adam([w, np.zeros(3)])
    opt = optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="lr=-1"):
        opt.add_param_group({"params": [m], "lr": -1})
    assert len(opt.param_groups) == 1


# -------------------------------------------------------------- state dicts
def test_state_dict_layout_and_snapshot():
    w, m = make_params()
    opt = optim.Adam([{"params": [w]}, {"params": [m], "lr": 0.01}], lr=0.05, amsgrad=True)
    run(opt, [w, m], steps=3)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.01 and sd["param_groups"][0]["betas"] == (0.9, 0.999)
    assert set(sd["state"]) == {0, 1}
    assert set(sd["state"][1]) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert sd["state"][1]["step"] == 3 and sd["state"][1]["exp_avg"].shape == (2, 3)
    frozen = sd["state"][0]["exp_avg"].copy()
    run(opt, [w, m], steps=2)
    np.testing.assert_array_equal(sd["state"][0]["exp_avg"], frozen)  # a snapshot, not a view


@pytest.mark.parametrize("via_disk", [False, True], ids=["in_memory", "tinyae.save"])
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip_continues_the_same_trajectory(config, via_disk, tmp_path):
    name, kwargs, _ = config
    sign = sign_of(kwargs)
    params = make_params()
    opt = getattr(optim, name)(params, **kwargs)
    sched = ExponentialLR(opt, gamma=0.95)
    uninterrupted = run(opt, params, sign=sign, sched=sched)

    params = make_params()
    opt = getattr(optim, name)(params, **kwargs)
    sched = ExponentialLR(opt, gamma=0.95)
    first = run(opt, params, steps=7, sign=sign, sched=sched)
    checkpoint = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "params": [p.data.copy() for p in params]}  # fmt: skip
    if via_disk:
        tinyae.save(checkpoint, tmp_path / "ckpt.npz")
        checkpoint = tinyae.load(tmp_path / "ckpt.npz")
    del opt, sched, params

    params = [Tensor(a.copy(), requires_grad=True) for a in checkpoint["params"]]
    opt = getattr(optim, name)(params, lr=123.0)  # wrong on purpose: the state dict restores it
    sched = ExponentialLR(opt, gamma=0.5)
    opt.load_state_dict(checkpoint["optimizer"])
    sched.load_state_dict(checkpoint["scheduler"])
    resumed = first + run(opt, params, steps=STEPS - 7, sign=sign, sched=sched)
    for k, (a, b) in enumerate(zip(resumed, uninterrupted)):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y, err_msg=f"step {k + 1}")  # bit for bit


def test_load_state_dict_rejects_mismatches_and_changes_nothing():
    w, m = make_params()
    opt = optim.Adam([w, m], lr=0.05)
    run(opt, [w, m], steps=2)
    good = opt.state_dict()

    other = optim.Adam([{"params": [w]}, {"params": [m]}], lr=0.05)
    with pytest.raises(ValueError, match="2 parameter groups, this optimizer has 1|1 parameter groups"):
        opt.load_state_dict(other.state_dict())
    small = optim.Adam([w], lr=0.05)
    with pytest.raises(ValueError, match="group 0 has 1 parameters in the state dict but 2"):
        opt.load_state_dict(small.state_dict())

    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros(5)
    bad["param_groups"][0]["lr"] = 0.5
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 1 has shape \(5,\).*\(2, 3\)"):
        opt.load_state_dict(bad)
    assert opt.param_groups[0]["lr"] == 0.05  # unchanged by the failed load
    np.testing.assert_array_equal(opt.state[m]["exp_avg"], good["state"][1]["exp_avg"])

    bad = opt.state_dict()
    bad["param_groups"][0]["betas"] = (1.5, 0.9)
    with pytest.raises(ValueError, match="betas"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match="'state' and 'param_groups'"):
        opt.load_state_dict({"state": {}})


def test_load_state_dict_casts_to_parameter_dtype():
    p64 = make_params()
    opt64 = optim.RMSprop(p64, lr=0.01, momentum=0.9, centered=True)
    run(opt64, p64, steps=2)
    p32 = make_params(np.float32)
    opt32 = optim.RMSprop(p32, lr=0.01)
    opt32.load_state_dict(opt64.state_dict())
    assert opt32.param_groups[0]["centered"] is True
    assert all(v.dtype == np.float32 for s in opt32.state.values() for v in s.values() if hasattr(v, "dtype"))
    run(opt32, p32, steps=2)  # continues without error


# -------------------------------------------------------------- schedulers
def lr_sequence(sched_cls, steps=30, lrs=(0.1, 0.02), **kwargs):
    w, m = make_params()
    opt = optim.SGD([{"params": [w], "lr": lrs[0]}, {"params": [m], "lr": lrs[1]}])
    sched = sched_cls(opt, **kwargs)
    seq = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()
        sched.step()
        seq.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == seq[-1]
    return np.array(seq)  # (steps + 1, groups)


SCHEDULES = [
    (StepLR, dict(step_size=4, gamma=0.5), lambda t, lr0: lr0 * 0.5 ** (t // 4)),
    (StepLR, dict(step_size=1), lambda t, lr0: lr0 * 0.1**t),
    (ExponentialLR, dict(gamma=0.9), lambda t, lr0: lr0 * 0.9**t),
    (CosineAnnealingLR, dict(T_max=10), lambda t, lr0: lr0 * (1 + math.cos(math.pi * t / 10)) / 2),
    (CosineAnnealingLR, dict(T_max=7, eta_min=0.001),
     lambda t, lr0: 0.001 + (lr0 - 0.001) * (1 + math.cos(math.pi * t / 7)) / 2),
]  # fmt: skip
SCHEDULE_IDS = [f"{cls.__name__}-{kw}" for cls, kw, _ in SCHEDULES]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=SCHEDULE_IDS)
def test_scheduler_follows_closed_form(schedule):
    cls, kwargs, closed = schedule
    seq = lr_sequence(cls, **kwargs)
    expected = np.array([[closed(t, lr0) for lr0 in (0.1, 0.02)] for t in range(31)])
    np.testing.assert_allclose(seq, expected, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=SCHEDULE_IDS)
def test_scheduler_matches_torch(schedule):
    torch = pytest.importorskip("torch")
    cls, kwargs, _ = schedule
    ours = lr_sequence(cls, **kwargs)
    w = torch.zeros(1, requires_grad=True)
    m = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([{"params": [w], "lr": 0.1}, {"params": [m], "lr": 0.02}])
    tsched = getattr(torch.optim.lr_scheduler, cls.__name__)(topt, **kwargs)
    theirs = [tsched.get_last_lr()]
    for _ in range(30):
        topt.step()
        tsched.step()
        theirs.append(tsched.get_last_lr())
    np.testing.assert_allclose(ours, np.array(theirs), rtol=1e-13, atol=1e-16)


def test_scheduled_lr_is_used_by_the_optimizer():
    w, m = make_params()
    opt = optim.SGD([w, m], lr=0.02)
    sched = StepLR(opt, step_size=1, gamma=0.8)
    ours = run(opt, [w, m], steps=5, sched=sched)
    # Reference: plain gradient descent with lr_k = 0.02 * 0.8^k at step k = 0, 1, ...
    params = [W0.copy(), M0.copy()]
    for k in range(5):
        grads = grad_numpy(*params)
        params = [p - 0.02 * 0.8**k * g for p, g in zip(params, grads)]
    assert_trajectories_close(ours[-1:], [params])


def test_scheduler_state_dict_round_trip_and_validation(tmp_path):
    w, m = make_params()
    opt = optim.SGD([w, m], lr=0.1)
    sched = CosineAnnealingLR(opt, T_max=8, eta_min=0.01)
    for _ in range(3):
        opt.step()
        sched.step()
    tinyae.save(sched.state_dict(), tmp_path / "sched.npz")
    expected = []
    for _ in range(10):
        sched.step()
        expected.append(sched.get_last_lr())

    opt2 = optim.SGD([w, m], lr=0.1)
    sched2 = CosineAnnealingLR(opt2, T_max=1)
    sched2.load_state_dict(tinyae.load(tmp_path / "sched.npz"))
    assert sched2.T_max == 8 and sched2.last_epoch == 3
    for group in opt2.param_groups:
        group["lr"] = sched2.get_last_lr()[0]  # the optimizer's lr comes from its own state dict
    got = []
    for _ in range(10):
        sched2.step()
        got.append(sched2.get_last_lr())
    np.testing.assert_array_equal(np.array(got), np.array(expected))

    with pytest.raises(ValueError, match="step_size must be a positive integer"):
        StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="T_max must be a positive integer"):
        CosineAnnealingLR(opt, T_max=2.5)
    with pytest.raises(TypeError, match="expected a tinyae Optimizer"):
        StepLR(object(), step_size=2)
    with pytest.raises(KeyError, match="initial_lr"):
        ExponentialLR(optim.SGD([w], lr=0.1), gamma=0.9, last_epoch=5)


def test_chained_schedulers_multiply():
    w, m = make_params()
    opt = optim.SGD([w, m], lr=1.0)
    s1, s2 = ExponentialLR(opt, gamma=0.9), StepLR(opt, step_size=3, gamma=0.5)
    for t in range(1, 10):
        opt.step()
        s1.step()
        s2.step()
        np.testing.assert_allclose(opt.param_groups[0]["lr"], 0.9**t * 0.5 ** (t // 3), rtol=1e-12)


# ------------------------------------------------------------ clipping
def ref_total_norm(grads, p):
    flat = np.concatenate([g.ravel() for g in grads])
    return np.abs(flat).max() if math.isinf(p) else (np.abs(flat) ** p).sum() ** (1 / p)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e3])
def test_clip_grad_norm_matches_numpy_reference(norm_type, max_norm):
    rng = np.random.default_rng(4)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5), rng.standard_normal(())]
    params = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = Tensor(g.copy())
    frozen = Tensor(np.zeros(2), requires_grad=True)  # no grad: ignored
    total = clip_grad_norm_([*params, frozen], max_norm, norm_type)
    expected = ref_total_norm(grads, norm_type)
    np.testing.assert_allclose(total.item(), expected, rtol=1e-12)
    assert total.dtype == np.float64
    coef = min(1.0, max_norm / (expected + 1e-6))
    for p, g in zip(params, grads):
        np.testing.assert_allclose(p.grad.numpy(), g * coef, rtol=1e-12)
    if max_norm < expected:
        np.testing.assert_allclose(ref_total_norm([p.grad.numpy() for p in params], norm_type), max_norm,
                                   rtol=1e-5)  # fmt: skip
    assert frozen.grad is None


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    grads = [rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(6).astype(np.float32)]
    for norm_type in (2.0, 1.0, math.inf):
        ours = [Tensor(np.zeros_like(g), requires_grad=True) for g in grads]
        theirs = [torch.zeros(g.shape, requires_grad=True) for g in grads]
        for a, b, g in zip(ours, theirs, grads):
            a.grad, b.grad = Tensor(g.copy()), torch.tensor(g)
        n1 = clip_grad_norm_(ours, 0.7, norm_type)
        n2 = torch.nn.utils.clip_grad_norm_(theirs, 0.7, norm_type)
        np.testing.assert_allclose(n1.item(), n2.item(), rtol=1e-6)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6)


def test_clip_grad_never_scales_a_shared_gradient_in_place():
    a, b = Tensor(np.zeros(3), requires_grad=True), Tensor(np.zeros(3), requires_grad=True)
    shared = Tensor(np.array([3.0, 4.0, 0.0]))
    a.grad = shared
    b.grad = Tensor(np.zeros(3))
    total = clip_grad_norm_(a, max_norm=1.0)
    assert total.item() == 5.0
    np.testing.assert_array_equal(shared.data, [3.0, 4.0, 0.0])
    np.testing.assert_allclose(a.grad.numpy(), np.array([3.0, 4.0, 0.0]) / (5.0 + 1e-6))
    a.grad = shared
    clip_grad_value_([a, b], 3.5)
    np.testing.assert_array_equal(a.grad.numpy(), [3.0, 3.5, 0.0])
    np.testing.assert_array_equal(shared.data, [3.0, 4.0, 0.0])


def test_clip_grad_norm_nonfinite_and_empty():
    a = Tensor(np.zeros(2), requires_grad=True)
    assert clip_grad_norm_([a], 1.0).item() == 0.0  # no gradients at all
    a.grad = Tensor(np.array([np.inf, 1.0]))
    with pytest.raises(RuntimeError, match="total norm"):
        clip_grad_norm_([a], 1.0, error_if_nonfinite=True)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_([a], 1.0, norm_type=0)


# ------------------------------------------------------- hot loop and models
@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_steady_state_step_allocates_no_parameter_sized_arrays(config):
    import tracemalloc

    name, kwargs, _ = config
    p = Tensor(np.random.default_rng(0).standard_normal((256, 256)), requires_grad=True)  # 512 KiB
    p.grad = Tensor(np.random.default_rng(1).standard_normal((256, 256)))
    opt = getattr(optim, name)([p], **kwargs)
    opt.step()
    opt.step()  # state and workspace exist from here on
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"{name} allocated {peak} bytes in one step"


def test_training_a_small_model_matches_torch():
    """Module parameters, MSE loss, Adam and StepLR together, against the same model in PyTorch."""
    torch = pytest.importorskip("torch")
    import tinyae.nn as nn

    tinyae.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 6), nn.Sigmoid()).double()
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 6),
                                 torch.nn.Sigmoid()).double()  # fmt: skip
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    x = np.random.default_rng(2).uniform(0, 1, (8, 6))
    opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=0.01)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01, weight_decay=0.01)
    sched, tsched = StepLR(opt, 3, 0.5), torch.optim.lr_scheduler.StepLR(topt, 3, 0.5)
    for _ in range(10):
        opt.zero_grad()
        loss = tinyae.nn.losses.mse_loss(model(Tensor(x)), Tensor(x))
        loss.backward()
        opt.step()
        sched.step()
        topt.zero_grad()
        tloss = torch.nn.functional.mse_loss(tmodel(torch.tensor(x)), torch.tensor(x))
        tloss.backward()
        topt.step()
        tsched.step()
        np.testing.assert_allclose(loss.item(), tloss.item(), rtol=1e-10)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value, tmodel.state_dict()[name].numpy(), rtol=1e-9, atol=1e-12)
