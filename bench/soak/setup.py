"""The soak's world, built as a team builds theirs: deploy/.env from .env.example, `cals setup-project`,
the pool task from a COCO file, the initial model in the registry, then the services and the function."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

from bench.soak.annotator import Annotator
from bench.soak.function_pool import PooledFunction, function_env
from bench.soak.measure import Load, Sampler, api_json, get_json
from bench.soak.run import Soak
from bench.soak.stack import ROOT, Service, TmpfsRegistry, service_env
from tests.test_lambda_manager import FUNCTION, _mapping

log = logging.getLogger("soak")


def build(args, work: Path, stack: ExitStack) -> tuple[Soak, dict, dict]:
    from cals import env_file
    from cals.cvat.client import CvatSettings, connect
    from cals.schema import load_schema
    from cals.synth import generate_dataset
    from tests.nuclio_dashboard import NuclioDashboard
    from tests.trainer_helpers import Outage, cvat_proxy

    schema = load_schema()
    frames = work / "frames"
    if not (frames / "annotations.json").is_file():
        generate_dataset(frames, args.pool, seed=7, progress=False, image_size=(640, 480))
    ports = {"trainer": _free_port(), "sampler": _free_port()}
    env_path = _env_file(work, ports["trainer"])
    _cals("setup-project", "--env-file", str(env_path))
    _pool_task(frames, schema, work, env_path)
    values = env_file.read(env_path)
    project_id = int(values["CALS_PROJECT_ID"])

    registry, tmpfs = work / "registry", TmpfsRegistry(work / "registry", size_mb=8192)
    why = tmpfs.mount()
    if why:
        log.warning("%s: the disk-full fault will be skipped", why)
        tmpfs = None
    stack.callback(lambda: tmpfs and tmpfs.unmount())
    _initial_model(registry, work)

    outage = Outage()
    proxy = stack.enter_context(cvat_proxy(os.environ["CVAT_URL"], outage=outage))
    data = work / "data"
    common = {"CALS_CVAT_URL": proxy, "CALS_REGISTRY": str(registry), "CALS_DATA": str(data),
              "CALS_DETECTOR": str(args.detector), "CALS_CACHE": str(work / "cache"), "CALS_DEVICE": "cpu"}
    sampler = Service("sampler", ["-m", "sampler", "serve"], service_env(values, {
        **common, "CALS_SAMPLER_BIND": f"127.0.0.1:{ports['sampler']}", "CALS_ROUND_SIZE": str(args.round_size),
        "CALS_JOB_SIZE": str(args.job_size)}), f"http://127.0.0.1:{ports['sampler']}", work / "sampler.log")
    trainer = Service("trainer", ["-m", "trainer"], service_env(values, {
        **common, "CALS_TRAINER_BIND": f"127.0.0.1:{ports['trainer']}", "CALS_SAMPLER_URL": sampler.url,
        "CALS_TRAIN_ITERS": str(args.train_iters), "CALS_TRAIN_BATCH_SIZE": "8", "CALS_PROMOTE_MARGIN": "1.0",
        "CALS_CATCHUP_SECONDS": str(args.catch_up_seconds)}), f"http://127.0.0.1:{ports['trainer']}", work / "trainer.log")
    for service in (sampler, trainer):
        service.start()
        stack.callback(service.stop)

    function = PooledFunction.start(function_env(dict(os.environ), {
        "CALS_REGISTRY": str(registry), "CALS_DETECTOR": str(args.detector), "CALS_CACHE": str(work / "cache")},
        args.function_workers), args.function_workers)
    stack.callback(function.stop)
    dashboard = stack.enter_context(NuclioDashboard([function], port=int(os.environ.get("CVAT_NUCLIO_PORT", 8070))))
    log.info("function %s: %d workers %s behind the dashboard at %s", FUNCTION, len(function.pids), function.pids,
             dashboard.url)

    settings = CvatSettings(url=os.environ["CVAT_URL"], user=os.environ["CVAT_USER"],
                            password=os.environ["CVAT_PASSWORD"])
    connect_cvat = lambda: connect(settings)  # noqa: E731
    client = stack.enter_context(connect_cvat())
    truth = json.loads((frames / "annotations.json").read_text())
    annotator = Annotator(client, project_id, truth, sampler.url, values["CALS_API_TOKEN"])
    pool_task = next(t for t in client.projects.retrieve(project_id).get_tasks() if t.name == "pool")
    load = Load(connect_cvat, FUNCTION, pool_task.id, args.pool, _mapping(schema), args.request_every)

    soak = Soak(trainer=trainer, sampler=sampler, annotator=annotator, outage=outage, registry=registry,
                data=data, tmpfs=tmpfs, restart_cvat=_cvat_restarter(), catch_up_seconds=args.catch_up_seconds,
                ai_tools_call=lambda: _ai_tools_call(client, pool_task.id, _mapping(schema)))
    soak.annotator.request_round()  # round 1, as `make round` opens it
    monitor_client = stack.enter_context(connect_cvat())  # the sampling thread's own connection
    webhooks = lambda: _deliveries(monitor_client, project_id)  # noqa: E731
    sampler_thread = Sampler(lambda: {"trainer": trainer.tree(), "sampler": sampler.tree(),
                                      **{f"function worker {i + 1}": [pid] for i, pid in enumerate(function.pids)}},
                             lambda: _minute(soak, webhooks), 60)
    record = {"started": time.time(), "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "work": str(work), "project_id": project_id, "function_workers": function.pids,
              "registry_on_tmpfs": tmpfs is not None}
    load.start()
    sampler_thread.start()
    return soak, record, {"load": load, "sampler": sampler_thread, "deliveries": webhooks}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cals(*argv: str) -> None:
    from cals.cli import main

    if main(list(argv)) != 0:
        raise RuntimeError(f"cals {' '.join(argv)} failed")


def _env_file(work: Path, trainer_port: int) -> Path:
    from cals import env_file

    path = work / ".env"
    shutil.copy(ROOT / "deploy" / ".env.example", path)
    for key, value in {"CALS_CVAT_URL": os.environ["CVAT_URL"], "CALS_CVAT_USER": os.environ["CVAT_USER"],
                       "CALS_CVAT_PASSWORD": os.environ["CVAT_PASSWORD"],
                       "CALS_PROJECT_NAME": f"cals-soak-{time.strftime('%H%M%S')}",
                       "CALS_TRAINER_URL": f"http://127.0.0.1:{trainer_port}"}.items():
        env_file.store(path, key, value)
    return path


def _pool_task(frames: Path, schema, work: Path, env_path: Path) -> None:
    """The pool as a team has it: a COCO-17 file (body points only) imported, then `cals pool-task`."""
    from tests.test_coco_import import coco17

    _cals("import-coco", "--annotations", str(coco17(frames, schema, work)), "--images", str(frames / "images"),
          "--out", str(work / "pool"))
    _cals("pool-task", "--data", str(work / "pool"), "--env-file", str(env_path))


def _initial_model(registry: Path, work: Path) -> None:
    from bench.serving import version_folder
    from cals.model.train import version_files
    from cals.registry import Registry

    reg = Registry(registry)
    if reg.current() is None:
        version = version_folder("rtmpose-m", work / "initial")
        reg.promote(reg.add(version_files(version), meta={"config": "rtmpose-m"}).id, reason="soak: initial model")


def _cvat_restarter():
    """stop.sh + start.sh of the harness, when the soak's script started it (SOAK_REALCVAT); else None."""
    realcvat = os.environ.get("SOAK_REALCVAT")
    if not realcvat:
        return None

    def restart() -> None:
        subprocess.run(["bash", f"{realcvat}/stop.sh"], check=True, capture_output=True)
        subprocess.run(["bash", f"{realcvat}/start.sh"], check=True, capture_output=True)
    return restart


def _ai_tools_call(client, task_id: int, mapping: dict) -> int:
    status, _ = api_json(client, "POST", f"/api/lambda/functions/{FUNCTION}",
                         {"task": task_id, "frame": 0, "mapping": mapping, "cleanup": False, "conv_mask_to_poly": False})
    return status


def _deliveries(client, project_id: int) -> dict:
    """CVAT's deliveries of the project's webhook, by HTTP status of the trainer's answer."""
    status, hooks = api_json(client, "GET", f"/api/webhooks?project_id={project_id}")
    if status != 200 or not hooks["results"]:
        return {"error": f"HTTP {status}"}
    hook = hooks["results"][0]["id"]
    counts: dict[str, int] = {}
    page = 1
    while True:
        status, body = api_json(client, "GET", f"/api/webhooks/{hook}/deliveries?page={page}&page_size=100")
        if status != 200:
            return {"error": f"HTTP {status}", **counts}
        for d in body["results"]:
            key = str(d.get("status_code"))
            counts[key] = counts.get(key, 0) + 1
        if not body.get("next"):
            return counts
        page += 1


def _minute(soak: Soak, webhooks) -> dict:
    """The per-minute extras: the services' /health, the trainer's runs by state and trigger."""
    out: dict = {"health": {}, "health_errors": []}
    quiet = any(w["end"] is None for w in soak.windows)  # a fault may have a service down on purpose
    for name, service in (("trainer", soak.trainer), ("sampler", soak.sampler)):
        status, body = get_json(f"{service.url}/health")
        out["health"][name] = {"status": status, "says": body.get("status") if isinstance(body, dict) else None}
        if status != 200 and not quiet:
            out["health_errors"].append(f"{name} /health {status}: {str(body)[:200]}")
    runs = soak.runs()
    out["runs"] = {state: sum(r["state"] == state for r in runs)
                   for state in ("queued", "running", "succeeded", "failed", "interrupted")}
    out["runs_from_catch_up"] = sum("catch-up" in r["trigger"] for r in runs)
    try:
        out["deliveries"] = webhooks()
    except Exception as exc:  # CVAT restarting
        out["deliveries"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
    return out
