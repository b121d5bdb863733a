"""`cals simulate`: the offline loop on a tiny generated set (few iterations: behaviour, not accuracy)."""
import json
from pathlib import Path

import numpy as np
import pytest

from cals.errors import CalsError
from cals.simulate import SimulationConfig, run_simulation
from cals.simulate.summary import format_table

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first


def _config(out, **over):
    opts = dict(out=str(out), pool_images=40, test_images=16, initial=5, batch=5, rounds=2,
                strategies=["random", "least_confidence"], seeds=[0], base_iters=8, round_iters=4)
    return SimulationConfig(**{**opts, **over})


@pytest.fixture(scope="module")
def simulation(tmp_path_factory):
    out = tmp_path_factory.mktemp("simulation")
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("CALS_CACHE", str(cache))
    try:
        doc = run_simulation(_config(out), progress=False)
    finally:
        mp.undo()
    return out, cache, doc


def test_every_strategy_runs_every_round_from_the_same_start(simulation):
    out, _, doc = simulation
    rows = doc["rows"]
    assert sorted((r["strategy"], r["round"], r["labelled"]) for r in rows) == [
        ("least_confidence", 0, 5), ("least_confidence", 1, 10), ("least_confidence", 2, 15),
        ("random", 0, 5), ("random", 1, 10), ("random", 2, 15)]
    first = {r["strategy"]: r for r in rows if r["round"] == 0}
    assert first["random"]["spine_AP"] == first["least_confidence"]["spine_AP"]
    for r in rows:
        assert 0.0 <= (r["spine_AP"] or 0.0) <= 1.0
        assert 0.0 <= r["effort_spine"]["moved_share"] <= 1.0
        # the candidate's test figures beside the served model's: the same when the gate promoted it
        assert (r["candidate"]["spine_AP"] == r["spine_AP"]) or not r["promoted"]
        assert r["gate"]["metric"] == "overall.AP" and r["gate"]["val_frames"] == r["labelled"] // 5


def test_the_seed_scores_its_shared_start_once(simulation):
    """Every strategy's round 1 ranks the pool with round 0's model: one scoring, cached for the seed;
    random needs no model output, so it scores nothing."""
    import sqlite3

    out, _, doc = simulation
    start = next(r["version"] for r in doc["rows"] if r["round"] == 0)
    with sqlite3.connect(out / "runs" / "seed0" / "scores.sqlite") as db:
        keys = [k for (k,) in db.execute("SELECT key FROM records WHERE version = ?", (start,))]
        strategies = {s for (s,) in db.execute("SELECT DISTINCT strategy FROM scores WHERE version = ?", (start,))}
    assert len(keys) == len(set(keys)) == 40 - 5  # the pool less round 0's frames, each once
    assert len(strategies) == 1 and "random" not in next(iter(strategies))  # least confidence's only


def test_frames_are_labelled_once_and_strategies_choose_differently(simulation):
    out, _, _ = simulation
    picks = {}
    for strategy in ("random", "least_confidence"):
        state = json.loads((out / "runs" / "seed0" / strategy / "state.json").read_text())
        assert len(state["labelled"]) == len(set(state["labelled"])) == 15
        picks[strategy] = state["picked"][1:]
    assert picks["random"] != picks["least_confidence"]


def test_outputs_and_table(simulation):
    out, _, doc = simulation
    assert (out / "label_efficiency.png").stat().st_size > 1000
    lines = (out / "results.csv").read_text().splitlines()
    assert lines[0].startswith("strategy,seed,round,labelled,spine_AP") and len(lines) == 7
    table = format_table(doc["summary"])
    assert "random reaches spine AP" in table and "least_confidence" in table
    assert doc["summary"]["strategies"]["least_confidence"]["paired_wins"].endswith("/2")
    # what each strategy picked: its rounds' frames (4 per seed) against the pool they came from
    assert doc["picks"]["random"]["frames"] == doc["picks"]["least_confidence"]["frames"] == 10
    assert doc["picks"]["pool"]["frames"] == 40
    assert "least_confidence" in (out / "picks.md").read_text()
    # each round after the first says how well the points to check point at what the annotator moved
    checks = doc["summary"]["strategies"]["random"]["points_to_check"]
    assert checks["threshold"] == 0.6 and checks["rounds"] > 0 and 0 <= checks["spine_workload"] <= 1
    assert "random points to check (CALS_CHECK_BELOW=0.6)" in table


def test_resume_reuses_finished_rounds_and_refuses_other_settings(simulation, monkeypatch):
    out, cache, doc = simulation
    monkeypatch.setenv("CALS_CACHE", str(cache))
    again = run_simulation(_config(out), progress=False)
    assert [r["version"] for r in again["rows"]] == [r["version"] for r in doc["rows"]]
    with pytest.raises(CalsError, match="other settings .*batch"):
        run_simulation(_config(out, batch=6), progress=False)
    # strategies (and seeds) may change: the finished campaigns are reused, not rerun
    fewer = run_simulation(_config(out, strategies=["random"]), progress=False)
    assert [r["version"] for r in fewer["rows"]] == [r["version"] for r in doc["rows"] if r["strategy"] == "random"]


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(CalsError, match="include 'random'"):
        _config(tmp_path, strategies=["entropy"])
    with pytest.raises(CalsError, match="rounds must be at least 1"):
        _config(tmp_path, rounds=0)
    with pytest.raises(CalsError, match="fewer than the labelling budget"):
        run_simulation(_config(tmp_path, pool_images=6), progress=False)


def test_rounds_add_exactly_the_picked_pool_frames_and_nothing_else(simulation, schema):
    out, _, _ = simulation
    pool = json.loads((out / "data" / "pool" / "annotations.json").read_text())
    pool_by_name = {im["file_name"]: im["id"] for im in pool["images"]}
    for strategy in ("random", "least_confidence"):
        folder = out / "runs" / "seed0" / strategy
        state = json.loads((folder / "state.json").read_text())
        assert state["labelled"] == [name for picked in state["picked"] for name in picked]
        train = json.loads((folder / "labelled" / "train" / "annotations.json").read_text())
        val = json.loads((folder / "labelled" / "val" / "annotations.json").read_text())
        # the trainer's split: every fifth labelled frame validates the gate, the others train
        assert state["val"] == state["labelled"][4::5]
        assert sorted(im["file_name"] for im in val["images"]) == sorted(state["val"])
        assert sorted(im["file_name"] for im in train["images"] + val["images"]) == sorted(state["labelled"])
        # the annotator's answers come from the pool's labels, the images from the pool's folder
        assert (folder / "labelled" / "train" / "images").resolve() == (out / "data" / "pool" / "images").resolve()
        truth = {a["id"]: a["keypoints"] for a in pool["annotations"]}
        assert all(truth[a["id"]] == a["keypoints"] for a in train["annotations"] + val["annotations"])
        assert {pool_by_name[im["file_name"]] for im in train["images"]} == {im["id"] for im in train["images"]}
        # every version of the campaign was trained on the revealed frames only, never the test set
        for path in (folder / "registry" / "versions").glob("*/meta.json"):
            meta = json.loads(path.read_text())
            if "copied_from" in meta:  # the base model, like a deployment's initial one: no labelled data
                assert "train_data" not in meta
                continue
            assert Path(meta["train_data"]["path"]).parts[-2:] == ("labelled", "train")


def test_the_sampler_sees_no_hidden_spine_label(simulation, schema):
    out, _, _ = simulation
    view = json.loads((out / "data" / "pool-body" / "annotations.json").read_text())
    spine = schema.groups["spine"]
    assert all(a["keypoints"][3 * i + 2] == 0 for a in view["annotations"] for i in spine)
    assert any(a["keypoints"][3 * i + 2] > 0 for a in view["annotations"] for i in schema.groups["body"])


def test_every_strategy_runs_in_the_simulation_built_as_the_sampler_builds_it(simulation, tmp_path, monkeypatch):
    """pose (shape space from the labelled frames), coreset and hybrid (the labelled frames' features),
    committee (the previous version): each picks a round, with the sampler's own strategy builder."""
    from cals.sampling import strategies

    _, cache, _ = simulation
    monkeypatch.setenv("CALS_CACHE", str(cache))  # the same pool: the cached base model
    # 15 first labels (12 train): the pose strategy's shape space needs 5 people with every point labelled
    others = [name for name in strategies.names() if name != "random"]  # make benchmark-al's survey
    doc = run_simulation(_config(tmp_path / "all", strategies=["random"], survey=others, rounds=1, initial=15),
                         progress=False)
    done = {(r["strategy"], r["round"], r["labelled"]) for r in doc["rows"]}
    assert done == {(name, round_, 15 + 5 * round_) for name in strategies.names() for round_ in (0, 1)}
    picks = {name: json.loads((tmp_path / "all" / "runs" / "seed0" / name / "state.json").read_text())["picked"][-1]
             for name in strategies.names()}
    assert all(len(p) == 5 for p in picks.values())


def _rows(gains: dict[str, float], seeds: int, noise: float = 0.004) -> list[dict]:
    """Generated results: every strategy starts each seed at random's round 0, then gains `gains[s]`."""
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(seeds):
        for strategy, gain in gains.items():
            for rnd, n in enumerate((20, 40, 60, 80)):
                ap = 0.1 + 0.002 * n + (gain * rnd / 3 + rng.normal(0, noise) if rnd else 0.0)
                rows.append({"strategy": strategy, "seed": seed, "round": rnd, "labelled": n, "spine_AP": ap})
    return rows


def test_the_verdict_tells_a_saving_from_noise():
    from cals.simulate.stats import compare, verdict

    rows = _rows({"random": 0.0, "least_confidence": 0.08, "entropy": 0.0}, seeds=6)
    better = compare(rows, "least_confidence", 80)
    assert better["ap_difference_interval"][0] > 0 and better["saving"] > 0
    assert "better than random beyond noise" in verdict("least_confidence", better)
    same = compare(rows, "entropy", 80)
    assert same["ap_difference_interval"][0] < 0 < same["ap_difference_interval"][1]
    assert "no saving beyond noise" in verdict("entropy", same)
    # on the way: no difference at the shared start, the lead growing by round
    steps = better["by_labels"]
    assert steps[20]["difference"] == 0.0 and steps[80]["interval"][0] > 0 and steps[40]["difference"] < steps[80]["difference"]
    worse = compare(_rows({"random": 0.0, "flip": -0.05}, seeds=6), "flip", 80)
    assert worse["saving"] is None and "worse than random beyond noise" in verdict("flip", worse)
    two = compare(_rows({"random": 0.0, "least_confidence": 0.05}, seeds=2), "least_confidence", 80)
    assert "no verdict from 2 seed(s)" in verdict("least_confidence", two)
    json.dumps(better), json.dumps(worse)  # results.json holds them: no infinities
    # against another campaign than random (bench.paired): its rows are the reference
    against = compare(rows, "least_confidence", 80, reference="entropy")
    assert abs(against["ap_difference"] - 0.08) < 0.01 and against["by_labels"][20]["difference"] == 0.0
    assert "better than entropy beyond noise" in verdict("least_confidence", against, "entropy")
    assert compare(rows, "entropy", 80, reference="entropy") is None


def test_the_table_gives_each_strategy_its_own_verdict():
    from cals.simulate.summary import label_savings

    rows = _rows({"random": 0.0, "least_confidence": 0.08, "entropy": 0.0}, seeds=6)
    cfg = SimulationConfig(out="unused", strategies=["random", "least_confidence", "entropy"], seeds=list(range(6)))
    lines = format_table(label_savings(rows, cfg)).splitlines()
    assert any(line.startswith("least_confidence: better than random beyond noise") for line in lines)
    assert any(line.startswith("entropy: no saving beyond noise") for line in lines)


def test_the_label_saving_is_interpolated_between_rounds():
    """A curve that crosses random's final AP half-way between two rounds needs the labels half-way,
    not the next round's count: the saving is not counted in steps of a round."""
    from cals.simulate.stats import labels_to_reach

    curve = {20: 0.20, 40: 0.30, 60: 0.40, 80: 0.50}
    assert labels_to_reach(curve, 0.35) == pytest.approx(50.0)
    assert labels_to_reach(curve, 0.50) == pytest.approx(80.0)
    assert labels_to_reach(curve, 0.10) == 20.0  # already there at the first count
    assert labels_to_reach(curve, 0.51) is None


def test_the_saving_in_corrected_points_follows_the_annotators_moves():
    from cals.simulate.summary import label_savings

    rows = []
    for strategy, aps in {"random": (0.2, 0.3, 0.4), "typiclust": (0.2, 0.4, 0.45)}.items():
        for rnd, (n, ap) in enumerate(zip((20, 40, 60), aps)):
            rows.append({"strategy": strategy, "seed": 0, "round": rnd, "labelled": n, "spine_AP": ap,
                         "promoted": rnd != 2, "effort_spine": {"moved": 10 if rnd == 0 else 20}})
    cfg = SimulationConfig(out="unused", strategies=["random", "typiclust"], seeds=[0], initial=20, batch=20, rounds=2)
    s = label_savings(rows, cfg)["strategies"]["typiclust"]
    assert s["labels_to_random_final"] == 40.0 and s["saving_vs_random"] == pytest.approx(1 / 3, abs=1e-3)
    # random moved 10 + 20 + 20 = 50 points for its 60 labels; typiclust 10 + 20 = 30 to reach the same AP
    assert s["point_saving_vs_random"] == pytest.approx(0.4)
    assert s["kept"] == "1/2"


def test_the_training_modes_are_compared_seed_by_seed(tmp_path):
    """bench/train_from.py: the paired difference of two runs that differ only in --train-from."""
    from bench.train_from import compare

    for mode, gain in (("current", 0.0), ("base", 0.05)):
        for seed in range(3):
            folder = tmp_path / mode / "runs" / f"seed{seed}" / "random"
            folder.mkdir(parents=True)
            rounds = [{"seed": seed, "labelled": n, "spine_AP": 0.2 + 0.001 * n + seed / 100 + (gain if n > 20 else 0)}
                      for n in (20, 40)]
            (folder / "state.json").write_text(json.dumps({"rounds": rounds}))
    first, last = compare(tmp_path / "current", tmp_path / "base", "random")
    assert first["difference"] == pytest.approx(0.0) and last["difference"] == pytest.approx(0.05)
    assert last["seeds"] == 3 and last["interval"] == [pytest.approx(0.05), pytest.approx(0.05)]


def test_pool_set_campaigns_start_from_their_own_round_zero_and_never_train_on_a_labelled_frame(tmp_path, monkeypatch):
    """random@pool+pseudo: the same 5 first frames as random, its own round 0 trained with the pool set;
    each round's pool set holds every pool frame not labelled yet (validation frames included: none),
    with pseudo spine points whose precision against the truth the row records."""
    monkeypatch.setenv("CALS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "sim"
    doc = run_simulation(_config(out, strategies=["random", "random@pool+pseudo"], rounds=1, pseudo_threshold=0.0),
                         progress=False)
    rows = {(r["strategy"], r["round"]): r for r in doc["rows"]}
    assert "pool_set" not in rows[("random", 1)]
    state = json.loads((out / "runs" / "seed0" / "random@pool+pseudo" / "state.json").read_text())
    plain = json.loads((out / "runs" / "seed0" / "random" / "state.json").read_text())
    assert state["picked"][0] == plain["picked"][0]  # the same first frames: a paired start
    assert (out / "runs" / "seed0" / "initial@pool+pseudo").is_dir()
    for rnd in (0, 1):
        report = rows[("random@pool+pseudo", rnd)]["pool_set"]
        labelled = sum(state["picked"][: rnd + 1], [])
        assert report["frames"] == 40 - len(labelled)  # every generated frame holds a person
        assert 0 < report["pseudo_points"] <= report["pseudo_candidates"]  # threshold 0: every point scoring >= 0
        accuracy = report["pseudo_accuracy"]
        # judged where the truth has the point (a spine point can be unlabelled there too)
        assert 0 < accuracy["placed"] <= report["pseudo_points"] and 0 <= accuracy["within"] <= accuracy["placed"]
    pool_set = json.loads((out / "runs" / "seed0" / "random@pool+pseudo" / "pool-set" / "annotations.json").read_text())
    assert not {im["file_name"] for im in pool_set["images"]} & set(state["labelled"])
    assert not {im["file_name"] for im in pool_set["images"]} & set(state["val"])
    summary = doc["summary"]["strategies"]["random@pool+pseudo"]["pseudo_labels"]
    assert summary["rounds"] == 2 and summary["threshold"] == 0.0 and 0 <= summary["precision"] <= 1


def test_a_campaign_names_only_known_pool_set_parts():
    with pytest.raises(CalsError, match="after '@' come pool and/or pseudo"):
        SimulationConfig(out="x", strategies=["random", "random@pool+magic"])
    assert SimulationConfig(out="x", strategies=["random", "typiclust@pseudo"]).pool_training(
        "typiclust@pseudo").labels is False
