"""Export a version's pose network to ONNX next to its checkpoint, for ONNX Runtime on CPU hosts.

Every version is exported when its files are written (before it is evaluated, registered or
promoted), so the model that passed the promotion gate is the one that is served. The export is
checked against PyTorch on a random batch; a failed export or check leaves no model.onnx and the
version is served by PyTorch.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from cals.model.pose_network import ONNX_FILE, OnnxNetwork, TorchNetwork, network_forward

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-3  # of the largest output magnitude; float32 kernels differ by ~1e-5


class _Network(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> tuple:
        outputs, features = network_forward(self.model, self.model.head.forward, inputs)
        return (*_as_tuple(outputs), features)  # features last: OnnxNetwork splits them off


def export_onnx(version_dir: str | Path) -> Path | None:
    """Write `version_dir/model.onnx` from its config and checkpoint; None if it cannot be done."""
    from cals.model.predict import load_model

    version_dir = Path(version_dir)
    target = version_dir / ONNX_FILE
    try:
        model, _, _ = load_model(version_dir, device="cpu")
        width, height = model.cfg.codec.input_size
        sample = torch.randn(2, 3, height, width)
        _export(_Network(model).eval(), sample, target)
        _check(TorchNetwork(model), OnnxNetwork(target), sample)
    except Exception as e:  # noqa: BLE001 - any failure means: serve this version with PyTorch
        target.unlink(missing_ok=True)
        log.warning("no ONNX export for %s (it will be served by PyTorch): %s", version_dir.name, e)
        return None
    return target


def _export(network: torch.nn.Module, sample: torch.Tensor, target: Path) -> None:
    # The TorchScript-based exporter: 10x faster than the dynamo one on these networks (2 s vs 17 s
    # for RTMPose-m on 2 cores) with the same graph; torch is pinned, so it stays available.
    tmp = target.with_name(f".{target.name}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(network, (sample,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["crops"], dynamic_axes={"crops": {0: "people"}})
    tmp.replace(target)


def _check(reference: TorchNetwork, exported: OnnxNetwork, sample: torch.Tensor) -> None:
    want, got = _flat(reference(sample)), _flat(exported(sample))
    for w, g in zip(want, got):
        scale = float(w.abs().max()) or 1.0
        diff = float((w - g).abs().max())
        if w.shape != g.shape or not np.isfinite(diff) or diff > TOLERANCE * scale:
            raise ValueError(f"ONNX Runtime disagrees with PyTorch (max difference {diff:.3g} "
                             f"for outputs up to {scale:.3g})")


def _as_tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _flat(result: tuple) -> tuple:
    outputs, features = result
    return (*_as_tuple(outputs), features)
