"""Tell the sampler that a new model was promoted, so it re-scores the pool with it.

Contract: POST `$CALS_SAMPLER_URL/notify/promoted` with `{"version", "project_id"}` and
`Authorization: Bearer $CALS_API_TOKEN`. Callers treat a failure as a note, never as a failed run.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from cals.errors import CalsError


class NotifyError(CalsError):
    """The sampler could not be told about a promotion."""


def notify_promoted(sampler_url: str, token: str, version: str, project_id: int | None, *,
                    timeout: float = 10.0) -> int:
    """POST the promotion; returns the HTTP status, raises NotifyError on any failure."""
    url = sampler_url.rstrip("/") + "/notify/promoted"
    body = json.dumps({"version": version, "project_id": project_id}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"sampler at {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise NotifyError(f"sampler at {url} is unreachable: {getattr(exc, 'reason', exc)}") from None
