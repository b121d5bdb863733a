"""The pool set (cals.training.pool_set): the pool's own labels and the served model's confident
spine points on frames nobody labelled, mixed into training at a set share of human people."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cals.data.coco import annotations_by_name
from cals.errors import CalsError
from cals.data.pool import LocalPool
from cals.simulate.data import body_only
from cals.training.pool_set import PoolTraining, build_pool_set


@pytest.fixture(scope="module")
def pool(synthetic, schema, tmp_path_factory) -> Path:
    """The synthetic train set as a COCO pool has it: body points labelled, the spine not."""
    return body_only(synthetic / "train", tmp_path_factory.mktemp("pool-body"), schema)


def guesses(item, schema, score: float) -> list[dict]:
    """A model's people on the item: its boxes, every point at the box centre + its index, one score."""
    out = []
    for box in item.boxes:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        points = [[float(cx + i), float(cy + i)] for i in range(schema.num_keypoints)]
        out.append({"bbox": [float(v) for v in box], "keypoints": points, "scores": [score] * schema.num_keypoints})
    return out


def annotations(root: Path) -> tuple[dict[str, list[dict]], dict]:
    coco = json.loads((root / "annotations.json").read_text())
    return annotations_by_name(coco), coco


def test_the_pool_set_keeps_the_pools_labels_adds_confident_spine_points_and_leaves_labelled_frames_out(
        pool, schema, tmp_path):
    local = LocalPool(pool, schema)
    items = list(local.items())
    labelled = {items[0].name, items[1].name}
    scores = {item.name: (0.9 if i % 2 else 0.3) for i, item in enumerate(items)}  # confident on odd frames
    assert any(len(item.boxes) > 1 for item in items)  # cached people come in another order: matched by box
    report = build_pool_set(local, tmp_path / "set", schema, PoolTraining(pseudo=True, threshold=0.6, human_share=0.5),
                            exclude=labelled, people=lambda item: guesses(item, schema, scores[item.name])[::-1])
    by_name, coco = annotations(tmp_path / "set")
    assert set(by_name) == {i.name for i in items} - labelled
    spine, body = schema.groups["spine"], schema.groups["body"]
    pseudo = 0
    for item in items[2:]:
        for ann, truth, box in zip(by_name[item.name], item.labelled, item.boxes):
            kps = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            assert np.allclose(kps[body], np.where(truth[body, 2:] > 0, truth[body], 0), atol=0.01)
            if scores[item.name] >= 0.6:
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                assert np.allclose(kps[spine, 0], [cx + i for i in spine], atol=0.01)
                assert (kps[spine, 2] == 2).all()
                pseudo += len(spine)
            else:
                assert (kps[spine] == 0).all()  # below the threshold: no loss
    assert report["pseudo_points"] == pseudo > 0
    assert report["frames"] == len(items) - 2 and report["people"] == len(coco["annotations"])
    assert all((tmp_path / "set" / "images" / name).is_file() for name in by_name)


def test_pseudo_labels_never_replace_a_point_the_pool_labels_and_ignore_other_peoples_predictions(
        synthetic, schema, tmp_path):
    local = LocalPool(synthetic / "train", schema)  # the spine labelled in the pool too
    items = list(local.items())
    report = build_pool_set(local, tmp_path / "set", schema, PoolTraining(pseudo=True, threshold=0.0),
                            exclude=(), people=lambda item: guesses(item, schema, 1.0))
    by_name, _ = annotations(tmp_path / "set")
    for item in items:
        for ann, truth in zip(by_name[item.name], item.labelled):
            kps = np.asarray(ann["keypoints"], float).reshape(-1, 3)
            given = truth[:, 2] > 0
            assert np.allclose(kps[given], truth[given], atol=0.01)
    assert report["pseudo_points"] == report["pseudo_candidates"]  # only the spine points the pool lacks

    shifted = lambda item: [{**p, "bbox": [v + 10 for v in p["bbox"]]} for p in guesses(item, schema, 1.0)]  # noqa: E731
    report = build_pool_set(local, tmp_path / "other", schema, PoolTraining(labels=False, pseudo=True, threshold=0.0),
                            exclude=(), people=shifted)
    assert report["pseudo_points"] == 0 and report["people"] == 0  # boxes of other people: nothing taken


def test_pool_training_settings_are_checked():
    with pytest.raises(CalsError, match="human share"):
        PoolTraining(human_share=0)
    with pytest.raises(CalsError, match="threshold"):
        PoolTraining(threshold=1.5)
    assert not PoolTraining(human_share=1).enabled and not PoolTraining(labels=False, pseudo=False).enabled
    assert PoolTraining().labels and PoolTraining().pseudo  # the defaults: the measured best (docs/label-efficiency.md)


def test_training_mixes_the_pool_set_at_the_human_share(pool, synthetic, schema, tmp_path):
    from cals.model.config import build_config, mix_pool
    from cals.model.train import train
    from cals.registry import Registry

    local = LocalPool(pool, schema)
    build_pool_set(local, tmp_path / "set", schema, PoolTraining(pseudo=False), exclude=(), people=None)
    human = len(json.loads((synthetic / "train" / "annotations.json").read_text())["annotations"])
    people = len(json.loads((tmp_path / "set" / "annotations.json").read_text())["annotations"])

    cfg = build_config("cpu", schema, data_root=synthetic / "train", iters=2)
    times = mix_pool(cfg, tmp_path / "set", human_share=0.8, human_people=human, pool_people=people)
    assert times == max(1, round(4 * people / human))
    assert cfg.train_dataloader.dataset["datasets"][0]["times"] == times
    with pytest.raises(CalsError, match="human share"):
        mix_pool(cfg, tmp_path / "set", human_share=1.0, human_people=human, pool_people=people)

    registry = Registry(tmp_path / "registry")
    version = train(synthetic / "train", registry, iters=2, progress=False, pool_root=tmp_path / "set",
                    human_share=0.5)
    recorded = version.meta["train_data"]["pool"]
    assert recorded["annotations"] == people and recorded["human_share"] == 0.5
    assert recorded["human_repeats"] == max(1, round(people / human))
    assert recorded["labelled_points"]["spine"] == 0 and recorded["labelled_points"]["body"] > 0
