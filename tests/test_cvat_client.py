import pytest

from cals.cvat.client import CvatConnectionError, CvatSettings, connect
from cals.cvat.version import CvatVersionError
from cals.errors import CalsError


def test_connects_with_credentials(cvat_server):
    client = connect(CvatSettings(cvat_server.url, cvat_server.user, cvat_server.password))
    with client:
        assert client.users.retrieve_current_user().username == cvat_server.user


def test_wrong_password_and_unreachable_server_are_named(cvat_server):
    with pytest.raises(CvatConnectionError, match="refused the credentials of"):
        connect(CvatSettings(cvat_server.url, cvat_server.user, "wrong-password"))
    with pytest.raises(CvatConnectionError, match="unreachable"):
        connect(CvatSettings("http://127.0.0.1:9", "a", "b"))


@pytest.mark.parametrize("env, message", [
    ({}, "CALS_CVAT_URL"),
    ({"CALS_CVAT_URL": "cvat:8080"}, "CALS_CVAT_URL"),
    ({"CALS_CVAT_URL": "http://cvat:8080", "CALS_CVAT_USER": "me"}, "CALS_CVAT_PASSWORD"),
])
def test_settings_name_what_is_missing(env, message, monkeypatch):
    for name in ("CALS_CVAT_URL", "CALS_CVAT_USER", "CALS_CVAT_PASSWORD", "CALS_CVAT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CalsError, match=message):
        CvatSettings.from_env()
    monkeypatch.setenv("CALS_CVAT_URL", "http://cvat:8080")
    monkeypatch.setenv("CALS_CVAT_TOKEN", "t")
    assert CvatSettings.from_env().token == "t"


def test_connect_names_the_server_version(cvat_server, caplog):
    with caplog.at_level("INFO", logger="cals.cvat.client"), \
            connect(CvatSettings(cvat_server.url, cvat_server.user, cvat_server.password)):
        pass
    assert any(r.getMessage().startswith("CVAT 2.") and cvat_server.url in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("version, works", [("2.23.1", True), ("2.80.0", True), ("2.22.0", False),
                                            ("1.7.0", False)])
def test_server_versions_supported_and_refused(version, works):
    """A server older than the SDK (2.23's /about lacks logo_url and subtitle) connects; one older than
    CALS supports is refused with the version and what to do, never a traceback."""
    from tests.cvat_server import CvatTestServer

    with CvatTestServer(version=version) as server:
        settings = CvatSettings(server.url, server.user, server.password, poll_seconds=0.05)
        if works:
            with connect(settings) as client:
                assert client.users.retrieve_current_user().username == server.user
            return
        with pytest.raises(CvatVersionError, match=rf"version {version}; CALS needs CVAT 2\.23 or newer"):
            connect(settings)


def test_an_address_that_is_not_cvat_is_named(tmp_path):
    """A web server that answers /api/server/about with something else is named as not CVAT."""
    import http.server
    import threading

    class NotCvat(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotCvat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(CalsError, match="did not say its version"):
            connect(CvatSettings(f"http://127.0.0.1:{server.server_port}", "a", "b"))
    finally:
        server.shutdown()
        server.server_close()
