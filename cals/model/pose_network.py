"""The pose network of a version, run by PyTorch or by ONNX Runtime from its exported `model.onnx`.

A network maps normalised crops (N, 3, H, W) to the head's raw outputs (heatmaps, or the SimCC
pair x, y) and each crop's feature: the backbone's last stage, averaged over space (N, C), which
the diversity strategies compare. Everything around it (mmpose's crop pipeline, the flip test, decoding) stays mmpose's,
so both backends differ only in who multiplies the matrices.

  CALS_POSE_BACKEND  auto (default: ONNX Runtime on CPU when the version has model.onnx, else
                     PyTorch), onnxruntime, or pytorch
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Union

import torch

from cals.errors import CalsError
from cals.model import threads

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
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

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.head_forward: Callable = model.head.forward  # bound before the predictor rewires the head

    def __call__(self, inputs: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
        with torch.no_grad():
            return network_forward(self.model, self.head_forward, inputs)


class OnnxNetwork:
    """The same network from `model.onnx`, one ONNX Runtime session per predictor."""

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

    def __call__(self, inputs: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
        *outputs, features = [torch.from_numpy(o) for o in self.session.run(None, {self.input: inputs.numpy()})]
        return (outputs[0] if len(outputs) == 1 else tuple(outputs)), features


def backend_setting() -> str:
    """$CALS_POSE_BACKEND, checked by the settings layer."""
    from cals.settings import ModelEnv

    return ModelEnv.load().POSE_BACKEND


def pick_network(model: torch.nn.Module, version_dir: Path, device: str,
                 backend: str | None = None) -> TorchNetwork | OnnxNetwork:
    """ONNX Runtime where it is asked for or (auto) where it helps: a CPU host and an exported model.

    GPU hosts keep PyTorch/CUDA. A model.onnx that will not load falls back to PyTorch under
    auto and is an error when onnxruntime is asked for by name.
    """
    backend = backend or backend_setting()
    onnx = version_dir / ONNX_FILE
    wanted = backend == "onnxruntime" or (backend == "auto" and device == "cpu" and onnx.is_file())
    if not wanted:
        return TorchNetwork(model)
    if not onnx.is_file():
        raise CalsError(f"CALS_POSE_BACKEND=onnxruntime but {version_dir.name} has no {ONNX_FILE} (it was "
                        "registered before CALS exported models, or its export failed); use auto")
    try:
        return OnnxNetwork(onnx)
    except CalsError as e:
        if backend == "onnxruntime":
            raise
        log.warning("%s; serving %s with PyTorch", e, version_dir.name)
        return TorchNetwork(model)
