"""`python -m tests.cvat_server --port N [--user U --password P]`: serve until Ctrl-C."""

from __future__ import annotations

import argparse
import logging

from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.cvat_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    app = create_app({"CVAT_USERS": {args.user: args.password}})
    app.run(host=args.host, port=args.port, threaded=True)


if __name__ == "__main__":
    main()
