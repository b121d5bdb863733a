"""deploy/: the Dockerfile and compose files agree with the code, the Nuclio function and each
other. No Docker here: the files are parsed, and checked against what the services really serve."""
from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NUCLIO = ROOT / "serverless" / "spine-pose" / "nuclio"
SERVICES = {"cals-trainer": "trainer", "cals-sampler": "sampler"}
REGISTRY = "/cals/registry"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PYPI = "https://pypi.org/simple"
# Every ${VAR} the compose files may use; each one is documented in deploy/.env.example.
COMPOSE_VARIABLES = {"CALS_REGISTRY_HOST", "CALS_NUCLIO_NETWORK", "CALS_TORCH_INDEX", "CALS_IMAGE_TAG",
                     "CALS_TRAINER_PORT", "CALS_SAMPLER_PORT", "CALS_SAMPLER_URL", "CALS_CVAT_INTERNAL_URL"}
VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def default(text: str, name: str) -> str:
    """The default of ${name:-default} in `text`; fails when the variable is absent or has none."""
    found = [d for var, d in VAR.findall(text) if var == name]
    assert found, f"${{{name}:-...}} not found in {text!r}"
    assert found[0], f"${{{name}}} has no default in {text!r}"
    return found[0]


def shell_default(script: str, name: str) -> str:
    match = re.search(r"\$\{" + name + r":-([^}]*)\}", script)
    assert match, f"no default for {name}"
    return match.group(1)


def bind_port(bind: str) -> int:
    return int(bind.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yml").read_text())


@pytest.fixture(scope="module")
def gpu() -> dict:
    return yaml.safe_load((DEPLOY / "compose.gpu.yml").read_text())


@pytest.fixture(scope="module")
def functions() -> list[dict]:
    return [yaml.safe_load((NUCLIO / name).read_text()) for name in ("function.yaml", "function-gpu.yaml")]


@pytest.fixture(scope="module")
def deploy_sh() -> str:
    return (ROOT / "serverless" / "deploy.sh").read_text()


@pytest.fixture(scope="module")
def routes(tmp_path_factory) -> dict[str, set[str]]:
    """GET rules of the trainer's and sampler's apps, as their factories build them (no CVAT call)."""
    import sampler
    import trainer

    tmp = tmp_path_factory.mktemp("routes")
    apps = {"trainer": trainer.create_app({"CVAT_URL": "http://cvat.invalid:8080", "CVAT_USER": "u",
                                           "CVAT_PASSWORD": "p", "WEBHOOK_SECRET": "s" * 32, "API_TOKEN": "t",
                                           "REGISTRY": str(tmp / "registry"), "DATA": str(tmp / "data"),
                                           "WORKER": "0"}),
            "sampler": sampler.create_app({"API_TOKEN": "t", "REGISTRY": str(tmp / "registry"),
                                           "DATA": str(tmp / "sampler-data"), "CVAT_URL": "http://cvat.invalid:8080",
                                           "CVAT_USER": "u", "CVAT_PASSWORD": "p"})}
    return {name: {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}
            for name, app in apps.items()}


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    """The port each service listens on by default (cals.settings)."""
    from cals.settings import default

    return {"trainer": bind_port(default("CALS_TRAINER_BIND")), "sampler": bind_port(default("CALS_SAMPLER_BIND"))}


def volume(service: dict, target: str) -> dict:
    """The service's mount at `target`, in long form."""
    for item in service.get("volumes", []):
        if isinstance(item, str):
            parts = item.split(":")
            item = {"source": parts[0], "target": parts[1],
                    "type": "bind" if parts[0].startswith(("/", ".", "$")) else "volume"}
        if item["target"] == target:
            return item
    raise AssertionError(f"nothing mounted at {target}")


def healthcheck_url(test) -> str:
    text = test if isinstance(test, str) else " ".join(test)
    match = re.search(r"http://127\.0\.0\.1:\d+/[\w/-]*", text)
    assert match, f"no http://127.0.0.1 URL in healthcheck {test!r}"
    return match.group(0)


def url_port_path(url: str) -> tuple[int, str]:
    match = re.fullmatch(r"http://[^/:]+:(\d+)(/.*)", url)
    assert match, url
    return int(match.group(1)), match.group(2)


# ---- compose.yml -------------------------------------------------------------------------

def test_compose_builds_both_targets_from_the_one_dockerfile(compose):
    assert compose["name"] == "cals"
    assert set(compose["services"]) == set(SERVICES)
    for name, target in SERVICES.items():
        service = compose["services"][name]
        build = service["build"]
        assert build["target"] == target
        context = (DEPLOY / build["context"]).resolve()
        assert context == ROOT
        assert build["dockerfile"] == "deploy/Dockerfile" and (context / build["dockerfile"]).is_file()
        assert default(build["args"]["TORCH_INDEX"], "CALS_TORCH_INDEX") == CPU_INDEX
        assert service["image"].startswith(f"cals/{target}:")
        assert default(service["image"], "CALS_IMAGE_TAG") == "latest"
        assert service["restart"] == "unless-stopped"
        assert service["user"] == "1000:1000"
        assert service["env_file"] in (".env", [".env"])


def test_compose_uses_only_the_documented_variables(compose, gpu):
    text = (DEPLOY / "compose.yml").read_text() + (DEPLOY / "compose.gpu.yml").read_text()
    used = {var for var, _ in VAR.findall(text)}
    assert used and used <= COMPOSE_VARIABLES, used - COMPOSE_VARIABLES
    assert "$" not in re.sub(r"\$\{\w+(:?-[^}]*)?\}", "", text), "a $VAR without braces"


def test_registry_is_the_host_folder_the_nuclio_function_mounts(compose, functions, deploy_sh):
    host = shell_default(deploy_sh, "CALS_REGISTRY_HOST")
    assert host.startswith("/")
    for function in functions:
        (vol,) = [v for v in function["spec"]["volumes"] if v["volume"]["name"] == "cals-registry"]
        assert vol["volume"]["hostPath"]["path"] == host
        assert vol["volumeMount"]["name"] == "cals-registry"
        env = {e["name"]: e["value"] for e in function["spec"]["env"]}
        assert vol["volumeMount"]["mountPath"] == env["CALS_REGISTRY"] == REGISTRY
    for name in SERVICES:
        service = compose["services"][name]
        mount = volume(service, REGISTRY)
        assert mount["type"] == "bind"
        assert default(mount["source"], "CALS_REGISTRY_HOST") == host
        assert not mount.get("read_only")  # the trainer promotes into it; Registry() creates versions/
        assert service["environment"]["CALS_REGISTRY"] == REGISTRY


def test_data_volume_is_shared(compose):
    paths = set()
    for name in SERVICES:
        service = compose["services"][name]
        path = service["environment"]["CALS_DATA"]
        mount = volume(service, path)
        assert mount["type"] == "volume" and mount["source"] == "cals-data"
        paths.add(path)
    assert paths == {"/cals/data"}
    assert "cals-data" in compose["volumes"]


def test_services_join_cvats_network(compose, deploy_sh):
    network = compose["networks"]["cvat"]
    assert network["external"] is True
    assert default(network["name"], "CALS_NUCLIO_NETWORK") == shell_default(deploy_sh, "CALS_NUCLIO_NETWORK")
    for name in SERVICES:
        assert list(compose["services"][name]["networks"]) == ["cvat"]


def test_cvat_reaches_the_trainer_at_an_address_it_accepts_as_a_webhook_target(compose):
    """.env.example's CALS_TRAINER_URL is the trainer's alias on CVAT's network, and CVAT's URL
    validation (a Django URLField) takes it; "cals-trainer" alone it refuses."""
    from urllib.parse import urlsplit

    from cals import env_file
    from cals.cvat.project_setup import url_problem, webhook_url

    trainer_url = env_file.read(ROOT / "deploy" / ".env.example")["CALS_TRAINER_URL"]
    aliases = compose["services"]["cals-trainer"]["networks"]["cvat"]["aliases"]
    assert urlsplit(trainer_url).hostname in aliases
    assert url_problem(webhook_url(trainer_url)) is None
    assert url_problem("http://cals-trainer:8010/webhooks/cvat") is not None


def test_ports_healthchecks_and_urls_match_the_apps(compose, routes, ports):
    health = {"trainer": "/health", "sampler": "/health"}
    binds = {"trainer": "CALS_TRAINER_BIND", "sampler": "CALS_SAMPLER_BIND"}
    for name, app in SERVICES.items():
        service = compose["services"][name]
        assert health[app] in routes[app], f"{app} serves no GET {health[app]}"
        assert service["environment"][binds[app]] == f"0.0.0.0:{ports[app]}"
        port, path = url_port_path(healthcheck_url(service["healthcheck"]["test"]))
        assert (port, path) == (ports[app], health[app])
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
        (published,) = service["ports"]
        host_ip, host_port, container_port = VAR.sub(lambda m: m.group(2) or "", published).split(":")
        assert host_ip == "127.0.0.1" and int(container_port) == ports[app] and host_port.isdigit()
    sampler_url = default(compose["services"]["cals-trainer"]["environment"]["CALS_SAMPLER_URL"],
                          "CALS_SAMPLER_URL")
    assert sampler_url == f"http://cals-sampler:{ports['sampler']}"


# ---- compose.gpu.yml ---------------------------------------------------------------------

def test_gpu_overlay(compose, gpu):
    assert set(gpu["services"]) == set(SERVICES)
    for name in SERVICES:
        service = gpu["services"][name]
        assert service["build"]["args"]["TORCH_INDEX"] == PYPI
        assert service["image"].endswith("-cuda")
        assert service["image"].split(":")[0] == compose["services"][name]["image"].split(":")[0]
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
        assert service["environment"]["CALS_DEVICE"].startswith("cuda")


# ---- Dockerfile --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stages() -> dict[str, dict]:
    """Stage name -> {"parent": FROM image or stage, "steps": [(instruction, value)]}."""
    parser = DockerfileParser(fileobj=(DEPLOY / "Dockerfile").open("rb"), env_replace=False)
    found: dict[str, dict] = {}
    current = None
    for item in parser.structure:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            assert len(words) == 3 and words[1].lower() == "as", f"unnamed stage: FROM {item['value']}"
            current = found[words[2]] = {"parent": words[0], "steps": []}
        elif current is not None:
            current["steps"].append((item["instruction"], item["value"]))
    return found


def effective(stages: dict, name: str) -> list[tuple[str, str]]:
    """A stage's instructions including those of the stages it is built FROM."""
    stage = stages[name]
    inherited = effective(stages, stage["parent"]) if stage["parent"] in stages else []
    return inherited + stage["steps"]


def last(steps: list[tuple[str, str]], instruction: str) -> str:
    values = [v for i, v in steps if i == instruction]
    assert values, f"no {instruction}"
    return values[-1]


def exec_form(value: str) -> list[str]:
    assert value.startswith("["), f"not exec form: {value}"
    return json.loads(value)


def test_dockerfile_targets(stages, routes, ports):
    health = {"trainer": "/health", "sampler": "/health"}
    commands = {"trainer": ["python", "-m", "trainer"], "sampler": ["python", "-m", "sampler", "serve"]}
    for app in SERVICES.values():
        steps = effective(stages, app)
        user = last(steps, "USER")
        assert user.split(":")[0] not in ("root", "0") and user.split(":")[0].isdigit(), user
        assert exec_form(last(steps, "CMD")) == commands[app]
        check = last(steps, "HEALTHCHECK")
        assert " CMD " in f" {check} "
        assert url_port_path(healthcheck_url(check)) == (ports[app], health[app])
        assert health[app] in routes[app]
        assert last(steps, "EXPOSE") == str(ports[app])
        assert last(steps, "WORKDIR") == "/opt/cals"  # `python -m trainer|sampler` imports from here
        env = " ".join(v for i, v in steps if i == "ENV")
        assert "/opt/cals/venv/bin" in env and f"CALS_REGISTRY={REGISTRY}" in env
        assert "CALS_DATA=/cals/data" in env


def test_dockerfile_install(stages):
    """One stage runs scripts/install.sh (DEV=0, the CPU torch index by default) after copying
    everything it reads; the runtime images get that stage's /opt/cals."""
    (name,) = [n for n, s in stages.items() if any("scripts/install.sh" in v for i, v in s["steps"] if i == "RUN")]
    steps = stages[name]["steps"]
    run_at = next(k for k, (i, v) in enumerate(steps) if i == "RUN" and "scripts/install.sh" in v)
    run = shlex.split(steps[run_at][1])
    assert "DEV=0" in run and "VENV=/opt/cals/venv" in run and "TORCH_INDEX=$TORCH_INDEX" in run
    assert ("ARG", f"TORCH_INDEX={CPU_INDEX}") in steps[:run_at]
    copied = {src.rstrip("/") for i, v in steps[:run_at] if i == "COPY" for src in v.split()[:-1]}
    assert {"requirements", "scripts/install.sh", "pyproject.toml", "README.md", "cals"} <= copied
    for app in SERVICES.values():
        copy_from = [v for i, v in effective(stages, app) if i == "COPY" and v.startswith("--from=")]
        assert f"--from={name} /opt/cals /opt/cals" in copy_from


def test_dockerfile_copy_sources_exist(stages):
    copied = set()
    for stage in stages.values():
        for instruction, value in stage["steps"]:
            if instruction in ("COPY", "ADD"):
                words = value.split()
                if any(w.startswith("--from=") for w in words):
                    continue
                for src in [w for w in words if not w.startswith("--")][:-1]:
                    assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
                    copied.add(src.rstrip("/"))
    assert {"trainer", "sampler"} <= copied


def test_dockerignore_keeps_the_venv_out_and_the_sources_in(stages):
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[:k]) for k in range(1, len(parts) + 1)]
        return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.removeprefix("**/"))
                   for pat in patterns for p in prefixes)

    assert ignored(".venv") and ignored(".venv/lib/python3.11/site-packages/torch/__init__.py")
    assert ignored(".git") and ignored("deploy/.env")
    for stage in stages.values():
        for instruction, value in stage["steps"]:
            if instruction == "COPY" and not value.startswith("--from="):
                for src in value.split()[:-1]:
                    assert not ignored(src.rstrip("/")), f".dockerignore drops {src}, which the Dockerfile copies"


def test_containers_reach_cvat_inside_its_network():
    """deploy/.env's CALS_CVAT_URL is the host's view (localhost); the services must not inherit it."""
    services = yaml.safe_load((DEPLOY / "compose.yml").read_text())["services"]
    for name in ("cals-trainer", "cals-sampler"):
        url = services[name]["environment"]["CALS_CVAT_URL"]
        assert default(url, "CALS_CVAT_INTERNAL_URL") == "http://cvat_server:8080", name


def test_the_readiness_timeout_covers_the_measured_first_start(functions):
    """Nuclio fails a deploy whose init_context outlasts readinessTimeoutSeconds (default 60 s); the first
    start on an empty registry registers the initial model (bench/first_start.py measured it on 2 cores)."""
    from bench.first_start import RECORDED_SLOWEST_S

    for function in functions:
        timeout = function["spec"].get("readinessTimeoutSeconds")
        assert isinstance(timeout, int) and timeout >= 3 * RECORDED_SLOWEST_S, (function["metadata"]["name"], timeout)
    assert functions[0]["spec"]["readinessTimeoutSeconds"] == functions[1]["spec"]["readinessTimeoutSeconds"]
