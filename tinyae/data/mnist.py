"""MNIST and Fashion-MNIST: the published files, their checksums and sizes, and their classes.

    train = MNIST(train=True)            # finds, downloads or explains; .data (N, 1, 28, 28) float32
    test = FashionMNIST(train=False)

How the files are found, verified and downloaded is :class:`~tinyae.data.idx_dataset.IDXDataset`'s
business; this module only says which files make up each dataset.
"""

from __future__ import annotations

from tinyae.data.download import ChecksumError, download_file, md5_of
from tinyae.data.idx_dataset import (
    CorruptDatasetError,
    CorruptFileWarning,
    DatasetNotFoundError,
    IDXDataset,
    Resource,
    default_root,
)

__all__ = [
    "ChecksumError",
    "CorruptDatasetError",
    "CorruptFileWarning",
    "DatasetNotFoundError",
    "FashionMNIST",
    "MNIST",
    "Resource",
    "default_root",
    "download_file",
    "md5_of",
]

# Decompressed sizes (IDX header + data), the same for MNIST and Fashion-MNIST.
TRAIN_IMAGES, TRAIN_LABELS = 16 + 60_000 * 28 * 28, 8 + 60_000
TEST_IMAGES, TEST_LABELS = 16 + 10_000 * 28 * 28, 8 + 10_000


class MNIST(IDXDataset):
    """The MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28.

    ``.data`` is float32 of shape (N, 1, 28, 28) in [0, 1]; ``.targets`` int64
    digit labels. ``dataset[i]`` is ``(image, label)``.
    """

    name = "mnist"
    mirrors = (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    )
    resources = {
        "train": (
            Resource(
                "train-images-idx3-ubyte.gz",
                "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "6bbc9ace898e44ae57da46a324031adb",
                TRAIN_IMAGES,
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "a25bea736e30d166cdddb491f175f624",
                TRAIN_LABELS,
            ),
        ),
        "test": (
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "9fb629c4189551a2d022fa330f9573f3",
                "2646ac647ad5339dbf082846283269ea",
                TEST_IMAGES,
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "ec29112dd5afa0611ce80d1b7f02629c",
                "27ae3e4e09519cfbb04c329615203637",
                TEST_LABELS,
            ),
        ),
    }
    classes = [
        f"{d} - {w}"
        for d, w in enumerate(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        )
    ]


class FashionMNIST(IDXDataset):
    """Zalando's Fashion-MNIST: 10 clothing classes, same format and sizes as MNIST.

    Also found where Debian's ``dataset-fashion-mnist`` package installs it.
    """

    name = "fashion-mnist"
    mirrors = (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    )
    # md5: published with the dataset; raw_md5: of the decompressed files.
    resources = {
        "train": (
            Resource(
                "train-images-idx3-ubyte.gz",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                TRAIN_IMAGES,
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "25c81989df183df01b3e8a0aad5dffbe",
                "9018921c3c673c538a1fc5bad174d6f9",
                TRAIN_LABELS,
            ),
        ),
        "test": (
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "bef4ecab320f06d8554ea6380940ec79",
                "8181f5470baa50b63fa0f6fddb340f0a",
                TEST_IMAGES,
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "bb300cfdad3c16e7a12a480ee83cd310",
                "15d484375f8d13e6eb1aabb0c3f46965",
                TEST_LABELS,
            ),
        ),
    }
    system_dirs = ("/usr/share/datasets/fashion-mnist",)
    classes = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]
