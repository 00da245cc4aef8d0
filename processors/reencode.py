"""Re-encode a JPEG frame before it goes over the uplink: downscale and/or lower quality.

A smaller frame takes less wire time; the cloud detector sees a coarser image (its
accuracy cost is measured offline, see ``bench/offload.py --measure``). Box coordinates
are normalised, so a downscaled frame needs no mapping back.

>>> import numpy as np
>>> from autosteer.processors.decode import decode_jpeg, encode_jpeg
>>> src = encode_jpeg(np.full((576, 768, 3), 128, np.uint8), 85)
>>> decode_jpeg(reencode(src, scale=0.5, quality=70)).shape
(288, 384, 3)
>>> reencode(src, scale=1.0, quality=None) is src   # full quality: the bytes as they are
True
"""

from __future__ import annotations

import cv2
from autosteer.processors.decode import decode_jpeg, encode_jpeg


def reencode(jpeg: bytes, *, scale: float = 1.0, quality: int | None = None) -> bytes:
    """``jpeg`` decoded, resized by ``scale`` (area interpolation) and encoded at
    ``quality``; the input unchanged when there is nothing to do (``scale`` 1, no quality).

    Raises :class:`~autosteer.errors.DecodeError` for bytes that are not an image."""
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale must be within (0, 1]; got {scale}")
    if quality is not None and not 1 <= quality <= 100:
        raise ValueError(f"quality must be within [1, 100] or None; got {quality}")
    if scale == 1.0 and quality is None:
        return jpeg
    img = decode_jpeg(jpeg)
    if scale < 1.0:
        h, w = img.shape[:2]
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return encode_jpeg(img, 85 if quality is None else quality)
