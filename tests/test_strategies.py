"""Each strategy ranks a constructed case the way its definition says it must."""
import numpy as np
import pytest

from cals.errors import CalsError
from cals.model.predict import PersonPose
from cals.sampling.strategies import (STRATEGIES, Observation, ShapeSpace, create, k_center_greedy)

K = 26


def person(xy=None, scores=None, dists=None, box=(0, 0, 100, 100)):
    xy = np.zeros((K, 2)) + 50 if xy is None else np.asarray(xy, float)
    scores = np.full(K, 0.9) if scores is None else np.asarray(scores, float)
    return PersonPose(bbox=np.asarray(box, float), keypoints=xy, scores=scores, distributions=dists or {})


def gaussian_maps(centres, sigma, h=32, w=24):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([sum(np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2)) for cx, cy in c)
                     for c in centres])


def obs(*people, key="img", **extra):
    return Observation(key=key, people=list(people), **extra)


def rank(strategy, observations):
    scores = [strategy.score(o) for o in observations]
    return list(np.argsort(scores)[::-1])


def test_least_confidence_ranks_low_spine_scores_first(schema):
    s = create("least_confidence", schema=schema)
    spine = schema.groups["spine"]
    low = np.full(K, 0.9)
    low[spine] = 0.2
    body_low = np.full(K, 0.9)
    body_low[schema.groups["body"]] = 0.1  # unsure body points do not matter for the spine score
    assert rank(s, [obs(person(scores=body_low)), obs(person(scores=low))]) == [1, 0]
    assert s.score(obs(person(scores=low))) == pytest.approx(0.8)


@pytest.mark.parametrize("form", ["heatmaps", "simcc"])
def test_entropy_ranks_a_blurred_distribution_above_a_sharp_one(schema, form):
    s = create("entropy", schema=schema)
    centres = [[(12, 16)]] * K
    if form == "heatmaps":
        sharp, blurred = ({"heatmaps": gaussian_maps(centres, sg)} for sg in (1.0, 6.0))
    else:
        xs = np.arange(192)
        sharp, blurred = ({"simcc_x": np.tile(-((xs - 90) ** 2) / (2 * sg ** 2), (K, 1)),
                           "simcc_y": np.tile(-((xs - 60) ** 2) / (2 * sg ** 2), (K, 1))} for sg in (2.0, 20.0))
    scores = [s.score(obs(person(dists=d))) for d in (sharp, blurred)]
    assert scores[1] > scores[0] + 0.1
    assert all(0 <= v <= 1 for v in scores)


def test_multipeak_entropy_ranks_two_peaks_above_one_wide_peak(schema):
    s = create("multipeak_entropy", schema=schema)
    wide = {"heatmaps": gaussian_maps([[(12, 16)]] * K, 6.0)}
    two = {"heatmaps": gaussian_maps([[(5, 8), (18, 24)]] * K, 1.0)}
    assert s.score(obs(person(dists=wide))) == pytest.approx(0.0, abs=1e-6)
    assert s.score(obs(person(dists=two))) == pytest.approx(np.log(2), rel=0.05)
    # plain entropy orders the same pair the other way: the variant measures something else
    e = create("entropy", schema=schema)
    assert e.score(obs(person(dists=wide))) > e.score(obs(person(dists=two)))


def test_flip_and_committee_rank_disagreement_first(schema):
    base = np.random.default_rng(0).uniform(20, 80, (K, 2))
    moved = base.copy()
    moved[schema.groups["spine"]] += 15
    for name, field in (("flip", "mirrored"), ("committee", "previous")):
        s = create(name, schema=schema)
        agree = obs(person(base), **{field: [person(base + 0.5)]})
        disagree = obs(person(base), **{field: [person(moved)]})
        assert rank(s, [agree, disagree]) == [1, 0], name
        assert s.score(disagree) == pytest.approx(15 * np.sqrt(2) / 100, rel=1e-3)
        with pytest.raises(ValueError, match=name):
            s.score(obs(person(base)))


def test_people_reduce_by_max_or_mean(schema):
    confident, unsure = np.full(K, 1.0), np.full(K, 0.0)
    image = obs(person(scores=confident), person(scores=unsure))
    assert create("least_confidence", schema=schema, reduce="max").score(image) == 1.0
    assert create("least_confidence", schema=schema, reduce="mean").score(image) == 0.5
    assert create("least_confidence", schema=schema, reduce=np.median).score(image) == 0.5
    assert create("entropy", schema=schema).score(obs()) == 0.0  # nobody to label


def test_pose_implausibility_ranks_an_unusual_pose_above_a_usual_one(schema, tmp_path):
    from cals.data.coco import read_json
    from cals.synth import generate_dataset, parse_mix

    upright = read_json(generate_dataset(tmp_path / "up", 60, seed=3, mix=parse_mix("upright=1"), progress=False))
    lying = read_json(generate_dataset(tmp_path / "ly", 6, seed=4, mix=parse_mix("lying=1"), progress=False))
    fit, held_out = upright["annotations"][:-6], upright["annotations"][-6:]
    space = ShapeSpace.from_coco({"annotations": fit}, range(K))
    s = create("pose", schema=schema, space=space)

    def pose(ann):
        return obs(person(np.asarray(ann["keypoints"], float).reshape(-1, 3)[:, :2]))

    usual = [s.score(pose(a)) for a in held_out]
    unusual = [s.score(pose(a)) for a in lying["annotations"]]
    assert np.median(unusual) > 2 * np.median(usual)
    with pytest.raises(CalsError, match="at least"):
        ShapeSpace.from_coco({"annotations": fit[:2]}, range(K))


def test_coreset_picks_the_far_away_cluster_first():
    rng = np.random.default_rng(0)
    near = rng.normal(0, 0.1, (50, 8))
    far = rng.normal(10, 0.1, (3, 8))
    features = np.concatenate([near, far])
    order = np.argsort(-create("coreset").pool_scores(features, {}, k=5))
    assert order[0] >= 50  # the far cluster first ...
    assert (order[1:3] < 50).all()  # ... then coverage, not the far cluster's twins
    # with labelled frames already covering the far cluster, the near cluster comes first
    labelled = far.mean(axis=0, keepdims=True)
    assert np.argsort(-k_center_greedy(features, 5, labelled))[0] < 50


def test_coreset_scores_follow_greedy_order_beyond_k():
    x = np.array([[0.0], [1.0], [5.0], [5.5], [9.0]])
    scores = k_center_greedy(x, 2)
    order = list(np.argsort(-scores))
    assert order[:2] == [4, 0] or order[:2] == [0, 4]
    assert order[2] == 2  # 5.0 is farthest (4.0) from the picks {0, 9}


def test_hybrid_shortlists_uncertain_frames_then_spreads_them(schema):
    # frames 0-3 are uncertain and two pairs of near-duplicates; 4-9 are certain
    features = np.array([[0, 0], [0.01, 0], [5, 5], [5.01, 5]] + [[9, 9]] * 6, dtype=float)
    uncertainty = np.array([0.99, 0.98, 0.97, 0.96] + [0.1] * 6)
    h = create("hybrid", schema=schema, factor=2)
    scores = h.pool_scores(features, {h.uncertainty.cache_id: uncertainty}, k=2)
    top2 = set(np.argsort(-scores)[:2])
    assert top2 & {0, 1} and top2 & {2, 3}  # one of each pair, not the two most uncertain twins
    assert set(np.argsort(-scores)[:4]) == {0, 1, 2, 3}


def test_random_is_reproducible_per_seed():
    a, b = create("random", seed=1), create("random", seed=2)
    images = [obs(key=f"f{i}") for i in range(20)]
    assert [a.score(o) for o in images] == [a.score(o) for o in images]
    assert rank(a, images) != rank(b, images)
    assert all(0 <= a.score(o) < 1 for o in images)


def test_registry_names_errors_and_cache_ids(schema):
    assert set(STRATEGIES) >= {"random", "least_confidence", "entropy", "multipeak_entropy", "flip",
                               "committee", "pose", "coreset", "hybrid"}
    with pytest.raises(CalsError, match="unknown strategy 'bald'.*entropy"):
        create("bald")
    with pytest.raises(CalsError, match="no option"):
        create("entropy", schema=schema, seed=3)
    with pytest.raises(CalsError, match="unknown point group 'tail'"):
        create("entropy", schema=schema, group="tail")
    with pytest.raises(CalsError, match="unknown reduction 'median'"):
        create("entropy", schema=schema, reduce="median")
    assert create("entropy", schema=schema).cache_id != create("entropy", schema=schema, reduce="mean").cache_id
    assert create("hybrid", schema=schema, uncertainty="flip").needs >= {"features"}


def test_strategies_are_built_with_their_inputs_one_way(schema, synthetic):
    """What the sampler service and the simulation both call: pose gets its shape space from the
    labelled poses, hybrid its shortlist strategy (pose too), and a missing input is named."""
    from cals.sampling.inputs import StrategyOptions, build_strategy

    labelled = synthetic / "val" / "annotations.json"
    pose = build_strategy("pose", schema, None, labelled=labelled)
    assert pose.cache_id.startswith("pose(")
    hybrid = build_strategy("hybrid", schema, None, labelled=labelled,
                            options=StrategyOptions(uncertainty="pose", reduce="mean"))
    assert hybrid.components[0].cache_id.startswith("pose(reduce=mean")
    assert build_strategy("random", schema, None, options=StrategyOptions(seed=3)).cache_id == \
        create("random", seed=3).cache_id
    with pytest.raises(CalsError, match="needs the labelled poses"):
        build_strategy("pose", schema, None)
    with pytest.raises(CalsError, match="not 'coreset'"):
        build_strategy("hybrid", schema, None, options=StrategyOptions(uncertainty="coreset"))


def test_an_initial_model_ranks_by_its_body_points(schema, tmp_path):
    """An initial model's spine is the prior (one constant score): ranking by it would tie every
    frame and take the pool in file order, so the first round scores the body points instead."""
    from cals.registry import Version
    from cals.sampling.inputs import build_strategy

    initial = Version("v0001", tmp_path, {"spine_trained": False})
    trained = Version("v0002", tmp_path, {"spine_trained": True})
    body, spine = schema.groups["body"], schema.groups["spine"]
    assert list(build_strategy("least_confidence", schema, initial).points) == list(body)
    assert list(build_strategy("least_confidence", schema, trained).points) == list(spine)
    assert list(build_strategy("least_confidence", schema, None).points) == list(spine)
    scores = np.full(schema.num_keypoints, 0.05)
    scores[body] = np.linspace(0.2, 0.9, len(body))
    lc = build_strategy("least_confidence", schema, initial)
    assert lc.score(obs(person(scores=scores))) != lc.score(obs(person(scores=np.full(schema.num_keypoints, 0.05))))
