"""What the `cals` commands share: the registry and schema options, JSON output."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cals.errors import CalsError

REGISTRY_HELP = "model registry folder (default: $CALS_REGISTRY)"


def emit(doc: Any, out: str | None = None) -> None:
    """`doc` as JSON: into `out` when given (its folder made), else on stdout."""
    text = json.dumps(doc, indent=2)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    else:
        print(text)


def registry_of(args):
    """The registry of --registry, else $CALS_REGISTRY; CalsError when neither is set."""
    from cals.registry import Registry

    from cals.settings import ModelEnv

    root = args.registry or ModelEnv.load().REGISTRY
    if not root:
        raise CalsError("no registry given: pass --registry DIR or set CALS_REGISTRY")
    return Registry(root)


def schema_of(args):
    """The keypoint schema of the global --schema, else $CALS_SCHEMA or the bundled one."""
    from cals.schema import load_schema

    return load_schema(args.schema)
