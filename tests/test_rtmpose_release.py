"""RTMPose-m from a COCO-17 checkpoint in mmpose's released layout: what the Nuclio function registers
as the first model and what the trainer then fine-tunes.

The checkpoint is built from mmpose's own `rtmpose-m_8xb256-420e_aic-coco-256x192.py` (random weights,
the real key names and shapes; a SimCC head lists `cls_x`/`cls_y` after `final_layer`), saved as mmengine
saves releases: `state_dict` plus a `meta` with or without `dataset_meta`.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cals.model.checkpoint import COCO17_NAMES, load_checkpoint
from cals.registry import Registry
from cals.serving.initial import ensure_initial_model

MMPOSE_CONFIG = "body_2d_keypoint/rtmpose/coco/rtmpose-m_8xb256-420e_aic-coco-256x192.py"


def released_state() -> dict[str, torch.Tensor]:
    """The state_dict of mmpose's RTMPose-m COCO config (17 keypoints), randomly initialised."""
    import mmpose
    from mmengine.config import Config

    from cals.model import mm_imports

    mm_imports.setup()
    from mmpose.registry import MODELS

    cfg = Config.fromfile(Path(mmpose.__file__).parent / ".mim" / "configs" / MMPOSE_CONFIG)
    # mmdet's CSPNeXt (the config's `mmdet.CSPNeXt`) needs mmcv's compiled ops; mmpose's own is the
    # same network with the same parameter names
    backbone = {k: v for k, v in cfg.model.backbone.items() if k not in ("_scope_", "init_cfg")}
    cfg.model.backbone = {**backbone, "type": "CSPNeXt"}
    torch.manual_seed(0)
    return MODELS.build(cfg.model).state_dict()


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> dict[str, Path]:
    """The same weights saved twice: `meta` without and with `dataset_meta`."""
    state = released_state()
    assert list(state)[-2:] == ["head.cls_x.weight", "head.cls_y.weight"]
    assert state["head.final_layer.weight"].shape[0] == 17 and state["head.cls_y.weight"].shape[0] == 512
    root = tmp_path_factory.mktemp("rtmpose-release")
    meta = {"mmengine_version": "0.10.7", "epoch": 420, "iter": 0}
    named = {**meta, "dataset_meta": {"dataset_name": "coco",
                                      "keypoint_id2name": dict(enumerate(COCO17_NAMES))}}
    out = {}
    for name, m in (("plain", meta), ("named", named)):
        out[name] = root / f"rtmpose-m-{name}.pth"
        torch.save({"state_dict": state, "meta": m}, out[name])
    return out


@pytest.mark.parametrize("variant", ["plain", "named"])
def test_first_start_registers_the_released_checkpoint(releases, tmp_path, schema, variant):
    registry = Registry(tmp_path / "registry")
    version = ensure_initial_model(registry, str(releases[variant]), config="rtmpose-m", schema=schema)
    assert registry.current().id == version.id and version.meta["spine_trained"] is False
    got, _ = load_checkpoint(version.checkpoint)
    source, _ = load_checkpoint(releases[variant])
    rows = got["head.final_layer.weight"]
    assert rows.shape[0] == schema.num_keypoints
    for i, name in enumerate(COCO17_NAMES):  # body rows copied by name; the spine starts fresh
        assert torch.equal(rows[schema.index(name)], source["head.final_layer.weight"][i])
    assert torch.equal(got["head.cls_y.weight"], source["head.cls_y.weight"])


def test_a_first_rtmpose_model_trains_by_iterations_from_the_release(releases, synthetic, tmp_path, capsys):
    """The learning-rate schedule is rescaled to an iteration budget (no mmengine assertion)."""
    from cals.cli import main

    registry = tmp_path / "registry"
    args = ["train", "--data", str(synthetic / "val"), "--registry", str(registry), "--config", "rtmpose-m",
            "--iters", "2", "--batch-size", "2", "--init", str(releases["plain"])]
    assert main(args) == 0
    version = Registry(registry).current()
    assert version.id == capsys.readouterr().out.strip() and version.meta["iterations"] == 2
    assert version.meta["config"] == "rtmpose-m"
    # the case: fine-tuning the current RTMPose-m needs no --config (CALS_CONFIG's default is cpu)
    assert main(["train", "--data", str(synthetic / "val"), "--registry", str(registry), "--init", "current",
                 "--iters", "1", "--batch-size", "2"]) == 0
    child = Registry(registry).get(capsys.readouterr().out.strip())
    assert child.parent == version.id and child.meta["config"] == "rtmpose-m"


def test_a_checkpoint_of_another_architecture_is_named(releases, tmp_path, schema):
    from cals.errors import CalsError

    registry = Registry(tmp_path / "registry")
    with pytest.raises(CalsError, match="has no head.final_layer.weight"):
        ensure_initial_model(registry, str(_headless(releases["plain"], tmp_path)), config="rtmpose-m", schema=schema)
    assert registry.current() is None


def _headless(path: Path, tmp_path: Path) -> Path:
    state, meta = load_checkpoint(path)
    out = tmp_path / "headless.pth"
    torch.save({"state_dict": {k: v for k, v in state.items() if not k.startswith("head.")}, "meta": meta}, out)
    return out


def test_a_version_of_another_architecture_is_refused_before_training(trained, synthetic):
    """RTMPose-m cannot start from a `cpu` version: a one-line error, not a model trained from scratch."""
    from cals.errors import CalsError
    from cals.model.train import train

    registry, version = trained
    before = registry.list()
    with pytest.raises(CalsError, match=f"version {version.id} is a 'cpu' model and --config 'rtmpose-m' is another"):
        train(synthetic / "val", registry, config="rtmpose-m", iters=1, init=version.id, progress=False)
    assert registry.list() == before
