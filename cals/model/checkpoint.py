"""Checkpoint I/O and keypoint-channel surgery for initialising from other schemas.

CALS saves plain `{"state_dict": tensors, "meta": json}` files, which torch
loads with `weights_only=True`. Checkpoints from elsewhere (mmpose's COCO-17
releases) are downloaded once into the cache and loaded with only the few
mmengine/numpy types their metadata holds allowed, never with full unpickling.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch

from cals.errors import CalsError
from cals.model.pretrained import check_sha256, download, local_path, pinned_sha256, sha256_of

logger = logging.getLogger(__name__)

COCO17_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)


def cache_dir() -> Path:
    """$CALS_CACHE, default ~/.cache/cals: downloads and trained base models live here."""
    from cals.settings import ModelEnv

    return ModelEnv.load().CACHE


def fetch(path_or_url: str, sha256: str | None = None) -> Path:
    """A local path or file:// URL as is; an http(s) URL downloaded once into the cache.

    The file is checked against `sha256`, else a `#sha256=HEX` URL fragment (as pip reads one), else
    the pin of a known download (cals.model.pretrained); a mismatch raises and keeps nothing.
    """
    parsed = urlparse(path_or_url)
    fragment = parse_qs(parsed.fragment).get("sha256", [None])[0]
    expected = sha256 or fragment or pinned_sha256(parsed._replace(fragment="").geturl())
    path = local_path(path_or_url)
    if path is None:
        path = cache_dir() / "checkpoints" / Path(parsed.path).name
        if path.is_file() and expected and sha256_of(path) != expected:
            logger.warning("cached %s does not match its sha256: downloading it again", path)
            path.unlink()
        if not path.is_file():
            download(parsed._replace(fragment="").geturl(), path, expected)
        return path
    if not path.is_file():
        raise CalsError(f"checkpoint not found: {path}")
    return check_sha256(path, expected, f"checkpoint {path}") if expected else path


def _safe_globals() -> list:
    """Types found in mmengine-saved checkpoint metadata, allowed for weights_only loads."""
    allowed: list = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, np.dtypes.Float64DType,
                     np.dtypes.Float32DType, np.dtypes.Int64DType]
    try:
        from mmengine.config.config import ConfigDict
        from mmengine.logging.history_buffer import HistoryBuffer

        allowed += [ConfigDict, HistoryBuffer]
    except ImportError:
        pass
    return allowed


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return (state_dict, meta) from a CALS or mmpose checkpoint, on the CPU."""
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CalsError(f"checkpoint not found: {path}") from None
    except Exception as e:
        raise CalsError(f"cannot load checkpoint {path}: {str(e).splitlines()[0]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], dict(obj.get("meta") or {})
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    raise CalsError(f"{path} holds no model state_dict")


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike,
                    meta: Mapping[str, Any]) -> Path:
    path = Path(path)
    torch.save({"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
                "meta": dict(meta)}, path)
    return path


def source_keypoint_names(meta: Mapping[str, Any], num: int) -> Sequence[str]:
    """Keypoint names of a checkpoint: CALS meta, mmpose dataset_meta, else COCO-17 by count."""
    if meta.get("keypoint_names"):
        return list(meta["keypoint_names"])
    id2name = (meta.get("dataset_meta") or {}).get("keypoint_id2name")
    if id2name:
        return [id2name[i] for i in range(len(id2name))]
    if num == len(COCO17_NAMES):
        return COCO17_NAMES
    raise CalsError(f"cannot tell which keypoints the checkpoint's {num} channels are")


def adapt_state_dict(source: Mapping[str, torch.Tensor], source_names: Sequence[str],
                     target: Mapping[str, torch.Tensor], target_names: Sequence[str]
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Initialise `target` from `source`, copying keypoint channels by point name.

    Tensors of equal shape are copied; tensors whose first dimension is the
    keypoint count (the head's last layer) get the rows of shared points, and
    new points (the spine) keep the target's fresh initialisation.
    """
    src_index = {n: i for i, n in enumerate(source_names)}
    pairs = [(t, src_index[n]) for t, n in enumerate(target_names) if n in src_index]
    same_points = list(source_names) == list(target_names)
    ks, kt = len(source_names), len(target_names)
    out, copied, mapped, skipped = {}, 0, 0, []
    for key, tgt in target.items():
        src = source.get(key)
        if src is not None and src.shape == tgt.shape and (same_points or src.ndim == 0
                                                             or src.shape[0] != ks):
            out[key] = src.clone()
            copied += 1
        elif src is not None and src.ndim and src.shape[0] == ks and tgt.shape[0] == kt \
                and src.shape[1:] == tgt.shape[1:]:
            new = tgt.clone()
            for t, s in pairs:
                new[t] = src[s]
            out[key] = new
            mapped += 1
        else:
            out[key] = tgt
            skipped.append(key)
    report = {"copied": copied, "keypoint_mapped": mapped, "fresh": len(skipped),
              "shared_points": len(pairs)}
    logger.info("initialised from checkpoint: %s", report)
    return out, report
