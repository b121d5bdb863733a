"""The `cals` command: every command listed, errors as one line, stdout kept for results."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first

COMMANDS = ["generate", "train", "evaluate", "predict", "models", "schema"]


def cals(*args):
    return subprocess.run([sys.executable, "-m", "cals.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_command():
    out = cals("--help")
    assert out.returncode == 0
    for command in COMMANDS:
        assert command in out.stdout


def test_schema_cvat_spec_is_json_for_function_yaml():
    out = cals("schema", "--cvat-spec")
    spec = json.loads(out.stdout)
    assert spec[0]["type"] == "skeleton" and len(spec[0]["sublabels"]) == 26


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent", "--registry", "REG"], "dataset folder not found: /nonexistent"),
    (["models", "promote", "v9", "--registry", "REG"], "unknown version 'v9'"),
    (["models", "rollback", "--registry", "REG"], ""),
    (["generate", "--out", "OUT", "--images", "0"], ""),
    (["generate", "--out", "OUT", "--images", "5", "--mix", "flying=1"], "flying"),
    (["train", "--data", "DATA", "--registry", "REG", "--config", "huge"], "unknown config 'huge'"),
])
def test_errors_are_one_line(tmp_path, args, message):
    args = [a.replace("REG", str(tmp_path / "reg")).replace("OUT", str(tmp_path / "out"))
            .replace("DATA", str(tmp_path)) for a in args]
    (tmp_path / "annotations.json").write_text('{"images": [], "annotations": []}')
    out = cals(*args)
    assert out.returncode == 1
    lines = [l for l in out.stderr.splitlines() if l.startswith("cals: error:")]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_train_evaluate_predict_round_trip(trained, synthetic, tmp_path):
    registry, version = trained
    out = cals("evaluate", "--data", str(synthetic / "val"), "--registry", str(registry.root))
    metrics = json.loads(out.stdout)
    assert metrics["version"] == version.id and set(metrics["groups"]) == {"body", "spine"}
    assert set(metrics["families"]) == {"upright", "bending", "sitting", "lying", "twisting"}
    res = tmp_path / "res.json"
    out = cals("predict", "--images", str(synthetic / "val" / "images"), "--registry", str(registry.root),
               "--boxes", str(synthetic / "val" / "annotations.json"), "--out", str(res))
    assert out.returncode == 0, out.stderr
    results = json.loads(res.read_text())
    val = json.loads((synthetic / "val" / "annotations.json").read_text())
    assert len(results) == len(val["annotations"]) and len(results[0]["keypoints"]) == 78
    listing = cals("models", "list", "--registry", str(registry.root)).stdout
    assert f"* {version.id}" in listing
