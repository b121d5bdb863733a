"""Keypoint schema as data: one YAML file defines points, edges, flips and sigmas.

COCO categories, mmpose dataset metainfo and CVAT's skeleton label spec are all
derived here, so adding or renaming a point never means editing Python.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from cals.errors import CalsError

DEFAULT_SCHEMA = Path(__file__).parent / "schemas" / "coco26_spine.yaml"
_PARTS = ("upper", "lower")


class SchemaError(CalsError):
    """The schema file is malformed; the message names the offending entry."""


@dataclass(frozen=True)
class Point:
    name: str
    group: str
    sigma: float
    part: str = "upper"
    xy: tuple[float, float] = (50.0, 50.0)
    flip: str | None = None


@dataclass(frozen=True)
class Schema:
    """A validated keypoint schema; build it with `load_schema` or `Schema.from_dict`."""

    label: str
    points: tuple[Point, ...]
    edges: tuple[tuple[str, str], ...]
    source: str = "<dict>"

    # ---- construction -------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, source: str = "<dict>") -> "Schema":
        if not isinstance(data, dict):
            raise SchemaError(f"{source}: the schema must be a mapping with 'points' and 'edges'")
        raw_points = data.get("points")
        if not isinstance(raw_points, list) or not raw_points:
            raise SchemaError(f"{source}: 'points' must be a non-empty list")
        points = tuple(_parse_point(p, i, source) for i, p in enumerate(raw_points))
        edges = tuple(_parse_edge(e, i, source) for i, e in enumerate(data.get("edges") or []))
        schema = cls(label=str(data.get("label", "person")), points=points, edges=edges, source=source)
        schema._validate()
        return schema

    def _validate(self) -> None:
        seen: set[str] = set()
        for p in self.points:
            if p.name in seen:
                raise SchemaError(f"{self.source}: duplicate point name {p.name!r}")
            seen.add(p.name)
        for a, b in self.edges:
            for end in (a, b):
                if end not in seen:
                    raise SchemaError(f"{self.source}: edge [{a}, {b}] refers to unknown point {end!r}")
            if a == b:
                raise SchemaError(f"{self.source}: edge [{a}, {b}] joins a point to itself")
        by_name = {p.name: p for p in self.points}
        for p in self.points:
            if p.flip is None:
                continue
            partner = by_name.get(p.flip)
            if partner is None:
                raise SchemaError(f"{self.source}: point {p.name!r} flips with unknown point {p.flip!r}")
            if partner.flip != p.name:
                raise SchemaError(
                    f"{self.source}: flip pair mismatch: {p.name!r} flips with {p.flip!r}, "
                    f"but {p.flip!r} flips with {partner.flip!r}")

    # ---- lookups --------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [p.name for p in self.points]

    @property
    def num_keypoints(self) -> int:
        return len(self.points)

    @property
    def sigmas(self) -> list[float]:
        return [p.sigma for p in self.points]

    @cached_property
    def groups(self) -> dict[str, list[int]]:
        """Group name → keypoint indices, in schema order."""
        out: dict[str, list[int]] = {}
        for i, p in enumerate(self.points):
            out.setdefault(p.group, []).append(i)
        return out

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise SchemaError(f"{self.source}: no point named {name!r}") from None

    @property
    def flip_indices(self) -> list[int]:
        return [self.index(p.flip) if p.flip else i for i, p in enumerate(self.points)]

    # ---- derived formats -------------------------------------------------
    def coco_category(self, category_id: int = 1) -> dict[str, Any]:
        """The COCO `categories` entry (1-based skeleton, as COCO writes it)."""
        idx = {n: i + 1 for i, n in enumerate(self.names)}
        return {
            "id": category_id,
            "name": self.label,
            "supercategory": self.label,
            "keypoints": self.names,
            "skeleton": [[idx[a], idx[b]] for a, b in self.edges],
        }

    def mmpose_metainfo(self) -> dict[str, Any]:
        """Dataset metainfo in the shape of mmpose's `configs/_base_/datasets/*.py`."""
        colors = {"body": [0, 255, 0], "spine": [255, 128, 0]}
        keypoint_info = {
            i: {"name": p.name, "id": i, "color": colors.get(p.group, [0, 128, 255]),
                "type": p.part, "swap": p.flip or ""}
            for i, p in enumerate(self.points)
        }
        group_of = {p.name: p.group for p in self.points}
        skeleton_info = {
            i: {"link": (a, b), "id": i, "color": colors.get(group_of[a], [0, 128, 255])}
            for i, (a, b) in enumerate(self.edges)
        }
        return {
            "dataset_name": f"cals_{self.label}_{self.num_keypoints}",
            "paper_info": {},
            "keypoint_info": keypoint_info,
            "skeleton_info": skeleton_info,
            "joint_weights": [1.0] * self.num_keypoints,
            "sigmas": self.sigmas,
        }

    def cvat_label(self) -> dict[str, Any]:
        """CVAT skeleton label: point sublabels, the svg CVAT's skeleton editor stores, and the
        points-to-check attributes (values set by cals/cvat/point_checks.py) on the skeleton and on every point."""
        return {
            "name": self.label,
            "type": "skeleton",
            "attributes": skeleton_attribute_specs(),
            "sublabels": [{"name": p.name, "type": "points", "attributes": point_attribute_specs()}
                          for p in self.points],
            "svg": self.cvat_svg(),
        }

    @property
    def spine(self) -> list[int]:
        """Indices of the spine group (the points CALS adds; empty in a schema without one)."""
        return self.groups.get("spine", [])

    def cvat_svg(self) -> str:
        ids = {p.name: i + 1 for i, p in enumerate(self.points)}
        xy = {p.name: p.xy for p in self.points}
        lines = [
            f'<line x1="{xy[a][0]}" y1="{xy[a][1]}" x2="{xy[b][0]}" y2="{xy[b][1]}" '
            f'stroke="black" data-type="edge" data-node-from="{ids[a]}" stroke-width="0.5" '
            f'data-node-to="{ids[b]}"></line>'
            for a, b in self.edges
        ]
        circles = [
            f'<circle r="1.5" stroke="black" fill="#b3b3b3" cx="{p.xy[0]}" cy="{p.xy[1]}" '
            f'stroke-width="0.1" data-type="element node" data-element-id="{i}" '
            f'data-node-id="{i}" data-label-name="{p.name}"></circle>'
            for i, p in ((ids[p.name], p) for p in self.points)
        ]
        return "".join(lines + circles)

    def to_dict(self) -> dict[str, Any]:
        """The YAML-able form (what a registry version stores next to its checkpoint)."""
        points = []
        for p in self.points:
            d = {"name": p.name, "group": p.group, "sigma": p.sigma, "part": p.part, "xy": list(p.xy)}
            if p.flip:
                d["flip"] = p.flip
            points.append(d)
        return {"label": self.label, "points": points, "edges": [list(e) for e in self.edges]}


def _parse_point(raw: Any, i: int, source: str) -> Point:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise SchemaError(f"{source}: point #{i + 1} needs a non-empty 'name'")
    name = raw["name"]
    try:
        sigma = float(raw.get("sigma", 0.05))
    except (TypeError, ValueError):
        raise SchemaError(f"{source}: point {name!r} has a non-numeric sigma {raw.get('sigma')!r}") from None
    if not sigma > 0:
        raise SchemaError(f"{source}: point {name!r} needs a positive sigma, got {sigma}")
    part = raw.get("part", "upper")
    if part not in _PARTS:
        raise SchemaError(f"{source}: point {name!r} has part {part!r}; expected one of {_PARTS}")
    xy = raw.get("xy", [50, 50])
    if not (isinstance(xy, (list, tuple)) and len(xy) == 2):
        raise SchemaError(f"{source}: point {name!r} needs 'xy' as [x, y] in 0..100")
    unknown = set(raw) - {"name", "group", "sigma", "part", "xy", "flip"}
    if unknown:
        raise SchemaError(f"{source}: point {name!r} has unknown keys {sorted(unknown)}")
    return Point(name=name, group=str(raw.get("group", "body")), sigma=sigma, part=part,
                 xy=(float(xy[0]), float(xy[1])), flip=raw.get("flip"))


def _parse_edge(raw: Any, i: int, source: str) -> tuple[str, str]:
    if not (isinstance(raw, (list, tuple)) and len(raw) == 2 and all(isinstance(x, str) for x in raw)):
        raise SchemaError(f"{source}: edge #{i + 1} must be a pair of point names, got {raw!r}")
    return raw[0], raw[1]


def load_schema(path: str | os.PathLike | None = None) -> Schema:
    """Load and validate a schema file; default: $CALS_SCHEMA, else the bundled COCO-17 + spine."""
    from cals.settings import ModelEnv

    path = Path(path or ModelEnv.load().SCHEMA or DEFAULT_SCHEMA)
    try:
        text = path.read_text()
    except OSError as e:
        raise SchemaError(f"cannot read schema {str(path)!r}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SchemaError(f"{path}: not valid YAML: {e}") from None
    return Schema.from_dict(data, source=str(path))


# Points to check (cals/cvat/point_checks.py sets their values): the attributes of the skeleton label
CHECK = "check"
CONFIDENCE = "confidence"
SPINE_CONFIDENCE = "spine_confidence"


def _checkbox(name: str) -> dict[str, Any]:
    return {"name": name, "input_type": "checkbox", "mutable": True, "values": ["false"],
            "default_value": "false"}


def _number(name: str) -> dict[str, Any]:
    # CVAT's number attribute: values are [min, max, step]
    return {"name": name, "input_type": "number", "mutable": True, "values": ["0", "100", "1"],
            "default_value": "100"}


def skeleton_attribute_specs() -> list[dict[str, Any]]:
    """The skeleton label's attributes, as CVAT's label API and a function's spec both take them."""
    return [_checkbox(CHECK), _number(SPINE_CONFIDENCE)]


def point_attribute_specs() -> list[dict[str, Any]]:
    """Every point sublabel's attributes (point attributes can only be made with the label)."""
    return [_checkbox(CHECK), _number(CONFIDENCE)]
