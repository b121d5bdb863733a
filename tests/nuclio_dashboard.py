"""A stand-in for Nuclio's dashboard, as far as CVAT's lambda manager talks to it.

Test infrastructure only; the product never imports it. CVAT (settings `CVAT_NUCLIO_HOST`,
`CVAT_NUCLIO_PORT`, `CVAT_NUCLIO_INVOKE_METHOD=dashboard`) lists functions with
`GET /api/functions`, reads one with `GET /api/functions/<name>` and invokes one with
`POST /api/function_invocations` (header `x-nuclio-function-name`, the JSON payload as body);
`make deploy-function` reads its release with `GET /api/versions`.
This server answers those from a real `function.yaml` and runs the real handler in-process
through `nuclio_sdk.test.Platform`, so CVAT's own auto-annotation path can be tested without
Docker or Nuclio. Each function also gets its own HTTP trigger port (its `status.httpPort`),
which answers `POST /` as a deployed function does, for CVAT's `direct` invoke method.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import nuclio_sdk
import nuclio_sdk.test
import yaml
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

__all__ = ["Invocation", "NuclioDashboard", "NuclioFunction", "http_event"]

PROJECT_LABEL = "nuclio.io/project-name"


@dataclass
class Invocation:
    """One call of a function: what came in and what the handler answered (kept for asserts)."""

    body: Any
    status: int
    answer: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def json(self) -> Any:
        return json.loads(self.answer)


def _load_handler(function_dir: Path, handler: str) -> Callable:
    """`module:function` from the function folder, loaded under a unique module name.

    nuclio_sdk's test platform finds `init_context` through `sys.modules[handler.__module__]`,
    so the module must be registered there.
    """
    module_name, _, func_name = handler.partition(":")
    unique = f"nuclio_fn_{abs(hash((str(function_dir.resolve()), module_name)))}"
    if unique not in sys.modules:
        spec = importlib.util.spec_from_file_location(unique, function_dir / f"{module_name}.py")
        if spec is None or spec.loader is None:
            raise FileNotFoundError(f"no {module_name}.py in {function_dir}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[unique] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[unique]
            raise
    return getattr(sys.modules[unique], func_name or "handler")


@dataclass
class NuclioFunction:
    """A function "deployed" from its function.yaml; calls are serialized (one worker, as in the yaml)."""

    config: dict[str, Any]
    handler: Callable
    project: str = "cvat"
    invocations: list[Invocation] = field(default_factory=list)
    platform: nuclio_sdk.test.Platform = field(default_factory=nuclio_sdk.test.Platform)
    http_port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_yaml(cls, path: Path, *, project: str = "cvat") -> "NuclioFunction":
        """Parse function.yaml and load the handler named by `spec.handler` from the same folder."""
        config = yaml.safe_load(path.read_text())
        handler = _load_handler(path.parent, config.get("spec", {}).get("handler", "main:handler"))
        return cls(config=config, handler=handler, project=project)

    @property
    def name(self) -> str:
        return self.config["metadata"]["name"]

    def describe(self) -> dict[str, Any]:
        """The function object as the dashboard returns it: metadata, spec, and a ready status."""
        metadata = dict(self.config.get("metadata", {}))
        metadata["labels"] = {**metadata.get("labels", {}), PROJECT_LABEL: self.project}
        return {"metadata": metadata, "spec": self.config.get("spec", {}),
                "status": {"state": "ready", "httpPort": self.http_port}}

    def invoke(self, body: bytes, headers: dict[str, str], *, method: str = "POST",
               path: str = "/") -> Invocation:
        """Run the handler on one HTTP request, as Nuclio's python runtime hands it over."""
        event = http_event(body, headers, method, path)
        decoded = event.body
        with self._lock:
            try:
                reply = self.platform.call_handler(self.handler, event)
                answer = _as_response(reply)
            except Exception as exc:  # Nuclio answers 500 when the handler raises
                logging.getLogger(__name__).exception("handler of %s raised", self.name)
                answer = (500, f"handler raised {type(exc).__name__}: {exc}".encode(), "text/plain", {})
            record = Invocation(decoded, *answer)
            self.invocations.append(record)
        return record


def http_event(body: bytes, headers: dict[str, str], method: str, path: str) -> nuclio_sdk.Event:
    """The event Nuclio's HTTP trigger makes of a request: a JSON content type arrives decoded."""
    content_type = headers.get("Content-Type", "")
    decoded: Any = body
    if content_type.split(";")[0].strip() == "application/json":
        try:
            decoded = json.loads(body)
        except ValueError:
            decoded = body
    return nuclio_sdk.Event(body=decoded, content_type=content_type, headers=headers, method=method, path=path,
                            trigger=nuclio_sdk.TriggerInfo(kind="http", name="myHttpTrigger"))


def _as_response(reply: Any) -> tuple[int, bytes, str, dict[str, str]]:
    """(status, body, content type, headers) of whatever a Nuclio handler may return."""
    headers: dict[str, str] = {}
    if isinstance(reply, nuclio_sdk.Response):
        body = reply.body
        content_type = reply.content_type or "text/plain"
        status = int(reply.status_code or 200)
        headers = {str(k): str(v) for k, v in (reply.headers or {}).items()}
    else:
        body, content_type, status = reply, "text/plain", 200
    if isinstance(body, (dict, list)):
        return status, json.dumps(body).encode(), "application/json", headers
    if isinstance(body, str):
        return status, body.encode(), content_type, headers
    return status, bytes(body or b""), content_type, headers


class NuclioDashboard:
    """The dashboard API CVAT uses, served from a background thread (port 0 picks a free one)."""

    def __init__(self, functions: list[NuclioFunction], *, host: str = "127.0.0.1", port: int = 0,
                 version: str = "1.13.0") -> None:
        self.functions = {f.name: f for f in functions}
        self.host = host
        self.version = version  # the release label; CVAT v2.23.1 and v2.24 pin the 1.13.0 dashboard
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers) seen
        self._server: BaseWSGIServer = make_server(host, port, self._app, threaded=True)
        self.port = self._server.server_port
        self._servers = [self._server]
        for function in functions:  # each function's own HTTP trigger
            trigger = make_server(host, 0, self._trigger_app(function), threaded=True)
            function.http_port = trigger.server_port
            self._servers.append(trigger)
        self._threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in self._servers]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _visible(self, request: Request) -> dict[str, NuclioFunction]:
        """Functions of the project CVAT asks for (header `x-nuclio-project-name`), else all."""
        project = request.headers.get("x-nuclio-project-name")
        return {n: f for n, f in self.functions.items() if project is None or f.project == project}

    @Request.application
    def _app(self, request: Request) -> Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        path = request.path.rstrip("/")
        functions = self._visible(request)
        if request.method == "GET" and path == "/api/versions":  # nuclio pkg/dashboard/resource/version.go
            return _json({"dashboard": {"label": self.version, "gitCommit": "0" * 40, "os": "linux",
                                        "arch": "amd64"}})
        if request.method == "GET" and path == "/api/functions":
            return _json({n: f.describe() for n, f in functions.items()})
        if request.method == "GET" and path.startswith("/api/functions/"):
            function = functions.get(path.rsplit("/", 1)[1])
            if function is None:
                return _json({"error": "Function not found"}, 404)
            return _json(function.describe())
        if request.method == "POST" and path == "/api/function_invocations":
            name = request.headers.get("x-nuclio-function-name", "")
            function = functions.get(name)
            if function is None:
                return _json({"error": f"Function {name!r} not found"}, 404)
            result = function.invoke(request.get_data(), dict(request.headers),
                                     path=request.headers.get("x-nuclio-path", "/"))
            return _reply(result)
        return _json({"error": f"{request.method} {request.path} is not served here"}, 404)

    @staticmethod
    def _trigger_app(function: NuclioFunction) -> Callable:
        @Request.application
        def app(request: Request) -> Response:
            result = function.invoke(request.get_data(), dict(request.headers), method=request.method,
                                     path=request.path)
            return _reply(result)

        return app

    def start(self) -> "NuclioDashboard":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        for server, thread in zip(self._servers, self._threads):
            if thread.is_alive():
                server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    def __enter__(self) -> "NuclioDashboard":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reply(result: Invocation) -> Response:
    return Response(result.answer, status=result.status, content_type=result.content_type,
                    headers=result.headers)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, content_type="application/json")
