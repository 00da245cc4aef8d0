"""JPEG/PNG encode and decode, within a budget, with errors that go to the dead-letter topic.

A frame's header is read before anything is decoded: the declared width, height and
channels must fit :class:`DecodeLimits` (a pixel limit and a memory budget, both from
settings), so a header that claims a huge picture (a decompression bomb) is refused
before any allocation. Whatever the decoder itself raises becomes a :class:`DecodeError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
from autosteer.errors import DecodeError

MAX_PIXELS = 8192 * 8192
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOFn markers: baseline, progressive, lossless, arithmetic (not DHT C4, JPG C8, DAC CC)
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


@dataclass(frozen=True)
class DecodeLimits:
    """The largest picture a decode may produce: ``max_pixels`` (width x height) and
    ``max_bytes`` for the decoded image and the decoder's own buffer."""

    max_pixels: int = MAX_PIXELS
    max_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header declares, read without decoding it."""

    format: str  # "jpeg" | "png"
    width: int
    height: int
    channels: int
    bytes_per_sample: int = 1

    def decoded_bytes(self) -> int:
        """Bytes the decode needs at most: the BGR result, or the decoder's own
        buffer of the declared channels and depth if that is larger."""
        pixels = self.width * self.height
        return max(pixels * 3, pixels * self.channels * self.bytes_per_sample)


def read_header(data: bytes) -> ImageHeader:
    """The declared size of a JPEG or PNG image, or DecodeError saying why it has none.

    >>> read_header(encode_jpeg(np.zeros((48, 64, 3), np.uint8)))
    ImageHeader(format='jpeg', width=64, height=48, channels=3, bytes_per_sample=1)
    >>> read_header(b"GIF89a...")
    Traceback (most recent call last):
    ...
    autosteer.errors.DecodeError: image bytes are neither JPEG nor PNG (9 bytes, starts 47494638)
    """
    if data[:2] == b"\xff\xd8":
        return _jpeg_header(data)
    if data[:8] == PNG_SIGNATURE:
        return _png_header(data)
    raise DecodeError(f"image bytes are neither JPEG nor PNG ({len(data)} bytes, "
                      f"starts {data[:4].hex()})")


def _jpeg_header(data: bytes) -> ImageHeader:
    """Walk the segments up to the scan: every marker must be one, the frame header
    (SOFn) must come before the scan, and the end-of-image marker after it."""
    pos, n = 2, len(data)
    header: ImageHeader | None = None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise DecodeError(f"corrupt JPEG: expected a marker at byte {pos}, "
                              f"found 0x{data[pos]:02x}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0x00):
            raise DecodeError(f"corrupt JPEG: marker 0x{marker:02x} at byte {pos}, "
                              "before the scan")
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2 or pos + 2 + length > n:
            raise DecodeError(f"truncated or corrupt JPEG: segment 0x{marker:02x} at byte "
                              f"{pos} has length {length}, the data ends at {n}")
        if marker in _SOF:
            if length < 8:
                raise DecodeError(f"corrupt JPEG: frame header of length {length}")
            _precision, height, width, channels = struct.unpack(">BHHB", data[pos + 4:pos + 10])
            if width == 0 or height == 0 or channels == 0:
                raise DecodeError(f"JPEG frame header declares {width}x{height} pixels with "
                                  f"{channels} channel(s); a frame needs all three > 0")
            header = ImageHeader("jpeg", width, height, channels)
        elif marker == 0xDA:  # start of scan: entropy-coded data follows
            if header is None:
                raise DecodeError("corrupt JPEG: the scan starts before any frame header")
            if data.rfind(b"\xff\xd9") < pos + 2 + length:
                raise DecodeError(f"truncated JPEG: no end-of-image marker after the scan "
                                  f"({n} bytes)")
            return header
        pos += 2 + length
    raise DecodeError(f"truncated or corrupt JPEG: no scan in its {n} bytes")


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise DecodeError(f"truncated or corrupt PNG: no IHDR chunk in its {len(data)} bytes")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16) or not width or not height:
        raise DecodeError(f"corrupt PNG header: {width}x{height}, bit depth {depth}, "
                          f"colour type {colour}")
    if b"IEND" not in data[-16:]:
        raise DecodeError(f"truncated PNG: no IEND chunk at the end of its {len(data)} bytes")
    return ImageHeader("png", width, height, _PNG_CHANNELS[colour], 2 if depth == 16 else 1)


def check_header(header: ImageHeader, limits: DecodeLimits) -> None:
    """Raise DecodeError when ``header`` declares more than ``limits`` allow."""
    pixels = header.width * header.height
    if pixels > limits.max_pixels:
        raise DecodeError(
            f"image too large: the {header.format} header declares {header.width}x"
            f"{header.height} = {pixels:,} pixels, over the limit of {limits.max_pixels:,} "
            "(AUTOSTEER_MAX_IMAGE_PIXELS); downscale at the camera")
    need = header.decoded_bytes()
    if need > limits.max_bytes:
        raise DecodeError(
            f"image too large to decode: {header.width}x{header.height}x{header.channels} "
            f"needs {need / 2**20:.0f} MiB, over the budget of {limits.max_bytes / 2**20:.0f} "
            "MiB (AUTOSTEER_DECODE_BUDGET_MB)")


DEFAULT_LIMITS = DecodeLimits()


def decode_jpeg(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode JPEG/PNG bytes to a BGR uint8 array within ``limits``, or raise
    DecodeError saying why.

    >>> decode_jpeg(b"")
    Traceback (most recent call last):
    ...
    autosteer.errors.DecodeError: empty image payload (0 bytes)
    """
    if not data:
        raise DecodeError("empty image payload (0 bytes)")
    header = read_header(data)
    check_header(header, limits)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise DecodeError(f"the {header.format} decoder failed on {len(data)} bytes: "
                          f"{str(exc).strip().splitlines()[-1]}") from exc
    if img is None or img.size == 0:
        raise DecodeError(f"image bytes are not a decodable {header.format.upper()} "
                          f"({len(data)} bytes, starts {data[:4].hex()})")
    if sorted(img.shape[:2]) != sorted((header.height, header.width)):  # EXIF may rotate
        raise DecodeError(f"the {header.format} header declares {header.width}x"
                          f"{header.height}, the image decoded to {img.shape[1]}x{img.shape[0]}")
    return img


def encode_jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    try:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    except cv2.error as exc:
        raise DecodeError(f"cannot JPEG-encode an image of shape {img.shape}: "
                          f"{str(exc).strip().splitlines()[-1]}") from exc
    if not ok:
        raise DecodeError(f"cannot JPEG-encode an image of shape {img.shape}")
    return buf.tobytes()
