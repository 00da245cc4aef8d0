"""Processors: ingest (RTSP/file), JPEG decode, and detectors on ONNX Runtime."""

from autosteer.processors.decode import decode_jpeg, encode_jpeg
from autosteer.processors.detector import Detector, load_detector
from autosteer.processors.ingest import CameraIngest, IngestStats
from autosteer.processors.manifest import Manifest

__all__ = [
    "CameraIngest",
    "Detector",
    "IngestStats",
    "Manifest",
    "decode_jpeg",
    "encode_jpeg",
    "load_detector",
]
