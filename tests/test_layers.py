"""The import rules that keep one core library and thin apps (checked on every import statement,
including those inside functions):

- `cals` imports none of the apps (`serverless`, `trainer`, `sampler`), `tests` or `bench`;
- an app imports neither another app nor `tests` (each ships in its own image, without `tests/`);
- the sampling strategies import no torch: the sampler validates strategy names at start-up;
- only `cals/settings.py` reads the environment (and `cals/env_file.py`, which hands deploy/.env to a
  command it runs): every CALS_ variable has one declaration, type and default;
- the floor plan of `cals/`: at most 8 top-level modules, no import circle between modules or between
  top-level packages, and at most 3 imports that run back up from a lower floor to a higher one.
"""
from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = {"serverless": ROOT / "serverless", "trainer": ROOT / "trainer", "sampler": ROOT / "sampler"}
FORBIDDEN = {"cals": set(APPS) | {"tests", "bench"},
             **{app: (set(APPS) - {app}) | {"tests"} for app in APPS}}


def import_statements(path: Path) -> list[tuple[str, int, list[str], int]]:
    """(module, level, names, line) of every import statement in a file, those inside functions too:
    `import a.b` is ("a.b", 0, [], line), `from ..a import b, c` is ("a", 2, ["b", "c"], line)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [a.name for a in node.names], node.lineno))
    return found


def imported_roots(path: Path) -> set[tuple[str, int]]:
    """(top-level package, line) of every absolute import in a file."""
    return {(module.split(".")[0], line) for module, level, _, line in import_statements(path)
            if level == 0 and module}


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


# cals/model/distributed.py reads torchrun's contract with its processes (RANK, WORLD_SIZE, LOCAL_RANK,
# LOCAL_WORLD_SIZE), which the launcher sets, not a CALS setting
ENV_READERS = {ROOT / "cals" / "settings.py", ROOT / "cals" / "env_file.py", ROOT / "cals" / "model" / "distributed.py"}


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


# The floors of cals/, from the ground up: a package or top-level module imports only its own floor and
# those below it. The loop reads upward: CVAT access and data, the model, the stages that train, serve
# and sample, and the commands that drive them.
FLOORS = {
    "errors": 0, "env_file": 0, "settings": 0, "durable": 0, "schema": 0,  # shared by every stage
    "data": 1, "synth": 1, "metrics": 1, "registry": 1, "cvat": 1,  # files, generated people, CVAT's API
    "model": 2,  # mmpose networks: train, predict, export, quantize
    "training": 3, "serving": 3, "sampling": 3, "startup_checks": 3, "http_service": 3,  # the loop's stages
    "simulate": 4, "cli": 4, "__main__": 4,  # the commands
}
MAX_TOP_LEVEL_MODULES = 8
MAX_UPWARD_IMPORTS = 3
CALS = ROOT / "cals"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_edges(root: Path = ROOT, package: str = "cals") -> dict[str, set[tuple[str, int]]]:
    """{module: {(module it imports, line)}} within the package, every import statement counted.

    `from a.b import c` depends on the module a.b.c where there is one, else on a.b; importing a
    submodule is not counted as importing its package's __init__."""
    files = {module_name(p, root): p for p in (root / package).rglob("*.py") if "configs" not in p.parts}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[tuple[str, int]]] = {m: set() for m in files}
    for mod, path in files.items():
        here = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for base, level, names, line in import_statements(path):
            if level:
                up = here.split(".")[:len(here.split(".")) - level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{name}" if f"{base}.{name}" in files else base for name in names] or [base]
            for target in targets:
                found = known(target) if target.split(".")[0] == package else None
                if found and found != mod:
                    edges[mod].add((found, line))
    return edges


def unit(module: str) -> str:
    """The top-level package or module of cals a module belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle, or []."""
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as e:
        return list(e.args[1])
    return []


def upward_imports(edges: dict[str, set[tuple[str, int]]]) -> list[str]:
    return [f"{a} -> {b} (line {line}): floor {FLOORS[unit(a)]} imports floor {FLOORS[unit(b)]}"
            for a in sorted(edges) for b, line in sorted(edges[a])
            if unit(a) in FLOORS and unit(b) in FLOORS and FLOORS[unit(b)] > FLOORS[unit(a)]]


def test_at_most_eight_top_level_modules():
    modules = sorted(p.stem for p in CALS.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, f"{len(modules)} top-level modules in cals/: {modules}; " \
        "move one into the package of the stage that owns it"


def test_every_package_and_module_has_a_floor():
    units = {unit(m) for m in import_edges()} - {"cals"}
    assert sorted(units - set(FLOORS)) == [], "give it a floor in FLOORS"
    assert sorted(set(FLOORS) - units) == [], "FLOORS names a package or module that is gone"


def test_no_import_circle_between_modules():
    edges = import_edges()
    assert circle({m: {b for b, _ in bs} for m, bs in edges.items()}) == []


def test_no_import_circle_between_packages():
    graph: dict[str, set[str]] = {}
    for a, bs in import_edges().items():
        graph.setdefault(unit(a), set()).update(unit(b) for b, _ in bs if unit(b) != unit(a))
    assert circle(graph) == []


def test_few_imports_run_back_up():
    found = upward_imports(import_edges())
    assert len(found) <= MAX_UPWARD_IMPORTS, "imports that run back up:\n" + "\n".join(found)


def test_the_floor_checks_see_a_circle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "cals"
    (pkg / "cvat").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cvat" / "__init__.py").write_text("from cals.cvat.b import B\n")
    (pkg / "cvat" / "b.py").write_text("def f():\n    from cals.cvat import A\n")
    (pkg / "sampling.py").write_text("from cals.cvat import b\n")
    (pkg / "data.py").write_text("import json\n\ndef g():\n    from cals.sampling import x\n")
    edges = import_edges(tmp_path)
    assert edges["cals.sampling"] == {("cals.cvat.b", 1)}  # a submodule, not the package's __init__
    assert set(circle({m: {b for b, _ in bs} for m, bs in edges.items()})) == {"cals.cvat", "cals.cvat.b"}
    assert upward_imports(edges) == ["cals.data -> cals.sampling (line 4): floor 1 imports floor 3"]
