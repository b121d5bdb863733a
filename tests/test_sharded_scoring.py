"""Sharded pool scoring (CALS_SAMPLER_RANKS): torchrun ranks fill the score cache, and the table,
its order and the ranking are the ones a single process makes."""
import os
import signal

import numpy as np
import pytest

from cals.errors import CalsError
from cals.model.predict import Predictor
from cals.sampling import sharded
from cals.sampling.cache import ScoreCache
from cals.data.pool import LocalPool
from cals.sampling.ranking import rank
from cals.sampling.scoring import Scorer
from cals.sampling.sharded import Sharding
from cals.sampling.strategies import create
from cals.settings import SamplerEnv

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first

FRAMES = 24


@pytest.fixture(scope="module")
def predictor(trained):
    return Predictor(trained[1].path, version_id=trained[1].id)


@pytest.fixture(scope="module")
def pool_dir(tmp_path_factory):
    from cals.synth import generate_dataset

    root = tmp_path_factory.mktemp("shard-pool")
    generate_dataset(root, FRAMES, seed=23, progress=False)
    return root


def test_two_ranks_score_what_one_process_scores(trained, predictor, pool_dir, schema, tmp_path, monkeypatch):
    pool = LocalPool(pool_dir, schema)
    strategies = [create("entropy", schema=schema), create("coreset")]  # an uncertainty; features
    exclude = {item.name for item in list(pool.items())[3:5]}
    one = Scorer(predictor, cache=ScoreCache(tmp_path / "one.sqlite"), batch_size=4).score(
        pool, strategies, exclude=exclude, progress=False)
    sharding = Sharding(2, str(trained[0].root))
    cache = ScoreCache(tmp_path / "two.sqlite")
    two = Scorer(predictor, cache=cache, batch_size=4, sharding=sharding).score(
        pool, strategies, exclude=exclude, progress=False)

    assert two.keys == one.keys and two.names == one.names and len(one.keys) == FRAMES - 2
    for cache_id, values in one.scores.items():
        np.testing.assert_allclose(two.scores[cache_id], values, atol=1e-5, rtol=0)
    np.testing.assert_allclose(two.feature_matrix(), one.feature_matrix(), atol=1e-5, rtol=0)
    assert one.feature_matrix().shape == (FRAMES - 2, predictor.model.head.in_channels)
    for s in strategies:
        assert [r.name for r in rank(two, s, k=6)] == [r.name for r in rank(one, s, k=6)]
    # each rank scored a share (several steps of 2 ranks x 4 frames), and the shares add up
    scored = two.sharded.scored
    assert len(scored) == 2 and min(scored) > 0 and two.computed == sum(scored) == FRAMES - 2
    assert two.sharded.startup_s > 0 and two.sharded.scoring_s > 0

    def no_ranks(*args, **kwargs):
        raise AssertionError("a rerun started the ranks")

    monkeypatch.setattr(sharded.RankGroup, "submit", no_ranks)
    again = Scorer(predictor, cache=cache, batch_size=4, sharding=sharding).score(
        pool, strategies, exclude=exclude, progress=False)
    assert again.computed == 0 and again.sharded is None and again.keys == one.keys


def test_two_ranks_open_the_round_one_process_opens(trained, predictor, pool_dir, schema, project, cvat_client,
                                                     tmp_path):
    """The same frames in the same jobs, pre-annotated with the same people, in two fresh projects."""
    import uuid

    from cals.sampling.rounds import RoundSpec, open_round
    from cals.sampling import preannotations

    other = cvat_client.projects.create({"name": f"cals-test-{uuid.uuid4().hex[:8]}",
                                         "labels": [schema.cvat_label()]})
    try:
        rounds = [open_round(cvat_client, RoundSpec(p.id, size=6, job_size=3), LocalPool(pool_dir, schema),
                             Scorer(predictor, cache=ScoreCache(tmp_path / f"{i}.sqlite"), sharding=sharding),
                             create("hybrid", schema=schema), data_dir=tmp_path / str(i), progress=False)
                  for i, (p, sharding) in enumerate([(project, None), (other, Sharding(2, str(trained[0].root)))])]
    finally:
        cvat_client.projects.remove_by_ids([other.id])
    one, two = rounds
    assert two.frames == one.frames and two.jobs == one.jobs and len(one.frames) == 6
    people = [[(a["image_id"], a["keypoints"]) for a in preannotations.load(tmp_path / str(i) / "preannotations",
                                                                             r.task_id)["annotations"]]
              for i, r in enumerate(rounds)]
    assert [i for i, _ in people[1]] == [i for i, _ in people[0]] and people[0]
    np.testing.assert_allclose([k for _, k in people[1]], [k for _, k in people[0]], atol=0.02)


def test_a_failing_rank_is_a_clear_error(predictor, pool_dir, schema, tmp_path):
    empty_registry = tmp_path / "registry"  # the ranks cannot find the version
    empty_registry.mkdir()
    scorer = Scorer(predictor, cache=ScoreCache(tmp_path / "c.sqlite"), sharding=Sharding(2, str(empty_registry)))
    with pytest.raises(CalsError) as failed:
        scorer.score(LocalPool(pool_dir, schema), [create("entropy", schema=schema)], progress=False)
    message = str(failed.value)
    assert "sharded scoring (2 ranks) failed" in message and "unknown version" in message
    assert predictor.version_id in message and "output of the ranks" in message


def test_the_sampler_ranks_the_pool_alike_with_two_ranks_kept_between_scorings(trained, pool_dir, tmp_path):
    from sampler.service import Sampler

    def sampler(ranks: int, data: str) -> Sampler:
        return Sampler(SamplerEnv.load(REGISTRY=str(trained[0].root), DATA=str(tmp_path / data), POOL=str(pool_dir),
                                       SAMPLER_RANKS=ranks, CVAT_URL="http://127.0.0.1:9",
                                       CVAT_TOKEN="unused"))  # a local pool: no CVAT call

    def fresh_cache(s: Sampler) -> Sampler:
        s.cache.close()
        s.cache.path.unlink()
        s.cache = ScoreCache(s.cache.path)
        return s

    def ranking(s: Sampler) -> dict:
        return s.rank(["least_confidence", "entropy"], project_id=None, limit=10)

    one, two = ranking(sampler(1, "one")), sampler(2, "two")
    try:
        first = ranking(two)
        pid = two.ranks.pid
        again = ranking(fresh_cache(two))  # as after a promotion: every frame to score again
        assert pid is not None and two.ranks.pid == pid  # the same ranks scored both times
        os.kill(pid, signal.SIGTERM)  # ranks that died start again at the next scoring
        restarted = ranking(fresh_cache(two))
        assert two.ranks.pid not in (None, pid)
    finally:
        two.close()
    assert two.ranks.pid is None
    for result in (first, again, restarted):
        assert one["scored_now"] == result["scored_now"] == FRAMES
        assert [r["frame"] for r in result["ranking"]] == [r["frame"] for r in one["ranking"]]
        np.testing.assert_allclose([r["score"] for r in result["ranking"]], [r["score"] for r in one["ranking"]],
                                   atol=1e-5, rtol=0)
