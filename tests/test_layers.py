"""The import rules that keep one core library and thin apps (checked on every import statement,
including those inside functions):

- `cals` imports none of the apps (`serverless`, `trainer`, `sampler`), `tests` or `bench`;
- an app imports neither another app nor `tests` (each ships in its own image, without `tests/`);
- the sampling strategies import no torch: the sampler validates strategy names at start-up;
- only `cals/settings.py` reads the environment (and `cals/env_file.py`, which hands deploy/.env to a
  command it runs): every CALS_ variable has one declaration, type and default.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = {"serverless": ROOT / "serverless", "trainer": ROOT / "trainer", "sampler": ROOT / "sampler"}
FORBIDDEN = {"cals": set(APPS) | {"tests", "bench"},
             **{app: (set(APPS) - {app}) | {"tests"} for app in APPS}}


def imported_roots(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute import in a file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer):
    folder = ROOT / "cals" if layer == "cals" else APPS[layer]
    files = sorted(folder.rglob("*.py"))
    assert files, f"no Python files under {folder}"
    broken = [f"{path.relative_to(ROOT)}:{line} imports {root}"
              for path in files for root, line in sorted(imported_roots(path)) if root in FORBIDDEN[layer]]
    assert broken == [], f"{layer} may not import {sorted(FORBIDDEN[layer])}:\n" + "\n".join(broken)


def test_the_check_sees_a_forbidden_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tests.cvat_server import CvatTestServer\n    import sampler.app\n")
    assert {root for root, _ in imported_roots(bad)} == {"tests", "sampler"}


def test_strategies_import_no_torch():
    code = "import sys, cals.sampling.strategies; print(sorted(m for m in ('torch', 'mmpose', 'mmengine') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# cals/distributed.py reads torchrun's contract with its processes (RANK, WORLD_SIZE, LOCAL_RANK,
# LOCAL_WORLD_SIZE), which the launcher sets, not a CALS setting
ENV_READERS = {ROOT / "cals" / "settings.py", ROOT / "cals" / "env_file.py", ROOT / "cals" / "distributed.py"}


def environment_reads(path: Path) -> list[int]:
    """Lines that touch os.environ or call os.getenv / getenv."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(a.name in ("environ", "getenv") for a in node.names):
            lines.append(node.lineno)
    return lines


def test_only_the_settings_layer_reads_the_environment():
    files = [p for folder in ("cals", *APPS) for p in (ROOT / folder).rglob("*.py")
             if p not in ENV_READERS and "configs" not in p.parts]
    found = [f"{p.relative_to(ROOT)}:{line}" for p in sorted(files) for line in environment_reads(p)]
    assert found == [], "read settings through cals.settings:\n" + "\n".join(found)


def test_the_check_sees_an_environment_read(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom os import getenv\nx = os.environ.get('CALS_X')\n")
    assert environment_reads(bad) == [2, 3]
