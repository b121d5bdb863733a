"""Latency of the Nuclio function's request path, split by stage, next to the bare model forwards.

    .venv/bin/python serverless/bench.py --registry REG --detector end2end.onnx [--images 40] [--threads 2]

Generates 640x480 frames with 1 and with 4 people, sends each through
`cals.serving.cvat_detector.respond` (what the handler runs) and reports p50/p95
per stage (decode, detect, pose, encode), requests/s, and the bare forward time
of the two models (detector session.run; pose network forward, x2 with flip test).
`outside_models_ms` is total minus the detect and pose stages (decoding, parsing, CVAT
shapes, JSON); the pose stage minus the bare forward is mmpose's crop/affine pipeline.
"""
from __future__ import annotations

import argparse
import base64
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _frames(folder: Path, people: int, n: int, seed: int) -> list[bytes]:
    from cals.data.coco import read_json
    from cals.synth import generate_dataset

    out = folder / f"p{people}"
    generate_dataset(out, n * 6, seed=seed, image_size=(640, 480), max_people=people, progress=False)
    coco = read_json(out / "annotations.json")
    counts = {}
    for ann in coco["annotations"]:
        counts[ann["image_id"]] = counts.get(ann["image_id"], 0) + 1
    chosen = [im for im in coco["images"] if counts.get(im["id"], 0) == people][:n]
    return [(out / "images" / im["file_name"]).read_bytes() for im in chosen]


def _bare_forwards(service, image_bytes: bytes, people: int) -> dict[str, float]:
    """Seconds of the detector graph alone and of the pose network alone (people boxes, flip x2)."""
    import torch

    from cals.model.detector import preprocess
    from cals.serving.image_decode import decode_image

    image = decode_image(image_bytes)
    tensor, _ = preprocess(image)
    det = service.detector.session
    predictor = service.watcher.get()
    w, h = predictor.model.cfg.codec["input_size"] if hasattr(predictor.model, "cfg") else (192, 256)
    flips = 2 if predictor.model.test_cfg.get("flip_test") else 1
    x = torch.randn(max(people, 1), 3, h, w)
    out = {"detect_forward": [], "pose_forward": []}
    for _ in range(10):
        t0 = time.perf_counter()
        det.run(None, {service.detector.input_name: tensor})
        t1 = time.perf_counter()
        with torch.no_grad():
            for _ in range(flips):
                predictor.model(x, None, mode="tensor")
        out["detect_forward"].append(t1 - t0)
        out["pose_forward"].append(time.perf_counter() - t1)
    return {k: float(np.median(v)) for k, v in out.items()}


def _stats(values: list[float]) -> dict[str, float]:
    ms = np.array(values) * 1000
    return {"p50": round(float(np.percentile(ms, 50)), 2), "p95": round(float(np.percentile(ms, 95)), 2)}


def run(registry: str, detector: str, *, images: int, threads: int) -> dict:
    import torch

    from cals.model.detector import PersonDetector
    from cals.registry import Registry
    from cals.serving.cvat_detector import respond
    from cals.serving.service import SkeletonService

    torch.set_num_threads(threads)
    service = SkeletonService(Registry(registry), PersonDetector(detector, threads=threads))
    results = {"threads": threads, "version": service.watcher.get().version_id}
    with tempfile.TemporaryDirectory() as tmp:
        for people in (1, 4):
            frames = _frames(Path(tmp), people, images, seed=people)
            bodies = [{"image": base64.b64encode(f).decode()} for f in frames]
            respond(service, bodies[0])  # warm-up
            stages: dict[str, list[float]] = {}
            found = []
            start = time.perf_counter()
            for body in bodies:
                reply = respond(service, body)
                assert reply.status == 200, reply.body
                found.append(len(json.loads(reply.body)))
                for k, v in {**reply.timings, "total": sum(reply.timings.values())}.items():
                    stages.setdefault(k, []).append(v)
            wall = time.perf_counter() - start
            bare = _bare_forwards(service, frames[0], int(np.median(found)))
            outside = [t - d - p for t, d, p in zip(stages["total"], stages["detect"], stages["pose"])]
            results[f"{people}_person"] = {
                "frames": len(bodies), "skeletons_per_frame": float(np.mean(found)),
                **{k: _stats(v) for k, v in stages.items()},
                "requests_per_s": round(len(bodies) / wall, 2),
                "bare_ms": {k: round(v * 1000, 2) for k, v in bare.items()},
                "outside_models_ms": _stats(outside),  # decode + parse + shapes + JSON
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", required=True, help="registry with a current version")
    parser.add_argument("--detector", required=True, help="RTMDet person end2end.onnx")
    parser.add_argument("--images", type=int, default=40, help="frames per people count")
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    args = parser.parse_args()
    print(json.dumps(run(args.registry, args.detector, images=args.images, threads=args.threads), indent=2))


if __name__ == "__main__":
    main()
