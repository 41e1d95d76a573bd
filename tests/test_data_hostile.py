"""Hostile data files: gzip bombs, lying headers, oversized files, corrupt or partial MNIST.

What is checked: reading never goes (much) further than the IDX header or the
dataset's known sizes allow, measured by the compressed bytes read and by the
peak of Python's allocations (tracemalloc), never by wall time; and ``--dataset
auto`` falls back to Shapes only when no MNIST file is there at all, while files
that are there but broken are an error naming each one.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import threading
import tracemalloc
import warnings
import zlib

import numpy as np
import pytest

from tinyae.cli import main
from tinyae.data import (
    MNIST,
    CorruptDatasetError,
    CorruptFileWarning,
    DatasetNotFoundError,
    IDXError,
    Resource,
    download_file,
    encode_idx,
    read_idx,
    read_idx_stream,
)
from tinyae.train import load_images

MB = 1 << 20


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def gzip_bomb(header: bytes, zeros: int) -> bytes:
    """gzip of ``header`` followed by ``zeros`` zero bytes, built without holding them in memory."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [c.compress(header)]
    block = bytes(MB)
    for _ in range(zeros // MB):
        parts.append(c.compress(block))
    parts.append(c.compress(bytes(zeros % MB)))
    parts.append(c.flush())
    return b"".join(parts)


class CountingFile(io.RawIOBase):
    """A seekable in-memory file that counts the bytes handed out."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, b) -> int:
        chunk = self._inner.read(len(b))
        b[: len(chunk)] = chunk
        self.bytes_read += len(chunk)
        return len(chunk)


def peak_bytes(fn) -> tuple[object, int]:
    """``fn()``'s result (or exception) and the peak of Python allocations while it ran."""
    tracemalloc.start()
    try:
        try:
            result: object = fn()
        except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------- bounded reads

IMAGES_HEADER = encode_idx(np.zeros((10, 28, 28), np.uint8))[:16]  # says 7,840 bytes of pixels follow


def test_gzip_bomb_with_a_valid_header_stops_after_the_header_size() -> None:
    bomb = gzip_bomb(IMAGES_HEADER, 64 * MB)  # ~64 KB that inflate to 64 MB
    f = CountingFile(bomb)
    result, peak = peak_bytes(lambda: read_idx_stream(f, "bomb.gz", file_size=len(bomb)))
    assert isinstance(result, IDXError) and "trailing bytes" in str(result)
    assert f.bytes_read < len(bomb) // 4, (f.bytes_read, len(bomb))
    assert peak < 4 * MB, peak


def test_gzip_bomb_of_zeros_stops_at_the_magic_number() -> None:
    bomb = gzip_bomb(b"", 64 * MB)
    f = CountingFile(bomb)
    result, peak = peak_bytes(lambda: read_idx_stream(f, "zeros.gz", file_size=len(bomb)))
    assert isinstance(result, IDXError) and "bad magic number" in str(result)
    assert f.bytes_read < len(bomb) // 4 and peak < 4 * MB


def test_header_asking_more_than_the_gzip_file_can_hold_is_refused_before_reading() -> None:
    header = encode_idx(np.zeros((1, 1, 1), np.uint8))[:4] + np.array([60_000, 2800, 2800], ">u4").tobytes()
    blob = gzip.compress(header + bytes(1000))
    f = CountingFile(blob)
    result, peak = peak_bytes(lambda: read_idx_stream(f, "liar.gz", file_size=len(blob)))
    assert isinstance(result, IDXError) and "more than a gzip file of" in str(result)
    assert peak < MB  # the 470 MB the header asks for were never allocated


def test_header_asking_more_than_max_bytes_is_refused(tmp_path) -> None:
    path = tmp_path / "big-idx3-ubyte.gz"
    path.write_bytes(gzip_bomb(encode_idx(np.zeros((1000, 28, 28), np.uint8))[:16], 1000 * 784))
    with pytest.raises(IDXError, match="more than the 7856 bytes") as info:
        read_idx(path, max_bytes=7856)
    assert str(path) in str(info.value)


def test_plain_file_shorter_than_its_header_allocates_nothing(tmp_path) -> None:
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(np.array([0x00000803, 100_000, 2800, 2800], ">u4").tobytes() + bytes(100))
    result, peak = peak_bytes(lambda: read_idx(path))
    assert isinstance(result, IDXError) and "truncated" in str(result)
    assert peak < MB


# --------------------------------------------------------------------------- MNIST with known sizes

N_TRAIN, N_TEST = 30, 10


def mnist_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    files = {}
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        files[f"{prefix}-images-idx3-ubyte.gz"] = encode_idx(rng.integers(0, 256, (n, 28, 28), np.uint8))
        files[f"{prefix}-labels-idx1-ubyte.gz"] = encode_idx(rng.integers(0, 10, n, np.uint8))
    return files


RAW = mnist_files()
GZ = {name: gzip.compress(raw, mtime=0) for name, raw in RAW.items()}
RESOURCES = {
    split: tuple(
        Resource(
            f"{prefix}-{kind}-idx{d}-ubyte.gz",
            md5(GZ[f"{prefix}-{kind}-idx{d}-ubyte.gz"]),
            md5(RAW[f"{prefix}-{kind}-idx{d}-ubyte.gz"]),
            len(RAW[f"{prefix}-{kind}-idx{d}-ubyte.gz"]),
        )
        for kind, d in (("images", 3), ("labels", 1))
    )  # fmt: skip
    for split, prefix in (("train", "train"), ("test", "t10k"))
}


@pytest.fixture
def fake_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    """MNIST with the tiny files above as its published files, and no mirrors."""
    monkeypatch.setattr(MNIST, "resources", RESOURCES)
    monkeypatch.setattr(MNIST, "mirrors", ())
    monkeypatch.delenv("TINYAE_DATA", raising=False)


def write(folder, names=None, replace: dict[str, bytes] | None = None) -> None:
    os.makedirs(folder, exist_ok=True)
    for name in names if names is not None else GZ:
        (folder / name).write_bytes((replace or {}).get(name, GZ[name]))


def test_mnist_bomb_is_rejected_within_the_known_size(tmp_path, fake_mnist) -> None:
    size = RESOURCES["train"][0].raw_size
    header = encode_idx(np.zeros((N_TRAIN, 28, 28), np.uint8))[:16]
    write(tmp_path, replace={"train-images-idx3-ubyte.gz": gzip_bomb(header, 64 * MB)})
    with pytest.warns(CorruptFileWarning):
        result, peak = peak_bytes(lambda: MNIST(tmp_path, download=False))
    assert isinstance(result, CorruptDatasetError)
    assert "train-images-idx3-ubyte.gz" in str(result) and "trailing bytes" in str(result)
    assert peak < 4 * MB + 4 * size


def test_mnist_file_larger_than_any_copy_can_be_is_not_read(tmp_path, fake_mnist) -> None:
    res = RESOURCES["train"][1]
    write(tmp_path, replace={res.filename: bytes(res.max_file_size + 1)})
    with pytest.warns(CorruptFileWarning), pytest.raises(CorruptDatasetError, match="more than any copy of"):
        MNIST(tmp_path, download=False)


def test_download_longer_than_max_bytes_is_cut_and_leaves_nothing(tmp_path) -> None:
    body = bytes(50_000)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            self.send_response(200)
            self.end_headers()  # no Content-Length: only max_bytes can stop it
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.handle_request, daemon=True)
    thread.start()
    dest = tmp_path / "f.gz"
    try:
        with pytest.raises(OSError, match="goes on past 10000 bytes"):
            download_file(
                f"http://127.0.0.1:{httpd.server_address[1]}/f.gz", dest, max_bytes=10_000, timeout=5
            )
    finally:
        thread.join(5)
        httpd.server_close()
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- auto: absent vs broken


def test_corrupt_file_is_an_error_that_names_every_bad_file(tmp_path, fake_mnist) -> None:
    truncated = GZ["train-images-idx3-ubyte.gz"][:500]
    write(tmp_path, [n for n in GZ if n != "t10k-labels-idx1-ubyte.gz"],
          replace={"train-images-idx3-ubyte.gz": truncated})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the exception says it all; no warning on top
        with pytest.raises(CorruptDatasetError) as info:
            load_images("auto", root=str(tmp_path), limit_train=8, limit_test=4)
    files = dict(info.value.files)
    assert set(files) == {str(tmp_path / "train-images-idx3-ubyte.gz"), "t10k-labels-idx1-ubyte.gz"}
    assert "truncated" in files[str(tmp_path / "train-images-idx3-ubyte.gz")]
    assert md5(truncated) in files[str(tmp_path / "train-images-idx3-ubyte.gz")]
    assert files["t10k-labels-idx1-ubyte.gz"].startswith("missing")
    assert "\n" not in info.value.summary and "Fix:" in info.value.summary


def test_an_incomplete_set_is_an_error_not_a_fallback(tmp_path, fake_mnist) -> None:
    write(tmp_path, ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"])
    with pytest.raises(CorruptDatasetError, match="t10k-images-idx3-ubyte.gz: missing"):
        load_images("auto", root=str(tmp_path))


def test_auto_without_any_file_falls_back_and_says_where_it_looked(tmp_path, fake_mnist) -> None:
    data = load_images("auto", root=str(tmp_path / "empty"), limit_train=8, limit_test=4)
    assert data.name == "shapes"
    assert data.notice.startswith("note: MNIST is not in ") and str(tmp_path / "empty") in data.notice
    assert "found" not in data.notice  # the old note claimed "not found locally" for rejected files


def test_corrupt_local_copy_replaced_by_a_download_trains_on_mnist(tmp_path, monkeypatch, fake_mnist) -> None:
    folder = tmp_path / "mnist"
    write(folder, replace={"train-labels-idx1-ubyte.gz": b"\x1f\x8bgarbage"})
    served = {f"/m/{name}": blob for name, blob in GZ.items()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = served[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setattr(MNIST, "mirrors", (f"http://127.0.0.1:{httpd.server_address[1]}/m/",))
    try:
        with pytest.warns(CorruptFileWarning, match="train-labels"):
            data = load_images("auto", root=str(tmp_path))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert data.name == "mnist" and len(data.x_train) == N_TRAIN and data.notice is None
    assert (folder / "train-labels-idx1-ubyte.gz").read_bytes() == GZ["train-labels-idx1-ubyte.gz"]


def test_cli_corrupt_mnist_exits_3_with_one_line_naming_the_file(tmp_path, fake_mnist, capsys) -> None:
    write(tmp_path / "data", replace={"t10k-images-idx3-ubyte.gz": b"not gzip, not IDX"})
    out = tmp_path / "run"
    argv = ["train", "ae", "--data-root", str(tmp_path / "data"), "--out", str(out), "--epochs", "1",
            "--hidden", "8", "--code-size", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tinyae train: error: "), err
    assert str(tmp_path / "data" / "t10k-images-idx3-ubyte.gz") in err and "Fix:" in err
    assert "Shapes" not in err
    assert not out.exists()  # nothing trained, and the run directory made for it is gone again


def test_mnist_absent_and_no_download_is_still_a_dataset_not_found_error(tmp_path, fake_mnist) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        MNIST(tmp_path, download=False)
    assert not isinstance(info.value, CorruptDatasetError)
    assert "download=False" in info.value.summary
