"""The C++ kernels under property-based fuzzing (hypothesis).

Random geometries, shapes, dtypes and memory layouts (contiguous, strided, transposed,
broadcast views) go to the extension and to the NumPy twin: the results must agree, and
anything the kernels refuse must be refused with a ValueError or TypeError (or a MemoryError
for a result too big to allocate), never a crash or a silent wrong answer. The sanitizer job
(tests/test_sanitizers.py) runs this file too, so an out-of-bounds access anywhere in these
cases is reported there.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import tinyae.kernels as K
from tinyae.kernels import Geometry
from tinyae.kernels import numpy_kernels as nk

_C = pytest.importorskip("tinyae._C", reason="the C++ extension is not built")

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIRECT = _C.conv2d_direct_supported()

small = st.integers(1, 4)
pairs = st.tuples(small, small)


@st.composite
def geometries(draw: st.DrawFn, groups: int = 1) -> Geometry:
    return Geometry(
        kernel=draw(pairs),
        stride=draw(st.tuples(st.integers(1, 3), st.integers(1, 3))),
        padding=draw(st.tuples(st.integers(0, 3), st.integers(0, 3))),
        dilation=draw(st.tuples(st.integers(1, 3), st.integers(1, 3))),
        groups=groups,
    )


def layout(draw: st.DrawFn, a: np.ndarray) -> np.ndarray:
    """``a``, or an equal array in another memory layout."""
    kind = draw(st.sampled_from(["contiguous", "strided", "transposed", "fortran"]))
    if kind == "strided":
        return np.repeat(a, 2, axis=-1)[..., ::2]
    if kind == "transposed":
        return np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1)
    if kind == "fortran":
        return np.asfortranarray(a)
    return a


@FUZZ
@given(data=st.data(), geometry=geometries(), dtype=st.sampled_from([np.float32, np.float64]))
def test_im2col_and_col2im_agree_with_the_twin(data: st.DataObject, geometry: Geometry, dtype: type) -> None:
    n, c = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    h, w = data.draw(st.integers(1, 10)), data.draw(st.integers(1, 10))
    x = layout(data.draw, np.random.default_rng(0).standard_normal((n, c, h, w)).astype(dtype))
    oh, ow = geometry.out_size(h, w)
    if oh < 1 or ow < 1:  # the window does not fit: refused by every entry
        for fn in (K.im2col, _C.im2col):
            with pytest.raises(ValueError, match="does not fit"):
                fn(x, geometry)
        return
    col = _C.im2col(x, geometry)
    np.testing.assert_array_equal(col, nk.im2col(np.ascontiguousarray(x), geometry))
    g = layout(data.draw, np.random.default_rng(1).standard_normal(col.shape).astype(dtype))
    got = _C.col2im(g, (h, w), geometry)
    want = nk.col2im(np.ascontiguousarray(g), (h, w), geometry)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max(initial=0))))


@FUZZ
@given(data=st.data(), geometry=geometries())
def test_out_buffers_that_overlap_or_mismatch_are_refused(data: st.DataObject, geometry: Geometry) -> None:
    x = np.random.default_rng(2).standard_normal((2, 2, 8, 8)).astype(np.float32)
    oh, ow = geometry.out_size(8, 8)
    assume(oh >= 1 and ow >= 1)
    shape = (2, *geometry.kernel, 2, oh, ow)
    size = int(np.prod(shape))
    shift = data.draw(st.integers(0, x.size - 1))
    both = np.zeros(x.size + size + shift, np.float32)  # x, and an out overlapping it from `shift` on
    x_in = both[: x.size].reshape(x.shape)
    x_in[...] = x
    out = both[shift : shift + size].reshape(shape)
    for fn in (K.im2col, _C.im2col):
        with pytest.raises(ValueError, match="overlaps"):
            fn(x_in, geometry, out=out)
    wrong = data.draw(st.sampled_from(["shape", "dtype", "readonly"]))
    bad = np.zeros(shape[:-1] + (ow + 1,), np.float32) if wrong == "shape" else np.zeros(shape, np.float32)
    if wrong == "dtype":
        bad = bad.astype(np.float64)
    if wrong == "readonly":
        bad.flags.writeable = False
    for fn in (K.im2col, _C.im2col):
        with pytest.raises((ValueError, TypeError)):
            fn(x, geometry, out=bad)


@FUZZ
@given(
    pad=st.integers(2**20, 2**30),
    n=st.sampled_from([1, 7, 64, 2**20]),
    c=st.sampled_from([1, 3, 64, 2**20]),
)
def test_huge_sizes_are_refused_not_crashed(pad: int, n: int, c: int) -> None:
    """Shapes whose column buffer cannot exist: a huge padding, over a broadcast (zero-stride) x
    of a small or a huge logical size; the extension must raise, never write past a buffer.
    (The sizes of x are picked, not drawn: copying a broadcast x of, say, 2^30 elements is
    legitimate work, and would fill the test machine's memory.)"""
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(n, c, 64, 64), strides=(0, 0, 0, 0))
    with pytest.raises((ValueError, MemoryError)):
        _C.im2col(x, Geometry(kernel=3, padding=pad))
    with pytest.raises((ValueError, MemoryError)):
        _C.im2col(x, Geometry(kernel=(1, 1), stride=1, padding=(pad, pad)))


def test_a_result_whose_byte_size_overflows_is_refused() -> None:
    """2^62 elements fit an int64 count, but not as float32 bytes: refused before any stride
    arithmetic (UBSan found the overflow in the byte strides)."""
    x = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="too large"):
        _C.im2col(x, Geometry(kernel=1, padding=2**30))
    col = np.zeros((1, 1, 1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError):
        _C.col2im(col, (2**30, 2**30), Geometry(kernel=1))


@pytest.mark.skipif(not DIRECT, reason="the direct kernels need a CPU with AVX-512F")
@FUZZ
@given(data=st.data(), groups=st.sampled_from([1, 2]))
def test_direct_convolutions_agree_with_the_twin(data: st.DataObject, groups: int) -> None:
    geometry = data.draw(geometries(groups))
    n = data.draw(st.integers(0, 3))
    cg, cog = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 40))
    h, w = data.draw(st.integers(1, 12)), data.draw(st.integers(1, 12))
    oh, ow = geometry.out_size(h, w)
    assume(oh >= 1 and ow >= 1)
    rng = np.random.default_rng(3)
    x = layout(data.draw, rng.standard_normal((n, cg * groups, h, w)).astype(np.float32))
    wt = rng.standard_normal((cog * groups, cg, *geometry.kernel)).astype(np.float32)
    b = rng.standard_normal(cog * groups).astype(np.float32) if data.draw(st.booleans()) else None
    x64, w64 = np.ascontiguousarray(x, np.float64), wt.astype(np.float64)
    b64 = None if b is None else b.astype(np.float64)

    def close(got: np.ndarray, want: np.ndarray) -> None:
        scale = max(1.0, float(np.abs(want).max(initial=0)))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)

    close(_C.conv2d_direct(x, wt, b, geometry), nk.conv2d_direct(x64, w64, b64, geometry))
    gy = rng.standard_normal((n, cog * groups, oh, ow)).astype(np.float32)
    close(
        _C.conv2d_weight_grad_direct(x, gy, geometry),
        nk.conv2d_weight_grad_direct(x64, gy.astype(np.float64), geometry),
    )
    if geometry.dilation == (1, 1):  # the transposed kernel: x of (H, W) maps back to (h, w)
        wt_t = rng.standard_normal((cog * groups, cg, *geometry.kernel)).astype(np.float32)
        got = _C.conv_transpose2d_direct(gy, wt_t, None, (h, w), geometry)
        close(
            got,
            nk.conv_transpose2d_direct(
                gy.astype(np.float64), wt_t.astype(np.float64), None, (h, w), geometry
            ),
        )
