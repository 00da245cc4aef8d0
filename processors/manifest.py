"""A model's manifest: what the file is, where it came from, how to feed it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from autosteer.errors import ModelError
from pydantic import BaseModel, ConfigDict, ValidationError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Manifest(BaseModel):
    """``manifest.json`` beside every ``model.onnx``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    version: str
    file: str = "model.onnx"
    sha256: str
    layout: Literal["ssd-tfod", "yolov5", "yolov8", "yolo"]
    labels: Literal["coco91", "coco80"] | list[str] = "coco91"
    precision: str = "fp32"
    input: dict = {}
    source_package: str | None = None
    source_file: str | None = None
    source_sha256: str | None = None
    upstream_license: str | None = None
    parent: str | None = None
    metrics: dict = {}
    created_at: str | None = None
    runtimes: dict = {}  # the runtime calibration (processors.runtime): what AUTOSTEER_PROVIDERS=auto picks

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / "manifest.json"
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError as exc:
            raise ModelError(f"no manifest at {path}; run `autosteer models prepare` "
                             "or write one (see docs/models.md)") from exc
        except ValidationError as exc:
            raise ModelError(f"{path} is not a valid manifest: {exc}") from exc

    def save(self, folder: Path) -> None:
        """Write ``manifest.json`` atomically: a reader never sees half of one."""
        path = folder / "manifest.json"
        part = path.with_suffix(f".{os.getpid()}.part")
        part.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
        part.replace(path)
