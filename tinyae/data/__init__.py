"""Data: datasets (MNIST, Fashion-MNIST, Shapes, in-memory), the DataLoader and noise.

Everything here works on NumPy arrays; the :class:`DataLoader` is where batches
become Tensors on the chosen device.

    from tinyae.data import MNIST, DataLoader
    train = MNIST(train=True)                  # finds, downloads or explains
    loader = DataLoader(train, batch_size=128, shuffle=True, seed=0)
    for x, y in loader:                        # x: (128, 1, 28, 28) float32 Tensor
        ...
"""

from tinyae.data.dataset import ArrayDataset, Subset, TensorDataset, batch_arrays
from tinyae.data.idx import IDXError, decode_idx, encode_idx, read_idx, read_idx_stream, write_idx
from tinyae.data.loader import DataLoader
from tinyae.data.mnist import (
    MNIST,
    CorruptDatasetError,
    CorruptFileWarning,
    DatasetNotFoundError,
    FashionMNIST,
    Resource,
    default_root,
    download_file,
)
from tinyae.data.noise import Compose, GaussianNoise, MaskingNoise, Noise, SaltAndPepper
from tinyae.data.shapes import Shapes

__all__ = [
    "MNIST",
    "ArrayDataset",
    "Compose",
    "CorruptDatasetError",
    "CorruptFileWarning",
    "DataLoader",
    "DatasetNotFoundError",
    "FashionMNIST",
    "GaussianNoise",
    "IDXError",
    "MaskingNoise",
    "Noise",
    "Resource",
    "SaltAndPepper",
    "Shapes",
    "Subset",
    "TensorDataset",
    "batch_arrays",
    "decode_idx",
    "default_root",
    "download_file",
    "encode_idx",
    "read_idx",
    "read_idx_stream",
    "write_idx",
]
