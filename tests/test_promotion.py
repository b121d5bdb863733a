import numpy as np

from cals.training.promotion import decide, metric_value


def _m(ap, spine=None):
    return {"overall": {"AP": ap}, "groups": {"spine": {"AP": spine}}}


def test_first_model_is_promoted():
    assert decide(_m(0.1), None).promote


def test_not_worse_within_margin_is_promoted_and_worse_is_kept_back():
    assert decide(_m(0.50), _m(0.50)).promote
    assert decide(_m(0.48), _m(0.50), margin=0.05).promote
    kept = decide(_m(0.40), _m(0.50), margin=0.05)
    assert not kept.promote and "worse" in kept.reason


def test_metric_path_and_missing_values():
    assert metric_value(_m(0.3, 0.7), "groups.spine.AP") == 0.7
    assert metric_value(_m(0.3), "groups.spine.AP") is None
    assert not decide(_m(None), _m(0.5)).promote
    assert decide(_m(0.2, 0.9), _m(0.5, 0.1), metric="groups.spine.AP").promote


def test_fine_tuning_keeps_the_current_models_architecture(tmp_path):
    """The function's initial model is an rtmpose-m; the trainer's default config (cpu) fits a first model only."""
    from cals.model.train import InitSource, run_config
    from cals.registry import Version

    def current(config):
        return InitSource("current", Version(id="v0001-20260101T000000", path=tmp_path, meta={"config": config}))

    assert run_config("cpu", None) == "cpu"  # a first model
    assert run_config(None, current("rtmpose-m")) == "rtmpose-m"
    assert run_config(None, current("cpu")) == "cpu"
    (tmp_path / "config.py").write_text("")  # trained elsewhere: the config the version keeps
    assert run_config(None, current(str(tmp_path / "gone.py"))) == str(tmp_path / "config.py")


def _with_oks(ap, people):
    return {**_m(ap), "oks": {"overall": {str(i): v for i, v in enumerate(people)}}}


def test_an_ap_drop_within_noise_promotes_and_a_drop_beyond_noise_keeps_the_model():
    """A few validation frames move AP from one model to an equally good one: the gate keeps the
    current model only when the same people are matched worse beyond noise (paired bootstrap)."""
    rng = np.random.default_rng(0)
    current = rng.uniform(0.3, 0.9, 12)
    noisy = current + rng.normal(0, 0.1, 12)  # as good, people by people, give or take
    within = decide(_with_oks(0.40, noisy), _with_oks(0.45, current))
    assert within.promote and "not beyond noise" in within.reason
    beyond = decide(_with_oks(0.30, current - 0.2), _with_oks(0.45, current))
    assert not beyond.promote and "beyond noise" in beyond.reason
    # confidence 0: the plain AP rule, any drop beyond the margin keeps the model
    assert not decide(_with_oks(0.40, noisy), _with_oks(0.45, current), confidence=0).promote
    # no per-person figures (a report from before): the AP rule
    assert not decide(_m(0.40), _m(0.45)).promote


def test_the_paired_differences_follow_the_metrics_points():
    from cals.training.promotion import paired_oks_differences

    cand = {"oks": {"overall": {"1": 0.5, "2": 0.7}, "spine": {"1": 0.9, "3": 0.1}}}
    cur = {"oks": {"overall": {"1": 0.4, "2": 0.7}, "spine": {"1": 0.6}}}
    assert np.allclose(paired_oks_differences(cand, cur, "overall.AP"), [0.1, 0.0])
    assert np.allclose(paired_oks_differences(cand, cur, "groups.spine.AP"), [0.3])  # the same people only
    assert paired_oks_differences(cand, {}, "overall.AP") is None
