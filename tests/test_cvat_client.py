import pytest

from cals.cvat.client import CvatConnectionError, CvatSettings, connect
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
def test_settings_name_what_is_missing(env, message):
    with pytest.raises(CalsError, match=message):
        CvatSettings.from_env(env)
    assert CvatSettings.from_env({"CALS_CVAT_URL": "http://cvat:8080", "CALS_CVAT_TOKEN": "t"}).token == "t"
