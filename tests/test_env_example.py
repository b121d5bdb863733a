"""deploy/.env.example documents every CALS_ variable, and only those: the list in cals.settings.

Besides the declared list, the test collects the names the code spells out: an environment
variable name used as a whole string in the Python sources, a variable the shell scripts, the
Makefile or the compose files expand, or one the Nuclio function's spec sets. Each must be declared.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml
from pydantic import TypeAdapter

from cals import env_file, settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deploy" / ".env.example"
NAME = re.compile(r"CALS_[A-Z0-9_]*[A-Z0-9]")
PYTHON_DIRS = ("cals", "trainer", "sampler", "serverless")


def python_variables() -> set[str]:
    found = set()
    for folder in PYTHON_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.fullmatch(node.value):
                    found.add(node.value)
    return found


def script_variables() -> set[str]:
    found = set()
    for path in [ROOT / "Makefile", *ROOT.glob("scripts/*.sh"), *ROOT.glob("serverless/*.sh")]:
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        found |= set(NAME.findall(code))
    for path in ROOT.glob("deploy/compose*.yml"):
        text = path.read_text()
        found |= set(re.findall(r"\$\{(CALS_\w+)", text))
        for service in yaml.safe_load(text)["services"].values():
            found |= {k for k in (service.get("environment") or {}) if k.startswith("CALS_")}
    for path in ROOT.glob("serverless/spine-pose/nuclio/function*.yaml"):
        spec = yaml.safe_load(path.read_text())["spec"]
        found |= {e["name"] for e in spec["env"]}
        directives = spec["build"]["directives"]
        found |= {d["value"].split("=")[0] for d in directives["preCopy"] if d["kind"] == "ENV"} & set(
            NAME.findall(str(directives)))
    return found


def example_variables() -> tuple[set[str], set[str]]:
    """(set in the file, documented as a comment "#CALS_X=...")."""
    lines = EXAMPLE.read_text().splitlines()
    active = {m.group(1) for line in lines if (m := re.match(r"(CALS_\w+)=", line))}
    commented = {m.group(1) for line in lines if (m := re.match(r"#(CALS_\w+)=", line))}
    return active, commented


def test_every_variable_the_code_names_is_declared_in_settings():
    undeclared = sorted((python_variables() | script_variables()) - set(settings.variables()))
    assert undeclared == [], f"declare in cals/settings.py: {undeclared}"


def test_each_variable_is_declared_once():
    owners: dict[str, list[str]] = {}
    for group in settings.GROUPS:
        for name in group.__annotations__:
            owners.setdefault(settings.PREFIX + name, []).append(group.__name__)
    assert {k: v for k, v in owners.items() if len(v) > 1} == {}
    assert set(owners) == set(settings.variables())


def test_variables_only_the_deployment_reads_are_used_by_it():
    unused = sorted({settings.PREFIX + name for name in settings.ContainerEnv.model_fields} - script_variables())
    assert unused == [], f"declared for the scripts and compose, read by none: {unused}"


def test_env_example_documents_exactly_the_declared_variables():
    active, commented = example_variables()
    documented, declared = active | commented, set(settings.variables())
    assert sorted(declared - documented) == [], "add to deploy/.env.example"
    assert sorted(documented - declared) == [], "deploy/.env.example documents variables nothing declares"


def test_env_example_sets_each_variable_once_and_parses():
    lines = [line for line in EXAMPLE.read_text().splitlines() if re.match(r"#?CALS_\w+=", line)]
    names = [line.lstrip("#").split("=")[0] for line in lines]
    assert sorted(n for n in set(names) if names.count(n) > 1) == []
    values = env_file.read(EXAMPLE)
    assert values["CALS_REGISTRY_HOST"] == values["CALS_REGISTRY"] == "/var/lib/cals/registry"
    assert all(" " not in v for v in values.values())  # sourced by bash and read by compose alike


def test_env_example_defaults_match_the_code():
    """A documented default ("#CALS_X=value") that differs from the declared one is a lie the admin acts on.
    (Where the declared default is None, the line shows the value compose or function.yaml sets instead.)"""
    declared = settings.variables()
    documented = {m.group(1): m.group(2) for line in EXAMPLE.read_text().splitlines()
                  if (m := re.match(r"#(CALS_\w+)=(.+)$", line))}
    assert len(documented) > 20
    wrong = {name: (text, declared[name].default) for name, text in documented.items()
             if declared[name].default is not None
             and TypeAdapter(declared[name].annotation).validate_python(text) != declared[name].default}
    assert wrong == {}, "documented vs declared default: " + str(wrong)


def test_settings_read_the_env_file_under_the_process_environment(tmp_path, monkeypatch):
    path = tmp_path / ".env"
    path.write_text("CALS_ROUND_SIZE=20\nCALS_JOB_SIZE=5\nCALS_PROJECT_ID=\n")
    monkeypatch.setenv("CALS_JOB_SIZE", "7")
    monkeypatch.delenv("CALS_ROUND_SIZE", raising=False)
    monkeypatch.delenv("CALS_PROJECT_ID", raising=False)
    loaded = settings.SamplerEnv.load(env_file=path)
    assert (loaded.ROUND_SIZE, loaded.JOB_SIZE, loaded.PROJECT_ID) == (20, 7, None)  # the shell wins; empty: unset


def test_make_targets_run_services_with_the_env_file_under_the_shell(tmp_path):
    """`make trainer` / `make sampler` run `python -m cals.env_file deploy/.env ...`: file values, shell wins."""
    import os
    import subprocess
    import sys

    path = tmp_path / ".env"
    path.write_text("# settings\nCALS_ROUND_SIZE=20\nCALS_JOB_SIZE=5\nCALS_PROJECT_ID=\n")
    show = "import os; print(os.environ.get('CALS_ROUND_SIZE'), os.environ.get('CALS_JOB_SIZE'), " \
           "os.environ.get('CALS_PROJECT_ID', 'unset'))"
    env = {**os.environ, "CALS_JOB_SIZE": "7"}
    env.pop("CALS_ROUND_SIZE", None)
    env.pop("CALS_PROJECT_ID", None)
    done = subprocess.run([sys.executable, "-m", "cals.env_file", str(path), sys.executable, "-c", show],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20", "7", "unset"]  # empty values stay unset
    missing = subprocess.run([sys.executable, "-m", "cals.env_file", str(tmp_path / "none"), sys.executable, "-c",
                              show], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 0 and missing.stdout.split() == ["None", "7", "unset"]  # no file: the shell only
