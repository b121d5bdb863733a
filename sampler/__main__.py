"""`python -m sampler serve` (gunicorn, the production server) and `python -m sampler round` (open one now)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from cals.errors import CalsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sampler", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="print tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service under gunicorn (settings: CALS_* env)")
    serve.add_argument("--bind", help="address, default $CALS_SAMPLER_BIND or 0.0.0.0:8090")
    serve.add_argument("--threads", type=int, default=4, help="request threads (one process: models load once)")
    rnd = sub.add_parser("round", help="open the next CVAT round now and print it as JSON",
                         description="Score the pool with the current model and open the next CVAT round "
                                     "(idempotent: the same model version reuses its round).")
    rnd.add_argument("--project", type=int, help="CVAT project id (default $CALS_PROJECT_ID)")
    rnd.add_argument("--size", type=int, help="frames in the round (default $CALS_ROUND_SIZE or 50)")
    rnd.add_argument("--job-size", type=int, help="frames per CVAT job (default $CALS_JOB_SIZE or 10)")
    rnd.add_argument("--strategy", help="strategy name (default $CALS_SAMPLER_STRATEGY or hybrid)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return serve_(args) if args.command == "serve" else round_(args)
    except CalsError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


def round_(args: argparse.Namespace) -> int:
    from sampler.config import load_config
    from sampler.service import Sampler

    result = Sampler(load_config(required=("REGISTRY",))).open_round(
        project_id=args.project, size=args.size, job_size=args.job_size, strategy=args.strategy)
    print(json.dumps({k: v for k, v in result.to_json().items() if k != "ranking"}, indent=2))
    return 0


def serve_(args: argparse.Namespace) -> int:
    from cals.http_service import serve
    from sampler.app import create_app

    app = create_app()  # fails here, before binding, on a missing or wrong setting
    _startup_checks(app)
    # no request timeout: POST /rank scores the pool within the request
    serve(lambda: app, bind=args.bind or app.config["SAMPLER_BIND"], threads=args.threads, timeout=0)
    return 0


def _startup_checks(app) -> None:
    """CVAT, the project's label, a writable data folder; raises CalsError naming what is wrong."""
    from cals.schema import load_schema
    from cals.startup_checks import startup
    from sampler.state import sampler_state

    sampler = sampler_state(app).sampler
    startup("sampler", sampler.cvat, load_schema(), project_id=app.config["PROJECT_ID"],
            function_name=app.config["FUNCTION_NAME"], writable={"CALS_DATA": sampler.data})


if __name__ == "__main__":
    sys.exit(main())
