"""`cals`: thin command-line wrappers over the library, one module per command group. Errors print as one line.

    data.py      generate, import-coco, schema
    model.py     train, evaluate, predict, models
    simulate.py  simulate
    deploy.py    setup-project, check, pool-task, round
    report.py    report
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from cals.cli import data, deploy, model, report, simulate
from cals.errors import CalsError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cals", description="Active learning of new keypoints for CVAT.")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    p.add_argument("--schema", help="keypoint schema YAML (default: $CALS_SCHEMA or the bundled COCO-17 + spine)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (data, model, simulate, deploy, report):
        group.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("mmengine", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    func: Callable = args.func
    try:
        func(args)
    except CalsError as e:
        if args.debug:
            raise
        print(f"cals: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cals: interrupted", file=sys.stderr)
        return 130
    return 0
