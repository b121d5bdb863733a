"""`cals setup-project`, `cals check`, `cals round`: the commands that connect CALS to a running CVAT.

They read settings from `--env-file` (default: none) under the process environment; see
deploy/.env.example for every variable.
"""
from __future__ import annotations

import json
import secrets
import sys

from cals import env_file
from cals.errors import CalsError
from cals.settings import HostEnv, default

DEFAULT_PROJECT_NAME: str = default("CALS_PROJECT_NAME")
DEFAULT_TRAINER_URL: str = default("CALS_TRAINER_URL")  # the trainer as CVAT's webhook worker reaches it (compose alias)


def add_parsers(sub) -> None:
    s = sub.add_parser("setup-project", help="create or update the CVAT project, its skeleton label and the "
                                             "trainer's webhook; writes the project id and secrets to --env-file")
    s.add_argument("--env-file", help="deploy/.env: read settings from it and store what setup decides in it")
    s.add_argument("--name", help=f"project name when CALS_PROJECT_ID is unset (default $CALS_PROJECT_NAME "
                                  f"or {DEFAULT_PROJECT_NAME!r})")
    s.add_argument("--trainer-url", help=f"the trainer as CVAT reaches it (default $CALS_TRAINER_URL or "
                                         f"{DEFAULT_TRAINER_URL})")
    s.set_defaults(func=cmd_setup_project)
    c = sub.add_parser("check", help="check CVAT and the credentials, the project's label, the webhook (CVAT pings "
                                     "the trainer) and the Nuclio function; exit 1 if anything is wrong")
    c.add_argument("--env-file", help="read settings from this env file (deploy/.env)")
    c.add_argument("--no-ping", action="store_true", help="do not ask CVAT to ping the trainer's webhook")
    c.set_defaults(func=cmd_check)
    p = sub.add_parser("pool-task", help="upload the unlabelled pool (a dataset folder) into the CVAT project "
                                         "as the task the sampler draws rounds from")
    p.add_argument("--data", required=True, help="dataset folder (annotations.json + images/), e.g. from import-coco")
    p.add_argument("--env-file", help="read settings (CVAT, CALS_PROJECT_ID, CALS_POOL_TASK) from this env file")
    p.add_argument("--name", help="task name (default $CALS_POOL_TASK or 'pool')")
    p.set_defaults(func=cmd_pool_task)
    r = sub.add_parser("round", help="ask the running sampler service to open the next CVAT round; waits for it")
    r.add_argument("--env-file", help="read settings (CALS_API_TOKEN, CALS_PROJECT_ID) from this env file")
    r.add_argument("--sampler-url", help="the sampler as this host reaches it (default: http://127.0.0.1:"
                                         "$CALS_SAMPLER_PORT, where deploy/compose.yml publishes it; port 8091)")
    r.add_argument("--project", type=int, help="CVAT project id (default: the sampler's CALS_PROJECT_ID)")
    r.add_argument("--size", type=int, help="frames in the round (default: the sampler's CALS_ROUND_SIZE)")
    r.add_argument("--job-size", type=int, help="frames per CVAT job (default: the sampler's CALS_JOB_SIZE)")
    r.add_argument("--strategy", help="strategy name (default: the sampler's CALS_SAMPLER_STRATEGY)")
    r.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the round (default 3600)")
    r.set_defaults(func=cmd_round)


def _settings(args) -> tuple[HostEnv, object, object]:
    """The host's settings (--env-file under the process environment), CVAT's, and the schema."""
    from cals.cvat.client import CvatSettings
    from cals.schema import load_schema

    env = HostEnv.load(env_file=args.env_file)
    return env, CvatSettings.from_env(env), load_schema(args.schema or env.SCHEMA)


def cmd_setup_project(args) -> None:
    from cals.cvat.client import connect
    from cals.cvat.project_setup import ensure_project, ensure_webhook, webhook_url

    env, cvat, schema = _settings(args)
    generated = {k: secrets.token_urlsafe(32) for k in ("WEBHOOK_SECRET", "API_TOKEN") if not getattr(env, k)}
    if generated and not args.env_file:
        raise CalsError(f"set {' and '.join('CALS_' + k for k in generated)}, or pass --env-file to store "
                        "generated ones")
    env = env.model_copy(update=generated)
    name = args.name or env.PROJECT_NAME
    target = webhook_url(args.trainer_url or env.TRAINER_URL)
    with connect(cvat) as client:
        project, step = ensure_project(client, schema, project_id=env.PROJECT_ID, name=name)
        print(f"{step} ({project.name!r}, label {schema.label!r} with {schema.num_keypoints} points)")
        print(f"{ensure_webhook(client, project.id, target, str(env.WEBHOOK_SECRET))} (update:job -> {target})")
    if args.env_file:  # what CVAT now depends on, so compose hands the services the same values
        values = {"CALS_PROJECT_ID": str(project.id), "CALS_WEBHOOK_SECRET": str(env.WEBHOOK_SECRET),
                  "CALS_API_TOKEN": str(env.API_TOKEN)}
        written = [k for k, v in values.items() if env_file.store(args.env_file, k, v)]
        print(f"wrote {', '.join(written)} to {args.env_file}" if written else f"{args.env_file} is up to date")
        if written:
            print("(re)start the trainer and sampler so they use these values (docker compose ... up -d)")


def cmd_check(args) -> None:
    from cals.cvat.project_setup import webhook_url
    from cals.startup_checks import check_cvat, check_function, check_label, check_webhook

    env, cvat, schema = _settings(args)
    result, client = check_cvat(cvat)  # volumes are checked by each service at its start, as its own user
    checks = [result]
    if client is not None:
        with client:
            if env.PROJECT_ID:
                checks.append(check_label(client, env.PROJECT_ID, schema))
                if not args.no_ping:
                    checks.append(check_webhook(client, env.PROJECT_ID, webhook_url(env.TRAINER_URL)))
            checks.append(check_function(client, env.FUNCTION_NAME, schema))
    for check in checks:
        print(check)
    failed = [c.name for c in checks if not c.ok]
    if not env.PROJECT_ID:
        failed.append("CALS_PROJECT_ID")
        print("[FAIL] CALS_PROJECT_ID: not set; run make setup-project")
    if failed:
        raise CalsError(f"{len(failed)} check(s) failed: {', '.join(failed)}")


def cmd_pool_task(args) -> None:
    from cals.cvat.client import connect
    from cals.cvat.pool_task import create_pool_task
    from cals.data.coco import load_dataset

    env, cvat, schema = _settings(args)
    env.require("PROJECT_ID", why="make setup-project writes it to deploy/.env")
    dataset = load_dataset(args.data, schema)
    with connect(cvat) as client:
        task = create_pool_task(client, env.PROJECT_ID, dataset, name=args.name or env.POOL_TASK)
    people = len(dataset.coco["annotations"])
    print(f"task {task.id} {task.name!r}: {len(dataset.coco['images'])} frames, {people} labelled people")


def cmd_round(args) -> None:
    from cals.sampling.client import SamplerApi

    env = HostEnv.load(env_file=args.env_file)
    env.require("API_TOKEN", why="make setup-project writes it to deploy/.env")
    url = args.sampler_url or f"http://127.0.0.1:{env.SAMPLER_PORT}"
    api = SamplerApi(url, str(env.API_TOKEN))
    body = {k: v for k, v in {"project_id": args.project or env.PROJECT_ID, "size": args.size,
                              "job_size": args.job_size, "strategy": args.strategy}.items() if v is not None}
    job = api.open_round(body)
    print(f"sampler job {job['id']}: scoring the pool and opening the round ...", file=sys.stderr)
    done = api.wait(job["id"], timeout=args.timeout, poll=2.0)
    result = done["result"]
    print(json.dumps({k: v for k, v in result.items() if k != "ranking"}, indent=2))

