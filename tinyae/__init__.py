"""tinyae: a from-scratch deep-learning engine for autoencoders, VAEs and GANs.

Layers, from the bottom up (lower never imports higher)::

    backend   array module lookup (NumPy or CuPy), devices
    memory    host memory: freed memory kept in the process for reuse
    parallel  tinyae's CPU threads: the thread count and a loop split over it
    tensor    Tensor, no_grad / enable_grad
    anomaly   detect_anomaly: the first op that makes a NaN or an Inf
    autograd  Function (an op and its derivative), the backward engine, grad
    viz       the autograd graph as Graphviz DOT text (and SVG/PNG)
    ops       differentiable ops, attached to Tensor as methods and operators
    kernels   the loops: im2col / col2im and direct convolutions (with their planner), batch
              norm's and Adam's passes; NumPy twin, C++ (pybind11), CUDA
    nn        functional ops, layers, losses, init
    optim     optimizers and schedulers
    data      datasets, DataLoader, noise
    models    the lecture's autoencoders
    train     training loops, metrics, pictures; cli is the ``tinyae`` command

One process-wide effect of ``import tinyae``: on glibc (Linux) it raises two ``malloc``
thresholds so that memory freed by one training step is reused by the next instead of being
returned to the OS and faulted back in (:mod:`tinyae.memory`). The process then keeps its peak
footprint until ``tinyae.memory.release()``. To leave the C library's settings alone, set
``TINYAE_KEEP_FREED_MEMORY=0`` before importing tinyae. And when tinyae is imported before
NumPy, it sets ``OPENBLAS_THREAD_TIMEOUT=20`` (unless set) so that BLAS's idle threads stop
spinning within a millisecond instead of 0.1 s (:mod:`tinyae._blas_spin`).
"""

# isort: off
from tinyae import _blas_spin  # noqa: F401 - before NumPy loads OpenBLAS: the order matters
# isort: on

import numpy as _np

# nn and optim come along as torch.nn and torch.optim do; data, models, train load on demand.
from tinyae import cuda, memory, nn, ops, optim, viz
from tinyae._info import info
from tinyae.anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from tinyae.autograd import grad
from tinyae.creation import (
    arange,
    full,
    generator,
    manual_seed,
    ones,
    ones_like,
    rand,
    rand_like,
    randn,
    randn_like,
    zeros,
    zeros_like,
)
from tinyae.gradcheck import gradcheck, gradgradcheck
from tinyae.ops import *  # noqa: F403 - the functional API at the top level, as torch.*
from tinyae.parallel import get_num_threads, set_num_threads
from tinyae.serialization import load, save
from tinyae.tensor import Tensor, enable_grad, is_grad_enabled, no_grad, tensor

__version__ = "0.1.0"

float32 = _np.float32
float64 = _np.float64
int64 = _np.int64

__all__ = [
    "Tensor", "arange", "cuda", "detect_anomaly", "enable_grad", "is_anomaly_enabled", "set_detect_anomaly",
    "full", "generator", "get_num_threads", "grad", "gradcheck",
    "gradgradcheck", "set_num_threads", "memory",
    "info", "is_grad_enabled", "manual_seed", "nn", "no_grad", "optim", "ones", "ones_like", "ops", "rand",
    "rand_like", "randn", "randn_like", "load", "save", "tensor", "viz", "zeros", "zeros_like", *ops.__all__,
]  # fmt: skip
