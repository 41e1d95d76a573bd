"""A convolution by hand: im2col turns it into one matrix product.

Each output pixel of a convolution is the dot product of the kernel with one window of the image.
``im2col`` copies every window into a column of a matrix, so all the dot products become a single
matrix product, which is how tinyae (and most engines on a CPU) compute conv2d:

    col = im2col(x)                 (C*KH*KW, N*OH*OW)   one column per window
    y   = w.reshape(C_out, -1) @ col                       one row per output channel
    y   = y.reshape(C_out, N, OH, OW), with the batch axis moved to the front

Here x is one 4x4 image, w one 3x3 kernel (C = C_out = N = 1); the script prints every step and
checks the result against ``tinyae.nn.functional.conv2d``. Try ``--padding 1`` or ``--stride 2``
to see the windows change.

Run:  python examples/conv_by_hand.py [--stride S] [--padding P]      (instant)
"""

import argparse
import sys

import numpy as np

import tinyae
import tinyae.kernels
import tinyae.nn.functional as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--stride", type=int, default=1)
parser.add_argument("--padding", type=int, default=0)
parser.add_argument("--quick", action="store_true", help="accepted for uniformity; this runs instantly")
args = parser.parse_args()
s, p = args.stride, args.padding

# Small integers, so every number printed below can be checked with pencil and paper.
x = np.arange(1, 17, dtype=np.float32).reshape(1, 1, 4, 4)  # (N, C, H, W)
w = np.array([[0, 1, 0], [1, 2, 1], [0, 1, 0]], dtype=np.float32).reshape(1, 1, 3, 3)  # (C_out, C, KH, KW)
np.set_printoptions(linewidth=110, formatter={"float": lambda v: f"{v:4.0f}"})
print("image x (4x4):", x[0, 0], "", "kernel w (3x3, a small blur):", w[0, 0], "", sep="\n")

geometry = tinyae.kernels.Geometry(kernel=(3, 3), stride=s, padding=p)  # where the windows are
col = tinyae.kernels.im2col(x, geometry)  # (C, KH, KW, N, OH, OW)
c, kh, kw, n, oh, ow = col.shape
col = col.reshape(c * kh * kw, n * oh * ow)
print(f"im2col matrix ({c * kh * kw} x {n * oh * ow}): column j holds window j, its pixels read row by row:")
print(col, end="\n\n")
print("window 0 as an image (the top-left corner of x):", col[:, 0].reshape(3, 3), "", sep="\n")

flat_w = w.reshape(1, -1)  # (C_out, C*KH*KW): the kernel read row by row, matching the rows of col
prod = flat_w @ col
print("w flattened:", flat_w, "", f"w_flat @ col ({prod.shape[0]} x {prod.shape[1]}):", prod, "", sep="\n")

y_by_hand = prod.reshape(1, n, oh, ow).transpose(1, 0, 2, 3)  # (C_out, N, OH, OW) -> (N, C_out, OH, OW)
print(f"reshaped into the {oh}x{ow} output:", y_by_hand[0, 0], "", sep="\n")

y = F.conv2d(tinyae.tensor(x), tinyae.tensor(w), stride=s, padding=p).numpy()
print("F.conv2d(x, w):", y[0, 0], "", sep="\n")
if y.shape != y_by_hand.shape or not np.allclose(y, y_by_hand):
    sys.exit("im2col + matrix product does NOT match F.conv2d")
print("im2col @ kernel matches F.conv2d")
