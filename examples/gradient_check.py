"""Gradient checking: compare backward() with central finite differences, and why it needs float64.

For L(x) a scalar, the central difference

    dL/dx_i  ~=  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

has two errors: truncation, about eps^2 |L'''| / 6 (shrinks with eps), and rounding: L itself is
only known to about u |L|, with u the unit roundoff (1e-16 in float64, 6e-8 in float32), and
dividing by 2 eps blows that up to u |L| / eps (grows as eps shrinks). In float64 there is a wide
range of eps where both are tiny. In float32 they balance only near eps = 1e-2, and even there the
error is about u^(2/3) ~ 1e-5 relative, the size of a subtly wrong gradient; at gradcheck's eps
of 1e-6 rounding swamps the answer. So ``tinyae.gradcheck`` insists on float64.

The script (1) runs ``tinyae.gradcheck`` on tanh(conv2d(x, w)), (2) shows it catching a wrong
gradient, and (3) prints the finite-difference error for several eps in both dtypes.

Run:  python examples/gradient_check.py [--seed N]      (instant)
"""

import argparse
import sys

import numpy as np

import tinyae
import tinyae.nn.functional as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seed", type=int, default=0, help="another seed, other random numbers")
parser.add_argument("--quick", action="store_true", help="accepted for uniformity; this runs instantly")
args = parser.parse_args()
tinyae.manual_seed(args.seed)


def f(x, w):
    return F.conv2d(x, w, padding=1).tanh()


# --- 1. gradcheck: every element of x and w, perturbed one at a time ------------------------------
x = tinyae.randn(1, 2, 5, 5, dtype=tinyae.float64, requires_grad=True)
w = tinyae.randn(3, 2, 3, 3, dtype=tinyae.float64, requires_grad=True)
tinyae.gradcheck(f, [x, w])  # raises GradcheckError, naming the worst element, if they disagree
print(f"gradcheck passed: tanh(conv2d(x, w)), {x.size + w.size} partial derivatives, float64")

# --- 2. a wrong gradient: detach() hides one factor of x * x from backward -------------------------
# The true derivative of x * x is 2x; backward only sees x * (a constant) and returns x.
caught = not tinyae.gradcheck(lambda a: a * a.detach(), [x], raise_exception=False)
print(f"gradcheck caught the wrong gradient of x * x.detach(): {caught}")

# --- 3. by hand: one partial derivative, in float64 and in float32 ---------------------------------
x_np, w_np = x.detach().numpy(), w.detach().numpy()
k = (0, 1, 2, 3)  # the element of x we perturb
f(x, w).sum().backward()
exact = float(x.grad.numpy()[k])  # float64 backward: our reference


def loss(x_arr, dtype):
    with tinyae.no_grad():
        return f(tinyae.tensor(x_arr.astype(dtype)), tinyae.tensor(w_np.astype(dtype))).sum().item()


def central_difference(eps, dtype):
    plus, minus = x_np.copy(), x_np.copy()
    plus[k] += eps
    minus[k] -= eps
    # The step actually taken is what x[k] +- eps rounds to in this dtype, not eps itself.
    step = float(plus.astype(dtype)[k]) - float(minus.astype(dtype)[k])
    return (loss(plus, dtype) - loss(minus, dtype)) / step


print(f"\ndL/dx{list(k)} with L = sum(tanh(conv2d(x, w))): backward (float64) gives {exact:.12f}")
print(f"{'eps':>8}  {'|error| float64':>16}  {'|error| float32':>16}")
errors = {}
for eps in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
    errors[eps] = [abs(central_difference(eps, dtype) - exact) for dtype in (np.float64, np.float32)]
    print(f"{eps:8.0e}  {errors[eps][0]:16.2e}  {errors[eps][1]:16.2e}")

best64 = min(e[0] for e in errors.values())
best32 = min(e[1] for e in errors.values())
at_default64, at_default32 = errors[1e-6]  # 1e-6 is gradcheck's default eps
print(
    f"\nbest error: float64 {best64:.1e}, float32 {best32:.1e}; "
    f"at gradcheck's eps = 1e-6: float64 {at_default64:.1e}, float32 {at_default32:.1e}"
)

if not caught:
    sys.exit("gradcheck did NOT catch the wrong gradient")
if not (at_default64 < 1e-6 and at_default32 > 1e3 * at_default64):
    sys.exit("the float32 / float64 comparison did not come out as the docstring says")
print("float32 finite differences are too coarse: check gradients in float64")
