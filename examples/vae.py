"""A variational autoencoder: train it by minimising -ELBO, then decode random codes into new images.

The encoder maps an image x to a Gaussian q(z | x) = N(mu, diag exp(logvar)) over a small code z;
the decoder maps a code to pixel probabilities. The loss per image is

    -ELBO = reconstruction (binary cross-entropy of the decoded z)  +  KL(q(z | x) || N(0, I))

and z = mu + eps * exp(logvar / 2) with eps ~ N(0, I) (the reparameterisation), so that backward
reaches mu and logvar. The KL term keeps the codes near N(0, I), which is why decoding z ~ N(0, I)
afterwards gives plausible images. Model and loss: ``tinyae.models.vae.VAE`` and ``negative_elbo``.

Data: MNIST if its files are on this machine (``$TINYAE_DATA`` or ``~/.cache/tinyae``), else the
built-in Shapes images. The script prints -ELBO per image as it falls, exits with an error if the
held-out -ELBO did not fall by a third, and saves a grid of 64 samples to ``<out>/vae_samples.png``
when matplotlib is installed.

Run:  python examples/vae.py [--steps N] [--out DIR] [--quick]      (about 10 s; --quick: 1 s)
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import tinyae
import tinyae.data
from tinyae.models.vae import VAE, negative_elbo

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=2000, help="optimizer steps (batches)")
parser.add_argument("--out", default=None, help="folder for vae_samples.png (default: a new temp folder)")
parser.add_argument("--quick", action="store_true", help="a few seconds (also: TINYAE_EXAMPLES_QUICK=1)")
args = parser.parse_args()
quick = args.quick or os.environ.get("TINYAE_EXAMPLES_QUICK") == "1"
steps = 40 if quick else args.steps
tinyae.manual_seed(0)

try:
    train = tinyae.data.MNIST(train=True, download=False)
    test = tinyae.data.MNIST(train=False, download=False)
except tinyae.data.DatasetNotFoundError:
    train, test = tinyae.data.Shapes(n=2000 if quick else 12_000), tinyae.data.Shapes(n=500, train=False)
print(f"data: {train}")
loader = tinyae.data.DataLoader(train, batch_size=128, shuffle=True, seed=0)

LATENT = 10
model = VAE(latent=LATENT, hidden=256)  # encoder 784-256-(10 mu, 10 logvar), decoder 10-256-784
optimizer = tinyae.optim.Adam(model.parameters(), lr=1e-3)

# A fixed held-out batch and fixed noise eps: the same measurement before and after training.
x_test = tinyae.tensor(test.data[:500])
eps_test = tinyae.tensor(np.random.default_rng(1).standard_normal((500, LATENT)).astype(np.float32))


def held_out_elbo():
    with tinyae.no_grad():
        logits, mu, logvar = model(x_test, eps_test)
        return negative_elbo(logits, x_test, mu, logvar)[0].item() / len(x_test)


def batches(loader):
    while True:  # one epoch after another
        yield from loader


before = held_out_elbo()
start, every = time.perf_counter(), max(1, steps // 10)
for step, (x, _) in zip(range(1, steps + 1), batches(loader)):
    logits, mu, logvar = model(x)  # draws fresh eps ~ N(0, I) from tinyae's generator
    loss, reconstruction, kl = negative_elbo(logits, x, mu, logvar)  # each summed over the batch
    loss = loss / len(x)  # per image, so the learning rate does not depend on the batch size
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

    if step % every == 0:
        n = len(x)
        print(f"step {step:4d}  -ELBO {loss.item():7.2f} = reconstruction {reconstruction.item() / n:7.2f}"
              f" + KL {kl.item() / n:5.2f}   (per image, nats)")  # fmt: skip

after = held_out_elbo()
print(f"{steps} steps in {time.perf_counter() - start:.1f} s")
print(f"held-out -ELBO per image fell from {before:.1f} to {after:.1f} nats")

try:
    import matplotlib

    matplotlib.use("Agg")  # draw into a file, no window
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: no picture of the samples")
else:
    with tinyae.no_grad():
        samples = model.sample(64).numpy()[:, 0]  # (64, 28, 28): decoded z ~ N(0, I)
    # (tile row, tile column, y, x) -> (tile row, y, tile column, x): the 64 tiles side by side, 8 x 8
    grid = samples.reshape(8, 8, 28, 28).transpose(0, 2, 1, 3).reshape(8 * 28, 8 * 28)
    out = args.out or tempfile.mkdtemp(prefix="tinyae-vae-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "vae_samples.png")
    plt.imsave(path, grid, cmap="gray", vmin=0.0, vmax=1.0)
    print(f"64 samples saved to {path}")

if not after < before * 2 / 3:
    sys.exit("the held-out -ELBO did not fall by a third: training did not work")
print("-ELBO fell: the VAE learned")
