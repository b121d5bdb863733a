"""Helpers for the trainer tests: CVAT tasks with ground truth, the trainer in a real HTTP server,
and a proxy that damages CVAT's exports on the wire."""
from __future__ import annotations

import http.client
import http.server
import io
import json
import sys
import threading
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from werkzeug.serving import make_server

from cals.cvat.coco_upload import import_coco
from cals.settings import PREFIX

COCO_KP = "COCO Keypoints 1.0"


def env_file_settings(values: dict[str, str], group) -> dict[str, str]:
    """The `cals.settings` group's fields that an env file's values set, as docker compose hands them
    to a service (CALS_X=v becomes the override X=v)."""
    return {name: values[PREFIX + name] for name in group.model_fields if values.get(PREFIX + name)}


def generated_frames(root: Path, count: int, seed: int) -> Path:
    """`count` generated people images with ground truth, named 000000.jpg, 000001.jpg, ..."""
    from cals.synth import generate_dataset

    generate_dataset(root, count, seed=seed, progress=False, workers=1)
    return root


def small_current_model(frames: Path, root: Path, iters: int) -> Path:
    """A registry whose current model trained `iters` iterations on `frames`: enough for tests that
    need a current model, not a good one (the session's `trained` fixture costs 300 iterations)."""
    from cals.model.train import train
    from cals.registry import Registry

    registry = Registry(root)
    registry.promote(train(frames, registry, iters=iters, progress=False).id, reason="test base")
    return registry.root


def ground_truth(dataset: Path, names: list[str]) -> dict[str, Any]:
    """The COCO document of `names` (frame file names) from a generated dataset."""
    coco = json.loads((dataset / "annotations.json").read_text())
    images = [im for im in coco["images"] if im["file_name"] in names]
    ids = {im["id"] for im in images}
    return {**coco, "images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in ids]}


def make_task(client, project_id: int, dataset: Path, names: list[str], tmp: Path,
              jobs: list[list[str]] | None = None):
    """A CVAT task of `names` (one job unless `jobs`), its annotations imported from the dataset."""
    task = client.tasks.create_from_data(
        {"name": f"round-{uuid.uuid4().hex[:6]}", "project_id": project_id},
        [dataset / "images" / n for n in names], data_params={"job_file_mapping": jobs or [names]})
    import_coco(task, ground_truth(dataset, names))
    return task


@contextmanager
def serve(app) -> Iterator[str]:
    """Run a WSGI app in a real threaded HTTP server; yields its base URL."""
    with running(make_server("127.0.0.1", 0, app, threaded=True)) as url:
        yield url


@contextmanager
def running(server) -> Iterator[str]:
    """Serve `server` (a socketserver with serve_forever) in a thread; yields its base URL."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def wait_for_run(client, run_id: int, *, states=("succeeded", "failed", "interrupted"), timeout: float = 120,
                 seen: list | None = None) -> dict:
    """Poll GET /runs/<id> (a Flask test client or a requests-like callable) until a final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.get(f"/runs/{run_id}").get_json()
        if seen is not None:
            seen.append(run)
        if run["state"] in states:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s: {run}")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


class Outage:
    """CVAT going away behind a `cvat_proxy`: while `down` is set every connection is dropped without
    an answer (as a restarting server does); `down_at` (a path fragment) sets it once, after the first
    request whose path holds it has been forwarded (e.g. "/dataset": during an export)."""

    def __init__(self, down_at: str | None = None) -> None:
        self.down_at = down_at
        self.down = threading.Event()

    def forwarded(self, path: str) -> None:
        if self.down_at and self.down_at in path:
            self.down_at = None
            self.down.set()


@contextmanager
def cvat_proxy(upstream: str, *, damaged_body: bytes | None = None, outage: Outage | None = None) -> Iterator[str]:
    """An HTTP proxy to `upstream` that answers every dataset download with `damaged_body` (if given)
    and drops connections during an `outage`.

    Downloads are `/dataset/download?rq_id=` (CVAT >= 2.24) or `/dataset?action=download` (2.23); CVAT
    names them by absolute `result_url`s, which are rewritten to lead back through the proxy."""
    target = urlsplit(upstream)
    origin = f"{target.scheme}://{target.netloc}".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if outage is not None and outage.down.is_set():
                self.close_connection = True  # no answer at all
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            if outage is not None:
                outage.forwarded(self.path)
            if damaged_body is not None and "/dataset" in self.path and "download" in self.path \
                    and response.status == 200:
                data = damaged_body
            elif "json" in (response.getheader("Content-Type") or ""):
                host, port = self.server.server_address[:2]
                data = data.replace(origin, f"http://{host}:{port}".encode())
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

        def log_message(self, *args: Any) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is no news
                super().handle_error(request, client_address)

    with running(Server(("127.0.0.1", 0), Handler)) as url:
        yield url


class HttpClient:
    """GET/POST JSON against a served app over real HTTP, shaped like Flask's test client."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.token = token

    def get(self, path: str) -> "HttpResponse":
        return self._send("GET", path, None)

    def post(self, path: str, json_body: Any) -> "HttpResponse":
        return self._send("POST", path, json.dumps(json_body).encode())

    def _send(self, method: str, path: str, body: bytes | None) -> "HttpResponse":
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return HttpResponse(response.status, response.read(), response.headers.get_content_type())
        except urllib.error.HTTPError as err:
            return HttpResponse(err.code, err.read(), err.headers.get_content_type())


class HttpResponse:
    def __init__(self, status_code: int, body: bytes, mimetype: str = "application/json") -> None:
        self.status_code = status_code
        self.body = body
        self.mimetype = mimetype

    def get_data(self, as_text: bool = False) -> bytes | str:
        return self.body.decode() if as_text else self.body

    def get_json(self) -> Any:
        return json.loads(self.body)
