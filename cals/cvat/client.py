"""One way for the trainer, the sampler and the setup commands to reach CVAT: cvat-sdk's Client,
configured from the CALS_CVAT_* settings (`cals.settings.CvatEnv`: address, user and password or a
personal access token, poll period), with failures turned into messages that say what to fix.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlparse

from cals.cvat.version import check_supported, server_version
from cals.errors import CalsError
from cals.settings import CvatEnv

log = logging.getLogger(__name__)


class CvatConnectionError(CalsError):
    """CVAT is unreachable, or refused the credentials."""


@dataclass(frozen=True)
class CvatSettings:
    url: str
    user: str | None = None
    password: str | None = None
    token: str | None = None
    poll_seconds: float = 2.0

    @classmethod
    def from_env(cls, env: CvatEnv | None = None) -> "CvatSettings":
        """From CALS_CVAT_* (`env`, default the process environment's), checked."""
        env = CvatEnv.load() if env is None else env
        settings = cls(url=env.CVAT_URL or "", user=env.CVAT_USER, password=env.CVAT_PASSWORD, token=env.CVAT_TOKEN,
                       poll_seconds=env.CVAT_POLL_SECONDS)
        settings.check()
        return settings

    def check(self) -> None:
        """Fail with the name of the missing or malformed setting."""
        parsed = urlparse(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise CalsError(f"CALS_CVAT_URL must be CVAT's http(s) address, got {self.url!r}")
        if not self.token and not (self.user and self.password):
            raise CalsError("set CALS_CVAT_USER and CALS_CVAT_PASSWORD (or CALS_CVAT_TOKEN) for CVAT")


def connect(settings: CvatSettings):
    """A logged-in `cvat_sdk.Client` for a supported CVAT; the caller closes it (it is a context manager).

    cvat-sdk's own version check is off: it crashes on servers older than the SDK (see cvat/version.py),
    which names the release instead and refuses only those that cannot work.
    """
    from cvat_sdk import Client, Config
    from cvat_sdk.api_client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    url = settings.url.rstrip("/")
    client = Client(url, config=Config(status_check_period=settings.poll_seconds), check_server_version=False)
    try:
        log.info(check_supported(server_version(client, url), url))
        _login(client, settings)
    except ApiException as exc:
        client.close()
        if exc.status in (400, 401, 403):
            raise CvatConnectionError(f"CVAT at {settings.url} refused the credentials of "
                                      f"{settings.user or 'the access token'} (HTTP {exc.status})") from None
        raise CvatConnectionError(f"CVAT at {settings.url} answered HTTP {exc.status}: {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        client.close()
        raise CvatConnectionError(f"CVAT at {settings.url} is unreachable: {exc}") from None
    except BaseException:
        client.close()
        raise
    return client


def _login(client, settings: CvatSettings) -> None:
    if settings.token:
        from cvat_sdk.core.client import AccessTokenCredentials

        client.login(AccessTokenCredentials(settings.token))
        client.users.retrieve_current_user()
    else:
        client.login((settings.user, settings.password))
