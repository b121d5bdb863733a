"""List endpoints: CVAT's simple filters, JSON Logic `filter`, `sort`, and pagination.

Filtering and sorting act on the serialized items, so a field filters exactly as it reads;
a user field (owner, assignee) compares by username, as CVAT's filters do.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable
from typing import Any

from flask import jsonify, request

from . import serialize
from .errors import bad_request

COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
           ">": operator.gt, ">=": operator.ge}


def field_value(item: dict[str, Any], name: str) -> Any:
    value = item.get(name)
    return value.get("username") if isinstance(value, dict) and "username" in value else value


def _evaluate(expr: Any, item: dict[str, Any]) -> Any:
    if not isinstance(expr, dict):
        return expr
    (op, args), = expr.items()
    args = args if isinstance(args, list) else [args]
    if op == "var":
        return field_value(item, args[0])
    values = [_evaluate(a, item) for a in args]
    if op == "and":
        return all(values)
    if op == "or":
        return any(values)
    if op == "!":
        return not values[0]
    if op == "in":
        return values[0] in (values[1] or [])
    if op in COMPARE:
        try:
            return all(COMPARE[op](a, b) for a, b in zip(values, values[1:]))
        except TypeError:
            return False
    raise bad_request(f"filter: unsupported operation {op!r}", "filter")


def _json_filter(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    raw = request.args.get("filter")
    if not raw:
        return items
    try:
        expr = json.loads(raw)
    except json.JSONDecodeError:
        raise bad_request("filter: invalid JSON", "filter")
    if not isinstance(expr, dict) or len(expr) != 1:
        raise bad_request("filter: expected one JSON Logic expression", "filter")
    return [item for item in items if _evaluate(expr, item)]


def _sorted(items: list[dict[str, Any]], default: str) -> list[dict[str, Any]]:
    for key in reversed(request.args.get("sort", default).split(",")):
        name = key.lstrip("-")
        items = sorted(items, key=lambda i: (field_value(i, name) is None, field_value(i, name) or 0),
                       reverse=key.startswith("-"))
    return items


def respond(items: Iterable[dict[str, Any]], simple_filters: Iterable[str], *, default_sort: str = "-id"):
    """Answer a list request: `?field=value` filters, JSON Logic, sort, then one page."""
    items = list(items)
    for name in simple_filters:
        if (wanted := request.args.get(name)) is not None:
            items = [i for i in items if str(field_value(i, name)) == wanted]
    items = _sorted(_json_filter(items), default_sort)
    return jsonify(serialize.paginated(items))
