"""Teacher labels: the cloud tier's boxes on recent shadow frames, as the edge's targets.

A :class:`TeacherFrame` is one BGR image with the cloud model's boxes on it. They come
from the shadow topic (the frame's JPEG and the cloud's answer), from tuples, or, where
only images are at hand, from running the cloud detector here (:func:`label`).

>>> import numpy as np
>>> from autosteer.topics.records import Box
>>> box = Box(label="person", class_id=1, score=0.8, x0=0.1, y0=0.1, x1=0.2, y1=0.4)
>>> frames = teacher_frames([(np.zeros((4, 4, 3), np.uint8), [box])] * 5)
>>> train, held = split(frames, holdout=0.4)
>>> len(train), len(held)
(3, 2)
>>> teacher_frames([("not an image", [])])
Traceback (most recent call last):
...
autosteer.errors.ModelError: teacher frame 0: expected a BGR uint8 array (H, W, 3) or JPEG bytes, and a list of Box; got str
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from autosteer.errors import ModelError
from autosteer.processors.decode import decode_jpeg
from autosteer.processors.detector import Detector
from autosteer.topics.records import Box


@dataclass(frozen=True)
class TeacherFrame:
    """One frame and the teacher's (cloud tier's) boxes on it."""

    image: np.ndarray = field(repr=False)
    boxes: list[Box]
    ts_ms: int = 0


def _frame(i: int, item: Any) -> TeacherFrame:
    if isinstance(item, TeacherFrame):
        return item
    if hasattr(item, "jpeg") and hasattr(item, "boxes"):  # a shadow result record
        image, boxes, ts = item.jpeg, item.boxes, int(getattr(item, "ts_ms", 0))
    elif isinstance(item, tuple | list) and len(item) in (2, 3):
        image, boxes, ts = item[0], item[1], int(item[2]) if len(item) == 3 else 0
    else:
        raise ModelError(f"teacher frame {i}: expected (image, boxes), a TeacherFrame or a "
                         f"record with jpeg and boxes; got {type(item).__name__}")
    if isinstance(image, bytes | bytearray):
        image = decode_jpeg(bytes(image))
    if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3
            and image.dtype == np.uint8):
        raise ModelError(f"teacher frame {i}: expected a BGR uint8 array (H, W, 3) or JPEG "
                         f"bytes, and a list of Box; got {type(image).__name__}")
    return TeacherFrame(image, list(boxes), ts)


def teacher_frames(items: Iterable[Any]) -> list[TeacherFrame]:
    """Normalise ``(BGR image or JPEG bytes, boxes[, ts_ms])`` tuples, TeacherFrames and
    shadow records (anything with ``.jpeg`` and ``.boxes``) to TeacherFrames."""
    return [_frame(i, item) for i, item in enumerate(items)]


def label(cloud: Detector, images: Sequence[np.ndarray], batch: int = 8) -> list[TeacherFrame]:
    """Teacher frames from images by running the cloud detector on them here."""
    out: list[TeacherFrame] = []
    for start in range(0, len(images), batch):
        chunk = list(images[start:start + batch])
        out += [TeacherFrame(img, boxes) for img, boxes in zip(chunk, cloud.detect(chunk),
                                                                strict=True)]
    return out


def split(frames: Sequence[TeacherFrame], holdout: float = 0.5
          ) -> tuple[list[TeacherFrame], list[TeacherFrame]]:
    """Interleaved train / held-out split (deterministic): held-out frames are spread over
    the whole window, so both halves see the same scenes and light."""
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must lie strictly between 0 and 1; got {holdout}")
    held_idx = {int(i) for i in np.linspace(1, len(frames) - 1, round(len(frames) * holdout))
                } if len(frames) > 1 else set()
    train = [f for i, f in enumerate(frames) if i not in held_idx]
    held = [f for i, f in enumerate(frames) if i in held_idx]
    return train, held
