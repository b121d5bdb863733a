"""Serving speed: every runtime and precision of the pose network, for the `cpu` and `rtmpose-m`
configs, in one run.

    python -m bench.serving [--frames 30] [--pool 40] [--detector end2end.onnx] [--beside-training]
                            [--out bench/results]

For each config and runtime (PyTorch; ONNX Runtime and OpenVINO in fp32 and in int8): the pose
stage of one request (`Predictor.predict` on a 640x480 generated frame with 1 and with 4 people,
boxes given) as p50/p95 ms with the flip test on and off, the share of that time spent outside the
pose network (crop pipeline, decoding), and pool scoring in images/s (least confidence, as the
sampler scores). With a person detector (the function's RTMDet-nano `end2end.onnx`; default
$CALS_DETECTOR) it also times the detector alone on each ONNX runtime and the whole function
request (base64 frame in, CVAT shapes out) for each runtime. `--beside-training` measures
everything twice: on the idle machine, then with a 2-thread training (`cals.model.train`, `cpu`
config) running beside it, as the trainer does next to the function.

Weights are random (time does not depend on their values); the int8 models are calibrated on
generated frames (cals.model.quantize), so only their speed means anything here. Threads: each
runtime uses the host's cores. Compare the ratios within one run: the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = ("cpu", "rtmpose-m")
VARIANTS = (("pytorch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"), ("onnxruntime", "int8"),
            ("openvino", "int8"))
DETECTOR_RUNTIMES = ("onnxruntime", "openvino")


def version_folder(config: str, root: Path, calibration: Path | None = None) -> Path:
    """A version of `config` with random weights, written as the trainer writes one (model.onnx);
    with `calibration` (generated frames) also its `model.int8.onnx`."""
    from cals.data.coco import load_dataset
    from cals.model import mm_imports
    from cals.model.config import build_config
    from cals.model.pose_network import INT8_FILE
    from cals.model.predict import Predictor
    from cals.model.quantize import calibrate
    from cals.model.train import write_version_files
    from cals.schema import load_schema

    mm_imports.setup()
    from mmpose.registry import MODELS

    schema = load_schema()
    cfg = build_config(config, schema)
    state = MODELS.build(cfg.model).state_dict()
    meta = {"keypoint_names": schema.names, "spine_trained": True}
    folder = write_version_files(root / config, cfg, schema, state, meta)
    if calibration is None:
        return folder
    fp32 = Predictor(folder, device="cpu", backend="onnxruntime", precision="fp32")
    calibrate(fp32, load_dataset(calibration, schema), folder / INT8_FILE)
    return folder


def frames(root: Path, people: int, count: int) -> list[tuple[np.ndarray, np.ndarray, Path]]:
    """(BGR image, person boxes, file) of generated 640x480 frames with exactly `people` people."""
    import cv2

    from cals.data.coco import read_json
    from cals.data.coco import annotations_by_image, xywh_to_xyxy
    from cals.synth import generate_dataset

    folder = root / f"frames-{people}"
    generate_dataset(folder, count * 8, seed=people, image_size=(640, 480), max_people=people, progress=False)
    coco = read_json(folder / "annotations.json")
    boxes = {k: [xywh_to_xyxy(a["bbox"]) for a in anns] for k, anns in annotations_by_image(coco).items()}
    chosen = [im for im in coco["images"] if len(boxes.get(im["id"], [])) == people][:count]
    return [(cv2.imread(str(folder / "images" / im["file_name"])), np.array(boxes[im["id"]], np.float32),
             folder / "images" / im["file_name"]) for im in chosen]


class _Timed:
    """Wraps a predictor's network and adds up the seconds spent inside it."""

    def __init__(self, network) -> None:
        self.network, self.seconds = network, 0.0

    def __call__(self, inputs):
        start = time.perf_counter()
        try:
            return self.network(inputs)
        finally:
            self.seconds += time.perf_counter() - start


def pose_stage(predictor, batch: list, flip: bool) -> dict:
    """p50/p95 ms of predict() over the frames, and the share outside the network."""
    timed = _Timed(predictor.network)
    predictor.network = timed
    try:
        predictor.predict(batch[0][0], batch[0][1], distributions=False, flip_test=flip)  # warm-up
        timed.seconds, times = 0.0, []
        for image, boxes, _ in batch:
            start = time.perf_counter()
            predictor.predict(image, boxes, distributions=False, flip_test=flip)
            times.append(time.perf_counter() - start)
    finally:
        predictor.network = timed.network
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "outside_network": round(1 - timed.seconds / sum(times), 3)}


def pool_rate(predictor, pool: Path, work: Path) -> float:
    """Images/s scoring a pool with least confidence (distributions on, as the sampler scores)."""
    from cals.data.pool import LocalPool
    from cals.sampling.cache import ScoreCache
    from cals.sampling.scoring import Scorer
    from cals.sampling.strategies import create

    scorer = Scorer(predictor, cache=ScoreCache(work / f"cache-{time.monotonic_ns()}.sqlite"))
    local = LocalPool(pool, predictor.schema)
    start = time.perf_counter()
    table = scorer.score(local, [create("least_confidence", schema=predictor.schema)], progress=False)
    return round(len(table.keys) / (time.perf_counter() - start), 1)


def function_requests(version: Path, detector: str, batch: list) -> dict:
    """The function's whole request (decode, detect, pose, CVAT shapes) p50 ms, per runtime."""
    import base64

    from cals.model.detector import PersonDetector
    from cals.model.train import version_files
    from cals.registry import Registry
    from cals.serving.cvat_detector import respond
    from cals.serving.service import SkeletonService

    out = {}
    for backend, precision in VARIANTS:
        os.environ.update(CALS_POSE_BACKEND=backend, CALS_POSE_PRECISION=precision)
        with tempfile.TemporaryDirectory() as tmp:
            registry = Registry(tmp)
            registry.promote(registry.add(version_files(version), meta={"config": version.name}).id)
            service = SkeletonService(registry, PersonDetector(detector), device="cpu")
            bodies = [{"image": base64.b64encode(path.read_bytes()).decode()} for _, _, path in batch]
            respond(service, bodies[0])
            times = []
            for body in bodies:
                start = time.perf_counter()
                reply = respond(service, body)
                times.append(time.perf_counter() - start)
                assert reply.status == 200, reply.body
            out[f"{backend} {precision}"] = round(float(np.percentile(np.array(times) * 1000, 50)), 1)
    for name in ("CALS_POSE_BACKEND", "CALS_POSE_PRECISION"):
        os.environ.pop(name, None)
    return out


def detector_ms(detector: str, batch: list) -> dict:
    """The person detector's network alone, p50 ms per runtime, on the frames' preprocessed tensors."""
    from cals.model.detector import PersonDetector, preprocess
    from cals.model.pose_network import OpenVinoNetwork

    tensors = [preprocess(image)[0] for image, _, _ in batch]
    onnx = PersonDetector(detector)
    session = onnx.session
    compiled = OpenVinoNetwork(onnx.path).compiled.create_infer_request()
    runs = {"onnxruntime": lambda x: session.run(None, {session.get_inputs()[0].name: x}),
            "openvino": lambda x: compiled.infer({0: x})}
    out = {}
    for name, run_once in runs.items():
        run_once(tensors[0])
        times = []
        for x in tensors:
            start = time.perf_counter()
            run_once(x)
            times.append(time.perf_counter() - start)
        out[name] = round(float(np.percentile(np.array(times) * 1000, 50)), 2)
    return out


@contextlib.contextmanager
def training_beside(work: Path, on: bool):
    """A 2-thread `cpu` training in a child process for the duration (nothing when `on` is false)."""
    if not on:
        yield
        return
    from cals.synth import generate_dataset

    data = work / "training-beside"
    if not data.is_dir():
        generate_dataset(data, 200, seed=11, progress=False)
    code = ("from cals.model.train import train; from cals.registry import Registry; "
            f"train({str(data)!r}, Registry({str(work / 'beside-registry')!r}), iters=100000, progress=False)")
    child = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "2"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(20)  # past imports and data loading: the training loop is running
        yield
    finally:
        child.kill()
        child.wait()


def run(frame_count: int, pool_size: int, detector: str | None, work: Path, beside_training: bool) -> dict:
    from cals.model.predict import Predictor
    from cals.synth import generate_dataset

    sets = {people: frames(work, people, frame_count) for people in (1, 4)}
    pool = work / "pool"
    generate_dataset(pool, pool_size, seed=7, progress=False)
    versions = {config: version_folder(config, work, pool) for config in CONFIGS}
    results: dict = {"cores": os.cpu_count(), "frames": frame_count, "pool": pool_size, "conditions": {}}
    for condition in ("idle", "training beside") if beside_training else ("idle",):
        configs: dict = {}
        with training_beside(work, condition != "idle"):
            for config, version in versions.items():
                row: dict = {}
                for backend, precision in VARIANTS:
                    predictor = Predictor(version, device="cpu", backend=backend, precision=precision)
                    r = {f"{people}_people_flip_{'on' if flip else 'off'}": pose_stage(predictor, sets[people], flip)
                         for people in (1, 4) for flip in (True, False)}
                    r["pool_images_per_s"] = pool_rate(predictor, pool, work)
                    row[f"{backend} {precision}"] = r
                if detector:
                    row["function_request_p50_ms_1_person"] = function_requests(version, detector, sets[1])
                configs[config] = row
                print(json.dumps({condition: {config: row}}), flush=True)
            if detector:
                configs["detector_p50_ms"] = detector_ms(detector, sets[1])
        results["conditions"][condition] = configs
    return results


def table(results: dict) -> str:
    """Markdown: one line per condition, config, runtime and people count."""
    lines = ["| condition | config | runtime | people | p50 / p95 ms, flip on | p50 / p95 ms, flip off | "
             "outside network (flip on) | pool images/s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for condition, configs in results["conditions"].items():
        for config in CONFIGS:
            for variant in (f"{b} {p}" for b, p in VARIANTS):
                r = configs[config][variant]
                for people in (1, 4):
                    on, off = r[f"{people}_people_flip_on"], r[f"{people}_people_flip_off"]
                    lines.append(f"| {condition} | {config} | {variant} | {people} | {on['p50_ms']} / {on['p95_ms']} | "
                                 f"{off['p50_ms']} / {off['p95_ms']} | {on['outside_network']:.0%} | "
                                 f"{r['pool_images_per_s'] if people == 1 else ''} |")
    for condition, configs in results["conditions"].items():
        for config in CONFIGS:
            if "function_request_p50_ms_1_person" in configs[config]:
                f = configs[config]["function_request_p50_ms_1_person"]
                lines.append(f"\nWhole function request, 1 person, {config}, {condition}: p50 ms " +
                             ", ".join(f"{k} {v}" for k, v in f.items()))
        if "detector_p50_ms" in configs:
            lines.append(f"Person detector alone, {condition}: p50 ms " +
                         ", ".join(f"{k} {v}" for k, v in configs["detector_p50_ms"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=30, help="frames per people count (1 and 4)")
    p.add_argument("--pool", type=int, default=40, help="generated pool images to score")
    p.add_argument("--detector", default=os.environ.get("CALS_DETECTOR"),
                   help="person detector end2end.onnx: also time it and the whole function request")
    p.add_argument("--beside-training", action="store_true",
                   help="measure again with a 2-thread training running beside")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cals-bench-serving-") as tmp:
        results = run(args.frames, args.pool, args.detector, Path(tmp), args.beside_training)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"written: {out / 'serving.json'}")
    return results


if __name__ == "__main__":
    main()
