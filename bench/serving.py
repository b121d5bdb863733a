"""Serving speed: PyTorch vs ONNX Runtime, for the `cpu` and `rtmpose-m` configs, in one run.

    python -m bench.serving [--frames 30] [--pool 40] [--detector end2end.onnx] [--out bench/results]

For each config and backend: the pose stage of one request (`Predictor.predict` on a 640x480
generated frame with 1 and with 4 people, boxes given) as p50/p95 ms with the flip test on and
off, the share of that time spent outside the pose network (crop pipeline, decoding), and pool
scoring in images/s (least confidence, as the sampler scores). With a person detector (the
function's RTMDet-nano `end2end.onnx`; default $CALS_DETECTOR) it also times the whole
function request: base64 frame in, CVAT shapes out.

Weights are random (time does not depend on their values); threads: torch and ONNX Runtime
use the host's cores. Compare the ratios within one run: the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CONFIGS = ("cpu", "rtmpose-m")
BACKENDS = ("pytorch", "onnxruntime")


def version_folder(config: str, root: Path) -> Path:
    """A version of `config` with random weights, written as the trainer writes one (with model.onnx)."""
    from cals.model import mm_imports
    from cals.model.config import build_config
    from cals.model.train import write_version_files
    from cals.schema import load_schema

    mm_imports.setup()
    from mmpose.registry import MODELS

    schema = load_schema()
    cfg = build_config(config, schema)
    state = MODELS.build(cfg.model).state_dict()
    meta = {"keypoint_names": schema.names, "spine_trained": True}
    return write_version_files(root / config, cfg, schema, state, meta)


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
    from cals.sampling.pool import LocalPool
    from cals.sampling.cache import ScoreCache
    from cals.sampling.scoring import Scorer
    from cals.sampling.strategies import create

    scorer = Scorer(predictor, cache=ScoreCache(work / f"cache-{time.monotonic_ns()}.sqlite"))
    local = LocalPool(pool, predictor.schema)
    start = time.perf_counter()
    table = scorer.score(local, [create("least_confidence", schema=predictor.schema)], progress=False)
    return round(len(table.keys) / (time.perf_counter() - start), 1)


def function_requests(version: Path, detector: str, batch: list) -> dict:
    """The function's whole request (decode, detect, pose, CVAT shapes) p50 ms, per backend."""
    import base64

    from cals.model.detector import PersonDetector
    from cals.model.train import version_files
    from cals.registry import Registry
    from cals.serving.cvat_detector import respond
    from cals.serving.service import SkeletonService

    out = {}
    for backend in BACKENDS:
        os.environ["CALS_POSE_BACKEND"] = backend
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
            out[backend] = round(float(np.percentile(np.array(times) * 1000, 50)), 1)
    os.environ.pop("CALS_POSE_BACKEND", None)
    return out


def run(frame_count: int, pool_size: int, detector: str | None, work: Path) -> dict:
    from cals.model.predict import Predictor

    sets = {people: frames(work, people, frame_count) for people in (1, 4)}
    pool = work / "pool"
    from cals.synth import generate_dataset

    generate_dataset(pool, pool_size, seed=7, progress=False)
    results: dict = {"cores": os.cpu_count(), "frames": frame_count, "pool": pool_size, "configs": {}}
    for config in CONFIGS:
        version = version_folder(config, work)
        row: dict = {}
        for backend in BACKENDS:
            predictor = Predictor(version, device="cpu", backend=backend)
            row[backend] = {f"{people}_people_flip_{'on' if flip else 'off'}": pose_stage(predictor, sets[people], flip)
                            for people in (1, 4) for flip in (True, False)}
            row[backend]["pool_images_per_s"] = pool_rate(predictor, pool, work)
        if detector:
            row["function_request_p50_ms_1_person"] = function_requests(version, detector, sets[1])
        results["configs"][config] = row
        print(json.dumps({config: row}), flush=True)
    return results


def table(results: dict) -> str:
    """Markdown: one line per config, backend and people count."""
    lines = ["| config | runtime | people | p50 / p95 ms, flip on | p50 / p95 ms, flip off | outside network "
             "(flip on) | pool images/s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for config, row in results["configs"].items():
        for backend in BACKENDS:
            r = row[backend]
            for people in (1, 4):
                on, off = r[f"{people}_people_flip_on"], r[f"{people}_people_flip_off"]
                lines.append(f"| {config} | {backend} | {people} | {on['p50_ms']} / {on['p95_ms']} | "
                             f"{off['p50_ms']} / {off['p95_ms']} | {on['outside_network']:.0%} | "
                             f"{r['pool_images_per_s'] if people == 1 else ''} |")
    for config, row in results["configs"].items():
        if "function_request_p50_ms_1_person" in row:
            f = row["function_request_p50_ms_1_person"]
            lines.append(f"\nWhole function request, 1 person, {config}: p50 {f['pytorch']} ms with PyTorch, "
                         f"{f['onnxruntime']} ms with ONNX Runtime.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=30, help="frames per people count (1 and 4)")
    p.add_argument("--pool", type=int, default=40, help="generated pool images to score")
    p.add_argument("--detector", default=os.environ.get("CALS_DETECTOR"),
                   help="person detector end2end.onnx: also time the whole function request")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cals-bench-serving-") as tmp:
        results = run(args.frames, args.pool, args.detector, Path(tmp))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"written: {out / 'serving.json'}")
    return results


if __name__ == "__main__":
    main()
