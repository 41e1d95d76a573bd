"""The 8-3-8 encoder problem: squeeze 8 one-hot patterns through 3 sigmoid units and back.

The inputs are the 8 one-hot vectors and the network must reproduce its input (Rumelhart, Hinton &
Williams, 1986). Three hidden units can hold 2^3 = 8 binary codes, so to solve the problem the
network has to invent a 3-bit code for the 8 patterns, and nobody tells it which.

    h = sigmoid(W1 x + b1)    (8,) -> (3,)    the code
    r = sigmoid(W2 h + b2)    (3,) -> (8,)    the reconstruction

The script trains on all 8 patterns at once until every output is within 0.1 of its target, then
prints the hidden codes: usually close to 0 or 1, i.e. a binary code (in some order). Other seeds
sometimes find a solution where a unit takes a middle value ~0.5 for some pattern (three levels
instead of two): try ``--seed 1``.

Run:  python examples/encoder_838.py [--steps MAX] [--seed N]      (about a second)
"""

import argparse
import os
import sys

import numpy as np

import tinyae
import tinyae.nn.functional as F
from tinyae.models import Encoder838, one_hot_patterns

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=5000, help="give up after this many steps")
parser.add_argument("--seed", type=int, default=0, help="another seed, another code")
parser.add_argument("--quick", action="store_true", help="(also: TINYAE_EXAMPLES_QUICK=1)")
args = parser.parse_args()
quick = args.quick or os.environ.get("TINYAE_EXAMPLES_QUICK") == "1"
max_steps = min(args.steps, 2000) if quick else args.steps
tinyae.manual_seed(args.seed)

x = tinyae.tensor(one_hot_patterns())  # (8, 8): pattern i is row i
model = Encoder838()  # nn.Sequential(Linear(8, 3), Sigmoid()) then nn.Sequential(Linear(3, 8), Sigmoid())
optimizer = tinyae.optim.Adam(model.parameters(), lr=0.1)

for step in range(1, max_steps + 1):
    r = model(x)
    # Each output is a yes/no question ("is this pattern i?"): binary cross-entropy is its loss.
    loss = F.binary_cross_entropy(r, x)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    worst = float(np.abs(r.detach().numpy() - x.numpy()).max())  # r from before this step's update
    if step % 100 == 0 or worst < 0.1:
        print(f"step {step:5d}  loss {loss.item():.4f}  largest output error {worst:.3f}")
    if worst < 0.1:
        break
else:
    sys.exit(f"not solved in {max_steps} steps (largest output error {worst:.3f}); try more --steps")

with tinyae.no_grad():
    codes, r = model.encode(x).numpy(), model(x).numpy()
print(f"\nall 8 patterns reproduced after {step} steps (every output within 0.1 of its target)\n")
print("pattern   hidden code h        rounded   reconstructed as")
for i, (h, out) in enumerate(zip(codes, r)):
    code = " ".join(f"{v:.2f}" for v in h)
    bits = "".join(str(int(b)) for b in h.round())
    print(f"   {i}      {code}     {bits}         {int(out.argmax())}")

distinct = len({tuple(h) for h in codes.round()})
print(
    f"\n{distinct} of 8 patterns have distinct codes after rounding each unit to 0 or 1; "
    f"the largest distance from 0 or 1 is {np.abs(codes - codes.round()).max():.2f}"
)
