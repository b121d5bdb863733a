"""CVAT's detector request (`{"image": base64, "threshold": float?}`) to an image and a threshold.

Every way a request can be wrong raises `BadRequest` with a message that names the
problem, so the function answers 400 and keeps serving.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cals.errors import CalsError
from cals.serving.image_decode import BadImage, decode_image


class BadRequest(CalsError):
    """The request cannot be served as sent (answered with 400)."""


@dataclass(frozen=True)
class DetectorRequest:
    image: np.ndarray  # (H, W, 3) BGR uint8
    threshold: float


def default_threshold() -> float:
    """$CALS_POINT_THRESHOLD: points scoring below it are sent as outside."""
    from cals.settings import ServingEnv

    return ServingEnv.load().POINT_THRESHOLD


def parse_request(body: Any) -> DetectorRequest:
    """Validate and decode a request body: a dict (Nuclio decodes JSON bodies), bytes or str."""
    payload = _json_object(body)
    if "image" not in payload:
        raise BadRequest("request has no 'image' field (base64-encoded image bytes)")
    threshold = _threshold(payload.get("threshold"))
    try:
        image = decode_image(_base64(payload["image"]))
    except BadImage as e:
        raise BadRequest(str(e)) from None
    return DetectorRequest(image=image, threshold=threshold)


EXPECTED = "a JSON object {\"image\": base64, \"threshold\": float}"


def _json_object(body: Any) -> dict:
    """The body as a dict. Nuclio hands over JSON already decoded, so a list, number or null
    arrives here as that value, not as text: the message names what was sent."""
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("request body is not JSON (not even UTF-8 text)") from None
    if isinstance(body, str):
        if not body.strip():
            raise BadRequest(f"request body is empty; expected {EXPECTED}")
        try:
            body = json.loads(body)
        except json.JSONDecodeError as e:
            raise BadRequest(f"request body is not JSON: {e.msg} at position {e.pos}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be {EXPECTED}, got {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    """`value`'s JSON type, as the sender wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} item(s)"
    return type(value).__name__


def _threshold(value: Any) -> float:
    if value is None:
        return default_threshold()
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest(f"'threshold' must be a number in [0, 1], got {value!r}")
    try:
        threshold = float(value)
    except ValueError:
        raise BadRequest(f"'threshold' must be a number in [0, 1], got {value!r}") from None
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise BadRequest(f"'threshold' must be a number in [0, 1], got {value!r}")
    return threshold


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"'image' must be a base64 string, got {type(value).__name__}")
    if value.startswith("data:") and "," in value:  # a data: URL from a browser
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f"'image' is not valid base64: {e}") from None
