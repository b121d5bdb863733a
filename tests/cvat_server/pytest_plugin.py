"""Pytest fixtures: a CVAT to talk to (a real one from the environment, else the in-process
test server), a logged-in cvat-sdk client, and a receiver for webhook deliveries.

Use with `pytest_plugins = ["tests.cvat_server.pytest_plugin"]` in tests/conftest.py.
Set CVAT_URL, CVAT_USER and CVAT_PASSWORD to run against a real CVAT; set CVAT_WEBHOOK_HOST
to an address of this machine that the CVAT server can reach to run the webhook tests there.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from cvat_sdk import Client

from . import CvatTestServer


@dataclass(frozen=True)
class CvatEndpoint:
    """Where a CVAT answers and who logs in; `real` is True for a CVAT from the environment."""

    url: str
    user: str
    password: str
    real: bool
    server: CvatTestServer | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int | None:
        return urlsplit(self.url).port

    def settings(self, poll_seconds: float = 0.05) -> dict[str, Any]:
        """The CVAT part of a service's settings (cals.settings.CvatEnv keys), for create_app overrides."""
        return {"CVAT_URL": self.url, "CVAT_USER": self.user, "CVAT_PASSWORD": self.password,
                "CVAT_POLL_SECONDS": poll_seconds}

    def make_client(self) -> Client:
        """A logged-in client made the way the product makes one (any supported CVAT release);
        polls background requests quickly against the test server."""
        from cals.cvat.client import CvatSettings, connect

        return connect(CvatSettings(self.url, self.user, self.password, poll_seconds=1 if self.real else 0.05))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reaches a CVAT is marked `cvat`, so `pytest -m cvat` runs them against a real one."""
    for item in items:
        if "cvat_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cvat)


@pytest.fixture(scope="session")
def cvat_server() -> Iterator[CvatEndpoint]:
    """The CVAT under test: real when CVAT_URL/CVAT_USER/CVAT_PASSWORD are set."""
    env = [os.environ.get(k) for k in ("CVAT_URL", "CVAT_USER", "CVAT_PASSWORD")]
    if all(env):
        yield CvatEndpoint(env[0].rstrip("/"), env[1], env[2], real=True)
        return
    with CvatTestServer(extra_users={"annotator": "annotator-pass"}) as server:
        yield CvatEndpoint(server.url, server.user, server.password, real=False, server=server)


@pytest.fixture
def cvat_client(cvat_server: CvatEndpoint) -> Iterator[Client]:
    """A cvat-sdk Client logged in as the endpoint's user; closed after the test."""
    client = cvat_server.make_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def cvat_sdk_warnings() -> Iterator[list[logging.LogRecord]]:
    """Warnings cvat-sdk logs (e.g. version mismatch, outdated model) during the test."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("cvat_sdk")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@dataclass
class Delivery:
    """One POST the receiver got: headers, the raw body, and the body as JSON."""

    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A tiny HTTP server that records POSTs; `url` is what to register as a webhook target."""

    url: str
    deliveries: list[Delivery] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def record(self, delivery: Delivery) -> None:
        with self._arrived:
            self.deliveries.append(delivery)
            self._arrived.notify_all()

    def wait_for_job(self, state: str, timeout: float = 15.0) -> Delivery:
        """The first `update:job` delivery whose job is in `state`; CVAT also sends one for every
        annotation change (only `updated_date` in `before_update`), which this skips."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [d for d in self.deliveries if (d.json.get("job") or {}).get("state") == state]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no update:job delivery with state {state!r} among {len(self.deliveries)}")
                self._arrived.wait(left)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Delivery]:
        """Block until `count` deliveries arrived; fail the test after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"expected {count} webhook deliveries, got {len(self.deliveries)}")
                self._arrived.wait(left)
            return list(self.deliveries)


def _handler_for(receiver: WebhookReceiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.record(Delivery(dict(self.headers.items()), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def webhook_receiver(cvat_server: CvatEndpoint) -> Iterator[WebhookReceiver]:
    """Collects webhook POSTs. Against a real CVAT it needs CVAT_WEBHOOK_HOST, else skips."""
    public_host = "127.0.0.1"
    if cvat_server.real:
        public_host = os.environ.get("CVAT_WEBHOOK_HOST", "")
        if not public_host:
            pytest.skip("set CVAT_WEBHOOK_HOST to an address of this machine the CVAT can reach")
    bind = "127.0.0.1" if not cvat_server.real else "0.0.0.0"  # noqa: S104 - test receiver
    receiver = WebhookReceiver(url="")
    server = http.server.ThreadingHTTPServer((bind, 0), _handler_for(receiver))
    receiver.url = f"http://{public_host}:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
