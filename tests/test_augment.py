"""``tinyae.data.augment.RandomShift``: each image moved by its own whole-pixel offset.

Checked against a plain loop over the images (the offsets recovered from where each
image's marked pixel went), the zero border, the range of offsets, reproducibility,
the original left untouched, Tensors in and out, and clear errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyae.data.augment import RandomShift
from tinyae.tensor import Tensor


def _shifted(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The plain version: out[i, j] = img[i - dy, j - dx] where that is inside, else 0."""
    c, h, w = img.shape
    out = np.zeros_like(img)
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = img[:, i - dy, j - dx]
    return out


@pytest.mark.parametrize("s", [1, 2, 3])
def test_each_image_is_its_own_shift_of_the_original(s):
    rng = np.random.default_rng(0)
    n, c, h, w = 40, 2, 9, 11
    x = rng.random((n, c, h, w)).astype(np.float32) + 0.5  # no zeros: every moved pixel is seen
    x[:, :, 4, 5] = 7.0  # a mark in the middle, to find each image's offset
    before = x.copy()
    out = RandomShift(s)(x, 1)
    np.testing.assert_array_equal(x, before)  # not in place
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = set()
    for k in range(n):
        (i,), (j,) = np.nonzero(out[k, 0] == 7.0)
        dy, dx = i - 4, j - 5
        assert abs(dy) <= s and abs(dx) <= s
        offsets.add((dy, dx))
        np.testing.assert_array_equal(out[k], _shifted(x[k], dy, dx))
    assert len(offsets) > 1  # the images are not all moved alike


def test_every_offset_turns_up_and_seeds_repeat():
    x = np.zeros((2000, 1, 5, 5), np.float32)
    x[:, 0, 2, 2] = 1.0
    out = RandomShift(1)(x, 3)
    where = [tuple(np.argwhere(o[0] == 1.0)[0] - 2) for o in out]
    assert set(where) == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
    np.testing.assert_array_equal(out, RandomShift(1)(x, 3))
    assert not np.array_equal(out, RandomShift(1)(x, 4))


def test_zero_shift_copies_and_tensors_stay_tensors():
    x = np.random.default_rng(1).random((3, 1, 4, 4)).astype(np.float32)
    out = RandomShift(0)(x, 0)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    t = RandomShift(2)(Tensor(x), 0)
    assert isinstance(t, Tensor) and t.shape == x.shape


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_max_shift_is_named(bad):
    with pytest.raises((ValueError, TypeError), match="RandomShift: max_shift"):
        RandomShift(bad)


def test_not_images_is_named():
    with pytest.raises(ValueError, match=r"RandomShift: expected images \(N, C, H, W\), got shape \(3, 4\)"):
        RandomShift(1)(np.zeros((3, 4), np.float32), 0)
    with pytest.raises(TypeError, match="RandomShift: expected floating-point"):
        RandomShift(1)(np.zeros((1, 1, 3, 3), np.uint8), 0)
