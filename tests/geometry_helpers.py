"""The kernel tests list their cases as loose (KH, KW, SH, SW, PH, PW, DH, DW) tuples; this turns
one into the ``tinyae.kernels.Geometry`` the kernels take."""

from __future__ import annotations

from tinyae.kernels import Geometry


def G(kh, kw, sh, sw, ph, pw, dh, dw, groups=1) -> Geometry:  # noqa: N802 - short, read in every case
    """The Geometry of (KH, KW, SH, SW, PH, PW, DH, DW[, groups])."""
    return Geometry((kh, kw), (sh, sw), (ph, pw), (dh, dw), groups)
