"""A CVAT-compatible HTTP server for tests: the part of CVAT's REST API that CALS uses.

Test infrastructure only; the product never imports it. See README.md in this folder.
"""

from __future__ import annotations

import logging
import threading

from werkzeug.serving import BaseWSGIServer, make_server

from .app import create_app

__all__ = ["CvatTestServer", "create_app"]


class CvatTestServer:
    """The app served from a background thread on 127.0.0.1 (port 0 picks a free one)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, user: str = "admin",
                 password: str = "admin", extra_users: dict[str, str] | None = None,
                 version: str | None = None) -> None:
        self.user, self.password = user, password
        config = {"CVAT_USERS": {user: password, **(extra_users or {})}}
        self.app = create_app({**config, "CVAT_VERSION": version} if version else config)
        self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True)
        self.host = host
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def deploy_function(self, spec_yaml: str) -> str:
        """Make a function (its function.yaml text) appear in CVAT's list, as nuctl deploy does."""
        from .lambda_functions import function_entry

        entry = function_entry(spec_yaml)
        store = self.app.config["CVAT_STORE"]
        with store.lock:
            store.functions[entry["id"]] = entry
        return entry["id"]

    def remove_function(self, function_id: str) -> None:
        store = self.app.config["CVAT_STORE"]
        with store.lock:
            store.functions.pop(function_id, None)

    def start(self) -> "CvatTestServer":
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "CvatTestServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
