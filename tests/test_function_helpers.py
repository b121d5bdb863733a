"""Shared helpers for the function tests: load main.py as Nuclio does, call it, encode images."""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import sys
from pathlib import Path

import nuclio_sdk
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_DIR = ROOT / "serverless" / "spine-pose" / "nuclio"
SHARED = ROOT.parent / "shared"
DETECTOR = SHARED / "models" / "rtmdet-nano-person" / "end2end.onnx"
REAL = SHARED / "data" / "real-coco4"
# Mean OKS of the detected people with the 300-iteration CPU fixture model, measured 0.35
# (found 38 of 64 people on 40 frames); coordinates in the wrong frame (crop, resized image,
# swapped axes) score ~0.
OKS_BAR = 0.25
FOUND_BAR = 0.4


def load_main():
    """serverless/spine-pose/nuclio/main.py as a module (the folder name is not importable)."""
    name = "cals_spine_pose_main"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, FUNCTION_DIR / "main.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def call(platform, body, mutate=None):
    """(status, parsed JSON body, headers) of one handler call."""
    event = nuclio_sdk.Event(body=body)
    handler = load_main().handler
    response = platform.call_handler(handler, event) if mutate is None else \
        platform.call_handler_with_context_mutation(handler, event, mutate)
    return response.status_code, json.loads(response.body), response.headers


def encode(image: Image.Image, fmt: str = "PNG", **params) -> str:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return base64.b64encode(buf.getvalue()).decode()


def bgr_to_pil(bgr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))


def skeleton_points(shape: dict) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) points and (K,) visible flags of one skeleton shape."""
    pts = np.array([e["points"] for e in shape["elements"]], dtype=float)
    visible = np.array([not e["outside"] for e in shape["elements"]])
    return pts, visible


def copy_version(version, registry, **meta):
    """The same files as a new version of `registry` (its own id), not promoted."""
    files = {name: version.path / name for name in version.meta["files"]}
    keep = {k: v for k, v in version.meta.items() if k not in ("id", "parent", "created_at", "files")}
    return registry.add(files, meta={**keep, **meta})


_WORKER_THREADS = """
import json, types
import torch
from tests.test_function_helpers import load_main

context = types.SimpleNamespace(user_data=types.SimpleNamespace(), logger=types.SimpleNamespace(info=print))
load_main().init_context(context)
service = context.user_data.service
network = service.watcher.get().network
print(json.dumps({"torch": torch.get_num_threads(),
                  "detector": service.detector.session.get_session_options().intra_op_num_threads,
                  "pose": network.session.get_session_options().intra_op_num_threads
                  if network.name == "onnxruntime" else network.compiled.get_property("INFERENCE_NUM_THREADS"),
                  "backend": network.name}))
"""


def worker_threads(env: dict[str, str]) -> dict:
    """main.py's init_context in a fresh Python process, as each Nuclio worker runs it (CALS_* from `env`
    only): the threads it gave torch, the detector's ONNX Runtime session and the pose model's runtime."""
    import os
    import subprocess

    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALS_")}
    done = subprocess.run([sys.executable, "-c", _WORKER_THREADS], cwd=ROOT, capture_output=True, text=True,
                          env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
