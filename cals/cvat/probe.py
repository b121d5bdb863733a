"""Is CVAT reachable now? What the trainer's and the sampler's /health say, so an operator sees a CVAT
outage in the services' own status instead of in failed runs and rounds.

One unauthenticated `GET /api/server/about` through cvat-sdk, with a short timeout, at most once per
`ttl` seconds (a health check every few seconds must not load CVAT); the services keep serving
either way and use CVAT again as soon as it answers.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from cals.cvat.client import CvatSettings

TTL_SECONDS = 30.0
TIMEOUT_SECONDS = 3.0  # below the compose health check's 4 s


class CvatProbe:
    def __init__(self, settings: CvatSettings, *, ttl: float = TTL_SECONDS, timeout: float = TIMEOUT_SECONDS) -> None:
        self.settings, self.ttl, self.timeout = settings, ttl, timeout
        self._lock = threading.Lock()
        self._last: dict[str, Any] | None = None
        self._at = float("-inf")

    def report(self) -> dict[str, Any]:
        """{"reachable", "checked_at", "error"}; measured again when older than `ttl`."""
        with self._lock:
            if time.monotonic() - self._at >= self.ttl:
                self._last, self._at = self._probe(), time.monotonic()
            return dict(self._last or {})

    def _probe(self) -> dict[str, Any]:
        from cvat_sdk import Client, Config

        checked = datetime.now(timezone.utc).isoformat(timespec="seconds")
        try:
            with Client(self.settings.url, config=Config(), check_server_version=False) as client:
                client.api_client.server_api.retrieve_about(_parse_response=False,
                                                            _request_timeout=self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure is the answer: what is wrong, in one line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return {"reachable": False, "checked_at": checked,
                    "error": f"CVAT at {self.settings.url} does not answer: {reason[:300]}"}
        return {"reachable": True, "checked_at": checked, "error": None}


def health_status(cvat: dict[str, Any]) -> str:
    """"ok", or "degraded" while CVAT does not answer (HTTP 200 still: restarting the service would
    not bring CVAT back)."""
    return "ok" if cvat.get("reachable", True) else "degraded"
