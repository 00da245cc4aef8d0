"""Detector runtimes side by side: ms/frame of ONNX Runtime and OpenVINO on the FP32
(cloud) and INT8 (edge) SSD models, at batch 1 and 4 and at 1 and 2 threads, with the
boxes' agreement with ONNX Runtime FP32.

Anchor: ONNX Runtime running the INT8 QDQ edge model at 2 threads, what the edge runs
today. Every configuration runs the same real vtest.avi frames (BGR, as decoded; the
models resize inside the graph). Repetitions are interleaved: each repetition times one
batch of every configuration in turn, so a burst of load on the shared cores hits them
all alike; figures are medians with min and max over the repetitions.

Agreement: F1 (retrain.agreement: same label, IoU >= 0.5) of each configuration's boxes
against ORT FP32's at the product's score threshold (``Settings().score_threshold``).
OpenVINO computes non-quantized ops in the precision its CPU plugin picks (bf16 on CPUs
with AVX-512 BF16 / AMX); the table says which.

``edge_speedup``: ORT INT8 at 2 threads, batch 1, over the fastest configuration at 2
threads, batch 1 whose agreement meets its bar (F1 >= 0.9 for an INT8 model, >= 0.97 for
FP32): the fastest way to serve the edge tier. ``edge_f1`` is that one's F1.

    python bench/detectors.py            # 24 frames x 15 repetitions
    python bench/detectors.py --quick    # 8 frames x 5 repetitions (CI-sized)

Last line: one JSON object with edge_speedup, edge_f1, edge_runtime and the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from autosteer.infra.sample import ensure_sample_video
from autosteer.processors.detector import load_detector
from autosteer.processors.openvino_session import openvino_available
from autosteer.processors.prepare import FP32, INT8, prepare_models, video_frames
from autosteer.retrain.agreement import f1, match_counts
from autosteer.settings import Settings

BARS = {FP32: 0.97, INT8: 0.9}  # least F1 vs ORT FP32 for a configuration to serve the edge


@dataclass
class Config:
    model: str
    runtime: str
    threads: int
    detector: Any

    @property
    def label(self) -> str:
        kind = "FP32" if self.model == FP32 else "INT8"
        return f"{'ORT' if self.runtime == 'onnxruntime' else 'OpenVINO'} {kind}"


def f1_against(cand: list[list], ref: list[list]) -> float:
    """Pooled F1 of ``cand`` boxes against ``ref`` boxes over all frames."""
    counts = [match_counts(c, r) for c, r in zip(cand, ref, strict=True)]
    return f1(*(sum(x) for x in zip(*counts, strict=True)))


def time_batch(det: Any, batch: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    det.detect(batch)
    return (time.perf_counter() - t0) * 1000 / len(batch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    n = args.frames or (8 if args.quick else 24)
    repeats = args.repeats or (5 if args.quick else 15)
    s = Settings()
    video = ensure_sample_video(s.sample_video)
    prepare_models(s.model_dir, video)
    frames = video_frames(video, n, start=13, step=max(1, 790 // n))
    runtimes = ["onnxruntime"] + (["openvino"] if openvino_available() else [])
    configs = [Config(m, rt, t, load_detector(s.model_dir, m, providers=rt, intra_op_threads=t,
                                              score_threshold=s.score_threshold))
               for m in (FP32, INT8) for rt in runtimes for t in (1, 2)]
    ref = next(c for c in configs if c.model == FP32 and c.runtime == "onnxruntime"
               and c.threads == 2).detector.detect(frames)
    agreement = {(c.model, c.runtime): round(f1_against(c.detector.detect(frames), ref), 4)
                 for c in configs if c.threads == 2}
    for c in configs:  # untimed: OpenVINO compiles once per input shape (frame size x batch)
        for batch in (1, 4):
            c.detector.detect(frames[:batch])
    ms: dict[tuple[str, str, int, int], list[float]] = {}
    for r in range(repeats):  # interleaved: one batch of every configuration in turn
        for batch in (1, 4):
            start = (r * batch) % max(1, n - batch + 1)
            chunk = frames[start:start + batch]
            for c in configs:
                ms.setdefault((c.model, c.runtime, c.threads, batch), []).append(
                    time_batch(c.detector, chunk))
        print(f"repetition {r + 1}/{repeats} done", flush=True)

    table = []
    for c in configs:
        precision = (c.detector.session.inference_precision if c.runtime == "openvino"
                     else "f32")
        for batch in (1, 4):
            v = ms[(c.model, c.runtime, c.threads, batch)]
            table.append({"config": c.label, "model": c.model, "runtime": c.runtime,
                          "compute_precision": precision, "threads": c.threads, "batch": batch,
                          "ms_per_frame": round(statistics.median(v), 2),
                          "min": round(min(v), 2), "max": round(max(v), 2),
                          "f1_vs_ort_fp32": agreement[(c.model, c.runtime)]})
    print(f"{'config':14} {'prec':5} {'thr':>3} {'batch':>5} {'ms/frame':>9} "
          f"{'min':>7} {'max':>7} {'F1':>6}")
    for row in table:
        print(f"{row['config']:14} {row['compute_precision']:5} {row['threads']:>3} "
              f"{row['batch']:>5} {row['ms_per_frame']:>9.2f} {row['min']:>7.2f} "
              f"{row['max']:>7.2f} {row['f1_vs_ort_fp32']:>6.3f}")

    def row(model: str, rt: str, threads: int, batch: int) -> dict:
        return next(x for x in table if x["model"] == model and x["runtime"] == rt
                    and x["threads"] == threads and x["batch"] == batch)

    anchor = row(INT8, "onnxruntime", 2, 1)
    eligible = [x for x in table if x["threads"] == 2 and x["batch"] == 1
                and x["f1_vs_ort_fp32"] >= BARS[x["model"]]]
    best = min(eligible, key=lambda x: x["ms_per_frame"])
    anchor4 = row(INT8, "onnxruntime", 2, 4)
    best4 = row(best["model"], best["runtime"], 2, 4)
    print(json.dumps({
        "bench": "detectors", "quick": args.quick, "frames": n, "repeats": repeats,
        "score_threshold": s.score_threshold,
        "edge_speedup": round(anchor["ms_per_frame"] / best["ms_per_frame"], 3),
        "edge_speedup_batch4": round(anchor4["ms_per_frame"] / best4["ms_per_frame"], 3),
        "edge_f1": best["f1_vs_ort_fp32"], "edge_runtime": best["config"],
        "edge_compute_precision": best["compute_precision"],
        "anchor": "ORT INT8, 2 threads, batch 1", "anchor_ms": anchor["ms_per_frame"],
        "table": table}))


if __name__ == "__main__":
    main()
