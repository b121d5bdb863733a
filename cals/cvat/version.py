"""Which CVAT servers CALS works with, and the server's version read without cvat-sdk's strict model.

cvat-sdk validates `/api/server/about` against its own release's schema, so an older server (2.23
lacks `logo_url` and `subtitle`) makes the SDK's version check crash. CALS reads the raw JSON
instead, names the version at start, and refuses only servers that cannot work.

Supported: CVAT 2.23 (the oldest release tested, `../shared/realcvat`) up to the release of the
pinned cvat-sdk (2.80). Older servers lack the background-request API (`/api/requests`) that the SDK's
export and import use; newer ones work with a warning until the SDK pin is raised.
"""
from __future__ import annotations

import json
import logging

from packaging.version import InvalidVersion, Version

from cals.errors import CalsError

log = logging.getLogger(__name__)

OLDEST = Version("2.23.0")


class CvatVersionError(CalsError):
    """The server's CVAT release cannot work with CALS."""


def newest_tested() -> Version:
    """The release of the installed cvat-sdk: its API models describe that server."""
    from cvat_sdk.version import VERSION

    return Version(VERSION)


def server_version(client, url: str) -> Version:
    """The CVAT release behind `client`, from `/api/server/about` parsed leniently."""
    response = client.api_client.server_api.retrieve_about(_parse_response=False)[1]
    text = response.data.decode() if isinstance(response.data, bytes) else response.data
    try:
        return Version(json.loads(text)["version"])
    except (ValueError, KeyError, TypeError, InvalidVersion):
        raise CvatVersionError(f"CVAT at {url} did not say its version in /api/server/about "
                               f"(answer: {str(text)[:120]!r}); is this address CVAT's?") from None


def check_supported(version: Version, url: str) -> str:
    """One line naming the server's release; raises for one that cannot work."""
    newest = newest_tested()
    if version < OLDEST:
        raise CvatVersionError(f"CVAT at {url} is version {version}; CALS needs CVAT {OLDEST.major}.{OLDEST.minor} "
                               f"or newer (tested {OLDEST.major}.{OLDEST.minor} to {newest.major}.{newest.minor}): "
                               "upgrade CVAT")
    line = f"CVAT {version} at {url}"
    if (version.major, version.minor) > (newest.major, newest.minor + 1):
        line += (f" is newer than the newest release CALS is tested with ({newest.major}.{newest.minor}); "
                 "if a call fails, update CALS")
        log.warning(line)
    return line
