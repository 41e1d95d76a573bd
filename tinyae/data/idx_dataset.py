"""IDXDataset, the machinery of MNIST-style datasets: find the files, download, verify, decode.

Where the files are looked for (in this order; the first *valid* copy wins)::

    <root>/<name>/<file>      e.g. ~/.cache/tinyae/mnist/train-images-idx3-ubyte.gz
    <root>/<file>             a folder holding the four files directly
    system folders            /usr/share/datasets/fashion-mnist (Debian's package)

``root`` is the ``root=`` argument, else the ``TINYAE_DATA`` environment
variable, else ``~/.cache/tinyae``. Each file may be gzipped (``.gz``) or not.

A file is *valid* when its MD5 matches the published checksum of the gzipped
file, or the MD5 of its decompressed bytes matches that of the original data
(Debian re-compresses the files, which changes the gzip bytes but not the
content), and it decodes as a well-formed IDX file. Checking a file never reads
more than the file can hold: its size is checked against the known size of the
data first, and it is decompressed no further than that size (see
:func:`~tinyae.data.idx.read_idx_stream`).

A corrupt or truncated copy is reported (path, expected and actual MD5) with a
:class:`CorruptFileWarning` and, when ``download=True``, downloaded again. A
download goes to a temporary file that is renamed into place only once its MD5
matches (:mod:`tinyae.data.download`). When nothing works, one exception says
where we looked, what went wrong and how to supply the files: a
:class:`CorruptDatasetError` when files of the dataset are there but unusable
(corrupt, truncated, the wrong file, or only some of the set), which is worth
stopping for, else a :class:`DatasetNotFoundError` (nothing there, nothing downloadable).

The mirror list and checksums are plain class attributes (``MNIST.mirrors``,
``MNIST.resources``) and can also be passed to the constructor, which is how
the tests point downloads at a local HTTP server.
"""

from __future__ import annotations

import http.client
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from tinyae.data.download import DEFAULT_TIMEOUT, describe_error, download_file, md5_file, md5_of
from tinyae.data.idx import GZIP_MAGIC, IDXError, decode_idx, read_idx_stream

__all__ = ["ENV_VAR", "CorruptDatasetError", "CorruptFileWarning", "DatasetNotFoundError", "IDXDataset",
           "Resource", "default_root"]  # fmt: skip

ENV_VAR = "TINYAE_DATA"


class DatasetNotFoundError(RuntimeError):
    """The dataset files are not available and could not be downloaded.

    ``str(exc)`` explains at length (where we looked, what failed, how to supply
    the files); ``exc.summary`` says it in one line (what the ``tinyae`` command prints).
    """

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message.splitlines()[0]


class CorruptDatasetError(DatasetNotFoundError):
    """Files of the dataset are present but unusable: corrupt, truncated, wrong, or an incomplete set.

    ``exc.files`` lists ``(path, problem)`` for each file of the dataset (both
    splits) that has no good copy. A subclass of :class:`DatasetNotFoundError`
    (no valid copy was found), so existing handlers still catch it; catch it
    first to tell files that are broken (fix them) from files that are absent.
    """

    def __init__(self, message: str, summary: str, files: list[tuple[str, str]]) -> None:
        super().__init__(message, summary)
        self.files = files


class CorruptFileWarning(UserWarning):
    """A cached dataset file failed verification (it will be ignored or replaced)."""


@dataclass(frozen=True)
class Resource:
    """One dataset file: its published (gzipped) name, checksums and decompressed size.

    ``md5`` is the published MD5 of the ``.gz`` file; ``raw_md5`` that of its
    decompressed content (lets us accept re-compressed or uncompressed copies).
    Either may be None to skip that check (the IDX structure is still checked).
    ``raw_size`` (bytes of the decompressed IDX file) bounds what is read and
    downloaded; None bounds it by the file's own header only.
    """

    filename: str
    md5: str | None
    raw_md5: str | None = None
    raw_size: int | None = None

    @property
    def raw_filename(self) -> str:
        return self.filename[:-3] if self.filename.endswith(".gz") else self.filename

    @property
    def max_file_size(self) -> int | None:
        """The most bytes a copy can have on disk: the data, or gzip's worst case for incompressible data."""
        return None if self.raw_size is None else self.raw_size + self.raw_size // 64 + (1 << 16)


def default_root(root: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """The data root and where it came from (``"root="``, ``$TINYAE_DATA`` or ``"default"``)."""
    if root is not None:
        return os.path.abspath(os.path.expanduser(os.fspath(root))), "root= argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return os.path.abspath(os.path.expanduser(env)), f"${ENV_VAR}"
    return os.path.join(os.path.expanduser("~"), ".cache", "tinyae"), "default"


def _stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class IDXDataset:
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
        images = decode_idx(self._fetch(images_res, download, 3), images_res.filename, expected_ndim=3)
        labels = decode_idx(self._fetch(labels_res, download, 1), labels_res.filename, expected_ndim=1)
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

    def _all_resources(self) -> list[tuple[Resource, int]]:
        """Every file of the dataset (both splits), with the dimensions its IDX header must give."""
        return [(r, ndim) for pair in self.resources.values() for r, ndim in zip(pair, (3, 1))]

    def _read_checked(self, res: Resource, path: str, ndim: int) -> bytearray:
        """The IDX bytes of ``path`` if it is a good copy of ``res``; else ValueError saying why not.

        Reads at most ``res.raw_size`` decompressed bytes (or what the file's header
        says, when that is smaller), after checking the file's size on disk.
        """
        try:
            size = os.path.getsize(path)
            limit = res.max_file_size
            if limit is not None and size > limit:
                raise ValueError(
                    f"{path}: {size} bytes, more than any copy of {res.raw_filename} can have "
                    f"({res.raw_size} bytes uncompressed)"
                )
            actual = md5_file(path)
            with open(path, "rb") as f:
                compressed = f.read(2) == GZIP_MAGIC
                f.seek(0)
                try:
                    data = read_idx_stream(
                        f, path, expected_ndim=ndim, max_bytes=res.raw_size, file_size=size
                    )
                    reason = ""
                except IDXError as exc:
                    data, reason = None, str(exc).removeprefix(f"{path}: ")
        except OSError as exc:
            raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
        if data is not None:
            if (res.md5 is not None and actual == res.md5) or (
                res.raw_md5 is not None and md5_of(data) == res.raw_md5
            ):
                return data  # the published .gz byte for byte, or a copy of its content
            if res.raw_md5 is None and (not compressed or res.md5 is None):
                return data  # no checksum to compare with; the IDX structure was checked
        expected = res.md5 if compressed else res.raw_md5
        if expected is None or actual == expected:
            raise ValueError(f"{path}: {reason}")
        raise ValueError(f"{path}: MD5 is {actual}, expected {expected} ({size} bytes" +
                         (f"; {reason})" if reason else ")"))  # fmt: skip

    def _try_local(self, res: Resource, ndim: int, problems: list[str], bad: list[str]) -> bytearray | None:
        for path in self._candidates(res):
            if not os.path.isfile(path):
                continue
            try:
                data = self._read_checked(res, path, ndim)
            except ValueError as exc:
                problems.append(str(exc))
                bad.append(path)
                warnings.warn(f"ignoring corrupt file: {exc}", CorruptFileWarning, stacklevel=4)
                continue
            self._log(f"{type(self).__name__}: using {path}")
            return data
        return None

    def _download(self, res: Resource, ndim: int, problems: list[str]) -> bytearray | None:
        dest = os.path.join(self.download_dir, res.filename)
        for mirror in self.mirrors:
            url = mirror.rstrip("/") + "/" + res.filename
            self._log(f"{type(self).__name__}: downloading {url} -> {dest}")
            try:
                download_file(
                    url,
                    dest,
                    res.md5,
                    timeout=self.timeout,
                    progress=self.verbose or _stderr_is_tty(),
                    max_bytes=res.max_file_size,
                )
                return self._read_checked(res, dest, ndim)
            # URLError, HTTPError and timeouts are OSErrors; a connection cut short is an
            # HTTPException (IncompleteRead); a wrong checksum or a malformed file is a ValueError.
            except (OSError, ValueError, http.client.HTTPException) as exc:
                problems.append(f"download {url}: {describe_error(exc)}")
        return None

    def _fetch(self, res: Resource, download: bool, ndim: int) -> bytearray:
        problems: list[str] = []
        bad: list[str] = []  # local copies that exist but were rejected
        data = self._try_local(res, ndim, problems, bad)
        if data is None and download:
            data = self._download(res, ndim, problems)
        if data is not None:
            return data
        others = [p for r, _ in self._all_resources() if r != res for p in self._candidates(r)]
        if bad or any(os.path.isfile(p) for p in others):
            raise self._corrupt_error(res, download, problems)
        raise DatasetNotFoundError(
            self._not_found_message(res, download, problems), self._not_found_summary(download, problems)
        )

    # -- the two failures -------------------------------------------------------
    def _fix_hint(self) -> str:
        return (
            f"replace them with good copies of the published {self.name} files (or delete them, and with "
            f"a network connection tinyae downloads fresh ones into {self.download_dir}), or point "
            f"{ENV_VAR} (root=, --data-root) at a folder that holds all four good files"
        )

    def _file_report(self) -> list[tuple[str, str]]:
        """(path, problem) for every file of the dataset that has no good local copy."""
        report: list[tuple[str, str]] = []
        for res, ndim in self._all_resources():
            present = [p for p in self._candidates(res) if os.path.isfile(p)]
            found: list[tuple[str, str]] = []
            for path in present:
                try:
                    self._read_checked(res, path, ndim)
                    break
                except ValueError as exc:
                    found.append((path, str(exc).removeprefix(f"{path}: ")))
            else:
                report += found or [(res.filename, f"missing (looked in {', '.join(self.search_dirs())})")]
        return report

    def _corrupt_error(self, res: Resource, download: bool, problems: list[str]) -> CorruptDatasetError:
        files = self._file_report()
        downloads = [p for p in problems if p.startswith("download ")]
        lines = [f"{type(self).__name__}: files of the dataset are present but unusable "
                 f"(the {self.split} split needs {res.filename}):"]  # fmt: skip
        lines += [f"  {path}: {problem}" for path, problem in files]
        if downloads:
            lines.append("Downloading fresh copies failed:")
            lines += [f"  {p}" for p in downloads]
        elif not download:
            lines.append("Downloading was not attempted (download=False).")
        fix = self._fix_hint()
        lines.append(f"To fix: {fix}.")
        bad = "; ".join(f"{path}: {problem}" for path, problem in files)
        tried = f"; downloading failed ({downloads[0]})" if downloads else ""
        summary = f"{type(self).__name__} files are present but unusable: {bad}{tried}. Fix: {fix}"
        return CorruptDatasetError("\n".join(lines), summary, files)

    def _not_found_summary(self, download: bool, problems: list[str]) -> str:
        # Raised only when no file of the dataset is there at all (else _corrupt_error).
        where = ", ".join(self.search_dirs())
        if not download:
            how = " (download=False)"
        elif problems:
            how = f" and could not be downloaded ({problems[0]})"
        else:
            how = " and no download mirrors are configured"
        fix = f"put its four IDX files in a folder and point {ENV_VAR} (root=, --data-root) at it"
        return f"{type(self).__name__} is not in {where}{how}; {fix}"

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
