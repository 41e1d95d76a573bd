"""MNIST and Fashion-MNIST: find the IDX files, download them if needed, verify, decode.

Where the files are looked for (in this order; the first *valid* copy wins)::

    <root>/<name>/<file>      e.g. ~/.cache/tinyae/mnist/train-images-idx3-ubyte.gz
    <root>/<file>             a folder holding the four files directly
    system folders            /usr/share/datasets/fashion-mnist (Debian's package)

``root`` is the ``root=`` argument, else the ``TINYAE_DATA`` environment
variable, else ``~/.cache/tinyae``. Each file may be gzipped (``.gz``) or not.

A file is *valid* when its MD5 matches the published checksum of the gzipped
file, or the MD5 of its decompressed bytes matches that of the original data
(Debian re-compresses the files, which changes the gzip bytes but not the
content), and it decodes as a well-formed IDX file.

A corrupt or truncated copy is reported (path, expected and actual MD5) with a
:class:`CorruptFileWarning` and, when ``download=True``, downloaded again. A
download goes to a temporary file that is renamed into place only once its MD5
matches, so an interrupted or corrupted download never leaves a bad file
behind. When nothing works, one :class:`DatasetNotFoundError` says where we
looked, what went wrong, and how to supply the files.

The mirror list and checksums are plain class attributes (``MNIST.mirrors``,
``MNIST.resources``) and can also be passed to the constructor, which is how
the tests point downloads at a local HTTP server.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from tinyae._atomic import atomic_open
from tinyae.data.idx import GZIP_MAGIC, IDXError, decode_idx, maybe_gunzip

__all__ = [
    "CorruptFileWarning",
    "DatasetNotFoundError",
    "FashionMNIST",
    "MNIST",
    "Resource",
    "default_root",
    "download_file",
    "md5_of",
]

ENV_VAR = "TINYAE_DATA"
DEFAULT_TIMEOUT = 30.0  # seconds, for connecting and for each read


class DatasetNotFoundError(RuntimeError):
    """The dataset files are not available and could not be downloaded."""


class ChecksumError(ValueError):
    """A downloaded file's MD5 does not match the published one."""


class CorruptFileWarning(UserWarning):
    """A cached dataset file failed verification (it will be ignored or replaced)."""


@dataclass(frozen=True)
class Resource:
    """One dataset file: its published (gzipped) name and checksums.

    ``md5`` is the published MD5 of the ``.gz`` file; ``raw_md5`` that of its
    decompressed content (lets us accept re-compressed or uncompressed copies).
    Either may be None to skip that check (the IDX structure is still checked).
    """

    filename: str
    md5: str | None
    raw_md5: str | None = None

    @property
    def raw_filename(self) -> str:
        return self.filename[:-3] if self.filename.endswith(".gz") else self.filename


def default_root(root: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """The data root and where it came from (``"root="``, ``$TINYAE_DATA`` or ``"default"``)."""
    if root is not None:
        return os.path.abspath(os.path.expanduser(os.fspath(root))), "root= argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return os.path.abspath(os.path.expanduser(env)), f"${ENV_VAR}"
    return os.path.join(os.path.expanduser("~"), ".cache", "tinyae"), "default"


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --------------------------------------------------------------------------- download


def _progress_bar(total: int | None, desc: str, enabled: bool) -> Any:
    """A tqdm bar when tqdm is installed and ``enabled``, else None."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar, no fuss
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)


def _stream_to(response: IO[bytes], out: IO[bytes], bar: Any, chunk_size: int = 1 << 16) -> bytes:
    """Copy ``response`` to ``out`` chunk by chunk; returns the MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    while True:
        chunk = response.read(chunk_size)
        if not chunk:
            return digest.hexdigest()
        out.write(chunk)
        digest.update(chunk)
        if bar is not None:
            bar.update(len(chunk))


def download_file(
    url: str,
    path: str | os.PathLike[str],
    md5: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    progress: bool = False,
) -> None:
    """Download ``url`` to ``path`` atomically, verifying its MD5 when given.

    The bytes go to a temporary file next to ``path``; only if the download is
    complete and the checksum matches is it renamed to ``path``. Otherwise the
    temporary file is deleted and ``path`` is untouched. Raises
    ``urllib.error.URLError``/``OSError`` for network errors and
    :class:`ChecksumError` for a wrong MD5.
    """
    path = os.fspath(path)
    request = urllib.request.Request(url, headers={"User-Agent": "tinyae"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = _progress_bar(total, os.path.basename(path), progress)
        try:
            with atomic_open(path, "wb") as out:
                actual = _stream_to(response, out, bar)
                if total is not None and out.tell() != total:
                    raise OSError(f"incomplete download of {url}: got {out.tell()} of {total} bytes")
                if md5 is not None and actual != md5:
                    # Raising inside atomic_open discards the temporary file.
                    raise ChecksumError(f"{url}: MD5 is {actual}, expected {md5}; download rejected")
        finally:
            if bar is not None:
                bar.close()


# --------------------------------------------------------------------------- datasets


class _IDXDataset:
    """Shared machinery of MNIST-style datasets: four IDX files, two splits."""

    #: sub-folder of the data root, and name in messages
    name = "mnist"
    #: base URLs tried in order; a file's URL is mirror + filename
    mirrors: tuple[str, ...] = ()
    #: split -> (images, labels)
    resources: dict[str, tuple[Resource, Resource]] = {}
    #: folders searched after the root (read-only system installs)
    system_dirs: tuple[str, ...] = ()
    classes: list[str] = []

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        train: bool = True,
        download: bool = True,
        verbose: bool = False,
        *,
        mirrors: list[str] | tuple[str, ...] | None = None,
        resources: dict[str, tuple[Resource, Resource]] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.root, source = default_root(root)
        self.train = train
        self.split = "train" if train else "test"
        self.verbose = verbose
        self.timeout = timeout
        if mirrors is not None:
            self.mirrors = tuple(mirrors)
        if resources is not None:
            self.resources = dict(resources)
        self._log(f"{type(self).__name__}: data root {self.root} (from {source})")

        images_res, labels_res = self.resources[self.split]
        images = decode_idx(self._fetch(images_res, download), images_res.filename, expected_ndim=3)
        labels = decode_idx(self._fetch(labels_res, download), labels_res.filename, expected_ndim=1)
        if len(images) != len(labels):
            raise IDXError(
                f"{type(self).__name__}: {images_res.filename} has {len(images)} images but "
                f"{labels_res.filename} has {len(labels)} labels"
            )
        # uint8 -> float32 in [0, 1]; add the channel axis that conv layers expect.
        self.data: np.ndarray = (images.astype(np.float32) * np.float32(1 / 255))[:, None, :, :]
        self.targets: np.ndarray = labels.astype(np.int64)

    # -- the Dataset interface -------------------------------------------------
    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.data[index], self.targets[index]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, "
            f"shape={tuple(self.data.shape[1:])}, root={self.root!r})"
        )

    # -- finding, checking and downloading files ------------------------------
    def _log(self, message: str) -> None:
        if self.verbose:
            print(message, file=sys.stderr)

    @property
    def download_dir(self) -> str:
        return os.path.join(self.root, self.name)

    def search_dirs(self) -> list[str]:
        """Folders searched for the files, in order."""
        dirs = [self.download_dir, self.root, *self.system_dirs]
        return list(dict.fromkeys(dirs))  # drop duplicates, keep order

    def _candidates(self, res: Resource) -> list[str]:
        names = [res.filename, res.raw_filename] if res.filename != res.raw_filename else [res.filename]
        return [os.path.join(d, n) for d in self.search_dirs() for n in names]

    def _verify(self, res: Resource, path: str, raw: bytes) -> bytes:
        """The decompressed bytes of a file, or ValueError saying why it is bad."""
        actual = md5_of(raw)
        if res.md5 is not None and actual == res.md5:
            return maybe_gunzip(raw, path)  # the published .gz, byte for byte
        compressed = raw.startswith(GZIP_MAGIC)
        try:
            data = maybe_gunzip(raw, path)
        except IDXError:
            data = None  # truncated gzip: reported below with its checksum
        if data is not None:
            if res.raw_md5 is not None and md5_of(data) == res.raw_md5:
                return data  # re-compressed or uncompressed copy of the original content
            if res.raw_md5 is None and (not compressed or res.md5 is None):
                return data  # no checksum to compare with; decode_idx still checks the structure
        expected = res.md5 if compressed else res.raw_md5
        size = f"{len(raw)} bytes" + (", gzip data truncated or corrupt" if data is None else "")
        raise ValueError(f"{path}: MD5 is {actual}, expected {expected} ({size})")

    def _try_local(self, res: Resource, problems: list[str]) -> bytes | None:
        for path in self._candidates(res):
            if not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                raw = f.read()
            try:
                data = self._verify(res, path, raw)
                decode_idx(data, path)  # structure check before we trust it
            except ValueError as exc:
                problems.append(str(exc))
                warnings.warn(f"ignoring corrupt file: {exc}", CorruptFileWarning, stacklevel=4)
                continue
            self._log(f"{type(self).__name__}: using {path}")
            return data
        return None

    def _download(self, res: Resource, problems: list[str]) -> bytes | None:
        dest = os.path.join(self.download_dir, res.filename)
        for mirror in self.mirrors:
            url = mirror.rstrip("/") + "/" + res.filename
            self._log(f"{type(self).__name__}: downloading {url} -> {dest}")
            try:
                download_file(
                    url, dest, res.md5, timeout=self.timeout, progress=self.verbose or _stderr_is_tty()
                )
            # URLError, HTTPError and timeouts are OSErrors; a connection cut short is an
            # HTTPException (IncompleteRead); a wrong checksum is a ValueError.
            except (OSError, ValueError, http.client.HTTPException) as exc:
                problems.append(f"download {url}: {_describe(exc)}")
                continue
            with open(dest, "rb") as f:
                return self._verify(res, dest, f.read())
        return None

    def _fetch(self, res: Resource, download: bool) -> bytes:
        problems: list[str] = []
        data = self._try_local(res, problems)
        if data is None and download:
            data = self._download(res, problems)
        if data is None:
            raise DatasetNotFoundError(self._not_found_message(res, download, problems))
        return data

    def _not_found_message(self, res: Resource, download: bool, problems: list[str]) -> str:
        lines = [f"{type(self).__name__}: could not find a valid {res.filename} ({self.split} split)."]
        lines.append("Looked in:")
        lines += [f"  {d}" for d in self.search_dirs()]
        if problems:
            lines.append("Problems:")
            lines += [f"  {p}" for p in problems]
        if not download:
            lines.append("Downloading was not attempted (download=False).")
        elif not self.mirrors:
            lines.append("No download mirrors are configured.")
        lines.append("To supply the data, either:")
        lines.append(
            f"  - put the four {self.name} IDX files (.gz or uncompressed) in a folder and set "
            f"{ENV_VAR}=/that/folder or pass root='/that/folder';"
        )
        lines.append(
            f"  - or connect to the internet and use download=True (files go to {self.download_dir});"
        )
        lines.append("  - or train on the built-in offline dataset tinyae.data.Shapes.")
        return "\n".join(lines)


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{type(exc).__name__}: {exc}"


class MNIST(_IDXDataset):
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
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "d53e105ee54ea40749a09fcbcd1e9432",
                "a25bea736e30d166cdddb491f175f624",
            ),
        ),
        "test": (
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "9fb629c4189551a2d022fa330f9573f3",
                "2646ac647ad5339dbf082846283269ea",
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "ec29112dd5afa0611ce80d1b7f02629c",
                "27ae3e4e09519cfbb04c329615203637",
            ),
        ),
    }
    classes = [
        f"{d} - {w}"
        for d, w in enumerate(
            ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
        )
    ]


class FashionMNIST(_IDXDataset):
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
            ),
            Resource(
                "train-labels-idx1-ubyte.gz",
                "25c81989df183df01b3e8a0aad5dffbe",
                "9018921c3c673c538a1fc5bad174d6f9",
            ),
        ),
        "test": (
            Resource(
                "t10k-images-idx3-ubyte.gz",
                "bef4ecab320f06d8554ea6380940ec79",
                "8181f5470baa50b63fa0f6fddb340f0a",
            ),
            Resource(
                "t10k-labels-idx1-ubyte.gz",
                "bb300cfdad3c16e7a12a480ee83cd310",
                "15d484375f8d13e6eb1aabb0c3f46965",
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
