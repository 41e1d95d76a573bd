"""Autograd by hand: backward() gives the same gradients as the chain rule worked out on paper.

A two-layer network with one output, on a batch of N inputs x (N, 3):

    z = x W1^T + b1        W1 (2, 3), b1 (2,)      two hidden units
    h = sigmoid(z)
    y = h w2^T + b2        w2 (1, 2), b2 (1,)      one output
    L = mean((y - t)^2)                            the loss, a scalar

tinyae records these ops as they run and ``L.backward()`` walks them in reverse. Below, the same
gradients are derived with the chain rule and computed in plain NumPy; the script prints both
side by side and exits with an error if they differ.

Run:  python examples/autograd_by_hand.py [--seed N]      (instant)
"""

import argparse
import sys

import numpy as np

import tinyae

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seed", type=int, default=0, help="another seed, other random numbers")
parser.add_argument("--quick", action="store_true", help="accepted for uniformity; this runs instantly")
args = parser.parse_args()

rng = tinyae.manual_seed(args.seed)
N = 4
# float64, so that both computations agree to ~1e-15 and any real mismatch stands out.
x_np, t_np = rng.standard_normal((N, 3)), rng.standard_normal((N, 1))
params_np = {
    "W1": rng.standard_normal((2, 3)),
    "b1": rng.standard_normal(2),
    "w2": rng.standard_normal((1, 2)),
    "b2": rng.standard_normal(1),
}

# --- 1. autograd: build the expression from tensors, then call backward ---------------------
params = {name: tinyae.tensor(a, requires_grad=True) for name, a in params_np.items()}
x, t = tinyae.tensor(x_np), tinyae.tensor(t_np)
z = x @ params["W1"].T + params["b1"]
h = z.sigmoid()
y = h @ params["w2"].T + params["b2"]
loss = ((y - t) ** 2).mean()
loss.backward()

# --- 2. by hand: the forward pass again, then the chain rule from the loss back ---------------
W1, b1, w2, b2 = params_np["W1"], params_np["b1"], params_np["w2"], params_np["b2"]
h_np = 1 / (1 + np.exp(-(x_np @ W1.T + b1)))
y_np = h_np @ w2.T + b2
dy = 2 * (y_np - t_np) / N  # dL/dy: the mean divides by N
dz = (dy @ w2) * h_np * (1 - h_np)  # dL/dh = dy w2, and sigmoid'(z) = h (1 - h)
by_hand = {
    "W1": dz.T @ x_np,  # z = x W1^T, so dL/dW1 = dz^T x: an outer product per input, summed
    "b1": dz.sum(axis=0),  # b1 was broadcast over the batch, so its gradient sums over it
    "w2": dy.T @ h_np,
    "b2": dy.sum(axis=0),
}

print(f"loss L = {loss.item():.6f} (autograd)   {np.mean((y_np - t_np) ** 2):.6f} (NumPy)\n")
worst = 0.0
for name, p in params.items():
    auto, hand = p.grad.numpy(), by_hand[name]
    worst = max(worst, float(np.abs(auto - hand).max()))
    print(f"dL/d{name}")
    for a_row, h_row in zip(np.atleast_2d(auto), np.atleast_2d(hand)):
        a_text, h_text = np.array2string(a_row, precision=6), np.array2string(h_row, precision=6)
        print(f"  autograd {a_text:40s} by hand {h_text}")

print(f"\nlargest difference: {worst:.2e}")
if worst > 1e-12:
    sys.exit(f"autograd and the hand-derived gradients DISAGREE (largest difference {worst:.2e})")
print("gradients agree: backward() is the chain rule, applied op by op in reverse")
