"""A versioned model registry in a directory (put it on a filesystem every worker mounts).

Layout: ``<root>/<name>/<version>/model.onnx`` and ``manifest.json`` beside it, the
same pair ``load_detector`` reads, so ``load_detector(root / name, version)`` loads a
version. A version is ``<n>-<sha8>``: ``n`` counts up along the lineage (a child of
``1-...`` is ``2-...``), ``sha8`` starts the model's sha256. Versions are immutable.

``publish`` writes into ``<root>/<name>/.staging-<random>/`` and renames that folder
to its version in one step, so readers see a whole version or none.

>>> import tempfile
>>> from pathlib import Path
>>> tmp = Path(tempfile.mkdtemp())
>>> (tmp / "m.onnx").write_bytes(b"not really onnx")
15
>>> reg = ModelRegistry(tmp / "registry")
>>> e = reg.publish(tmp / "m.onnx", {"name": "det", "layout": "ssd-tfod"},
...                 parent="det@1-00000000", metrics={"agreement": 0.9},
...                 thresholds={"cam1": 0.45})
>>> e.version, e.manifest.parent, e.thresholds
('2-566d60bd', 'det@1-00000000', {'cam1': 0.45})
>>> reg.latest("det") == e, [x.version for x in reg.history("det")]
(True, ['2-566d60bd'])
>>> e.update(tier="edge", canary=0.1, cameras=["cam1"]).thresholds
{'cam1': 0.45}
>>> import shutil; shutil.rmtree(tmp)
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autosteer.errors import ModelError
from autosteer.processors.manifest import Manifest, sha256_file
from autosteer.retrain.records import ModelUpdate
from autosteer.topics.records import Tier

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^(\d+)-[0-9a-f]{8}$")
_DERIVED = ("version", "sha256", "file", "parent", "metrics", "created_at", "thresholds",
            "training_window")


def version_number(version: str) -> int:
    """The lineage counter of a version: ``'3-1f2e3d4c'`` -> 3 (0 if it has none)."""
    m = re.match(r"^(\d+)", version)
    return int(m.group(1)) if m else 0


@dataclass(frozen=True)
class Entry:
    """One published version."""

    name: str
    version: str
    folder: Path
    manifest: Manifest

    @property
    def artifact(self) -> Path:
        return self.folder / self.manifest.file

    @property
    def thresholds(self) -> dict[str, float]:
        """Score threshold per camera (cameras not listed keep the default)."""
        return dict((self.manifest.model_extra or {}).get("thresholds") or {})

    def update(self, tier: Tier, canary: float = 1.0, cameras: Sequence[str] = (),
               request_id: str | None = None) -> ModelUpdate:
        """The ``models.updates`` record announcing this version."""
        return ModelUpdate(
            model=self.name, version=self.version, tier=tier,
            artifact=str(self.artifact.resolve()), sha256=self.manifest.sha256,
            parent=self.manifest.parent, canary=canary, cameras=list(cameras),
            thresholds=self.thresholds,
            metrics={k: float(v) for k, v in self.manifest.metrics.items()
                     if isinstance(v, int | float)},
            request_id=request_id,
        )


class ModelRegistry:
    """Versions of models under ``root``; see the module docstring for the layout."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"ModelRegistry({str(self.root)!r})"

    def publish(self, onnx_path: Path, manifest_fields: Mapping[str, Any] | Manifest,
                parent: str | None = None, training_window: Mapping[str, Any] | None = None,
                metrics: Mapping[str, Any] | None = None,
                thresholds: Mapping[str, float] | None = None) -> Entry:
        """Copy ``onnx_path`` in as the next version of ``manifest_fields['name']``.

        ``manifest_fields`` describe the model (name, layout, labels, input,
        precision...); what the registry derives (version, sha256, parent, metrics,
        created_at, thresholds, training window) is replaced. ``parent`` is
        ``name@version``."""
        fields = (manifest_fields.model_dump() if isinstance(manifest_fields, Manifest)
                  else dict(manifest_fields))
        name = str(fields.get("name") or "")
        if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            raise ModelError(f"manifest_fields must name the model with letters, digits, '.', "
                             f"'_' or '-'; got name={name!r}")
        if not onnx_path.is_file():
            raise ModelError(f"cannot publish {onnx_path}: no such file")
        for key in _DERIVED:
            fields.pop(key, None)
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".staging-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            shutil.copyfile(onnx_path, staging / "model.onnx")
            sha = sha256_file(staging / "model.onnx")
            floor = version_number(parent.rpartition("@")[2]) if parent else 0
            for attempt in range(20):
                n = max([floor, *(version_number(e.version) for e in self.history(name))]) + 1
                version = f"{n}-{sha[:8]}"
                manifest = Manifest(
                    **fields, version=version, sha256=sha, file="model.onnx", parent=parent,
                    metrics=dict(metrics or {}), thresholds=dict(thresholds or {}),
                    training_window=dict(training_window or {}),
                    created_at=datetime.now(UTC).isoformat(timespec="seconds"))
                manifest.save(staging)
                try:
                    os.rename(staging, folder / version)  # atomic; fails if it exists
                except OSError:
                    log.info("version %s of %s appeared meanwhile (try %d); taking the next",
                             version, name, attempt + 1)
                    continue
                log.info("published %s@%s (parent %s)", name, version, parent)
                return Entry(name, version, folder / version, manifest)
            raise ModelError(f"could not publish {name}: 20 versions appeared meanwhile in "
                             f"{folder}; is another publisher looping?")
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def history(self, name: str) -> list[Entry]:
        """Every published version of ``name``, oldest first."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        out = []
        for sub in folder.iterdir():
            if _VERSION.match(sub.name) and (sub / "manifest.json").is_file():
                out.append(Entry(name, sub.name, sub, Manifest.load(sub)))
        return sorted(out, key=lambda e: version_number(e.version))

    def latest(self, name: str) -> Entry | None:
        """The newest version of ``name``, or None if none was published."""
        versions = self.history(name)
        return versions[-1] if versions else None

    def get(self, name: str, version: str) -> Entry:
        """One version, or ModelError listing the versions there are."""
        sub = self.root / name / version
        if not (_VERSION.match(version) and (sub / "manifest.json").is_file()):
            have = [e.version for e in self.history(name)]
            raise ModelError(f"no version {version!r} of {name!r} in {self.root}; "
                             f"published: {have or 'none'}")
        return Entry(name, version, sub, Manifest.load(sub))
