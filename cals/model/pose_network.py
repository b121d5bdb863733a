"""The pose network of a version, run by PyTorch, ONNX Runtime or OpenVINO from its exported `model.onnx`
(or, in int8, from `model.int8.onnx`, cals.model.quantize).

A network maps normalised crops (N, 3, H, W) to the head's raw outputs (heatmaps, or the SimCC
pair x, y) and each crop's feature: the backbone's last stage, averaged over space (N, C), which
the diversity strategies compare. Everything around it (mmpose's crop pipeline, the flip test, decoding) stays mmpose's,
so the runtimes differ only in who multiplies the matrices.

  CALS_POSE_BACKEND    auto (default), onnxruntime, openvino or pytorch. auto: on CPU with an
                       exported model, the runtimes in AUTO_ORDER for its precision (measured by
                       bench.serving), each one that cannot load the model falling back to the next
                       with one log line, PyTorch last; PyTorch on GPU or without an export. A
                       runtime asked for by name fails instead.
  CALS_POSE_PRECISION  auto (default: int8 where the version's int8 model passed its check at
                       registration, else fp32), fp32 or int8
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Callable, Iterator, Union

import numpy as np
import torch

from cals.errors import CalsError
from cals.model import threads

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"  # cals.model.quantize writes both, at registration
INT8_REPORT = "int8.json"  # its check against fp32: {"approved": bool, ...}
Outputs = Union[torch.Tensor, tuple]  # heatmaps, or (simcc_x, simcc_y)


def network_forward(model: torch.nn.Module, head_forward: Callable, inputs: torch.Tensor
                    ) -> tuple[Outputs, torch.Tensor]:
    """(head outputs, pooled backbone features): what is exported, and what PyTorch runs."""
    stages = model.backbone(inputs)
    last = stages[-1] if isinstance(stages, (tuple, list)) else stages
    feats = model.neck(stages) if getattr(model, "with_neck", False) else stages
    out = head_forward(feats)
    return (tuple(out) if isinstance(out, (tuple, list)) else out), last.mean(dim=(2, 3))


class TorchNetwork:
    """backbone → neck → head layers of an mmpose top-down model, in PyTorch."""

    name = "pytorch"
    precision = "fp32"

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.head_forward: Callable = model.head.forward  # bound before the predictor rewires the head

    def __call__(self, inputs: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
        with torch.no_grad():
            return network_forward(self.model, self.head_forward, inputs)


class OnnxNetwork:
    """The network from an ONNX file, one ONNX Runtime session per predictor."""

    name = "onnxruntime"

    def __init__(self, path: str | os.PathLike) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's threads otherwise spin after each run and starve the torch ops around it (crop
        # stacking, flip, decoding): on 2 cores that took the time outside the network from 9 %
        # to 34 % of an RTMPose-m request and tripled its p95
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.intra_op_num_threads = threads.session_threads()  # 0: every core
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own untyped errors
            raise CalsError(f"ONNX Runtime cannot load {path}: {e}") from None
        self.input = self.session.get_inputs()[0].name
        self.precision = precision_of(path)

    def __call__(self, inputs: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
        return _split_features(self.session.run(None, {self.input: inputs.numpy()}))


class OpenVinoNetwork:
    """The network from an ONNX file compiled by OpenVINO for this CPU, in fp32 arithmetic.

    The compiled blob is kept in `cache_dir` (OpenVINO's model cache, keyed by the model's hash and
    the compile settings), so a restart loads it instead of compiling again."""

    name = "openvino"

    def __init__(self, path: str | os.PathLike, cache_dir: Path | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise CalsError("OpenVINO is not installed (pip install openvino)") from None

        core = ov.Core()
        if cache_dir is not None and _writable(cache_dir):
            core.set_property({"CACHE_DIR": str(cache_dir)})
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
                  # pinned threads wait for their core when the host is busy (the trainer beside the
                  # function): unpinned, OpenVINO degrades like ONNX Runtime under load
                  "ENABLE_CPU_PINNING": False}
        if threads.session_threads():
            config["INFERENCE_NUM_THREADS"] = threads.session_threads()
        try:
            self.compiled = core.compile_model(str(path), "CPU", config)
        except Exception as e:  # noqa: BLE001 - OpenVINO raises RuntimeError for every kind of failure
            raise CalsError(f"OpenVINO cannot compile {path}: {str(e).strip().splitlines()[0]}") from None
        self._local = threading.local()  # an infer request serves one call at a time
        self.precision = precision_of(path)

    def __call__(self, inputs: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: inputs.numpy()})
        # copies: the request's output buffers are overwritten by its next call
        return _split_features([request.get_output_tensor(i).data.copy()
                                for i in range(len(self.compiled.outputs))])


def _split_features(arrays: list[np.ndarray]) -> tuple[Outputs, torch.Tensor]:
    *outputs, features = [torch.from_numpy(a) for a in arrays]
    return (outputs[0] if len(outputs) == 1 else tuple(outputs)), features


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def precision_of(path: str | os.PathLike) -> str:
    return "int8" if Path(path).name == INT8_FILE else "fp32"


Network = Union[TorchNetwork, OnnxNetwork, OpenVinoNetwork]
RUNTIMES = {"onnxruntime": OnnxNetwork, "openvino": OpenVinoNetwork}
# The runtimes auto tries on CPU, fastest first for RTMPose-m (the model users deploy), per precision;
# PyTorch closes every list. `python -m bench.serving`, 2 cores, 3 runs (docs/serving-speed.md):
# OpenVINO takes 0.79-0.93x ONNX Runtime's time on the fp32 model, ONNX Runtime 0.61-0.85x OpenVINO's
# on the int8 one (one person, flip test on). (The small `cpu` config ranks them the other way round.)
AUTO_ORDER = {"fp32": ("openvino", "onnxruntime"), "int8": ("onnxruntime", "openvino")}


def runtime_settings() -> tuple[str, str]:
    """($CALS_POSE_BACKEND, $CALS_POSE_PRECISION), checked by the settings layer."""
    from cals.settings import ModelEnv

    env = ModelEnv.load()
    return env.POSE_BACKEND, env.POSE_PRECISION


def openvino_cache() -> Path:
    """Where OpenVINO keeps compiled models: $CALS_CACHE/openvino."""
    from cals.settings import ModelEnv

    return ModelEnv.load().CACHE / "openvino"


def pick_network(model: torch.nn.Module, version_dir: Path, device: str, backend: str | None = None,
                 precision: str | None = None) -> Network:
    """The runtime and model file asked for, or (auto) the fastest that loads.

    GPU hosts keep PyTorch/CUDA under auto. int8 needs the version's `model.int8.onnx`; auto uses
    it only where its check at registration passed (`int8_approved`).
    """
    backend_env, precision_env = runtime_settings()
    backend, precision = backend or backend_env, precision or precision_env
    files = _model_files(version_dir, backend, precision, device)
    if backend == "pytorch":
        return TorchNetwork(model)
    if backend != "auto":
        return _load(backend, files[0])
    for runtime, path in _auto_candidates(files):
        try:
            return _load(runtime, path)
        except CalsError as e:
            log.warning("%s; trying the next runtime for %s", e, version_dir.name)
    if files:
        log.warning("no ONNX runtime could load %s: serving it with PyTorch", version_dir.name)
    return TorchNetwork(model)


def _model_files(version_dir: Path, backend: str, precision: str, device: str) -> list[Path]:
    """The ONNX files to try, in order; [] where PyTorch serves (auto on GPU, or no export)."""
    onnx, int8 = version_dir / ONNX_FILE, version_dir / INT8_FILE
    if precision == "int8":
        if backend == "pytorch":
            raise CalsError("CALS_POSE_PRECISION=int8 needs an ONNX runtime (CALS_POSE_BACKEND auto, "
                            "onnxruntime or openvino), not pytorch")
        if not int8.is_file():
            raise CalsError(f"CALS_POSE_PRECISION=int8 but {version_dir.name} has no {INT8_FILE} (it was "
                            "registered without a test set or before CALS quantized models); use auto")
        return [int8]
    if backend == "pytorch" or (backend == "auto" and (device != "cpu" or not onnx.is_file())):
        return []
    if not onnx.is_file():
        raise CalsError(f"CALS_POSE_BACKEND={backend} but {version_dir.name} has no {ONNX_FILE} (it was "
                        "registered before CALS exported models, or its export failed); use auto")
    if precision == "auto" and int8.is_file() and int8_approved(version_dir):
        return [int8, onnx]
    return [onnx]


def int8_approved(version_dir: Path) -> bool:
    """Whether the version's int8 model passed its check against fp32 when it was registered."""
    import json

    try:
        return json.loads((version_dir / INT8_REPORT).read_text()).get("approved") is True
    except (OSError, ValueError):
        return False


def _auto_candidates(files: list[Path]) -> Iterator[tuple[str, Path]]:
    for path in files:
        for runtime in AUTO_ORDER[precision_of(path)]:
            yield runtime, path


def _load(runtime: str, path: Path) -> Network:
    if runtime == "openvino":
        return OpenVinoNetwork(path, openvino_cache())
    return RUNTIMES[runtime](path)
