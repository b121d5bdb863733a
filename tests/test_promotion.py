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
