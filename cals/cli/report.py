"""`cals report`: the loop report (cals.training.report) from the command line.

It reads the loop's records where they are on this machine ($CALS_DATA: the trainer's data folder),
or, where they are not (compose keeps them in the `cals-data` volume), asks the trainer for them at
GET /report.json. Either way the page is rendered here by the same code the trainer serves it with.
"""
from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cals.errors import CalsError
from cals.settings import TrainerEnv

DEFAULT_TRAINER_URL = "http://127.0.0.1:8010"  # where deploy/compose.yml publishes the trainer (loopback)


def add_parsers(sub) -> None:
    r = sub.add_parser("report", help="what the loop did on your frames: per round, points moved, the model's AP, "
                                      "the flags' recall, times and the gate; HTML with --out")
    r.add_argument("--env-file", help="read settings (CALS_DATA, CALS_REGISTRY, CVAT) from this env file")
    r.add_argument("--data", help="the trainer's data folder (default $CALS_DATA); when it is not a folder here, "
                                  "the report comes from the trainer")
    r.add_argument("--registry", help="model registry folder (default: $CALS_REGISTRY)")
    r.add_argument("--trainer-url", default=DEFAULT_TRAINER_URL,
                   help=f"the trainer, when the data is not on this machine (default {DEFAULT_TRAINER_URL})")
    r.add_argument("--out", help="write the page here (.html), or the JSON document (.json)")
    r.add_argument("--json", action="store_true", help="print the JSON document instead of the readings")
    r.set_defaults(func=cmd_report)


def cmd_report(args) -> None:
    from cals.training.report import render_page
    from cals.training.report.readings import readings

    env = TrainerEnv.load(env_file=args.env_file)
    data = Path(args.data or env.DATA)
    if args.registry:
        env = env.model_copy(update={"REGISTRY": args.registry})
    doc = local_report(env, data) if data.is_dir() else trainer_report(args.trainer_url)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) if out.suffix == ".json" else render_page(doc))
        print(f"wrote {out}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc, indent=1))
    elif not args.out:
        said = readings(doc)
        print("\n".join(said.values()) if said else "No job of a round has been learned yet.")


def local_report(env: TrainerEnv, data: Path) -> dict[str, Any]:
    from cals.cvat.client import CvatSettings, connect
    from cals.cvat.trigger import JobTrigger
    from cals.registry import Registry
    from cals.schema import load_schema
    from cals.training.queue import RunQueue
    from cals.training.report import loop_report

    queue_db = Path(env.QUEUE_DB or data / "queue.sqlite3")
    if not queue_db.is_file():
        raise CalsError(f"{data} holds no trainer queue ({queue_db}): is it the trainer's CALS_DATA?")
    env.require("REGISTRY", why="the registry holds the versions the gate judged")
    cvat = CvatSettings.from_env(env) if env.CVAT_URL else None
    return loop_report(data, Registry(str(env.REGISTRY)), RunQueue(queue_db), load_schema(env.SCHEMA),
                       tolerance=env.EFFORT_TOLERANCE, cvat=(lambda: connect(cvat)) if cvat else None,
                       trigger=JobTrigger.parse(env.JOB_TRIGGER))


def trainer_report(url: str) -> dict[str, Any]:
    target = url.rstrip("/") + "/report.json"
    try:
        with urllib.request.urlopen(target, timeout=120) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        raise CalsError(f"the trainer at {url} answered HTTP {exc.code} to GET /report.json") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CalsError(f"no loop records here (CALS_DATA is not a folder on this machine) and the trainer at "
                        f"{url} did not answer ({exc}); pass --data or --trainer-url") from None
