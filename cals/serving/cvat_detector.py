"""One CVAT detector call, transport-free: request body in, (status, JSON body, headers) out.

The Nuclio handler only wraps this in a `context.Response`; the benchmark calls it
the same way. Status codes: 400 for a request that cannot be served as sent, 503
while no model can serve, 500 (with a message, no traceback) for anything else.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from cals.cvat.shapes import cvat_skeletons
from cals.serving.request import BadRequest, parse_request
from cals.serving.service import SkeletonService
from cals.serving.watcher import NoModel

log = logging.getLogger(__name__)


@dataclass
class Reply:
    status: int
    body: str  # JSON
    headers: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: decode, detect, pose, encode


def respond(service: SkeletonService, body: Any) -> Reply:
    """Serve one request; never raises."""
    try:
        return _serve(service, body)
    except BadRequest as e:
        return _error(400, str(e))
    except NoModel as e:
        return _error(503, str(e))
    except Exception as e:  # the function must answer, and keep serving the next request
        log.exception("request failed")
        return _error(500, f"internal error: {type(e).__name__}: {e}")


def _serve(service: SkeletonService, body: Any) -> Reply:
    t0 = time.perf_counter()
    request = parse_request(body)
    t1 = time.perf_counter()
    found = service.annotate(request.image)
    t2 = time.perf_counter()
    height, width = request.image.shape[:2]
    shapes = cvat_skeletons(found.predictor.schema, found.people, request.threshold, size=(width, height),
                            check_below=service.check_below, prior=found.prior_points,
                            confidences=found.box_scores)
    text = json.dumps(shapes)
    t3 = time.perf_counter()
    timings = {"decode": t1 - t0, **found.timings, "encode": t3 - t2}
    headers = {"X-CALS-Model-Version": str(found.predictor.version_id),
               "Server-Timing": ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in timings.items())}
    return Reply(200, text, headers, timings)


def _error(status: int, message: str) -> Reply:
    if status < 500:
        log.info("rejected request (%d): %s", status, message)
    return Reply(status, json.dumps({"error": message}))
