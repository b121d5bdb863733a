"""The sampler service's HTTP API as its callers use it: the trainer (promotion notices) and
`cals round` (open the next round and wait for it).

Contract: JSON bodies, `Authorization: Bearer $CALS_API_TOKEN`; POST /notify/promoted
`{"version", "project_id"}`; POST /rounds `{"project_id", "size", "job_size", "strategy"}` answers 202
with a job; GET /jobs/<id> reports it (queued → running → done | failed).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from cals.errors import CalsError


class NotifyError(CalsError):
    """The sampler could not be reached, or refused the request."""


class SamplerApi:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """(HTTP status, parsed JSON); raises NotifyError with the sampler's own error message."""
        url = self.url + path
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            payload = _json(exc.read()) if exc.fp else None
            detail = payload.get("error", "") if isinstance(payload, dict) else ""
            raise NotifyError(f"sampler at {url} answered HTTP {exc.code}{': ' + detail if detail else ''}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise NotifyError(f"sampler at {url} is unreachable: {getattr(exc, 'reason', exc)}") from None

    def open_round(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue a round opening; returns the sampler's job."""
        return self.call("POST", "/rounds", body)[1]["job"]

    def wait(self, job_id: str, *, timeout: float, poll: float = 2.0) -> dict[str, Any]:
        """The finished job; raises when it failed or did not finish within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.call("GET", f"/jobs/{job_id}")[1]
            if job["state"] == "done":
                return job
            if job["state"] == "failed":
                raise CalsError(f"the sampler could not open the round: {job.get('error')}")
            if time.monotonic() > deadline:
                raise CalsError(f"sampler job {job_id} is still {job['state']} after {timeout:.0f} s; "
                                f"follow it at {self.url}/jobs/{job_id}")
            time.sleep(poll)


def notify_promoted(sampler_url: str, token: str, version: str, project_id: int | None, *,
                    timeout: float = 10.0) -> int:
    """POST the promotion; returns the HTTP status, raises NotifyError on any failure."""
    api = SamplerApi(sampler_url, token, timeout=timeout)
    return api.call("POST", "/notify/promoted", {"version": version, "project_id": project_id})[0]


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
