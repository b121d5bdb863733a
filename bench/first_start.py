"""Benchmark: the Nuclio function's first start with an empty registry, which Nuclio's readiness
timeout (`spec.readinessTimeoutSeconds` in function*.yaml) must cover.

    python -m bench.first_start [--repeats 3] [--detector end2end.onnx] [--out first-start.json]

Each repetition is a fresh Python process that loads `serverless/spine-pose/nuclio/main.py` and
calls its `init_context`, as Nuclio's wrapper does, on an empty registry: it imports the stack,
registers the initial model from an RTMPose-m checkpoint in mmpose's release layout (conversion
to the schema's keypoints, ONNX export and its check against PyTorch) and loads it. The checkpoint
has the release's architecture and tensor shapes with random weights (tests/test_rtmpose_release.py
builds it), so the work is that of the real one. Reported per stage: median, min and max seconds.
Stages: process (interpreter start), imports (main.py and the torch stack), register (conversion and
save; onnx_export is the export and its check within it), load (the registered version for serving),
init_context (register, load and the detector), total (process start to the end of init_context):
the readiness timeout must exceed total.
The machine may be shared: the load average is recorded next to the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DETECTOR = ROOT.parent / "shared" / "models" / "rtmdet-nano-person" / "end2end.onnx"
# The slowest `total` recorded (make bench on 2 cores, load ~7; serverless/README.md): the function
# yamls' readinessTimeoutSeconds must be 3x this or more (tests/test_deploy_files.py).
RECORDED_SLOWEST_S = 43.5
STAGES = ("process", "imports", "register", "onnx_export", "load", "init_context", "total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--detector", type=Path,
                        default=Path(os.environ.get("CALS_DETECTOR") or SHARED_DETECTOR),
                        help="RTMDet person end2end.onnx (default: $CALS_DETECTOR or ../shared's)")
    parser.add_argument("--out", type=Path, default=Path("first-start.json"))
    parser.add_argument("--child", nargs=2, metavar=("T0", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(float(args.child[0]), Path(args.child[1]))
    if not args.detector.is_file():
        sys.exit(f"first_start: no detector at {args.detector}; pass --detector end2end.onnx or set CALS_DETECTOR")
    with tempfile.TemporaryDirectory(prefix="cals-first-start-") as tmp:
        result = bench(Path(tmp), args.repeats, args.detector)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def bench(tmp: Path, repeats: int, detector: Path) -> dict:
    import torch

    from tests.test_rtmpose_release import released_state

    checkpoint = tmp / "rtmpose-m-coco.pth"
    torch.save({"state_dict": released_state(), "meta": {"mmengine_version": "0.10.7", "epoch": 420}}, checkpoint)
    load_before = os.getloadavg()
    runs = [run_once(tmp / f"run-{i}", checkpoint, detector) for i in range(repeats)]
    return {"what": "init_context of the Nuclio function on an empty registry (register + load the initial model)",
            "command": f"python -m bench.first_start --repeats {repeats}",
            "cpus": len(os.sched_getaffinity(0)), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch_threads": runs[0]["torch_threads"], "checkpoint_mb": round(checkpoint.stat().st_size / 2**20, 1),
            "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "repeats": repeats,
            "seconds": {stage: summary([r[stage] for r in runs]) for stage in STAGES},
            "onnx_exported": all(r["onnx"] for r in runs), "runs": runs}


def run_once(folder: Path, checkpoint: Path, detector: Path) -> dict:
    """One first start in a fresh process; its stage times, and the whole from the process start."""
    folder.mkdir()
    out = folder / "timings.json"
    env = {**os.environ, "CALS_REGISTRY": str(folder / "registry"), "CALS_DETECTOR": str(detector),
           "CALS_INIT_CHECKPOINT": str(checkpoint), "CALS_CONFIG": "rtmpose-m", "CALS_DEVICE": "cpu",
           "CALS_CACHE": str(folder / "cache"), "PYTHONPATH": str(ROOT)}
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "bench.first_start", "--child", repr(t0), str(out)],
                   env=env, cwd=ROOT, check=True)
    return json.loads(out.read_text())


def child(t0: float, out: Path) -> None:
    """In the fresh process: `init_context` of main.py, timed by stage."""
    import importlib.util
    import types

    start = time.time()
    spec = importlib.util.spec_from_file_location(
        "cals_spine_pose_main", ROOT / "serverless" / "spine-pose" / "nuclio" / "main.py")
    function = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(function)
    import cals.model.train as train
    import cals.serving.service as service

    marks: dict[str, float] = {}
    service.ensure_initial_model = _timed(service.ensure_initial_model, marks, "register")
    train.export_onnx = _timed(train.export_onnx, marks, "onnx_export")  # part of register
    service.SkeletonService._load = _timed(service.SkeletonService._load, marks, "load")
    context = types.SimpleNamespace(user_data=types.SimpleNamespace(), logger=_Logger())
    imported = time.time()
    function.init_context(context)
    ready = time.time()
    import torch

    svc = context.user_data.service
    if svc.initial_error:
        sys.exit(f"first_start: {svc.initial_error}")
    version = svc.registry.current()
    out.write_text(json.dumps({
        "process": round(start - t0, 2), "imports": round(imported - start, 2), **marks,
        "init_context": round(ready - imported, 2), "total": round(ready - t0, 2),
        "onnx": (version.path / "model.onnx").is_file(), "torch_threads": torch.get_num_threads()}))


def _timed(fn, marks: dict[str, float], name: str):
    def wrapper(*args, **kwargs):
        t = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            marks[name] = round(marks.get(name, 0.0) + time.time() - t, 2)
    return wrapper


class _Logger:
    def info(self, message: str, *args) -> None:
        pass

    error = warn = warning = debug = info


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


if __name__ == "__main__":
    main()
