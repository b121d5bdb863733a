"""The `metadata.annotations.spec` of function.yaml, derived from the keypoint schema.

CVAT maps a detector's results to task labels by name, so the spec must list the
schema's skeleton and point names exactly. Regenerate after editing the schema:

    python -m cals.serving.function_spec serverless/spine-pose/nuclio/function*.yaml
    python -m cals.serving.function_spec --check serverless/spine-pose/nuclio/function*.yaml
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from cals.errors import CalsError
from cals.schema import Schema, load_schema

_BLOCK = re.compile(r"^(?P<indent> *)spec: \|\n(?P<body>(?:(?P=indent)  .*\n|\n)*)", re.M)


def function_spec(schema: Schema) -> list[dict]:
    """The label list CVAT reads: one skeleton label with the schema's points."""
    return [schema.cvat_label()]


def with_spec(yaml_text: str, schema: Schema) -> str:
    """`yaml_text` with its `spec: |` block replaced by the schema's spec."""
    match = _BLOCK.search(yaml_text)
    if match is None:
        raise CalsError("function.yaml has no 'spec: |' block under metadata.annotations")
    pad = match["indent"] + "  "
    body = "".join(f"{pad}{line}\n" for line in json.dumps(function_spec(schema), indent=2).splitlines())
    return yaml_text[:match.start()] + f"{match['indent']}spec: |\n{body}" + yaml_text[match.end():]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cals.serving.function_spec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="function.yaml files to update")
    parser.add_argument("--check", action="store_true", help="only report files that differ (exit 1)")
    parser.add_argument("--schema", help="schema file (default: $CALS_SCHEMA or the bundled one)")
    args = parser.parse_args(argv)
    schema = load_schema(args.schema)
    stale = []
    for path in args.files:
        text = path.read_text()
        new = with_spec(text, schema)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    for path in stale:
        print(f"{path}: {'spec differs from the schema' if args.check else 'spec updated'}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
