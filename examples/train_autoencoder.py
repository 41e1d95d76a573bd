"""Train a dense autoencoder with the loop that ``tinyae train`` hides: forward, loss, zero_grad,
backward, step.

The autoencoder squeezes each 28x28 image through a 32-number code and back, and learns by
making its output match its input (no labels). Data: MNIST if its files are on this machine
(``$TINYAE_DATA`` or ``~/.cache/tinyae``; nothing is downloaded), else the built-in Shapes images.
The script prints the training loss as it falls and the loss on held-out images before and
after training, and exits with an error if the latter did not at least halve.

Run:  python examples/train_autoencoder.py [--steps N] [--quick]      (about 15 s; --quick: 1 s)
"""

import argparse
import os
import sys
import time

import tinyae
import tinyae.data
import tinyae.nn as nn
import tinyae.nn.functional as F

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=3000, help="optimizer steps (batches)")
parser.add_argument("--quick", action="store_true", help="a few seconds (also: TINYAE_EXAMPLES_QUICK=1)")
args = parser.parse_args()
quick = args.quick or os.environ.get("TINYAE_EXAMPLES_QUICK") == "1"
steps = 60 if quick else args.steps
tinyae.manual_seed(0)

try:
    train = tinyae.data.MNIST(train=True, download=False)
    test = tinyae.data.MNIST(train=False, download=False)
except tinyae.data.DatasetNotFoundError:
    train, test = tinyae.data.Shapes(n=2000 if quick else 12_000), tinyae.data.Shapes(n=500, train=False)
print(f"data: {train}")
loader = tinyae.data.DataLoader(train, batch_size=128, shuffle=True, seed=0)
x_test = tinyae.tensor(test.data[:500])

model = nn.Sequential(
    nn.Flatten(),                                  # (N, 1, 28, 28) -> (N, 784)
    nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 32), nn.ReLU(),      # encoder: the 32-number code
    nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid(),   # decoder: pixels in (0, 1)
    nn.Unflatten(1, (1, 28, 28)),
)  # fmt: skip
optimizer = tinyae.optim.Adam(model.parameters(), lr=1e-3)


def held_out_loss():
    with tinyae.no_grad():  # evaluation only: no graph to record
        return F.mse_loss(model(x_test), x_test).item()


def batches(loader):
    while True:  # one epoch after another, each in a new order
        yield from loader


before = held_out_loss()
start, running = time.perf_counter(), 0.0
every = max(1, steps // 10)
for step, (x, _) in zip(range(1, steps + 1), batches(loader)):
    loss = F.mse_loss(model(x), x)  # the target is the input itself
    optimizer.zero_grad()  # backward adds to .grad, so clear what the last step left there
    loss.backward()
    optimizer.step()

    running += loss.item()
    if step % every == 0:
        print(f"step {step:5d}  training loss {running / every:.5f}")
        running = 0.0

after = held_out_loss()
print(f"{steps} steps in {time.perf_counter() - start:.1f} s")
print(f"held-out loss fell from {before:.5f} to {after:.5f}")
if not after < before / 2:
    sys.exit("the held-out loss did not halve: training did not work")
print("the autoencoder learned to reconstruct images it never saw")
