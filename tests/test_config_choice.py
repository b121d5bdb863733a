"""One way to pick a model config: a run from a registry version keeps that version's config, an explicit
config must be the same file, and CALS_CONFIG (formerly CALS_TRAIN_CONFIG / CALS_INIT_CONFIG) picks the
config of a model with no version to start from."""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cals.errors import CalsError
from cals.model.config import CONFIG_DIR, CONFIGS, same_config
from cals.registry import Registry
from cals.settings import ServingEnv, SettingsError, TrainerEnv

ROOT = Path(__file__).resolve().parents[1]
CPU_FILE = CONFIG_DIR / CONFIGS["cpu"]


def cals(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CALS_")} | env
    return subprocess.run([sys.executable, "-m", "cals.cli", *args], capture_output=True, text=True,
                          timeout=600, env=environ)


@pytest.fixture(scope="module")
def cpu_registry(synthetic, tmp_path_factory) -> Path:
    """A registry whose current version is a `cpu` model (one iteration: only its config matters here)."""
    from cals.model.train import train

    registry = Registry(tmp_path_factory.mktemp("cpu-registry"))
    registry.promote(train(synthetic / "val", registry, config="cpu", iters=1, batch_size=2, progress=False).id)
    return registry.root


@pytest.fixture
def registry(cpu_registry, tmp_path) -> Registry:
    return Registry(shutil.copytree(cpu_registry, tmp_path / "registry"))


def test_a_config_is_the_file_it_names(tmp_path, monkeypatch):
    link = tmp_path / "mine.py"
    link.symlink_to(CPU_FILE)
    monkeypatch.chdir(CPU_FILE.parent)
    assert same_config("cpu", str(CPU_FILE)) and same_config("cpu", str(link))
    assert same_config("cpu", CPU_FILE.name)  # a relative path to the same file
    assert not same_config("cpu", "rtmpose-m")
    copy = tmp_path / "copy.py"
    shutil.copy(CPU_FILE, copy)
    assert not same_config("cpu", str(copy))  # same text, another file: another config


def test_init_current_follows_the_versions_config_whatever_cals_config_says(registry, synthetic):
    """CALS_CONFIG picks a first model's config only: --init current trains the current version's."""
    current = registry.current()
    out = cals("train", "--data", str(synthetic / "val"), "--registry", str(registry.root), "--init", "current",
               "--iters", "1", "--batch-size", "2", CALS_CONFIG="rtmpose-m")
    assert out.returncode == 0, out.stderr
    version = registry.get(out.stdout.strip())
    assert version.meta["config"] == "cpu" and version.parent == current.id
    assert f"CALS_CONFIG=rtmpose-m is for a model with no version to start from; {current.id} keeps" in out.stderr


def test_an_explicit_config_of_another_file_is_refused_in_one_line(registry, synthetic):
    before = registry.list()
    out = cals("train", "--data", str(synthetic / "val"), "--registry", str(registry.root), "--init", "current",
               "--config", "rtmpose-m", "--iters", "1")
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("cals: error:")]
    assert len(errors) == 1 and f"version {registry.current().id} is a 'cpu' model and --config 'rtmpose-m' " \
                                  "is another config; leave --config out" in errors[0], out.stderr
    assert "Traceback" not in out.stderr and registry.list() == before


def test_the_same_config_under_another_name_is_accepted(registry, synthetic):
    from cals.model.train import train

    current = registry.current()
    version = train(synthetic / "val", registry, config=str(CPU_FILE), init="current", iters=1, batch_size=2,
                    progress=False)
    assert version.parent == current.id and version.meta["config"] == str(CPU_FILE)


def test_a_version_whose_config_is_gone_is_fine_tuned_with_its_stored_config(registry, synthetic, caplog):
    """A version trained with a config file of another machine still fine-tunes: with the config.py it keeps."""
    from cals.model.train import run_config, resolve_init

    current = registry.current()
    registry.update_meta(current.id, config="/elsewhere/my_config.py")
    source = resolve_init("current", registry)
    with caplog.at_level(logging.WARNING, logger="cals.model.train"):
        assert run_config(None, source) == str(current.path / "config.py")
    assert "'/elsewhere/my_config.py', not found here" in caplog.text
    with pytest.raises(CalsError, match="leave --config out"):
        run_config("cpu", source)


def test_the_old_variable_names_are_read_with_a_warning(monkeypatch, caplog):
    for name in ("CALS_CONFIG", "CALS_TRAIN_CONFIG", "CALS_INIT_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALS_TRAIN_CONFIG", "rtmpose-m")
    monkeypatch.setenv("CALS_INIT_CONFIG", "rtmpose-m")
    with caplog.at_level(logging.WARNING, logger="cals.settings"):
        assert TrainerEnv.load().CONFIG == "rtmpose-m" and ServingEnv.load().CONFIG == "rtmpose-m"
    assert "CALS_TRAIN_CONFIG is deprecated: rename it CALS_CONFIG" in caplog.text
    assert "CALS_INIT_CONFIG is deprecated" in caplog.text
    monkeypatch.setenv("CALS_CONFIG", "cpu")
    with pytest.raises(SettingsError, match="CALS_TRAIN_CONFIG=rtmpose-m and CALS_CONFIG=cpu are both set"):
        TrainerEnv.load()
    monkeypatch.setenv("CALS_CONFIG", "rtmpose-m")
    assert TrainerEnv.load().CONFIG == "rtmpose-m"  # the same value twice is no conflict


@pytest.mark.parametrize("spec", ["function.yaml", "function-gpu.yaml"])
def test_the_function_registers_its_checkpoint_with_its_architecture(spec):
    """The initial checkpoint is an RTMPose-m: the function's CALS_CONFIG must say so (ModelEnv's default is cpu)."""
    env = {e["name"]: e["value"] for e in
           yaml.safe_load((ROOT / "serverless/spine-pose/nuclio" / spec).read_text())["spec"]["env"]}
    assert env["CALS_CONFIG"] == "rtmpose-m" and "CALS_INIT_CONFIG" not in env


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_train_without_a_dataset_says_to_pass_data(tmp_path):
    out = subprocess.run(["make", "-s", "-o", "install", "train", f"OUT={tmp_path}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"make train: no COCO dataset at {tmp_path}/data/pool" in out.stderr and "DATA=" in out.stderr
