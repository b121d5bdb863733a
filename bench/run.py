"""CPU-config benchmark: training throughput, prediction latency per person, and
spine AP per pose family against the mean-pose baseline, all from one run.

    python -m bench.run [--train-images 800] [--val-images 200] [--iters 600] [--out bench/results]

Writes `results.json` and prints a table. Figures from one run only: the
machine is shared, so compare ratios measured together, not across runs.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from cals.data.coco import load_dataset
from cals.metrics.evaluate import evaluate
from cals.model.baseline import fit_mean_pose, predict_mean_pose
from cals.data.coco import annotations_by_image, xywh_to_xyxy
from cals.model.evaluation import evaluate_predictor
from cals.model.predict import Predictor
from cals.model.train import train
from cals.registry import Registry
from bench.metrics_table import format_metrics
from cals.schema import load_schema
from cals.synth import generate_dataset

BALANCED = {f: 0.2 for f in ("upright", "bending", "sitting", "lying", "twisting")}


def latency(predictor: Predictor, dataset, repeats: int = 1) -> dict:
    """Milliseconds per person and per image (all boxes of an image in one batch)."""
    by_image = {k: [xywh_to_xyxy(a["bbox"]) for a in anns]
                for k, anns in annotations_by_image(dataset.coco).items()}
    images = [im for im in dataset.coco["images"] if im["id"] in by_image][:100]
    import cv2

    loaded = [(cv2.imread(str(dataset.image_path(im))), np.array(by_image[im["id"]])) for im in images]
    predictor.predict(*loaded[0])  # warm-up
    people = sum(len(b) for _, b in loaded) * repeats
    start = time.perf_counter()
    for _ in range(repeats):
        for img, boxes in loaded:
            predictor.predict(img, boxes)
    seconds = time.perf_counter() - start
    return {"images": len(loaded) * repeats, "people": people,
            "ms_per_person": round(1000 * seconds / people, 2),
            "ms_per_image": round(1000 * seconds / (len(loaded) * repeats), 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-images", type=int, default=800)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--iters", type=int, default=600)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    schema = load_schema()
    with tempfile.TemporaryDirectory(prefix="cals-bench-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        generate_dataset(tmp / "train", args.train_images, seed=11, progress=False)
        gen_seconds = time.perf_counter() - t0
        generate_dataset(tmp / "val", args.val_images, seed=12, mix=BALANCED, progress=False)
        registry = Registry(tmp / "registry")
        version = train(tmp / "train", registry, iters=args.iters, progress=True)
        predictor = Predictor.from_registry(registry, version.id)
        val = load_dataset(tmp / "val", schema)
        model_metrics = evaluate_predictor(predictor, tmp / "val", progress=False)
        mean_pose = fit_mean_pose(load_dataset(tmp / "train", schema).coco, schema.num_keypoints)
        baseline_metrics = evaluate(val.coco, predict_mean_pose(mean_pose, val.coco), schema)
        meta = version.meta
        batch = meta["batch_size"]
        result = {
            "generate": {"images": args.train_images, "seconds": round(gen_seconds, 2),
                         "images_per_s": round(args.train_images / gen_seconds, 1)},
            "train": {"config": meta["config"], "iterations": meta["iterations"], "batch": batch,
                      "seconds": meta["train_seconds"],
                      "images_per_s": round(meta["iterations"] * batch / meta["train_seconds"], 1),
                      "loss": meta["loss"]},
            "predict": latency(predictor, val),
            "model": model_metrics,
            "mean_pose_baseline": baseline_metrics,
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"generate: {result['generate']}\ntrain: {result['train']}\npredict: {result['predict']}")
    print("\nmodel (held-out, balanced pose families):\n" + format_metrics(model_metrics))
    print("\nmean-pose baseline:\n" + format_metrics(baseline_metrics))
    return result


if __name__ == "__main__":
    main()
