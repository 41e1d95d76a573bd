"""Convolution and transposed convolution, with PyTorch's semantics.

Notation (used in every docstring and shape comment of this module):

=============  ===============================================================
N              batch size
C, C_out       input and output channels;  G = groups, Cg = C / G, Cog = C_out / G
H, W           input height and width
KH, KW         kernel height and width
SH, SW         stride
PH, PW         zero padding added on each side
DH, DW         dilation (spacing between kernel taps)
OH, OW         output size of a convolution: ``OH = (H + 2*PH - DH*(KH-1) - 1) // SH + 1``
P              OH*OW, pixels of one output plane
K              C*KH*KW, rows of the column matrix
=============  ===============================================================

Weight layouts are PyTorch's: conv2d ``(C_out, Cg, KH, KW)``, conv_transpose2d ``(C, Cog, KH, KW)``.

**Convolution as one matrix product.** ``im2col`` copies every KH x KW window of x into a column
of ``col`` (C, KH, KW, N, OH, OW), a (K, N*P) matrix, so that::

    y = W @ col               (C_out, K) @ (K, N*P)  ->  (C_out, N*P), then reshaped to NCHW

:func:`conv2d_reference` below is exactly that, in a few lines of Tensor ops.

**The three gradients of y = conv2d(x, W)** for an upstream gradient gy::

    dL/dW = gy @ col^T                                 the weight gradient (``Conv2dWeightGrad``)
    dL/dcol = W^T @ gy;  dL/dx = col2im(dL/dcol)       =  conv_transpose2d(gy, W)
    dL/db = sum of gy over (N, OH, OW)                 (``ChannelSum``)

``conv_transpose2d`` is *defined* as that input gradient, ``y = col2im(W^T @ x)``, so its own
input gradient is ``conv2d(gy, W)`` and its weight gradient ``Conv2dWeightGrad(gy, x)``. Each
``backward`` below is written with these ops, so a gradient can be differentiated again (double
backward, e.g. a gradient penalty through a convolutional critic).

**How it is computed** is not this module's business: every forward, and both gradients of a
layer at once, are one call into :mod:`tinyae.kernels.conv_plan`, which picks direct kernels or
im2col + GEMM, chunks, threads and buffers. Nothing it chooses changes a result beyond rounding.
"""

from __future__ import annotations

from typing import Any

from tinyae.autograd import Function
from tinyae.kernels import conv_plan, numpy_kernels
from tinyae.kernels.conv_plan import get_workspace_limit, set_workspace_limit
from tinyae.kernels.geometry import Geometry, pair_arg
from tinyae.nn import _conv_args as args
from tinyae.ops.arithmetic import matmul
from tinyae.ops.index import getitem
from tinyae.ops.shape import broadcast_to, pad, permute, reshape, squeeze, unsqueeze
from tinyae.tensor import Tensor

__all__ = [
    "conv2d",
    "conv_transpose2d",
    "conv2d_reference",
    "set_workspace_limit",
    "get_workspace_limit",
    "Conv2dFunction",
    "ConvTranspose2dFunction",
    "Conv2dWeightGrad",
    "ChannelSum",
    "Im2col",
    "Col2im",
]


# ------------------------------------------------------------------ the idea, in plain code
class Im2col(Function):
    """col (C, KH, KW, N, OH, OW) = every window of x (N, C, H, W), with the NumPy kernel (the spec).

    Linear, so its backward is its adjoint: ``col2im``, which sums each column back into its window.
    """

    def __init__(self, geom: Geometry) -> None:
        self.geom = geom

    def forward(self, x):
        return numpy_kernels.im2col(x, self.geom)

    def backward(self, gcol):
        return Col2im(self.geom, self.inputs[0].shape[2:])(gcol)


class Col2im(Function):
    """x (N, C, H, W) = the columns folded back, overlapping windows summed; the adjoint of im2col."""

    def __init__(self, geom: Geometry, hw: tuple[int, int]) -> None:
        self.geom, self.hw = geom, hw

    def forward(self, col):
        return numpy_kernels.col2im(col, self.hw, self.geom)

    def backward(self, gx):
        return Im2col(self.geom)(gx)


def conv2d_reference(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> Tensor:
    """conv2d (groups=1) as unfold, one matrix product, reshape: the idea, and the spec that the
    fast :func:`conv2d` is tested against. Differentiable twice, like the ops it is made of."""
    n, c, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    geom = Geometry((kh, kw), stride, padding, dilation)
    oh, ow = geom.out_size(h, w)
    col = reshape(Im2col(geom)(x), (c * kh * kw, n * oh * ow))  # (K, N*P)
    y = matmul(reshape(weight, (c_out, c * kh * kw)), col)  # (C_out, K) @ (K, N*P)
    y = permute(reshape(y, (c_out, n, oh, ow)), 1, 0, 2, 3)  # (N, C_out, OH, OW)
    return y if bias is None else y + reshape(bias, (1, c_out, 1, 1))


# ------------------------------------------------------------------ the Functions
class Conv2dFunction(Function):
    """y = conv2d(x, W) + b.

    gx = conv_transpose2d(gy, W),  gW = Conv2dWeightGrad(x, gy),  gb = ChannelSum(gy).
    """

    def __init__(self, geom: Geometry) -> None:
        self.geom = geom

    def forward(self, x, w, b=None):
        need_x, need_w = self.needs_input_grad[:2]
        self.save_for_backward(x if need_w else None, w if need_x else None)  # x for gW, W for gx
        # The planner may also hand back x's columns, for the weight gradient to reuse.
        y, self.col = conv_plan.conv2d(x, w, b, self.geom, keep_columns=need_w)
        return y

    def backward(self, gy):
        x, w = self.saved_tensors
        need, x_shape = self.needs_input_grad, self.inputs[0].shape
        gx = ConvTranspose2dFunction(self.geom, x_shape[2:])(gy, w) if need[0] else None
        gw = Conv2dWeightGrad(self.geom, col=self.col)(x, gy) if need[1] else None
        gb = ChannelSum()(gy) if len(need) == 3 and need[2] else None
        self.col = None
        return gx, gw, gb

    def backward_arrays(self, gy):  # the same rule, both gradients sharing their work
        x, w = self.saved_tensors  # x is None when gW is not needed, w when gx is not
        shapes = self.inputs[0].shape, self.inputs[1].shape
        gx, gw = conv_plan.conv2d_backward(gy, _array(x), _array(w), *shapes, self.geom, col=self.col)
        need = self.needs_input_grad
        gb = conv_plan.channel_sum(gy) if len(need) == 3 and need[2] else None
        self.col = None
        return gx, gw, gb


class ConvTranspose2dFunction(Function):
    """y = col2im(W^T @ x) + b, output size ``out_hw``;  gx = conv2d(gy, W), gW = Conv2dWeightGrad(gy, x).

    x (N, C, H, W) may be smaller than the conv size of ``out_hw`` (output_padding >= stride, possible
    with dilation > stride); the extra rows and columns are zeros, and get no gradient.
    """

    def __init__(self, geom: Geometry, out_hw: tuple[int, int]) -> None:
        self.geom, self.out_hw = geom, (int(out_hw[0]), int(out_hw[1]))

    def forward(self, x, w, b=None):
        need_x, need_w = self.needs_input_grad[:2]
        self.save_for_backward(x if need_w else None, w if need_x else None)  # x for gW, W for gx
        return conv_plan.conv_transpose2d(x, w, b, self.geom, self.out_hw)

    def backward(self, gy):
        x, w = self.saved_tensors
        need, x_shape = self.needs_input_grad, self.inputs[0].shape
        gx = _crop(Conv2dFunction(self.geom)(gy, w), x_shape[2:]) if need[0] else None
        # <gy, col2im(W^T x)> = <im2col(gy), W^T x>: the conv weight gradient with gy as the image.
        gw = Conv2dWeightGrad(self.geom)(gy, x) if need[1] else None
        gb = ChannelSum()(gy) if len(need) == 3 and need[2] else None
        return gx, gw, gb

    def backward_arrays(self, gy):  # the same rule, gy unfolded once for both gradients
        x, w = self.saved_tensors  # x is None when gW is not needed, w when gx is not
        shapes = self.inputs[0].shape, self.inputs[1].shape
        gx, gw = conv_plan.conv_transpose2d_backward(gy, _array(x), _array(w), *shapes, self.geom)
        need = self.needs_input_grad
        gb = conv_plan.channel_sum(gy) if len(need) == 3 and need[2] else None
        return gx, gw, gb


class Conv2dWeightGrad(Function):
    """gW (C_gout, C_img/G, KH, KW) = gout @ im2col(img)^T per group: a conv's weight gradient.

    Bilinear in (img, gout), so its backward is again a pair of convolutions:
    ``d/dimg = conv_transpose2d(gout, ggW)`` and ``d/dgout = conv2d(img, ggW)``. ``col``: img's
    columns, if the forward conv kept them (used once, then dropped).
    """

    def __init__(self, geom: Geometry, col: Any = None) -> None:
        self.geom, self.col = geom, col

    def forward(self, img, gout):
        need_img, need_gout = self.needs_input_grad
        self.save_for_backward(img if need_gout else None, gout if need_img else None)
        gw = conv_plan.conv2d_weight_grad(img, gout, self.geom, col=self.col)
        self.col = None
        return gw

    def backward(self, ggw):
        img, gout = self.saved_tensors
        need, img_shape, gout_shape = self.needs_input_grad, self.inputs[0].shape, self.inputs[1].shape
        g_img = ConvTranspose2dFunction(self.geom, img_shape[2:])(gout, ggw) if need[0] else None
        g_gout = _crop(Conv2dFunction(self.geom)(img, ggw), gout_shape[2:]) if need[1] else None
        return g_img, g_gout


class ChannelSum(Function):
    """gb (C,) = gy (N, C, OH, OW) summed over (N, OH, OW): the bias gradient. Linear in gy, so its
    backward broadcasts back."""

    def forward(self, gy):
        return conv_plan.channel_sum(gy)

    def backward(self, ggb):
        return broadcast_to(reshape(ggb, (1, -1, 1, 1)), self.inputs[0].shape)


def _array(t: Tensor | None) -> Any:
    return None if t is None else t.data


def _crop(y: Tensor, out_hw: Any) -> Tensor:
    """y[:, :, :OH, :OW]: a conv's natural output cut to a transposed conv's input size (smaller
    only when output_padding >= stride; those rows get no gradient)."""
    if tuple(out_hw) == y.shape[2:]:
        return y
    return getitem(y, (slice(None), slice(None), slice(0, out_hw[0]), slice(0, out_hw[1])))


# ------------------------------------------------------------------ public functional API
def conv2d(
    input: Tensor,  # noqa: A002 - PyTorch's name
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch) of x (N, C, H, W) with W (C_out, Cg, KH, KW).

    ``y[n, o, i, j] = b[o] + sum_{c, u, v} W[o, c, u, v] * x_pad[n, g*Cg + c, i*SH + u*DH, j*SW + v*DW]``
    where g is the group of output channel o. Output (N, C_out, OH, OW). ``padding`` is an int,
    a pair, ``"valid"`` (no padding) or ``"same"`` (output size = input size; stride must be 1;
    when the total padding DH*(KH-1) is odd the extra row/column goes at the bottom/right).
    An unbatched (C, H, W) input gives a (C_out, OH, OW) output.
    """
    op = "conv2d"
    x, weight, bias = args.tensors(op, input, weight, bias)
    unbatched = args.check_input(op, x)
    x = unsqueeze(x, 0) if unbatched else x
    args.check_weight(op, weight, "(C_out, C_in/groups, KH, KW)")
    c_out, cg, kh, kw = weight.shape
    args.check_bias(op, bias, c_out, weight)
    stride, dilation = pair_arg(op, "stride", stride, 1), pair_arg(op, "dilation", dilation, 1)
    groups = args.check_groups(op, groups, {"output channels (weight.shape[0])": c_out})
    if x.shape[1] != cg * groups:
        raise ValueError(
            f"{op}: input has {x.shape[1]} channels but weight {weight.shape} with groups={groups} "
            f"expects {cg * groups} (= weight.shape[1] * groups); input shape {x.shape}"
        )
    padding, extra = args.conv_padding(op, padding, stride, dilation, (kh, kw))
    if extra != (0, 0):  # an odd 'same' padding: the extra zeros go at the bottom/right
        x = pad(x, (0, extra[1], 0, extra[0]))
    geom = Geometry((kh, kw), stride, padding, dilation, groups)
    oh, ow = geom.out_size(x.shape[2], x.shape[3])
    if oh < 1 or ow < 1:
        raise ValueError(
            f"{op}: kernel ({kh}, {kw}) with dilation {dilation} is larger than the padded input: "
            f"input shape {x.shape}, padding {padding}"
        )
    y = Conv2dFunction(geom)(*((x, weight) if bias is None else (x, weight, bias)))
    return squeeze(y, 0) if unbatched else y


def conv_transpose2d(
    input: Tensor,  # noqa: A002 - PyTorch's name
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    output_padding: int | tuple[int, int] = 0,
    groups: int = 1,
    dilation: int | tuple[int, int] = 1,
    *,
    output_size: Any = None,
) -> Tensor:
    """Transposed 2-D convolution of x (N, C, H, W) with W (C, Cog, KH, KW): the adjoint of conv2d.

    Output (N, G*Cog, H_out, W_out) with PyTorch's size formula::

        H_out = (H - 1)*SH - 2*PH + DH*(KH - 1) + output_padding[0] + 1

    ``output_padding`` (< max(stride, dilation)) picks among the sizes that a stride-SH conv
    maps back to H. Alternatively ``output_size=(H_out, W_out)`` (or a full (N, C, H_out, W_out)
    shape, as ``ConvTranspose2d.forward`` takes in PyTorch) picks it, and ``output_padding`` is
    then ignored. An unbatched (C, H, W) input gives a (C_out, H_out, W_out) output.
    """
    op = "conv_transpose2d"
    x, weight, bias = args.tensors(op, input, weight, bias)
    unbatched = args.check_input(op, x)
    x = unsqueeze(x, 0) if unbatched else x
    args.check_weight(op, weight, "(C_in, C_out/groups, KH, KW)")
    c_in, cog = weight.shape[:2]
    groups = args.check_groups(op, groups, {"input channels (weight.shape[0])": c_in})
    args.check_bias(op, bias, cog * groups, weight)
    stride, dilation = pair_arg(op, "stride", stride, 1), pair_arg(op, "dilation", dilation, 1)
    if isinstance(padding, str):
        raise ValueError(f"{op}: argument 'padding' must be an int or a pair of ints, got {padding!r}")
    padding = pair_arg(op, "padding", padding, 0)
    if x.shape[1] != c_in:
        raise ValueError(
            f"{op}: input has {x.shape[1]} channels but weight {weight.shape} expects {c_in} "
            f"(= weight.shape[0]); input shape {x.shape}"
        )
    size = args.transposed_output_size(
        op, x, weight, (stride, padding, dilation), output_padding, output_size, unbatched
    )
    fn = ConvTranspose2dFunction(Geometry(weight.shape[2:], stride, padding, dilation, groups), size)
    y = fn(*((x, weight) if bias is None else (x, weight, bias)))
    return squeeze(y, 0) if unbatched else y
