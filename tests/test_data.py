"""Tests of tinyae.data: IDX files, MNIST-style datasets (with downloads from a local
HTTP server on 127.0.0.1 only), Shapes, in-memory datasets, DataLoader and noise.

The real-MNIST tests run only when the environment variable TINYAE_DATA points
at a folder holding the four official files (CI sets it); they skip otherwise.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
import warnings
from collections.abc import Iterator

import numpy as np
import pytest

from tinyae.data import (
    MNIST,
    ArrayDataset,
    Compose,
    CorruptFileWarning,
    DataLoader,
    DatasetNotFoundError,
    FashionMNIST,
    GaussianNoise,
    IDXError,
    MaskingNoise,
    Resource,
    SaltAndPepper,
    Shapes,
    Subset,
    TensorDataset,
    decode_idx,
    default_root,
    download_file,
    encode_idx,
    read_idx,
    write_idx,
)
from tinyae.data.mnist import ChecksumError
from tinyae.tensor import Tensor

# --------------------------------------------------------------------------- helpers


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def no_temp_files(folder: str | os.PathLike[str]) -> bool:
    return not any(name.startswith(".tmp-") for name in os.listdir(folder))


class FakeMNIST:
    """Tiny random MNIST-format files (gzipped bytes plus checksums) built in the test."""

    def __init__(self, n_train: int = 50, n_test: int = 20, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.arrays: dict[str, np.ndarray] = {}
        self.files: dict[str, bytes] = {}  # gzipped, as served and as cached
        self.resources: dict[str, tuple[Resource, Resource]] = {}
        for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            labels = rng.integers(0, 10, size=n, dtype=np.uint8)
            pair = []
            for kind, array, dims in (("images", images, 3), ("labels", labels, 1)):
                name = f"{prefix}-{kind}-idx{dims}-ubyte.gz"
                raw = encode_idx(array)
                self.files[name] = gzip.compress(raw, mtime=0)
                self.arrays[name] = array
                pair.append(Resource(name, md5(self.files[name]), md5(raw)))
            self.resources[split] = (pair[0], pair[1])

    def write(self, folder: str | os.PathLike[str], compress: bool = True) -> None:
        os.makedirs(folder, exist_ok=True)
        for name, blob in self.files.items():
            if compress:
                with open(os.path.join(folder, name), "wb") as f:
                    f.write(blob)
            else:
                with open(os.path.join(folder, name[:-3]), "wb") as f:
                    f.write(gzip.decompress(blob))


class LocalServer:
    """An HTTP server on 127.0.0.1 serving ``routes`` (path -> bytes), counting requests.

    ``lie_about_length`` makes it announce more bytes than it sends (a cut connection).
    """

    def __init__(self) -> None:
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        self.lie_about_length = False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                server.requests.append(self.path)
                body = server.routes.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                extra = 1000 if server.lie_about_length else 0
                self.send_header("Content-Length", str(len(body) + extra))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # keep pytest output clean

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, prefix: str = "/mnist/") -> str:
        return f"http://127.0.0.1:{self.port}{prefix}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> FakeMNIST:
    return FakeMNIST()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    s = LocalServer()
    yield s
    s.close()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening (connections are refused at once)."""
    s = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = s.server_address[1]
    s.server_close()
    return port


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    # Tests pass root= explicitly; make sure a developer's TINYAE_DATA or ~/.cache never leaks in.
    monkeypatch.delenv("TINYAE_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def load_fake(fake: FakeMNIST, root, train: bool = True, **kwargs) -> MNIST:
    kwargs.setdefault("mirrors", [])
    return MNIST(root=root, train=train, resources=fake.resources, **kwargs)


# --------------------------------------------------------------------------- IDX format


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(dtype) -> None:
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    b = decode_idx(encode_idx(a))
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    np.testing.assert_array_equal(a, b)


def test_idx_header_is_big_endian_magic() -> None:
    blob = encode_idx(np.zeros((3, 28, 28), np.uint8))
    assert blob[:4] == bytes([0, 0, 0x08, 3])  # magic 2051 of MNIST image files
    assert int.from_bytes(blob[4:8], "big") == 3 and len(blob) == 16 + 3 * 784


def test_read_idx_gzipped_and_plain(tmp_path) -> None:
    a = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a)
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "a", expected_ndim=1), a)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:2], "too short"),
        (lambda b: b"\x01\x02" + b[2:], "bad magic number"),
        (lambda b: b[:2] + b"\x07" + b[3:], "bad magic number"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b[:3] + b"\x02" + b[4:], "expected 3"),
    ],
)
def test_idx_validation_names_the_file(tmp_path, mutate, message) -> None:
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(mutate(encode_idx(np.zeros((2, 4, 4), np.uint8))))
    with pytest.raises(IDXError, match=message) as info:
        read_idx(path, expected_ndim=3)
    assert str(path) in str(info.value)


def test_truncated_gzip_is_an_idx_error(tmp_path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(encode_idx(np.ones((5, 28, 28), np.uint8)))[:-20])
    with pytest.raises(IDXError, match="truncated gzip|corrupt or truncated"):
        read_idx(path)


# --------------------------------------------------------------------------- MNIST: local files


def check_matches(ds: MNIST, fake: FakeMNIST, prefix: str = "train") -> None:
    images = fake.arrays[f"{prefix}-images-idx3-ubyte.gz"]
    labels = fake.arrays[f"{prefix}-labels-idx1-ubyte.gz"]
    assert ds.data.shape == (len(images), 1, 28, 28) and ds.data.dtype == np.float32
    assert ds.targets.dtype == np.int64 and len(ds) == len(labels)
    np.testing.assert_allclose(ds.data[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.targets, labels)
    image, label = ds[3]
    assert image.shape == (1, 28, 28) and int(label) == labels[3]


@pytest.mark.parametrize("layout", ["subfolder", "flat", "flat-uncompressed"])
def test_mnist_loads_local_layouts(tmp_path, fake, layout) -> None:
    folder = tmp_path / "mnist" if layout == "subfolder" else tmp_path
    fake.write(folder, compress=layout != "flat-uncompressed")
    check_matches(load_fake(fake, tmp_path, download=False), fake)
    check_matches(load_fake(fake, tmp_path, train=False, download=False), fake, "t10k")


def test_mnist_root_from_env_and_argument(tmp_path, fake, monkeypatch, capsys) -> None:
    fake.write(tmp_path / "env")
    monkeypatch.setenv("TINYAE_DATA", str(tmp_path / "env"))
    assert default_root() == (str(tmp_path / "env"), "$TINYAE_DATA")
    ds = load_fake(fake, None, download=False, verbose=True)
    assert ds.root == str(tmp_path / "env")
    assert "TINYAE_DATA" in capsys.readouterr().err  # verbose says where the root came from
    # root= wins over the environment
    with pytest.raises(DatasetNotFoundError):
        load_fake(fake, tmp_path / "empty", download=False)


def test_default_root_is_user_cache(monkeypatch, tmp_path) -> None:
    root, source = default_root()
    assert root == os.path.join(str(tmp_path / "home"), ".cache", "tinyae") and source == "default"


def test_mnist_classes_and_repr(tmp_path, fake) -> None:
    fake.write(tmp_path)
    ds = load_fake(fake, tmp_path, download=False)
    assert len(ds.classes) == 10 and ds.classes[0] == "0 - zero"
    assert "MNIST" in repr(ds) and "train" in repr(ds)
    assert len(FashionMNIST.classes) == 10


def test_image_label_count_mismatch(tmp_path, fake) -> None:
    fake.write(tmp_path)
    # Swap in a label file with one label too few (and matching checksums).
    labels = encode_idx(np.zeros(49, np.uint8))
    blob = gzip.compress(labels, mtime=0)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(blob)
    images, _ = fake.resources["train"]
    resources = dict(fake.resources, train=(images, Resource("train-labels-idx1-ubyte.gz", md5(blob))))
    with pytest.raises(IDXError, match="50 images but .* 49 labels"):
        MNIST(root=tmp_path, resources=resources, mirrors=[], download=False)


def test_offline_without_files_is_one_clear_error(tmp_path, fake, closed_port) -> None:
    mirror = f"http://127.0.0.1:{closed_port}/mnist/"
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(root=tmp_path, resources=fake.resources, mirrors=[mirror], timeout=5)
    message = str(info.value)
    for needle in (str(tmp_path / "mnist"), "TINYAE_DATA", "root=", "download=True", mirror):
        assert needle in message
    assert isinstance(info.value, RuntimeError)


def test_download_false_says_so(tmp_path, fake) -> None:
    with pytest.raises(DatasetNotFoundError, match="download=False"):
        load_fake(fake, tmp_path, download=False)


# --------------------------------------------------------------------------- MNIST: downloads


def serve(server: LocalServer, fake: FakeMNIST, prefix: str = "/mnist/") -> None:
    for name, blob in fake.files.items():
        server.routes[prefix + name] = blob


def test_download_from_local_server(tmp_path, fake, server) -> None:
    serve(server, fake)
    ds = load_fake(fake, tmp_path, mirrors=[server.url()])
    check_matches(ds, fake)
    cache = tmp_path / "mnist"
    assert sorted(os.listdir(cache)) == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert (cache / "train-images-idx3-ubyte.gz").read_bytes() == fake.files["train-images-idx3-ubyte.gz"]
    # Second time: served from the cache, no new requests.
    n = len(server.requests)
    check_matches(load_fake(fake, tmp_path, mirrors=[server.url()]), fake)
    assert len(server.requests) == n


def test_download_falls_back_to_next_mirror(tmp_path, fake, server, closed_port) -> None:
    serve(server, fake, "/good/")
    mirrors = [f"http://127.0.0.1:{closed_port}/", server.url("/missing/"), server.url("/good/")]
    check_matches(load_fake(fake, tmp_path, mirrors=mirrors, timeout=5), fake)
    assert any(r.startswith("/missing/") for r in server.requests)


def test_corrupted_download_is_rejected_and_nothing_is_left(tmp_path, fake, server) -> None:
    serve(server, fake)
    name = "train-images-idx3-ubyte.gz"
    blob = bytearray(fake.files[name])
    blob[100] ^= 0xFF
    server.routes["/mnist/" + name] = bytes(blob)
    with pytest.raises(DatasetNotFoundError) as info:
        load_fake(fake, tmp_path, mirrors=[server.url()])
    assert "MD5" in str(info.value) and fake.resources["train"][0].md5 in str(info.value)
    cache = tmp_path / "mnist"
    assert not (cache / name).exists()
    assert no_temp_files(cache)


def test_cut_connection_is_rejected_and_nothing_is_left(tmp_path, fake, server) -> None:
    serve(server, fake)
    server.lie_about_length = True  # promises 1000 more bytes than it sends
    with pytest.raises(DatasetNotFoundError):
        load_fake(fake, tmp_path, mirrors=[server.url()], timeout=5)
    cache = tmp_path / "mnist"
    assert not any(name.endswith(".gz") for name in os.listdir(cache))
    assert no_temp_files(cache)


def test_truncated_cache_file_is_detected_and_replaced(tmp_path, fake, server) -> None:
    fake.write(tmp_path / "mnist")
    name = "train-images-idx3-ubyte.gz"
    path = tmp_path / "mnist" / name
    path.write_bytes(fake.files[name][:1000])  # as an interrupted copy would leave it
    serve(server, fake)
    with pytest.warns(CorruptFileWarning) as record:
        ds = load_fake(fake, tmp_path, mirrors=[server.url()])
    message = str(record[0].message)
    expected = fake.resources["train"][0].md5
    assert str(path) in message and expected in message and md5(fake.files[name][:1000]) in message
    check_matches(ds, fake)
    assert path.read_bytes() == fake.files[name]  # replaced by a good copy
    assert no_temp_files(tmp_path / "mnist")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no more complaints next time
        load_fake(fake, tmp_path, mirrors=[server.url()])


def test_truncated_cache_file_offline_explains(tmp_path, fake) -> None:
    fake.write(tmp_path)
    name = "train-labels-idx1-ubyte.gz"
    (tmp_path / name).write_bytes(fake.files[name][:-10])
    with pytest.warns(CorruptFileWarning), pytest.raises(DatasetNotFoundError) as info:
        load_fake(fake, tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / name) in message and fake.resources["train"][1].md5 in message
    assert "TINYAE_DATA" in message


def test_corrupt_uncompressed_file_is_rejected(tmp_path, fake) -> None:
    fake.write(tmp_path, compress=False)
    raw_path = tmp_path / "train-images-idx3-ubyte"
    data = bytearray(raw_path.read_bytes())
    data[-1] ^= 1  # same length, so only the checksum can tell
    raw_path.write_bytes(bytes(data))
    with pytest.warns(CorruptFileWarning, match="MD5"), pytest.raises(DatasetNotFoundError):
        load_fake(fake, tmp_path, download=False)


def test_recompressed_copy_accepted_by_content_checksum(tmp_path, fake) -> None:
    # Debian re-compresses the files: different .gz bytes, same content.
    fake.write(tmp_path)
    for name, blob in fake.files.items():
        (tmp_path / name).write_bytes(gzip.compress(gzip.decompress(blob), compresslevel=1, mtime=123))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_matches(load_fake(fake, tmp_path, download=False), fake)


def test_download_file_checksum_mismatch_keeps_old_file(tmp_path, server) -> None:
    server.routes["/f.bin"] = b"new contents"
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old contents")
    with pytest.raises(ChecksumError, match="expected 0+"):
        download_file(server.url("/f.bin"), dest, md5="0" * 32, timeout=5)
    assert dest.read_bytes() == b"old contents"
    assert no_temp_files(tmp_path)
    download_file(server.url("/f.bin"), dest, md5=md5(b"new contents"), timeout=5, progress=True)
    assert dest.read_bytes() == b"new contents"


def test_fashion_mnist_uses_its_own_folder_and_mirrors(tmp_path, fake, server, monkeypatch) -> None:
    assert "/usr/share/datasets/fashion-mnist" in FashionMNIST.system_dirs
    monkeypatch.setattr(FashionMNIST, "system_dirs", ())  # the fake files are not Debian's
    serve(server, fake, "/fashion/")
    ds = FashionMNIST(root=tmp_path, resources=fake.resources, mirrors=[server.url("/fashion/")])
    check_matches(ds, fake)
    assert (tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists()
    assert all(m.startswith(("http://", "https://")) for m in MNIST.mirrors + FashionMNIST.mirrors)


# --------------------------------------------------------------------------- real data (skip when absent)

REAL_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_REAL_ROOT = os.environ.get("TINYAE_DATA")  # read at import, before the autouse fixture clears it


def _real_dir() -> str:
    if not _REAL_ROOT:
        pytest.skip("real MNIST tests need TINYAE_DATA pointing at the four official MNIST files")
    for folder in (os.path.join(_REAL_ROOT, "mnist"), _REAL_ROOT):
        if all(os.path.isfile(os.path.join(folder, n)) for n in REAL_MD5):
            return folder
    pytest.skip(f"TINYAE_DATA={_REAL_ROOT} does not hold the four MNIST .gz files")


def test_real_mnist_checksums_match_published() -> None:
    folder = _real_dir()
    for name, expected in REAL_MD5.items():
        with open(os.path.join(folder, name), "rb") as f:
            assert md5(f.read()) == expected, name


def test_real_mnist_train() -> None:
    folder = _real_dir()
    ds = MNIST(root=folder, train=True, download=False)
    assert len(ds) == 60_000 and ds.data.shape == (60_000, 1, 28, 28)
    assert ds.data.dtype == np.float32 and ds.targets.dtype == np.int64
    assert ds.data.min() == 0.0 and ds.data.max() == 1.0
    assert np.bincount(ds.targets).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_mnist_test_split_found_through_env(monkeypatch) -> None:
    _real_dir()
    monkeypatch.setenv("TINYAE_DATA", _REAL_ROOT)  # as CI runs it: no root= argument
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official files pass every check
        ds = MNIST(train=False, download=False)
    assert len(ds) == 10_000 and ds.data.shape == (10_000, 1, 28, 28)
    counts = np.bincount(ds.targets)
    assert counts[0] == 980 and counts[1] == 1135 and counts.sum() == 10_000
    assert 0.0 <= ds.data.min() and ds.data.max() <= 1.0


def test_debian_fashion_mnist_if_installed(tmp_path) -> None:
    folder = "/usr/share/datasets/fashion-mnist"
    if not os.path.isfile(os.path.join(folder, "t10k-images-idx3-ubyte.gz")):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Debian re-compressed them: accepted by content checksum
        ds = FashionMNIST(root=tmp_path, train=False, download=False)
    assert len(ds) == 10_000 and np.bincount(ds.targets).tolist() == [1000] * 10


# --------------------------------------------------------------------------- Shapes


def test_shapes_interface_and_range() -> None:
    ds = Shapes(n=200, seed=0)
    assert ds.data.shape == (200, 1, 28, 28) and ds.data.dtype == np.float32
    assert ds.targets.dtype == np.int64 and ds.classes == ["square", "disc", "triangle", "cross"]
    assert ds.data.min() >= 0.0 and ds.data.max() <= 1.0
    assert (ds.data.reshape(200, -1).max(axis=1) == 1.0).all()  # every image has a solid shape
    edges = ds.data[:, 0, [0, -1], :], ds.data[:, 0, :, [0, -1]]
    assert all((e == 0).all() for e in edges)  # and it stays inside the frame
    grey = ((ds.data > 0) & (ds.data < 1)).sum(axis=(1, 2, 3))
    assert (grey > 0).all()  # anti-aliased edges
    image, label = ds[5]
    assert image.shape == (1, 28, 28) and 0 <= label < 4


def test_shapes_deterministic_by_seed_and_split() -> None:
    a, b = Shapes(n=64, seed=3), Shapes(n=64, seed=3)
    assert a.data.tobytes() == b.data.tobytes() and (a.targets == b.targets).all()
    assert not np.array_equal(a.data, Shapes(n=64, seed=4).data)
    assert not np.array_equal(a.data, Shapes(n=64, seed=3, train=False).data)


@pytest.mark.parametrize("n, classes", [(400, None), (90, ("disc", "cross", "triangle"))])
def test_shapes_balanced(n, classes) -> None:
    ds = Shapes(n=n) if classes is None else Shapes(n=n, classes=classes)
    k = len(ds.classes)
    assert np.bincount(ds.targets, minlength=k).tolist() == [n // k] * k


def test_shapes_uneven_n_nearly_balanced() -> None:
    counts = np.bincount(Shapes(n=10).targets, minlength=4)
    assert counts.sum() == 10 and counts.max() - counts.min() <= 1


def test_shapes_classes_look_different() -> None:
    ds = Shapes(n=400)
    means = [ds.data[ds.targets == k].mean() for k in range(4)]
    assert min(means) > 0.1  # shapes are drawn for every class
    # A disc has no corners: its silhouette differs from the square's pixel for pixel.
    assert not np.allclose(ds.data[ds.targets == 0].mean(0), ds.data[ds.targets == 1].mean(0), atol=1e-3)


def test_shapes_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="classes"):
        Shapes(n=8, classes=("square", "hexagon"))
    with pytest.raises(ValueError, match="n must"):
        Shapes(n=-1)


# --------------------------------------------------------------------------- in-memory datasets


def test_tensor_dataset() -> None:
    x = np.eye(8, dtype=np.float32)
    ds = TensorDataset(x, np.arange(8))
    assert len(ds) == 8 and ds[3][0].argmax() == 3 and ds[3][1] == 3
    assert ArrayDataset is TensorDataset
    wrapped = TensorDataset(Tensor(x))
    assert wrapped.arrays[0] is x  # a Tensor's array, not a copy
    with pytest.raises(ValueError, match="same first dimension"):
        TensorDataset(x, np.arange(7))
    with pytest.raises(ValueError):
        TensorDataset()


def test_subset() -> None:
    base = Shapes(n=40)
    sub = Subset(base, [5, 1, 7])
    assert len(sub) == 3 and sub.classes == base.classes
    np.testing.assert_array_equal(sub[0][0], base.data[5])
    x, y = sub.get_batch(np.array([2, 0]))
    np.testing.assert_array_equal(x, base.data[[7, 5]])
    np.testing.assert_array_equal(y, base.targets[[7, 5]])
    with pytest.raises(IndexError):
        Subset(base, [40])


# --------------------------------------------------------------------------- DataLoader


class ListDataset:
    """A dataset with only __len__/__getitem__ (the slow, general path)."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


def test_loader_len_and_batches() -> None:
    ds = TensorDataset(np.arange(10, dtype=np.float32)[:, None], np.arange(10))
    loader = DataLoader(ds, batch_size=3)
    assert len(loader) == 4
    batches = list(loader)
    assert [len(b[0].data) for b in batches] == [3, 3, 3, 1]
    assert all(isinstance(t, Tensor) for b in batches for t in b)
    assert batches[0][0].data.dtype == np.float32 and batches[0][1].data.dtype == np.int64
    np.testing.assert_array_equal(np.concatenate([b[1].data for b in batches]), np.arange(10))
    dropped = DataLoader(ds, batch_size=3, drop_last=True)
    assert len(dropped) == 3 and [len(b[0].data) for b in dropped] == [3, 3, 3]
    assert len(DataLoader(ds, batch_size=20, drop_last=True)) == 0


def test_loader_shuffle_reproducible_per_epoch() -> None:
    ds = TensorDataset(np.arange(50))

    def epoch_order(loader: DataLoader) -> list[int]:
        return np.concatenate([b[0].data for b in loader]).tolist()

    a, b = DataLoader(ds, 8, shuffle=True, seed=7), DataLoader(ds, 8, shuffle=True, seed=7)
    a0, a1, a2 = epoch_order(a), epoch_order(a), epoch_order(a)
    assert sorted(a0) == list(range(50))  # every item once
    assert a0 != a1 != a2 and a0 != list(range(50))  # reshuffled each epoch
    assert epoch_order(b) == a0 and a.epoch == 3
    # A resumed run reproduces epoch 2 without replaying epochs 0 and 1.
    resumed = DataLoader(ds, 8, shuffle=True, seed=7)
    resumed.set_epoch(2)
    assert epoch_order(resumed) == a2
    assert epoch_order(DataLoader(ds, 8, shuffle=True, seed=8)) != a0
    unseeded = DataLoader(ds, 8, shuffle=True)
    replay = DataLoader(ds, 8, shuffle=True, seed=unseeded.seed)
    assert epoch_order(unseeded) == epoch_order(replay)


def test_loader_without_seed_follows_manual_seed() -> None:
    import tinyae

    ds = TensorDataset(np.arange(50))

    def order(loader: DataLoader) -> list[int]:
        return np.concatenate([b[0].data for b in loader]).tolist()

    saved = tinyae.generator().bit_generator.state
    try:
        tinyae.manual_seed(3)
        first = order(DataLoader(ds, 8, shuffle=True))
        tinyae.manual_seed(3)
        assert order(DataLoader(ds, 8, shuffle=True)) == first  # as torch.manual_seed does for PyTorch
        tinyae.manual_seed(4)
        assert order(DataLoader(ds, 8, shuffle=True)) != first
        tinyae.manual_seed(3)
        a, b = DataLoader(ds, 8, shuffle=True), DataLoader(ds, 8, shuffle=True)
        assert order(a) == first and order(b) != first  # each loader draws its own seed
        tinyae.manual_seed(3)
        DataLoader(ds, 8)  # no shuffling: nothing drawn, the next number is the seeded one
        drawn = tinyae.generator().integers(2**63)
        tinyae.manual_seed(3)
        assert drawn == tinyae.generator().integers(2**63)
    finally:
        tinyae.generator().bit_generator.state = saved


def test_loader_fast_and_slow_paths_agree() -> None:
    shapes = Shapes(n=64)
    fast = list(DataLoader(shapes, 16, shuffle=True, seed=1))
    slow = list(DataLoader(ListDataset(shapes.data, shapes.targets), 16, shuffle=True, seed=1))
    for (xf, yf), (xs, ys) in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(xf.data, xs.data)
        np.testing.assert_array_equal(yf.data, ys.data)
        assert xf.shape == (16, 1, 28, 28)


def test_loader_fast_path_does_not_call_getitem() -> None:
    class Counting(TensorDataset):
        calls = 0

        def __getitem__(self, i):
            Counting.calls += 1
            return super().__getitem__(i)

    for _ in DataLoader(Counting(np.zeros((100, 3))), batch_size=10, shuffle=True, seed=0):
        pass
    assert Counting.calls == 0


def test_loader_rejects_bad_arguments() -> None:
    ds = TensorDataset(np.zeros(4))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            DataLoader(ds, batch_size=bad)
    with pytest.raises(ValueError, match="device"):
        DataLoader(ds, device="tpu")


def test_loader_cuda_unavailable_fails_early(monkeypatch) -> None:
    from tinyae import backend

    if backend.cuda_is_available():
        pytest.skip("a GPU is available here")
    with pytest.raises(RuntimeError, match="CUDA"):
        DataLoader(TensorDataset(np.zeros(4)), device="cuda")


# --------------------------------------------------------------------------- noise


def grey(shape=(64, 1, 28, 28), value: float = 0.5) -> np.ndarray:
    return np.full(shape, value, dtype=np.float32)


def test_gaussian_noise() -> None:
    x = grey()
    y = GaussianNoise(0.1)(x, np.random.default_rng(0))
    assert y.dtype == np.float32 and y.shape == x.shape and (x == 0.5).all()  # input untouched
    assert abs(float((y - x).std()) - 0.1) < 0.005 and 0.0 <= y.min() and y.max() <= 1.0
    assert (GaussianNoise(5.0)(x, 1) ** 2 == GaussianNoise(5.0)(x, 1) ** 2).all()  # seeded
    clipped = GaussianNoise(5.0)(x, 1)
    assert set(np.unique(clipped)) - {0.0, 1.0} and clipped.min() == 0.0 and clipped.max() == 1.0
    np.testing.assert_array_equal(GaussianNoise(0.0)(x, 0), x)
    assert GaussianNoise(0.1)(x.astype(np.float64), 0).dtype == np.float64


def test_salt_and_pepper() -> None:
    x = grey()
    y = SaltAndPepper(0.2)(x, 0)
    changed = y != x
    assert abs(changed.mean() - 0.2) < 0.01
    assert set(np.unique(y[changed])) == {0.0, 1.0} and abs(y[changed].mean() - 0.5) < 0.03
    np.testing.assert_array_equal(SaltAndPepper(0.0)(x, 0), x)
    assert set(np.unique(SaltAndPepper(1.0)(x, 0))) == {0.0, 1.0}


def test_masking_noise() -> None:
    x = grey(value=1.0)
    y = MaskingNoise(0.3)(x, 0)
    assert abs((y == 0).mean() - 0.3) < 0.01 and set(np.unique(y)) == {0.0, 1.0}
    assert (MaskingNoise(1.0)(x, 0) == 0).all()
    np.testing.assert_array_equal(MaskingNoise(0.0)(x, 0), x)


def test_compose_is_reproducible_and_ordered() -> None:
    x = Shapes(n=8).data
    chain = Compose([GaussianNoise(0.2), MaskingNoise(0.5)])
    np.testing.assert_array_equal(chain(x, 3), chain(x, np.random.default_rng(3)))
    rng = np.random.default_rng(3)
    manual = MaskingNoise(0.5)(GaussianNoise(0.2)(x, rng), rng)
    np.testing.assert_array_equal(chain(x, 3), manual)
    assert "GaussianNoise(sigma=0.2)" in repr(chain)


def test_noise_on_tensor_returns_tensor() -> None:
    t = Tensor(grey((2, 4)))
    out = MaskingNoise(0.5)(t, 0)
    assert isinstance(out, Tensor) and out.shape == (2, 4)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: GaussianNoise(-0.1), "sigma"),
        (lambda: GaussianNoise(float("nan")), "sigma"),
        (lambda: SaltAndPepper(1.5), "p"),
        (lambda: SaltAndPepper(-0.01), "p"),
        (lambda: MaskingNoise(2), "fraction"),
        (lambda: MaskingNoise(float("nan")), "fraction"),
    ],
)
def test_noise_parameter_validation(make, name) -> None:
    with pytest.raises(ValueError, match=rf"\b{name} must"):
        make()


def test_noise_rejects_integer_images() -> None:
    with pytest.raises(TypeError, match="floating"):
        GaussianNoise(0.1)(np.zeros((2, 2), np.uint8), 0)


# --------------------------------------------------------------------------- devices (cuda: GPU only)


def test_loader_puts_batches_on_device(device) -> None:
    from tinyae.backend import device_of

    loader = DataLoader(Shapes(n=40), batch_size=16, shuffle=True, seed=0, device=device)
    batches = list(loader)
    assert len(batches) == 3
    for x, y in batches:
        assert device_of(x.data).startswith(device) and device_of(y.data).startswith(device)
        assert x.data.dtype == np.float32 and y.data.dtype == np.int64


def test_noise_on_device(device) -> None:
    from tinyae.backend import get_array_module, to_device

    x = to_device(grey(value=1.0), device)
    xp = get_array_module(x)
    for noise in (GaussianNoise(0.1), SaltAndPepper(0.1), MaskingNoise(0.3), Compose([MaskingNoise(0.1)])):
        y = noise(x, 0)
        assert get_array_module(y) is xp and y.dtype == x.dtype and y.shape == x.shape
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # the same seed gives the same corruption on that device
    assert bool((MaskingNoise(0.5)(x, 3) == MaskingNoise(0.5)(x, 3)).all())
    zeroed = float((MaskingNoise(0.3)(x, np.random.default_rng(1)) == 0).mean())
    assert abs(zeroed - 0.3) < 0.01
