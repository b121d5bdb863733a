"""The HTTP shell of the trainer and the sampler, served by the production server (gunicorn)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

APP = """
from flask import Flask
from cals.http_service import ApiError, add_health, install_errors, require_token, serve

def make():
    app = Flask("shell-test")
    app.config["API_TOKEN"] = "secret-token"
    install_errors(app, "shell-test")
    add_health(app, lambda: {"answer": 42}, aliases=("/healthz",))

    @app.post("/guarded")
    @require_token
    def guarded():
        raise ApiError(422, "not like that")

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")
    return app

serve(make, bind="127.0.0.1:{port}", threads=2)
"""


def call(url: str, method: str = "GET", token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def served():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", APP.replace("{port}", str(port))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                call(url + "/health")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def test_health_answers_on_both_names(served):
    assert call(served + "/health") == (200, {"status": "ok", "answer": 42})
    assert call(served + "/healthz") == (200, {"status": "ok", "answer": 42})


def test_token_and_errors_are_json_with_their_status(served):
    assert call(served + "/guarded", "POST") == (401, {"error": "missing or wrong bearer token "
                                                                "(Authorization: Bearer $CALS_API_TOKEN)"})
    assert call(served + "/guarded", "POST", token="wrong")[0] == 401
    assert call(served + "/guarded", "POST", token="secret-token") == (422, {"error": "not like that"})
    assert call(served + "/nowhere") == (404, {"error": "no endpoint /nowhere"})
    assert call(served + "/health", "POST") == (405, {"error": "POST is not allowed on /health"})
    status, body = call(served + "/boom")
    assert status == 500 and body == {"error": "internal error (RuntimeError); see the shell-test log"}
