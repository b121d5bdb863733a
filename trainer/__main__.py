"""`python -m trainer` (`make trainer`): check the configuration, then serve with gunicorn.

One worker process, because the training worker thread must be unique; a few request threads
so webhooks and status calls are answered while a run trains. The app is built in the worker
process (no preload), so the worker thread lives where requests are served.
"""
from __future__ import annotations

import logging
import sys

from cals.errors import CalsError
from cals.http_service import serve
from cals.startup_checks import startup
from trainer.config import load


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load()
        # wrong URL, credentials, label or a read-only volume fail now, not at the first run
        startup("trainer", settings.run.cvat, settings.run.schema, project_id=settings.project_id,
                function_name=settings.function_name,
                writable={"CALS_REGISTRY": settings.run.registry.root, "CALS_DATA": settings.run.data_root})
    except CalsError as exc:
        print(f"cals trainer: {exc}", file=sys.stderr)
        return 2
    from trainer import create_app

    serve(create_app, bind=settings.bind, threads=4, timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
