"""The last detected frame of a camera, with its boxes drawn."""

from __future__ import annotations

import logging

from autosteer.topics.records import Detection, FrameRecord

log = logging.getLogger(__name__)





def render_thumbnail(frame_value: bytes, det: Detection, width: int = 360) -> bytes:
    """The frame of ``det`` as a JPEG at most ``width`` pixels wide, its boxes drawn."""
    import cv2
    from autosteer.processors.decode import decode_jpeg, encode_jpeg

    img = decode_jpeg(FrameRecord.parse(frame_value).jpeg)
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    color = (60, 200, 60) if det.tier == "edge" else (40, 140, 255)  # BGR
    for b in det.boxes:
        p0 = (int(b.x0 * w), int(b.y0 * h))
        cv2.rectangle(img, p0, (int(b.x1 * w), int(b.y1 * h)), color, 2)
        cv2.putText(img, f"{b.label} {b.score:.2f}", (p0[0] + 2, max(10, p0[1] - 3)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return encode_jpeg(img, 80)


# --- cluster view from ClickHouse -------------------------------------------------------
