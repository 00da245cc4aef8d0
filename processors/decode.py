"""JPEG encode/decode with errors that go to the dead-letter topic."""

from __future__ import annotations

import cv2
import numpy as np
from autosteer.errors import DecodeError

MAX_PIXELS = 8192 * 8192


def decode_jpeg(data: bytes) -> np.ndarray:
    """Decode image bytes to a BGR uint8 array, or raise DecodeError saying why.

    >>> decode_jpeg(b"")
    Traceback (most recent call last):
    ...
    autosteer.errors.DecodeError: empty image payload (0 bytes)
    """
    if not data:
        raise DecodeError("empty image payload (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        head = data[:4].hex()
        raise DecodeError(f"image bytes are not a decodable JPEG/PNG ({len(data)} bytes, starts {head})")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise DecodeError(f"image too large: {img.shape[1]}x{img.shape[0]}")
    return img


def encode_jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DecodeError(f"cannot JPEG-encode an image of shape {img.shape}")
    return buf.tobytes()
