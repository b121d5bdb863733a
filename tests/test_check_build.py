"""make check-build (scripts/check_build.py): a function requirement that replaces a package Nuclio's python
runtime put into the image stops the check with one line; steps that leave them alone pass. Local wheels
only (PIP_NO_INDEX): the real requirements are resolved by `make check-build` itself, in CI."""
from __future__ import annotations

import importlib.util
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_build", ROOT / "scripts" / "check_build.py")
check_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_build)

pytestmark = pytest.mark.skipif(shutil.which("python3.11") is None, reason="the function runs python:3.11")


def wheel(folder: Path, name: str, version: str) -> None:
    """A pure-Python wheel holding an empty package: all pip needs to resolve and record it."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")


@pytest.fixture
def local_wheels(tmp_path, monkeypatch):
    """nuclio-sdk 0.5.9 (Nuclio's, here) and 0.6.3, msgpack 1.0.7, from a folder instead of an index."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    for name, version in [("nuclio_sdk", "0.5.9"), ("nuclio_sdk", "0.6.3"), ("msgpack", "1.0.7")]:
        wheel(folder, name, version)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    monkeypatch.setitem(check_build.NUCLIO_PYTHON_RUNTIME, "9.9.9", ("nuclio-sdk==0.5.9",))


def function_yaml(tmp_path: Path, run: str) -> Path:
    spec = {"spec": {"runtime": "python:3.11", "build": {"directives": {
        "preCopy": [{"kind": "ENV", "value": "SDK=nuclio-sdk"}],
        "postCopy": [{"kind": "RUN", "value": "curl -fsSL https://example.org/weights -o /nowhere"},  # not pip: skipped
                     {"kind": "RUN", "value": run}]}}}}
    path = tmp_path / "function.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_requirement_that_replaces_nuclios_sdk_stops_the_check(tmp_path, local_wheels):
    """Steps run in order on what the earlier ones recorded; the one that swaps Nuclio's nuclio-sdk fails."""
    path = function_yaml(tmp_path, 'pip install --no-cache-dir msgpack==1.0.7 && pip install "$SDK"'
                                   " && pip install nuclio-sdk==0.6.3")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(check_build.BuildCheckError) as raised:
        check_build.check_function(path, "9.9.9", work)
    assert str(raised.value).endswith(
        "function.yaml: `pip install nuclio-sdk==0.6.3` replaces nuclio-sdk 0.5.9, which Nuclio 9.9.9's python runtime "
        "installs for the wrapper that runs the handler, with 0.6.3: keep nuclio-sdk out of the function's "
        "requirements (the tests' copy belongs in requirements/dev.txt)")
    assert "\n" not in str(raised.value)
    steps = [line for line in (work / "ledger.jsonl").read_text().splitlines()]
    assert len(steps) == 3 and '"installed": 0' in steps[1]  # "$SDK" alone: Nuclio's 0.5.9 satisfies it
    held = check_build.installed(work / "venv")
    assert held["msgpack"][0] == "1.0.7" and held["nuclio-sdk"][0] == "0.6.3"  # recorded, nothing unpacked
    assert not (check_build.site_packages(work / "venv") / "msgpack").exists()
    # a step that does not resolve: one line naming it and pip's reason
    assert check_build.stand_in_pip(work / "venv", work / "ledger.jsonl", ["install", "nuclio-sdk==7.0"]) == 1
    error = (work / "ledger.jsonl").read_text().splitlines()[-1]
    assert "`pip install nuclio-sdk==7.0` does not resolve: ERROR: Could not find a version that satisfies" in error


def test_a_run_mixing_pip_with_other_commands_is_refused_before_anything_runs(tmp_path):
    path = function_yaml(tmp_path, "pip install numpy && python -m cals.model.pretrained --all /opt/nuclio/models")
    with pytest.raises(check_build.BuildCheckError, match="mixes pip with 'python -m cals.model.pretrained"):
        check_build.check_function(path, "1.13.0", tmp_path / "never-made")
