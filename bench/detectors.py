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
    python bench/detectors.py --stages   # where an SSD frame's time goes (see stages())

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


# The SSD graph's stages, by the tensors between them (tf2onnx names of the TF OD API
# graph): the network runs from the resized 300x300 image to the raw box encodings and
# class scores; before it, the per-image resize loop; after it, box decoding and the
# per-class NMS loop.
NETWORK_IN = "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0"
NETWORK_OUT = ["concat:0", "concat_1:0"]


def stages(model_dir: Any, frames: list[np.ndarray], repeats: int, threads: int = 2) -> dict:
    """ms/frame on ONNX Runtime (batch 1, ``threads``) of each whole model against its
    network alone (the same graph cut at NETWORK_IN / NETWORK_OUT, fed the whole model's
    own resized input): the share of a frame that quantizing or speeding up the
    network can touch. Interleaved repetitions, medians."""
    import tempfile
    from pathlib import Path

    import cv2
    import onnx.utils
    import onnxruntime as ort

    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for model in (FP32, INT8):
            path = Path(model_dir) / model / "model.onnx"
            cut = Path(tmp) / f"{model}-network.onnx"
            graph = onnx.load(str(path))
            graph.graph.value_info.extend(onnx.helper.make_tensor_value_info(
                t, onnx.TensorProto.FLOAT, None) for t in [NETWORK_IN, *NETWORK_OUT])
            onnx.save(onnx.utils.Extractor(graph).extract_model([NETWORK_IN], NETWORK_OUT),
                      str(cut))
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            whole = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            so2 = ort.SessionOptions()
            so2.intra_op_num_threads = threads
            so2.add_session_config_entry("session.intra_op.allow_spinning", "0")
            net = ort.InferenceSession(str(cut), so2, providers=["CPUExecutionProvider"])
            probe = onnx.load(str(path))
            probe.graph.output.append(onnx.helper.make_tensor_value_info(
                NETWORK_IN, onnx.TensorProto.FLOAT, None))
            resized = ort.InferenceSession(probe.SerializeToString(), so,
                                           providers=["CPUExecutionProvider"])
            name = whole.get_inputs()[0].name
            rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB)[None] for f in frames]
            inner = [resized.run([NETWORK_IN], {name: x})[0] for x in rgb]
            sessions[model] = (whole, net, name, rgb, inner)
        times: dict[tuple[str, str], list[float]] = {}
        for r in range(repeats):
            for model, (whole, net, name, rgb, inner) in sessions.items():
                i = r % len(rgb)
                t0 = time.perf_counter()
                whole.run(None, {name: rgb[i]})
                t1 = time.perf_counter()
                net.run(None, {NETWORK_IN: inner[i]})
                t2 = time.perf_counter()
                times.setdefault((model, "whole"), []).append((t1 - t0) * 1000)
                times.setdefault((model, "network"), []).append((t2 - t1) * 1000)
    for model in (FP32, INT8):
        whole_ms = statistics.median(times[(model, "whole")])
        net_ms = statistics.median(times[(model, "network")])
        out[model] = {"whole_ms": round(whole_ms, 2), "network_ms": round(net_ms, 2),
                      "network_share": round(net_ms / whole_ms, 3),
                      "best_speedup_if_network_free": round(whole_ms / (whole_ms - net_ms), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized run")
    ap.add_argument("--stages", action="store_true",
                    help="only: each model's network share of a frame on ONNX Runtime")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    n = args.frames or (8 if args.quick else 24)
    repeats = args.repeats or (5 if args.quick else 15)
    s = Settings()
    video = ensure_sample_video(s.sample_video)
    prepare_models(s.model_dir, video)
    frames = video_frames(video, n, start=13, step=max(1, 790 // n))
    if args.stages:
        result = stages(s.model_dir, frames, repeats * 2)
        for model, row in result.items():
            print(f"{model}: whole {row['whole_ms']} ms/frame, network {row['network_ms']} ms "
                  f"({row['network_share']:.0%})", flush=True)
        print(json.dumps({"bench": "detectors", "mode": "stages", "quick": args.quick,
                          "frames": n, "repeats": repeats * 2, "threads": 2, "batch": 1,
                          "runtime": "onnxruntime", "stages": result}))
        return
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
