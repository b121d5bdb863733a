"""make check-build: the Python install steps of the function image and of deploy/Dockerfile's images,
resolved in fresh virtual environments with the same constraints, without Docker.

No image is built in CI, so a pin that does not exist, two requirements that contradict each other, or
a package that replaces one Nuclio put into the function image would first show on an admin's host.

- The function (serverless/spine-pose/nuclio/function.yaml): a fresh environment of the Python its
  `spec.runtime` names gets what Nuclio's python runtime installs before the function's own postCopy
  directives (nuclio pkg/processor/build/runtime/python/runtime.go: nuclio-sdk and msgpack, from the
  wheels of pkg/processor/runtime/python/py/requirements/); then each postCopy `RUN` of `pip install`
  commands runs as written, in the repository (the image's cals-src/), with the ENV directives set.
  Installing a different version of one of Nuclio's packages fails the check: Nuclio's wrapper, which
  runs the handler, was released with those.
- deploy/Dockerfile: the `RUN ... bash scripts/install.sh` of its build stage runs with its variables
  and the ARG defaults, the Python of `PYTHON_IMAGE`, and a fresh environment in place of /opt/cals/venv.

Each pip call resolves with `--dry-run --report` instead of installing, and what it would install is
recorded in the environment as package metadata only, so the next call sees it as installed, as in
the image. Two things differ from a real build: `--no-build-isolation` is dropped (the recorded
packages cannot be imported by a build; the package's own build requirements stand in) and
`--no-cache-dir` too (it does not change what resolves). pip retries a failing index once
(PIP_RETRIES, default here 1), so an index that cannot be reached costs seconds, not minutes.
A failure is one line; exit status 1. CHECK_BUILD_VERBOSE=1 lists each step with its time.

    python scripts/check_build.py [--nuclio 1.13.0] [--function FILE] [--dockerfile FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
# What Nuclio's python runtime installs into a python:3.11 function before its postCopy directives,
# per release (pkg/processor/runtime/python/py/requirements/{common,python3_11}.txt at the tag).
# CVAT v2.23.1 and v2.24 pin the 1.13.0 dashboard.
NUCLIO_PYTHON_RUNTIME = {
    "1.13.0": ("nuclio-sdk==0.5.9", "msgpack==1.0.7"),
    "1.14.1": ("nuclio-sdk==0.5.13", "msgpack==1.0.8"),
}
DROPPED = {"--no-build-isolation", "--no-cache-dir"}


class BuildCheckError(Exception):
    """A step does not resolve, or replaces what Nuclio installed: the one line to print."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def python_of(image: str, what: str) -> str:
    """The local interpreter for "python:3.11" or "python:3.11-slim"."""
    found = re.match(r"python:(\d+\.\d+)", image)
    if found is None:
        raise BuildCheckError(f"{what} names {image!r}, not a python:X.Y image")
    interpreter = f"python{found.group(1)}"
    if shutil.which(interpreter) is None:
        raise BuildCheckError(f"{interpreter} not found ({what} builds on {image}): install it")
    return interpreter


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python*/site-packages"))


def installed(venv: Path) -> dict[str, tuple[str, Path]]:
    """{canonical name: (version, dist-info folder)} of what the environment holds or was recorded into it."""
    found = {}
    for info in site_packages(venv).glob("*.dist-info"):
        headers = (info / "METADATA").read_text(errors="replace").split("\n\n", 1)[0]
        fields = dict(line.split(": ", 1) for line in headers.splitlines() if ": " in line)
        found[canonical(fields["Name"])] = (fields["Version"], info)
    return found


def record(venv: Path, metadata: dict) -> None:
    """Package metadata of one resolved distribution as a dist-info folder, as pip would leave it."""
    name, version = metadata["name"], metadata["version"]
    info = site_packages(venv) / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    info.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if metadata.get("requires_python"):
        lines.append(f"Requires-Python: {metadata['requires_python']}")
    lines += [f"Provides-Extra: {extra}" for extra in metadata.get("provides_extra", [])]
    lines += [f"Requires-Dist: {requirement}" for requirement in metadata.get("requires_dist", [])]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "INSTALLER").write_text("check-build\n")
    (info / "RECORD").write_text("")


def stand_in_pip(venv: Path, ledger: Path, args: list[str]) -> int:
    """`pip ARGS` as a build step runs it: resolve with --dry-run, record the result, log it to `ledger`."""
    step = "pip " + " ".join(args)
    if args[:1] != ["install"]:
        return _log(ledger, error=f"`{step}`: only `pip install` is understood")
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        command = [str(venv / "bin" / "python"), "-m", "pip", *[a for a in args if a not in DROPPED],
                   "--dry-run", "--quiet", "--report", report.name]
        start = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, cwd=os.getcwd())
        seconds = round(time.monotonic() - start, 1)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or \
                     done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
            return _log(ledger, error=f"`{step}` does not resolve: {' '.join(errors)[:600]}")
        resolved = json.loads(Path(report.name).read_text())["install"]
    before = installed(venv)
    replaced = []
    for item in resolved:
        metadata = item["metadata"]
        old = before.get(canonical(metadata["name"]))
        if old is not None:
            shutil.rmtree(old[1])
            replaced.append([metadata["name"], old[0], metadata["version"]])
        record(venv, metadata)
    return _log(ledger, step=step, installed=len(resolved), replaced=replaced, seconds=seconds)


def _log(ledger: Path, **entry) -> int:
    with ledger.open("a") as out:
        out.write(json.dumps(entry) + "\n")
    return 1 if "error" in entry else 0


def run_steps(script: str, env: dict[str, str], work: Path, what: str) -> list[dict]:
    """Run `script` in bash with `pip` standing in (and the environment `env`); the ledger entries."""
    ledger = work / "ledger.jsonl"
    ledger.unlink(missing_ok=True)
    shim = work / "pip"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(Path(__file__).resolve()))} "
                    f"pip {shlex.quote(str(work / 'venv'))} {shlex.quote(str(ledger))} \"$@\"\n")
    shim.chmod(0o755)
    done = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          env={"PIP_RETRIES": "1", **_host_env(), **env, "INSTALL_PIP": str(shim)})
    entries = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    if os.environ.get("CHECK_BUILD_VERBOSE"):
        for entry in entries:
            print(f"  {entry.get('seconds', '-')} s  {entry.get('installed', '-')} packages  "
                  f"{entry.get('step', entry.get('error'))}", file=sys.stderr)
    errors = [e["error"] for e in entries if "error" in e]
    if errors:
        raise BuildCheckError(f"{what}: {errors[0]}")
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BuildCheckError(f"{what}: the install steps failed outside pip: {said}")
    if not entries:
        raise BuildCheckError(f"{what}: no pip install step found")
    return entries


def check_function(path: Path, nuclio: str, work: Path) -> str:
    """function.yaml's postCopy pip steps on top of what Nuclio `nuclio` installs; a summary line."""
    what = _name(path)
    spec = yaml.safe_load(path.read_text())["spec"]
    python = python_of(spec["runtime"], what)
    script = function_steps(spec.get("build", {}).get("directives", {}), what)
    venv = work / "venv"
    if subprocess.run([python, "-m", "venv", str(venv)], capture_output=True).returncode != 0:
        raise BuildCheckError(f"{python} -m venv {venv} failed: is {python}'s venv module installed?")
    packages = NUCLIO_PYTHON_RUNTIME[nuclio]
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *packages],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildCheckError(f"could not install Nuclio {nuclio}'s runtime packages {' '.join(packages)}: "
                              f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    entries = run_steps(script, {}, work, what)
    nuclio_packages = {canonical(p.split("==")[0]) for p in packages}
    for entry in entries:
        for name, old, new in entry["replaced"]:
            if canonical(name) in nuclio_packages:
                raise BuildCheckError(
                    f"{what}: `{entry['step'][:160]}` replaces {canonical(name)} {old}, which Nuclio {nuclio}'s "
                    f"python runtime installs for the wrapper that runs the handler, with {new}: keep "
                    f"{canonical(name)} out of the function's requirements (the tests' copy belongs in "
                    "requirements/dev.txt)")
    total = sum(entry["installed"] for entry in entries)
    return (f"{what}: {len(entries)} pip steps resolve ({total} packages) and keep Nuclio {nuclio}'s "
            f"{', '.join(packages)}")


def function_steps(directives: dict, what: str) -> str:
    """A bash script of the ENV directives and the postCopy RUNs of pip (the other RUNs fetch files)."""
    lines = ["set -e", 'pip() { "$INSTALL_PIP" "$@"; }']
    for directive in directives.get("preCopy", []) + directives.get("postCopy", []):
        if directive["kind"] == "ENV":
            name, _, value = shlex.split(directive["value"])[0].partition("=")
            lines.append(f"export {name}={shlex.quote(value)}")
    for directive in directives.get("postCopy", []):
        if directive["kind"] == "RUN" and re.search(r"\bpip\b", directive["value"]):
            for part in re.split(r"\s*&&\s*", directive["value"].strip()):
                if not part.startswith("pip install "):
                    raise BuildCheckError(f"{what}: a postCopy RUN mixes pip with {part[:80]!r}: only `pip install` "
                                          "commands can be checked; give the others a RUN of their own")
            lines.append(directive["value"])
    return "\n".join(lines)


def check_dockerfile(path: Path, work: Path) -> str:
    """The build stage's `RUN ... bash scripts/install.sh`, with its variables and the ARG defaults."""
    what = _name(path)
    defaults: dict[str, str] = {}
    run = None
    for item in DockerfileParser(path=str(path)).structure:
        if item["instruction"] == "ARG" and "=" in item["value"]:
            name, _, value = item["value"].partition("=")
            defaults[name.strip()] = value.strip().strip('"')
        elif item["instruction"] == "RUN" and "scripts/install.sh" in item["value"]:
            run = item["value"]
            break
    if run is None:
        raise BuildCheckError(f"{what}: no RUN of scripts/install.sh")
    words = shlex.split(run)
    assignments = [w for w in words if re.fullmatch(r"[A-Za-z_]\w*=.*", w)]
    if words[len(assignments):] != ["bash", "scripts/install.sh"]:
        raise BuildCheckError(f"{what}: cannot check {run!r}: expected VAR=value ... bash scripts/install.sh")
    env = {}
    for word in assignments:
        name, _, value = word.partition("=")
        env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: defaults.get(m.group(1), ""), value)
    env["VENV"] = str(work / "venv")  # in place of the image's path
    env["PYTHON"] = python_of(defaults.get("PYTHON_IMAGE", ""), what)
    entries = run_steps("bash scripts/install.sh", env, work, what)
    total = sum(entry["installed"] for entry in entries)
    shown = " ".join(f"{k}={env[k]}" for k in ("DEV", "TORCH_INDEX") if k in env)
    return f"{what}: scripts/install.sh ({shown}) resolves in {len(entries)} pip steps ({total} packages)"


def _host_env() -> dict[str, str]:
    """What of this host's environment a build step sees: pip's settings and proxies, not the rest."""
    keep = ("PATH", "HOME", "TMPDIR", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
            "NO_PROXY", "SSL_CERT_FILE")
    return {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}


def _timed(check, work: Path) -> tuple[str, float]:
    start = time.monotonic()
    work.mkdir()
    return check(work), time.monotonic() - start


def _name(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pip"]:  # the stand-in pip the steps call
        return stand_in_pip(Path(argv[1]), Path(argv[2]), argv[3:])
    parser = argparse.ArgumentParser(prog="scripts/check_build.py", description=__doc__.split("\n")[0])
    parser.add_argument("--nuclio", default="1.13.0", choices=sorted(NUCLIO_PYTHON_RUNTIME),
                        help="Nuclio release whose python runtime the function builds on (default 1.13.0, "
                             "CVAT 2.23/2.24's)")
    parser.add_argument("--function", type=Path, default=ROOT / "serverless/spine-pose/nuclio/function.yaml")
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "deploy/Dockerfile")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cals-check-build.") as tmp:
        checks = {"function": lambda work: check_function(args.function, args.nuclio, work),
                  "dockerfile": lambda work: check_dockerfile(args.dockerfile, work)}
        with ThreadPoolExecutor(len(checks)) as pool:  # mostly waiting on indexes: side by side
            results = [pool.submit(_timed, check, Path(tmp) / name) for name, check in checks.items()]
        for result in results:
            try:
                summary, seconds = result.result()
            except BuildCheckError as exc:
                print(f"check-build: error: {exc}", file=sys.stderr)
                return 1
            print(f"check-build: {summary} ({seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
