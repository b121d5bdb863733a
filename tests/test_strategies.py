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


# ---- cold-start strategies: typicality, TypiClust, TCM, the clustered hybrid, a random share, specs ----

def blobs(centres, size=30, spread=0.3, dim=8, seed=0):
    """Tight Gaussian blobs around `centres` (scalars: on their own axis, 10 apart), frames in blob order."""
    rng = np.random.default_rng(seed)
    out = []
    for i, c in enumerate(centres):
        centre = np.zeros(dim)
        centre[i % dim] = c
        out.append(centre + rng.normal(0, spread, (size, dim)))
    return np.concatenate(out).astype(np.float32)


def test_typicality_is_highest_in_the_dense_middle_and_lowest_for_an_outlier():
    from cals.sampling.strategies import typicality

    x = np.concatenate([blobs([10]), np.full((1, 8), 6.0, np.float32)])
    t = typicality(x)
    assert t.shape == (31,) and np.argmin(t) == 30
    nearest_mean = np.argmin(np.linalg.norm(x[:30] - x[:30].mean(axis=0), axis=1))
    assert t[nearest_mean] > np.median(t[:30])
    assert typicality(x[:1]).tolist() == [1.0]  # nothing to compare with
    assert typicality(x[:3], neighbours=20).shape == (3,)  # min(20, N-1) neighbours


def test_typiclust_takes_the_typical_frame_of_each_dense_cluster():
    outlier = np.array([[11.5, 0, 0, 0, 0, 0, 0, 0]], np.float32)  # frame 90: far out on blob 0's edge
    x = np.concatenate([blobs([10, 10, 10]), outlier])
    scores = create("typiclust").pool_scores(x, {}, k=3)
    top = np.argsort(-scores, kind="stable")[:3]
    assert sorted(top // 30) == [0, 1, 2]  # one frame per blob, not the outlier (which joins blob 0's cluster)
    for i in top:  # each the blob's typical member: among the 5 frames nearest its blob's mean
        blob = x[30 * (i // 30):30 * (i // 30) + 30]
        assert i % 30 in np.argsort(np.linalg.norm(blob - blob.mean(axis=0), axis=1))[:5]
    assert sorted(scores[top]) == [1, 2, 3] and (np.delete(scores, top) <= 0.5).all()
    assert np.array_equal(scores, create("typiclust").pool_scores(x, {}, k=3))  # deterministic
    assert scores[90] == np.delete(scores, top).min()  # the outlier: least typical, last


def test_typiclust_skips_clusters_the_labelled_frames_cover():
    x = blobs([10, 10, 10])
    labelled = np.repeat(x[:30].mean(axis=0, keepdims=True), 2, axis=0)  # two labels in blob 0
    top = np.argsort(-create("typiclust").pool_scores(x, {}, k=2, labelled=labelled))[:2]
    assert sorted(top // 30) == [1, 2]


def test_typical_uncertainty_never_ranks_an_outlier_first():
    from cals.sampling.strategies import TypicalUncertainty

    x = np.concatenate([blobs([10, 10, 10]), np.full((1, 8), 50.0, np.float32)])
    n = len(x)
    u = np.random.default_rng(1).uniform(0, 0.9, n)
    u[-1] = 1.0  # the outlier is the most uncertain frame
    s = TypicalUncertainty(create("least_confidence", group=None), drop=0.1)
    ids = {s.uncertainty.cache_id: u}
    order = list(np.argsort(-s.pool_scores(x, ids, k=5)))
    assert order[0] == int(np.argmax(u[:-1]))  # the most uncertain typical frame
    assert order.index(n - 1) == n - round(0.1 * n)  # below every typical frame, first among the dropped
    plain = TypicalUncertainty(create("least_confidence", group=None), drop=0)
    assert np.argmax(plain.pool_scores(x, ids, k=5)) == n - 1  # drop=0: plain uncertainty


def test_tcm_runs_typiclust_below_switch_then_uncertainty_among_typical_frames(schema):
    from cals.sampling.strategies import TypiClust, TypicalUncertainty

    x = blobs([10, 10, 10])
    tcm = create("tcm", schema=schema, switch=5, drop=0.2)
    ids = {tcm.uncertainty.cache_id: np.random.default_rng(2).uniform(0, 1, len(x))}
    typiclust = TypiClust().pool_scores(x, ids, k=4, labelled=x[:4])
    typical = TypicalUncertainty(tcm.uncertainty, drop=0.2).pool_scores(x, ids, k=4)
    assert np.array_equal(tcm.pool_scores(x, ids, k=4, labelled=None), TypiClust().pool_scores(x, ids, k=4))
    assert np.array_equal(tcm.pool_scores(x, ids, k=4, labelled=x[:4]), typiclust)  # 4 < switch
    assert np.array_equal(tcm.pool_scores(x, ids, k=4, labelled=x[:5]), typical)  # 5 labels: switched
    assert tcm.components == [tcm.uncertainty] and create("tcm", schema=schema).switch == 60


def test_hybrid_takes_one_frame_per_cluster_of_its_shortlist(schema):
    x = blobs([10, 10, 10], size=6, spread=0.05)
    u = np.concatenate([np.linspace(0.99, 0.94, 6), np.linspace(0.90, 0.85, 6), np.linspace(0.80, 0.75, 6)])
    h = create("hybrid", schema=schema, factor=6)  # shortlist: all 18
    scores = h.pool_scores(x, {h.uncertainty.cache_id: u}, k=3)
    order = np.argsort(-scores)
    assert sorted(order[:3] // 6) == [0, 1, 2]  # not two from the most uncertain tight cluster
    assert list(u[order[:3]]) == sorted(u[order[:3]], reverse=True)  # picks in uncertainty order ...
    assert list(u[order[3:]]) == sorted(u[order[3:]], reverse=True)  # ... the rest too, below them
    assert np.array_equal(scores, h.pool_scores(x, {h.uncertainty.cache_id: u}, k=3))


def test_a_random_share_replaces_the_last_picks_with_random_frames(schema):
    from cals.sampling.strategies import RandomShare

    n, k = 100, 8
    u = np.random.default_rng(3).uniform(0, 1, n)
    keys = [obs(key=f"f{i}") for i in range(n)]

    def top(share, seed):
        s = create(f"least_confidence:random_share={share},random_seed={seed}", schema=schema)
        ids = {s.base.cache_id: u, s.random.cache_id: np.array([s.random.score(o) for o in keys])}
        return s, list(np.argsort(-s.pool_scores(np.zeros((n, 2)), ids, k=k))[:k])

    s, picks = top(0.25, 1)
    assert isinstance(s, RandomShare) and s.random_count(k, n) == 2 == round(0.25 * k)
    base_top = list(np.argsort(-u)[:k])
    assert picks[:6] == base_top[:6]  # the base's best k - 2 first ...
    assert not set(picks[6:]) & set(base_top[:6]) and len(set(picks)) == k  # ... then 2 others, no repeats
    assert top(0.25, 1)[1] == picks and top(0.25, 2)[1][6:] != picks[6:]  # reproducible per seed
    assert "share=0.25" in s.cache_id and "seed=1" in s.cache_id
    assert [c.cache_id for c in s.components] == [s.base.cache_id, "random(seed=1)"]
    assert s.random_count(6, n) == 2  # 1.5: rounded half up
    assert create("typiclust:random_share=0.5").components[0].cache_id == "random(seed=0)"
    assert not isinstance(create("entropy", schema=schema, random_share=0), RandomShare)


def test_stochastic_draws_favour_the_top_but_spread_the_round_and_repeat_per_seed(schema):
    from cals.sampling.strategies import Stochastic

    n, k = 200, 20
    u = np.linspace(1, 0, n)  # frame i is ranked i-th by the base

    def picks(spec, size=n):
        s = create(spec, schema=schema)
        return s, np.argsort(-s.pool_scores(np.zeros((0, 0)), {s.base.cache_id: u[:size]}, k=k), kind="stable")

    s, order = picks("least_confidence:stochastic=1,stochastic_seed=4")
    assert isinstance(s, Stochastic) and sorted(order) == list(range(n))  # a full ranking, no repeats
    top = order[:k]
    assert 0 < len(set(top) & set(range(k))) < k  # some of the base's top k, not all of it
    assert np.median(top) < n / 4  # rank^-1 draws lean hard to the top of the base's order
    assert list(picks("least_confidence:stochastic=1,stochastic_seed=4")[1]) == list(order)  # repeats
    assert list(picks("least_confidence:stochastic=1,stochastic_seed=5")[1][:k]) != list(top)  # per seed
    assert list(picks("least_confidence:stochastic=1,stochastic_seed=4", n - 20)[1][:k]) != list(top[:k])  # per round
    assert list(picks("least_confidence:stochastic=1000")[1][:k]) == list(range(k))  # large beta: top-k
    beta_zero = create("least_confidence:stochastic=0", schema=schema)
    assert not isinstance(beta_zero, Stochastic)  # 0 = off, the base's top k


def test_a_small_cap_keeps_frames_with_only_tiny_people_to_a_share_of_each_round(schema):
    from cals.sampling.strategies import SmallCap

    n, k = 40, 10
    u = np.linspace(1, 0, n)
    size = np.where(np.arange(n) % 2 == 0, 20.0, 150.0)  # every other frame: one 20 px person
    size[5] = 0.0  # no person found
    s = create("least_confidence:min_box=48,small_share=0.2", schema=schema)
    assert isinstance(s, SmallCap) and [c.cache_id for c in s.components][-1] == "largest_person"
    order = np.argsort(-s.pool_scores(np.zeros((0, 0)), {s.base.cache_id: u, "largest_person": size}, k=k))
    top = order[:k]
    assert sum(size[top] < 48) == 2 == round(0.2 * k)  # the cap
    assert list(top[:3]) == [0, 1, 2] and 4 not in top  # small frames in the base's order up to the cap
    assert sorted(order) == list(range(n)) and all(size[order[-n // 2 + 2:]] < 48)  # the rest go last
    assert s.size.score(obs(person(box=(0, 0, 30, 120)))) == pytest.approx(60)
    none = create("least_confidence:min_box=48", schema=schema)
    assert none.pool_scores(np.zeros((0, 0)), {s.base.cache_id: u, "largest_person": size}, k=k
                            ).argsort()[::-1][:k].tolist() == [i for i in range(n) if size[i] >= 48][:k]
    with pytest.raises(CalsError, match="small_share needs min_box"):
        create("least_confidence:small_share=0.2", schema=schema)
    wrapped = create("least_confidence:min_box=48,stochastic=1,random_share=0.5", schema=schema)
    assert type(wrapped).__name__ == "RandomShare" and type(wrapped.base).__name__ == "Stochastic"
    assert type(wrapped.base.base) is SmallCap  # the cap first, then the draws, then the random share


def test_strategy_specs_round_trip_and_bad_ones_name_their_fault(schema):
    from cals.sampling.strategies import StrategySpec, parse_spec

    spec = parse_spec("tcm:switch=80,random_share=0.25,uncertainty=least_confidence")
    assert spec.name == "tcm" and spec.kwargs == {"switch": 80, "random_share": 0.25, "uncertainty": "least_confidence"}
    assert str(spec) == "tcm:random_share=0.25,switch=80,uncertainty=least_confidence"  # canonical: sorted
    assert parse_spec(str(spec)) == spec and "/" not in str(spec)
    assert parse_spec(" typiclust ") == StrategySpec("typiclust")
    assert str(parse_spec("hybrid:factor=3")) == "hybrid:factor=3"
    for bad, message in (("bald:x=1", "unknown strategy 'bald'"), ("tcm:switch", "malformed option 'switch'"),
                         ("tcm:", "no options"), ("tcm:switch=1,switch=2", "'switch' given twice"),
                         ("tcm:foo=1", r"'tcm' takes no option\(s\) \['foo'\]"),
                         ("coreset:factor=2", r"'coreset' takes no option\(s\) \['factor'\]"),
                         ("hybrid:uncertainty=a/b", "malformed option 'uncertainty=a/b'"),
                         ("tcm:drop=nan", "not a finite number")):
        with pytest.raises(CalsError, match=message):
            parse_spec(bad)
    for bad, message in (("tcm:switch=abc", "tcm option switch must be an integer"),
                         ("tcm:drop=1", r"tcm option drop must be a number in \[0.0, 1.0\)"),
                         ("hybrid:random_share=2", "random_share must be a number in"),
                         ("typical_uncertainty:uncertainty=coreset", "must be a per-image strategy, not 'coreset'")):
        with pytest.raises(CalsError, match=message):
            create(bad, schema=schema)


def test_build_strategy_builds_the_cold_start_specs(schema, tmp_path):
    from cals.registry import Version
    from cals.sampling.inputs import StrategyOptions, build_strategy
    from cals.sampling.strategies import TCM, RandomShare, TypiClust, TypicalUncertainty

    options = StrategyOptions(uncertainty="least_confidence", seed=7)
    assert isinstance(build_strategy("typiclust", schema, None, options=options), TypiClust)
    tu = build_strategy("typical_uncertainty:drop=0.2", schema, None, options=options)
    assert isinstance(tu, TypicalUncertainty) and tu.drop == 0.2
    assert tu.components[0].cache_id == create("least_confidence", schema=schema).cache_id
    mixed = build_strategy("tcm:switch=80,random_share=0.25", schema, None, options=options)
    assert isinstance(mixed, RandomShare) and isinstance(mixed.base, TCM) and mixed.base.switch == 80
    assert mixed.random.seed == 7  # the campaign's seed, unless the spec sets random_seed
    initial = Version("v0001", tmp_path, {"spine_trained": False})
    tcm = build_strategy("tcm:uncertainty=entropy,reduce=mean", schema, initial, options=options)
    assert tcm.uncertainty.cache_id == create("entropy", schema=schema, group="body", reduce="mean").cache_id
    hybrid = build_strategy("hybrid:factor=3", schema, None)
    assert hybrid.factor == 3.0 and hybrid.components[0].name == "entropy"  # StrategyOptions' default
    with pytest.raises(CalsError, match="not 'typiclust'"):
        build_strategy("tcm:uncertainty=typiclust", schema, None)


def test_the_sampler_setting_takes_a_spec_and_names_its_fault():
    from cals.sampling.strategies import check_settings
    from cals.settings import SettingsError

    check_settings("tcm:switch=80,random_share=0.25", "entropy:reduce=mean")
    with pytest.raises(SettingsError, match=r"CALS_SAMPLER_STRATEGY: strategy 'tcm' takes no option\(s\) \['foo'\]"):
        check_settings("tcm:foo=1", "entropy")
    with pytest.raises(SettingsError, match="CALS_SAMPLER_UNCERTAINTY: .*per-image strategy, not 'tcm'"):
        check_settings("random", "tcm")
    with pytest.raises(SettingsError, match=r"CALS_SAMPLER_STRATEGY: unknown strategy; choose one of .*, got 'bald'"):
        check_settings("bald", "entropy")


def test_the_picks_made_at_random_are_named_for_the_loop_report(schema):
    from cals.sampling.strategies.random_share import picked_at_random

    picks = [f"f{i}" for i in range(8)]
    assert picked_at_random(create("random", schema=schema), picks, k=8, n=100) == picks
    assert picked_at_random(create("least_confidence", schema=schema), picks, k=8, n=100) == []
    share = create("least_confidence:random_share=0.25", schema=schema)  # r = 2 of 8: the base's 6, then Random's 2
    assert share.random_count(8, 100) == 2
    assert picked_at_random(share, picks, k=8, n=100) == ["f6", "f7"]
    assert picked_at_random(share, picks[:4], k=8, n=4) == ["f3"]  # a pool of 4 left: r = round(0.25 * 4)
