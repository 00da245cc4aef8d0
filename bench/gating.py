"""Motion gating: inferences saved against accuracy lost, on a quiet clip and on vtest.

Anchor: the same detector run on every frame. Thing measured: the motion gate
(:mod:`autosteer.processors.motion`, the thresholds of ``Settings()``) deciding each
frame in order; a fresh frame gets its own detection (the anchor's, the model is
deterministic), a still frame its source's boxes carried forward, as the router does.

- ``gated_fraction``: share of frames the gate answered without a detection (inferences
  saved);
- ``gated_f1``: pooled F1 (retrain.agreement: same label, IoU >= 0.5) of the gated results
  against detecting every frame with the same model, over all frames;
- gate cost: ms per frame of the gate's decision (1/8 grayscale decode + difference)
  against a detection (full decode + model), interleaved repetitions, medians and spread.

The quiet clip (:func:`quiet_clip`) is made from vtest.avi: bursts of real motion
(``burst`` consecutive frames) between still stretches (``still`` frames that repeat the
burst's last frame, each with fresh Gaussian sensor noise, sigma ``noise``), as a camera
watching a street that is mostly empty. Frames are JPEG-encoded at the ingest quality, as
the router sees them. A sweep over ``changed_fraction`` shows the trade-off.

    python bench/gating.py            # quiet clip 4 x (20 + 80) frames, vtest 795 frames
    python bench/gating.py --quick    # quiet clip 2 x (20 + 80), vtest first 300 frames

Last line: one JSON object with gated_fraction and gated_f1 per clip (``quiet``,
``vtest``) and the gate's cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
from autosteer.infra.sample import ensure_sample_video
from autosteer.processors.decode import decode_jpeg, encode_jpeg
from autosteer.processors.detector import load_detector
from autosteer.processors.motion import Decision, GateConfig, MotionGate
from autosteer.processors.prepare import prepare_models
from autosteer.retrain.agreement import f1, match_counts
from autosteer.settings import Settings
from autosteer.streams.roles.gate import gate_config

SWEEP = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02)


def read_video(path: Any, n: int = 0) -> list[np.ndarray]:
    """The first ``n`` frames (0: all) of a video, BGR."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while not n or len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return out


def quiet_clip(frames: Sequence[np.ndarray], cycles: int = 4, burst: int = 20,
               still: int = 80, noise: float = 3.0, seed: int = 0) -> list[np.ndarray]:
    """``cycles`` x (``burst`` real frames, then ``still`` noisy copies of the last one);
    bursts come from spread-out places in ``frames``.

    >>> clip = quiet_clip([np.full((4, 4, 3), i, np.uint8) for i in range(100)], cycles=2,
    ...                   burst=2, still=3, noise=0)
    >>> [int(f[0, 0, 0]) for f in clip]
    [0, 1, 1, 1, 1, 50, 51, 51, 51, 51]
    """
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    step = max(burst, len(frames) // cycles)
    for c in range(cycles):
        start = (c * step) % max(1, len(frames) - burst)
        part = list(frames[start:start + burst])
        out += part
        base = part[-1].astype(np.float32)
        for _ in range(still):
            noisy = base + rng.normal(0.0, noise, base.shape) if noise else base
            out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return out


def decisions(jpegs: Sequence[bytes], config: GateConfig, camera: str = "cam",
              fps: float = 10.0) -> list[Decision]:
    """The gate's decision for each frame of one camera at ``fps`` (capture times)."""
    gate = MotionGate(config)
    return [gate.decide(camera, i, int(i * 1000 / fps), j) for i, j in enumerate(jpegs)]


def gated_boxes(ds: Sequence[Decision], boxes: Sequence[list]) -> list[list]:
    """Each frame's answer under the gate: its own boxes when fresh, else its source's."""
    return [boxes[i] if d.fresh or d.source_seq is None else boxes[d.source_seq]
            for i, d in enumerate(ds)]


def pooled_f1(cand: Sequence[list], ref: Sequence[list]) -> float:
    """F1 of ``cand`` against ``ref`` pooled over all frames (box counts summed)."""
    tp = fp = fn = 0
    for c, r in zip(cand, ref, strict=True):
        a, b, d = match_counts(c, r)
        tp, fp, fn = tp + a, fp + b, fn + d
    return f1(tp, fp, fn)


def evaluate(jpegs: Sequence[bytes], boxes: Sequence[list], config: GateConfig) -> dict:
    ds = decisions(jpegs, config)
    saved = sum(not d.fresh for d in ds)
    return {"gated_fraction": round(saved / len(ds), 4),
            "gated_f1": round(pooled_f1(gated_boxes(ds, boxes), boxes), 4),
            "fresh": len(ds) - saved, "frames": len(ds),
            "reasons": {r: sum(d.reason == r for d in ds) for r in sorted({d.reason for d in ds})}}


def cost(jpegs: Sequence[bytes], detector: Any, config: GateConfig, reps: int) -> dict:
    """ms/frame of the gate's decision and of a detection (decode + model, batch 1),
    interleaved over ``reps`` repetitions."""
    gate_ms, det_ms = [], []
    sample = list(jpegs[:8])
    for _ in range(reps):
        t0 = time.perf_counter()
        decisions(sample, config)
        gate_ms.append((time.perf_counter() - t0) * 1000 / len(sample))
        t0 = time.perf_counter()
        for j in sample:
            detector.detect([decode_jpeg(j)])
        det_ms.append((time.perf_counter() - t0) * 1000 / len(sample))

    def spread(xs: list[float]) -> dict:
        return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
                "max": round(max(xs), 3)}

    return {"gate_ms": spread(gate_ms), "detect_ms": spread(det_ms), "reps": reps,
            "gate_over_detect": round(statistics.median(gate_ms) / statistics.median(det_ms), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    ap.add_argument("--model", default=None, help="model folder (default: the edge model)")
    args = ap.parse_args()
    s = Settings()
    video = ensure_sample_video(s.sample_video)
    prepare_models(s.model_dir, video)
    model = args.model or s.edge_model
    det = load_detector(s.model_dir, model, providers=s.providers, intra_op_threads=2,
                        score_threshold=s.score_threshold)
    frames = read_video(video, 300 if args.quick else 0)
    clips = {"quiet": quiet_clip(frames, cycles=2 if args.quick else 4),
             "vtest": frames}
    config = gate_config(s)
    out: dict[str, Any] = {"bench": "gating", "model": model, "quick": args.quick,
                           "config": {"changed_fraction": config.changed_fraction,
                                      "pixel_threshold": config.pixel_threshold,
                                      "refresh_frames": config.refresh_frames,
                                      "refresh_s": config.refresh_s, "reduce": config.reduce}}
    for name, clip in clips.items():
        jpegs = [encode_jpeg(f, s.jpeg_quality) for f in clip]
        t0 = time.perf_counter()
        boxes = [det.detect([decode_jpeg(j)])[0] for j in jpegs]  # the anchor: every frame
        anchor_s = time.perf_counter() - t0
        res = evaluate(jpegs, boxes, config)
        res["anchor_s"] = round(anchor_s, 2)
        res["sweep"] = {str(cf): {k: v for k, v in evaluate(
            jpegs, boxes, replace(config, changed_fraction=cf)).items()
            if k in ("gated_fraction", "gated_f1")} for cf in SWEEP}
        out[name] = res
        print(f"{name}: {len(jpegs)} frames, gated_fraction {res['gated_fraction']}, "
              f"gated_f1 {res['gated_f1']} ({res['reasons']})", flush=True)
        for cf, r in res["sweep"].items():
            print(f"  changed_fraction {cf}: gated_fraction {r['gated_fraction']}, "
                  f"gated_f1 {r['gated_f1']}", flush=True)
        if name == "vtest":
            out["cost"] = cost(jpegs, det, config, 5 if args.quick else 15)
    out["gated_fraction"] = {k: out[k]["gated_fraction"] for k in clips}
    out["gated_f1"] = {k: out[k]["gated_f1"] for k in clips}
    out["quiet_ok"] = out["quiet"]["gated_fraction"] >= 0.5 and out["quiet"]["gated_f1"] >= 0.95
    print(json.dumps(out))


if __name__ == "__main__":
    main()
