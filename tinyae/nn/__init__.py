"""``tinyae.nn``: Modules, layers, losses, initialisers and the functional API.

Write models as in PyTorch::

    import tinyae.nn as nn
    import tinyae.nn.functional as F

    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid())

=================  ==========================================================
module             Module, Parameter, count_parameters
containers         Sequential, ModuleList
layers             Linear, Conv2d, ConvTranspose2d, BatchNorm1d/2d, Dropout
stateless          activations, Flatten/Unflatten, pools, Upsample, Identity
losses             MSELoss, L1Loss, BCELoss, BCEWithLogitsLoss, NLLLoss, CrossEntropyLoss
functional (F)     the ops the layers call (conv, batch_norm, pools, dropout, losses...)
init               weight initialisers (kaiming, xavier, normal, uniform, ...)
utils              clip_grad_norm_, clip_grad_value_
=================  ==========================================================
"""

from tinyae.nn import functional, init, utils
from tinyae.nn.containers import ModuleList, Sequential
from tinyae.nn.layers import BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Linear
from tinyae.nn.losses import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from tinyae.nn.module import IncompatibleKeys, Module, Parameter, StateDictError, count_parameters
from tinyae.nn.stateless import (
    AvgPool2d,
    Flatten,
    Identity,
    LeakyReLU,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Softplus,
    Tanh,
    Unflatten,
    Upsample,
)

__all__ = [
    "AvgPool2d", "BCELoss", "BCEWithLogitsLoss", "BatchNorm1d", "BatchNorm2d", "Conv2d", "ConvTranspose2d",
    "CrossEntropyLoss", "Dropout", "Flatten", "Identity", "IncompatibleKeys", "L1Loss", "LeakyReLU", "Linear",
    "MSELoss", "MaxPool2d", "Module", "ModuleList", "NLLLoss", "Parameter", "ReLU", "Sequential", "Sigmoid",
    "Softplus", "StateDictError", "Tanh", "Unflatten", "Upsample", "count_parameters", "functional", "init",
    "utils",
]  # fmt: skip
