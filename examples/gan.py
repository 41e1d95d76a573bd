"""A generative adversarial network: a generator G and a discriminator D trained against each other.

G turns noise z ~ N(0, I) into an image; D outputs a logit l, and D(x) = sigmoid(l(x)) is its
belief that x is a real image. Each step trains D once, then G once:

    D step:  minimise  -log D(x) - log(1 - D(G(z)))     tell real from fake
    G step:  minimise  -log D(G(z))                       fool D ("non-saturating" loss)

With -log sigmoid(l) = softplus(-l) and -log(1 - sigmoid(l)) = softplus(l), both are written out
with ``F.softplus`` below. The networks are the fully connected ``mlp_generator`` and
``mlp_discriminator`` of ``tinyae.models.gan``, smaller than their defaults.

The script prints D(x) and D(G(z)) (mean over a batch). A GAN has no loss that simply falls, so
its check is the images themselves: the mean generated image must move towards the mean real
image (by a fifth at least), and D must not have won outright (D(G(z)) ~ 0 leaves G without a
useful gradient).

Data: MNIST if its files are on this machine (``$TINYAE_DATA`` or ``~/.cache/tinyae``), else the
built-in Shapes images.

Run:  python examples/gan.py [--steps N] [--quick]      (about 35 s; --quick: 3 s)
"""

import argparse
import os
import sys
import time

import numpy as np

import tinyae
import tinyae.data
import tinyae.nn.functional as F
from tinyae.models.gan import mlp_discriminator, mlp_generator

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=3000, help="D steps, each followed by one G step")
parser.add_argument("--quick", action="store_true", help="a few seconds (also: TINYAE_EXAMPLES_QUICK=1)")
args = parser.parse_args()
quick = args.quick or os.environ.get("TINYAE_EXAMPLES_QUICK") == "1"
steps = 200 if quick else args.steps
tinyae.manual_seed(0)

try:
    train = tinyae.data.MNIST(train=True, download=False)
except tinyae.data.DatasetNotFoundError:
    train = tinyae.data.Shapes(n=2000 if quick else 12_000)
print(f"data: {train}")
loader = tinyae.data.DataLoader(train, batch_size=64, shuffle=True, seed=0)

LATENT = 64
G = mlp_generator(LATENT, hidden=(256, 512))  # z (N, 64) -> 256 -> 512 -> 784 -> tanh -> (N, 1, 28, 28)
D = mlp_discriminator(hidden=(512, 256))  # (N, 1, 28, 28) -> 512 -> 256 -> one logit (N, 1)
# Adam with beta1 = 0.5 (Radford et al. 2016): less momentum, as the target keeps moving.
opt_g = tinyae.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = tinyae.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))

# For the final check: how far the mean generated image is from the mean real image (RMS over pixels).
real_mean = train.data.mean(axis=0) * 2 - 1
z_fixed = tinyae.tensor(np.random.default_rng(1).standard_normal((500, LATENT)).astype(np.float32))


def mean_image_distance():
    with tinyae.no_grad():
        fake_mean = G(z_fixed).numpy().mean(axis=0)
    return float(np.sqrt(((fake_mean - real_mean) ** 2).mean()))


def batches(loader):
    while True:  # one epoch after another
        yield from loader


distance_before = mean_image_distance()
start, every = time.perf_counter(), max(1, steps // 10)
d_real_sum = d_fake_sum = 0.0
for step, (x, _) in zip(range(1, steps + 1), batches(loader)):
    real = x * 2 - 1  # [0, 1] -> [-1, 1], the range of G's tanh
    z = tinyae.randn(len(x), LATENT)
    fake = G(z)

    # D step. fake.detach(): this loss must not reach G's parameters.
    l_real, l_fake = D(real), D(fake.detach())
    d_loss = F.softplus(-l_real).mean() + F.softplus(l_fake).mean()
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()

    # G step, through the updated D. Minimising log(1 - D(G(z))) instead, as the minimax game reads,
    # gives G almost no gradient while D rejects its fakes confidently, i.e. at the start.
    g_loss = F.softplus(-D(fake)).mean()
    opt_g.zero_grad()  # backward also fills D's .grad; opt_d.zero_grad() clears it before D's next step
    g_loss.backward()
    opt_g.step()

    d_real_sum += l_real.sigmoid().mean().item()
    d_fake_sum += l_fake.sigmoid().mean().item()
    if step % every == 0:
        d_real, d_fake = d_real_sum / every, d_fake_sum / every
        print(f"step {step:5d}  D(x) {d_real:.3f}  D(G(z)) {d_fake:.3f}   "
              f"loss D {d_loss.item():.3f}  loss G {g_loss.item():.3f}")  # fmt: skip
        d_real_sum = d_fake_sum = 0.0

distance_after = mean_image_distance()
print(f"{steps} steps in {time.perf_counter() - start:.1f} s")
print(f"mean fake image vs mean real image, RMS distance: {distance_before:.3f} -> {distance_after:.3f}")
if not distance_after < 0.8 * distance_before:  # seed 0, Shapes: -36% after 200 steps, -88% after 3000
    sys.exit("the generated images did not move towards the real ones")
if not d_fake > 0.05:
    sys.exit(f"D(G(z)) = {d_fake:.3f}: D has won and G gets no useful gradient")
print("G learned: its images moved towards the data, and D(x), D(G(z)) stayed in play")
