"""Pool scoring with the real trained model: blurred frames rank first, the cache makes rescoring free."""
import json
import shutil

import cv2
import numpy as np
import pytest

from cals.errors import CalsError
from cals.model.predict import Predictor
from cals.data.pool import LocalPool
from cals.sampling.ranking import rank
from cals.sampling.cache import ScoreCache
from cals.sampling.scoring import Scorer
from cals.sampling.strategies import create


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor(trained[1].path, version_id=trained[1].id)


@pytest.fixture(scope="module")
def blurred_pool(synthetic, tmp_path_factory):
    """8 upright-ish training frames, and the same frames heavily blurred ('b_' prefix)."""
    root = tmp_path_factory.mktemp("pool")
    coco = json.loads((synthetic / "train" / "annotations.json").read_text())
    images = coco["images"][:8]
    (root / "images").mkdir()
    out_images, out_anns = [], []
    for im in images:
        src = cv2.imread(str(synthetic / "train" / "images" / im["file_name"]))
        for prefix, pixels in (("", src), ("b_", cv2.GaussianBlur(src, (0, 0), 9))):
            new_id = len(out_images) + 1
            cv2.imwrite(str(root / "images" / (prefix + im["file_name"])), pixels)
            out_images.append({**im, "id": new_id, "file_name": prefix + im["file_name"]})
            out_anns += [{**a, "id": len(out_anns) + 1, "image_id": new_id,
                          "keypoints": [0] * len(a["keypoints"])}  # nothing labelled yet
                         for a in coco["annotations"] if a["image_id"] == im["id"]]
    (root / "annotations.json").write_text(json.dumps({**coco, "images": out_images, "annotations": out_anns}))
    return root


def mean_rank(ranked, prefix):
    return np.mean([r.rank for r in ranked if r.name.startswith(prefix)])


def test_uncertainty_ranks_blurred_frames_first(predictor, blurred_pool, schema, tmp_path):
    strategies = [create(n, schema=schema) for n in ("least_confidence", "entropy", "flip")]
    table = Scorer(predictor, cache=ScoreCache(tmp_path / "c.sqlite")).score(
        LocalPool(blurred_pool, schema), strategies + [create("coreset")], progress=False)
    assert len(table.keys) == 16 and table.feature_matrix().shape == (16, predictor.model.head.in_channels)
    confidence = dict(zip(table.names, table.scores[strategies[0].cache_id]))
    blurred_higher = [confidence["b_" + n] > confidence[n] for n in table.names if not n.startswith("b_")]
    assert sum(blurred_higher) >= 6, blurred_higher  # blur lowers the heatmap peaks
    ranked = rank(table, strategies[0], k=4)
    assert mean_rank(ranked, "b_") < mean_rank(ranked, "0") - 3
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert set(ranked[0].scores) == {x.cache_id for x in strategies}
    assert all(0 < v < 1 for v in table.scores[strategies[1].cache_id])
    excluded = rank(table, strategies[0], k=4, exclude={table.names[0]})
    assert len(excluded) == 15 and table.names[0] not in {r.name for r in excluded}


def test_cache_rescoring_is_free_and_per_version(predictor, blurred_pool, schema, tmp_path):
    cache = ScoreCache(tmp_path / "c.sqlite")
    pool = LocalPool(blurred_pool, schema)
    s = [create("entropy", schema=schema), create("coreset")]
    first = Scorer(predictor, cache=cache).score(pool, s, progress=False)
    again = Scorer(predictor, cache=cache).score(pool, s, progress=False)
    assert first.computed == 16 and again.computed == 0
    assert again.scores == first.scores
    np.testing.assert_allclose(again.feature_matrix(), first.feature_matrix())
    # a strategy the cache has not seen is computed, the others are kept
    more = Scorer(predictor, cache=cache).score(pool, s + [create("least_confidence", schema=schema)],
                                                progress=False)
    assert more.computed == 16 and more.scores[s[0].cache_id] == first.scores[s[0].cache_id]
    assert cache.people(predictor.version_id, first.keys[0])[0]["keypoints"]


def test_frames_without_boxes_need_the_detector(predictor, blurred_pool, schema, tmp_path):
    root = tmp_path / "pool"
    shutil.copytree(blurred_pool, root)
    coco = json.loads((root / "annotations.json").read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 1]
    (root / "annotations.json").write_text(json.dumps(coco))
    with pytest.raises(CalsError, match="CALS_DETECTOR"):
        Scorer(predictor).score(LocalPool(root, schema), [create("entropy", schema=schema)], progress=False)


def test_committee_needs_and_uses_a_previous_version(trained, predictor, blurred_pool, schema):
    import torch

    committee = create("committee", schema=schema)
    pool = LocalPool(blurred_pool, schema)
    with pytest.raises(CalsError, match="previous model version"):
        Scorer(predictor).score(pool, [committee], progress=False)
    same = Scorer(predictor, previous=predictor).score(pool, [committee], progress=False)
    assert max(same.scores[committee.cache_id]) < 1e-6  # one model agrees with itself
    # another member: the same net, its PyTorch weights perturbed
    other = Predictor(trained[1].path, version_id="older", backend="pytorch")
    torch.manual_seed(0)
    with torch.no_grad():
        for w in other.model.head.parameters():
            w.add_(torch.randn_like(w) * w.std())
    values = np.array(Scorer(predictor, previous=other).score(pool, [committee], progress=False)
                      .scores[committee.cache_id])
    assert (values > 0.001).all() and values.mean() > 0.005  # two different members disagree


def test_random_order_reads_no_image_and_no_model(predictor, blurred_pool, schema, tmp_path):
    """A random round needs no model output: a pool of tens of thousands of frames is ordered at once,
    and only the round's frames are predicted, for their pre-annotations."""
    pool = LocalPool(blurred_pool, schema)
    pool.load = lambda items: pytest.fail("random loaded pixels")  # type: ignore[method-assign]
    cache = ScoreCache(tmp_path / "c.sqlite")
    table = Scorer(predictor, cache=cache).score(pool, [create("random", seed=3)], progress=False)
    assert len(table.names) == 16 and table.computed == 0 and not table.features
    assert cache.people(predictor.version_id, table.keys[0]) is None  # nothing predicted, nothing cached
    again = Scorer(predictor, cache=cache).score(pool, [create("random", seed=3)], progress=False)
    assert again.scores == table.scores  # the same order per seed
