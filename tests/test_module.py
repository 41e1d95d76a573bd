"""Tests of tinyae.nn.module: Parameter, Module registration and traversal, state_dict /
load_state_dict, modes, devices and dtypes, repr, and the Sequential / ModuleList containers.

Where PyTorch is importable the names, orders and repr texts are compared with its own.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest

import tinyae
import tinyae.nn as nn
from tinyae.nn import Module, ModuleList, Parameter, Sequential


class Block(Module):
    """A small custom module: a parameter, a buffer, a child, a plain attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = Parameter(tinyae.ones(3))
        self.register_buffer("count", tinyae.zeros(1))
        self.lin = nn.Linear(3, 2)
        self.note = "not registered"
        self.plain = tinyae.ones(2)  # a Tensor that is not a Parameter: an ordinary attribute

    def forward(self, x: tinyae.Tensor) -> tinyae.Tensor:
        return self.lin(x * self.scale)


class Net(Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3))
        self.block = Block()
        self.head = nn.Linear(2, 1, bias=False)

    def forward(self, x: tinyae.Tensor) -> tinyae.Tensor:
        return self.head(self.block(self.encoder(x)))


NET_PARAMS = ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias", "block.scale",
              "block.lin.weight", "block.lin.bias", "head.weight"]  # fmt: skip
NET_STATE = ["encoder.0.weight", "encoder.0.bias", "encoder.2.weight", "encoder.2.bias",
             "encoder.2.running_mean", "encoder.2.running_var", "encoder.2.num_batches_tracked",
             "block.scale", "block.count", "block.lin.weight", "block.lin.bias", "head.weight"]  # fmt: skip


def torch_or_skip():
    return pytest.importorskip("torch")


# ------------------------------------------------------------------ Parameter
def test_parameter_requires_grad_shares_data_and_repr():
    t = tinyae.tensor([1.0, 2.0])
    p = Parameter(t)
    assert p.requires_grad and p.is_leaf
    assert p.data is t.data  # shares the array, as torch.nn.Parameter shares storage
    assert repr(p).startswith("Parameter containing:\ntensor([1., 2.]")
    assert "requires_grad=True" in repr(p)
    assert not Parameter(tinyae.ones(2), requires_grad=False).requires_grad
    with pytest.raises(TypeError, match="floating point"):
        Parameter(np.arange(3))


def test_parameter_repr_matches_torch():
    torch = torch_or_skip()
    ours = repr(Parameter(tinyae.tensor([0.0, 0.0])))
    theirs = repr(torch.nn.Parameter(torch.zeros(2)))
    assert ours == theirs


# ------------------------------------------------------------------ registration
def test_registration_by_assignment():
    b = Block()
    assert list(b._parameters) == ["scale"]
    assert list(b._buffers) == ["count"]
    assert list(b._modules) == ["lin"]
    assert [n for n, _ in b.named_parameters()] == ["scale", "lin.weight", "lin.bias"]
    assert [n for n, _ in b.named_buffers()] == ["count"]
    assert b.note == "not registered" and "note" not in b._parameters
    assert "plain" not in b._parameters and "plain" not in b._buffers
    assert b.scale is b._parameters["scale"]


def test_named_parameters_order_and_nesting():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == NET_PARAMS
    assert [p for p in net.parameters()] == [p for _, p in net.named_parameters()]
    assert [n for n, _ in net.named_children()] == ["encoder", "block", "head"]
    assert [n for n, _ in net.named_modules()] == [
        "", "encoder", "encoder.0", "encoder.1", "encoder.2", "block", "block.lin", "head"
    ]  # fmt: skip
    assert list(net.modules())[0] is net
    assert [n for n, _ in net.named_parameters(recurse=False)] == []
    assert [n for n, _ in net.block.named_parameters(prefix="x", recurse=False)] == ["x.scale"]


def test_named_parameters_match_torch():
    torch = torch_or_skip()
    tnn = torch.nn
    ours = Sequential(nn.Linear(4, 3), nn.ReLU(), Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
    theirs = tnn.Sequential(
        tnn.Linear(4, 3), tnn.ReLU(), tnn.Sequential(tnn.Conv2d(1, 2, 3), tnn.BatchNorm2d(2))
    )
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]


def test_reassignment_keeps_order_and_replaces():
    b = Block()
    new = Parameter(tinyae.zeros(3))
    b.scale = new
    assert b.scale is new
    assert [n for n, _ in b.named_parameters()] == ["scale", "lin.weight", "lin.bias"]
    b.lin = nn.Linear(3, 5)
    assert list(b._modules) == ["lin"] and b.lin.out_features == 5
    b.scale = None  # a parameter slot may be emptied
    assert b.scale is None and [n for n, _ in b.named_parameters()] == ["lin.weight", "lin.bias"]


def test_bad_assignments_raise():
    b = Block()
    with pytest.raises(TypeError, match="parameter 'scale'"):
        b.scale = tinyae.ones(3)  # a plain Tensor in a parameter slot
    with pytest.raises(TypeError, match="buffer 'count'"):
        b.count = np.zeros(1)
    with pytest.raises(TypeError, match="child module 'lin'"):
        b.lin = "linear"

    class Forgetful(Module):
        def __init__(self) -> None:
            self.w = Parameter(tinyae.ones(1))  # before super().__init__()

    with pytest.raises(AttributeError, match="super\\(\\).__init__\\(\\)"):
        Forgetful()
    with pytest.raises(KeyError, match="already exists"):
        b.register_buffer("scale", tinyae.ones(1))
    with pytest.raises(KeyError, match="'.'"):
        b.register_parameter("a.b", None)
    with pytest.raises(TypeError, match="Parameter"):
        b.register_parameter("w", tinyae.ones(1))


def test_attribute_errors_and_deletion():
    b = Block()
    with pytest.raises(AttributeError, match="'Block' object has no attribute 'missing'"):
        _ = b.missing
    del b.scale
    assert "scale" not in b._parameters
    del b.lin
    assert "lin" not in b._modules
    assert "count" in dir(b)


def test_shared_parameters_and_modules_counted_once():
    lin = nn.Linear(3, 3)
    seq = Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert seq.num_parameters() == 12 == nn.count_parameters(seq)
    assert len(list(seq.modules())) == 3  # seq, lin, relu
    assert list(seq.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as PyTorch


def test_buffers_non_persistent_and_none():
    m = Module()
    m.register_buffer("kept", tinyae.ones(2))
    m.register_buffer("temp", tinyae.ones(2), persistent=False)
    m.register_buffer("empty", None)
    assert [n for n, _ in m.named_buffers()] == ["kept", "temp"]
    assert list(m.state_dict()) == ["kept"]
    m.kept = tinyae.zeros(2)  # assigning a Tensor to a buffer name replaces the buffer
    assert m._buffers["kept"].numpy().sum() == 0


def test_get_submodule():
    net = Net()
    assert net.get_submodule("encoder.2") is net.encoder[2]
    assert net.get_submodule("") is net
    with pytest.raises(AttributeError, match="no submodule 'nope'"):
        net.get_submodule("encoder.nope")


def test_namespace_exports():
    import tinyae.nn.functional as F

    assert nn.functional is F and nn.init.kaiming_uniform_ and nn.utils.clip_grad_norm_
    for name in ["linear", "conv2d", "conv_transpose2d", "batch_norm", "max_pool2d", "avg_pool2d",
                 "interpolate", "dropout", "mse_loss", "l1_loss", "binary_cross_entropy",
                 "binary_cross_entropy_with_logits",
                 "cross_entropy", "nll_loss", "kl_div_normal", "relu", "leaky_relu", "sigmoid", "tanh",
                 "softplus", "softmax", "log_softmax", "pad"]:  # fmt: skip
        assert callable(getattr(F, name)), name
    for name in nn.__all__:
        assert getattr(nn, name) is not None, name


def test_forward_missing_raises():
    with pytest.raises(NotImplementedError, match='Module \\[Module\\] is missing the required "forward"'):
        Module()(tinyae.ones(1))


# ------------------------------------------------------------------ modes and grads
def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.block.train()
    assert net.block.lin.training and not net.encoder[2].training and not net.training
    assert net.train() is net and all(m.training for m in net.modules())
    with pytest.raises(TypeError, match="bool"):
        net.train("no")


def test_zero_grad_and_requires_grad_():
    net = Net()
    x = tinyae.randn(5, 4)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    assert net.encoder.requires_grad_(False) is net.encoder
    assert not any(p.requires_grad for p in net.encoder.parameters())
    assert net.num_parameters(trainable_only=True) == net.num_parameters() - (12 + 3) - (3 + 3)
    net(x).sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert net.head.weight.grad is not None


def test_apply_visits_children_first():
    net = Net()
    seen = []
    assert net.apply(lambda m: seen.append(type(m).__name__)) is net
    assert seen == ["Linear", "ReLU", "BatchNorm1d", "Sequential", "Linear", "Block", "Linear", "Net"]

    def init_linear(m: Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.weight)

    net.apply(init_linear)
    assert not net.head.weight.numpy().any() and not net.encoder[0].weight.numpy().any()


# ------------------------------------------------------------------ state_dict
def test_state_dict_names_order_and_copies():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd) == NET_STATE
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert sd["encoder.2.num_batches_tracked"].dtype == np.int64
    np.testing.assert_array_equal(sd["head.weight"], net.head.weight.numpy())
    sd["head.weight"][...] = 123.0  # a snapshot: changing it does not touch the model
    assert not (net.head.weight.numpy() == 123.0).any()
    kept = net.state_dict(keep_vars=True)
    assert kept["head.weight"] is net.head.weight


def test_state_dict_round_trip_through_save_load(tmp_path):
    tinyae.manual_seed(1)
    a = Net()
    a.train()
    a(tinyae.randn(8, 4))  # moves BatchNorm's running statistics away from their start
    b = Net()
    path = tmp_path / "net.npz"
    tinyae.save(a.state_dict(), path)
    result = b.load_state_dict(tinyae.load(path))
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert repr(result) == "<All keys matched successfully>"
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert na == nb
        np.testing.assert_array_equal(ta, tb)
        assert ta.dtype == tb.dtype
    a.eval(), b.eval()
    x = tinyae.randn(3, 4)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_keeps_identity_and_casts():
    net = nn.Linear(2, 2)
    weight, array = net.weight, net.weight.data
    net.load_state_dict({"weight": np.ones((2, 2), dtype=np.float64), "bias": tinyae.zeros(2)})
    assert net.weight is weight and net.weight.data is array  # copied in place
    assert net.weight.dtype == np.float32 and net.weight.numpy().tolist() == [[1, 1], [1, 1]]


def test_load_state_dict_strict_lists_every_problem_at_once():
    net = Net()
    before = net.state_dict()
    sd = net.state_dict()
    del sd["head.weight"], sd["block.count"]
    sd["extra.weight"] = np.zeros(3)
    sd["block.lin.weight"] = np.zeros((5, 5), dtype=np.float32)
    sd["encoder.0.bias"] = np.zeros(7, dtype=np.float32)
    with pytest.raises(nn.StateDictError) as info:
        net.load_state_dict(sd)
    msg = str(info.value)
    assert msg.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "block.count", "head.weight".' in msg
    assert 'Unexpected key(s) in state_dict: "extra.weight".' in msg
    assert "size mismatch for block.lin.weight: copying a param with shape (5, 5)" in msg
    assert "the shape in current model is (2, 3)" in msg
    assert "size mismatch for encoder.0.bias" in msg
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    for name, value in net.state_dict().items():  # nothing was changed
        np.testing.assert_array_equal(value, before[name])


def test_load_state_dict_non_strict_returns_keys():
    net = Net()
    sd = net.state_dict()
    del sd["head.weight"]
    sd["extra"] = np.zeros(1)
    sd["block.scale"] = np.full(3, 7.0, dtype=np.float32)
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["head.weight"]
    assert result.unexpected_keys == ["extra"]
    assert isinstance(result, nn.IncompatibleKeys) and result == (["head.weight"], ["extra"])
    assert net.block.scale.numpy().tolist() == [7, 7, 7]  # the matching keys were loaded
    sd["block.scale"] = np.zeros(4)
    with pytest.raises(nn.StateDictError, match="size mismatch for block.scale"):
        net.load_state_dict(sd, strict=False)  # shapes must match even when not strict
    with pytest.raises(TypeError, match="dict-like"):
        net.load_state_dict([1, 2])
    with pytest.raises(TypeError, match="'block.scale' must be an array"):
        net.load_state_dict({"block.scale": "abc"}, strict=False)


def test_load_state_dict_from_torch_model():
    torch = torch_or_skip()
    tnn = torch.nn
    theirs = tnn.Sequential(tnn.Linear(4, 3), tnn.ReLU(), tnn.BatchNorm1d(3), tnn.Linear(3, 2))
    theirs.train()
    theirs(torch.randn(6, 4))
    ours = Sequential(nn.Linear(4, 3), nn.ReLU(), nn.BatchNorm1d(3), nn.Linear(3, 2))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    theirs.eval(), ours.eval()
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(
        ours(tinyae.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=1e-6
    )


# ------------------------------------------------------------------ devices and dtypes
def test_to_cpu_returns_self_and_keeps_parameters(device):
    net = Net()
    params = list(net.parameters())
    assert net.to(device) is net
    assert list(net.parameters()) == params  # the same Parameter objects (an optimizer keeps working)
    assert all(t.device.startswith(device) for t in [*net.parameters(), *net.buffers()])
    x = tinyae.randn(4, 4, device=device)
    assert net(x).device.startswith(device)
    assert net.cpu() is net and all(p.device == "cpu" for p in net.parameters())


def test_double_and_float():
    net = Net()
    net(tinyae.randn(3, 4)).sum().backward()
    assert net.double() is net
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert all(p.grad.dtype == np.float64 for p in net.parameters())
    assert net.encoder[2].running_mean.dtype == np.float64
    assert net.encoder[2].num_batches_tracked.dtype == np.int64  # integers are not cast
    assert net(tinyae.randn(3, 4, dtype=np.float64)).dtype == np.float64
    net.to(tinyae.float32)
    assert all(p.dtype == np.float32 for p in net.parameters())
    net.float()
    with pytest.raises(TypeError, match="floating point"):
        net.to(tinyae.int64)


def test_to_bad_device_raises():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        Net().to("tpu")
    if tinyae.cuda.is_available():
        pytest.skip("a GPU is present: to('cuda') works")
    with pytest.raises(RuntimeError, match="CUDA is unavailable"):
        Net().to("cuda")


def test_deepcopy_is_independent():
    net = Net()
    twin = copy.deepcopy(net)
    assert [n for n, _ in twin.named_parameters()] == NET_PARAMS
    nn.init.zeros_(twin.head.weight)
    assert net.head.weight.numpy().any()
    assert twin.block.lin is not net.block.lin


# ------------------------------------------------------------------ repr
def test_repr_tree():
    net = Net()
    text = repr(net)
    assert text.splitlines()[:3] == [
        "Net(",
        "  (encoder): Sequential(",
        "    (0): Linear(in_features=4, out_features=3, bias=True)",
    ]
    assert "  (head): Linear(in_features=2, out_features=1, bias=False)" in text
    assert repr(Module()) == "Module()"


def test_repr_matches_torch_for_small_sequential():
    torch = torch_or_skip()
    tnn = torch.nn
    ours = Sequential(nn.Linear(784, 256), nn.ReLU(), Sequential(nn.Linear(256, 64), nn.Sigmoid()),
                      ModuleList([nn.Linear(2, 2), nn.Linear(2, 2), nn.Tanh()]))  # fmt: skip
    theirs = tnn.Sequential(tnn.Linear(784, 256), tnn.ReLU(),
                            tnn.Sequential(tnn.Linear(256, 64), tnn.Sigmoid()),
                            tnn.ModuleList([tnn.Linear(2, 2), tnn.Linear(2, 2), tnn.Tanh()]))  # fmt: skip
    assert repr(ours) == repr(theirs)
    assert repr(ModuleList()) == repr(tnn.ModuleList())
    assert repr(Sequential()) == repr(tnn.Sequential())


# ------------------------------------------------------------------ containers
def test_sequential_indexing_len_iter_and_forward():
    a, r, b = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    seq = Sequential(a, r, b)
    assert len(seq) == 3 and list(seq) == [a, r, b]
    assert seq[0] is a and seq[-1] is b
    sub = seq[1:]
    assert isinstance(sub, Sequential) and list(sub) == [r, b]
    assert list(sub._modules) == ["1", "2"]  # a slice keeps the names, as PyTorch
    x = tinyae.randn(5, 3)
    np.testing.assert_array_equal(seq(x).numpy(), b(r(a(x))).numpy())
    with pytest.raises(IndexError, match="out of range"):
        seq[3]
    with pytest.raises(TypeError, match="integers or slices"):
        seq["0"]


def test_sequential_mutation():
    seq = Sequential(nn.Linear(3, 4), nn.ReLU())
    tanh = nn.Tanh()
    assert seq.append(tanh) is seq and seq[2] is tanh and list(seq._modules) == ["0", "1", "2"]
    sig = nn.Sigmoid()
    seq[1] = sig
    assert list(seq)[1] is sig and list(seq._modules) == ["0", "1", "2"]
    del seq[0]
    assert list(seq._modules) == ["0", "1"] and seq[0] is sig  # renumbered
    seq.insert(0, nn.Identity())
    assert isinstance(seq[0], nn.Identity) and len(seq) == 3
    seq.extend([nn.ReLU()])
    assert len(seq) == 4


def test_sequential_from_ordered_dict_and_bad_children():
    seq = Sequential(OrderedDict([("fc", nn.Linear(2, 2)), ("act", nn.ReLU())]))
    assert [n for n, _ in seq.named_parameters()] == ["fc.weight", "fc.bias"]
    assert seq.fc is seq[0]
    with pytest.raises(TypeError, match="pass an instance: ReLU\\(\\)"):
        Sequential(nn.Linear(2, 2), nn.ReLU)
    with pytest.raises(TypeError, match="not a Module"):
        Sequential(lambda x: x)


def test_module_list_registers_and_indexes():
    layers = ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(layers) == 3
    assert [n for n, _ in layers.named_parameters()][:2] == ["0.weight", "0.bias"]
    holder = Module()
    holder.layers = layers
    assert holder.num_parameters() == 18
    layers.append(nn.ReLU())
    assert isinstance(layers[-1], nn.ReLU)
    assert isinstance(layers[1:], ModuleList) and len(layers[1:]) == 3
    del layers[0]
    assert list(layers._modules) == ["0", "1", "2"]
    layers.insert(1, nn.Tanh())
    assert isinstance(layers[1], nn.Tanh)
    layers += [nn.Sigmoid()]
    assert len(layers) == 5
    layers[0] = nn.Identity()
    assert isinstance(layers[0], nn.Identity)
    with pytest.raises(IndexError):
        layers[5]
    with pytest.raises(NotImplementedError):
        layers(tinyae.ones(1))
