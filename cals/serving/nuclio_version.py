"""nuctl must be the Nuclio release of the dashboard it deploys to: `make deploy-function` checks it first.

A function built by one nuctl release and run by another release's dashboard can deploy and then fail
in ways that point elsewhere (CVAT's docs ask for the matching nuctl for that reason). The dashboard
reports its release at `GET /api/versions` as `{"dashboard": {"label": "1.13.0", "gitCommit": ...}}`
(nuclio pkg/dashboard/resource/version.go); `nuctl version` prints
`Client version:` and `"Label: 1.13.0, Git commit: ..., OS: linux, Arch: amd64, Go version: ..."`
(pkg/nuctl/command/version.go). Major and minor must be equal; patch releases may differ.

Standard library only: serverless/deploy.sh runs it with whatever python3 the host has.

    python -m cals.serving.nuclio_version --nuctl nuctl --dashboard http://localhost:8070
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

from cals.errors import CalsError

RELEASES = "https://github.com/nuclio/nuclio/releases"
RELEASE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
NUCTL_LABEL = re.compile(r"Label:\s*(\S+?),")


class NuclioVersionError(CalsError):
    """nuctl and the dashboard differ, or one of them could not say its version."""


def nuctl_version(nuctl: str, *, timeout: float = 30) -> str:
    """The release label of `nuctl version`, e.g. "1.13.0"."""
    try:
        done = subprocess.run([nuctl, "version"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NuclioVersionError(f"could not run {nuctl!r} version: {exc}") from None
    found = NUCTL_LABEL.search(done.stdout)
    if done.returncode != 0 or found is None:
        said = (done.stdout + done.stderr).strip().replace("\n", " ")[:200]
        raise NuclioVersionError(f"could not read the release from `{nuctl} version` (exit {done.returncode}): "
                                 f"{said!r}")
    return found.group(1)


def dashboard_version(url: str, *, timeout: float = 10) -> str:
    """The release label the dashboard at `url` reports at /api/versions."""
    endpoint = url.rstrip("/") + "/api/versions"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as response:
            return str(json.load(response)["dashboard"]["label"])
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NuclioVersionError(f"cannot reach Nuclio's dashboard at {endpoint} ({reason}): set "
                                 "CALS_NUCLIO_DASHBOARD_URL to the Nuclio dashboard CVAT uses (docs/deployment.md, the "
                                 "table of CVAT and Nuclio releases, says where it is)") from None
    except (ValueError, KeyError, TypeError):
        raise NuclioVersionError(f"{endpoint} did not answer with a Nuclio dashboard's versions: is "
                                 "CALS_NUCLIO_DASHBOARD_URL the Nuclio dashboard?") from None


def release(label: str, what: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a release label; a development label ("latest") cannot be compared."""
    found = RELEASE.fullmatch(label.strip())
    if found is None:
        raise NuclioVersionError(f"{what} reports version {label!r}, not a release: use a released Nuclio "
                                 f"({RELEASES})")
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


def check(nuctl_label: str, dashboard_label: str, url: str) -> None:
    """Raise unless nuctl's and the dashboard's releases have the same major.minor."""
    nuctl_release = release(nuctl_label, "nuctl")
    dashboard_release = release(dashboard_label, f"the dashboard at {url}")
    if nuctl_release[:2] != dashboard_release[:2]:
        wanted = ".".join(map(str, dashboard_release))
        raise NuclioVersionError(f"nuctl is Nuclio {nuctl_label} but the dashboard at {url} is {dashboard_label}: "
                                 f"install nuctl {wanted} from {RELEASES}/tag/{wanted} and point NUCTL at it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cals.serving.nuclio_version", description=__doc__.split("\n")[0])
    parser.add_argument("--nuctl", default="nuctl", help="nuctl binary (default: nuctl on PATH)")
    parser.add_argument("--dashboard", required=True, help="Nuclio dashboard URL, e.g. http://localhost:8070")
    args = parser.parse_args(argv)
    try:
        nuctl_label = nuctl_version(args.nuctl)
        dashboard_label = dashboard_version(args.dashboard)
        check(nuctl_label, dashboard_label, args.dashboard)
    except NuclioVersionError as exc:
        print(f"deploy.sh: error: {exc}", file=sys.stderr)
        return 1
    print(f"nuctl {nuctl_label} matches Nuclio's dashboard {dashboard_label} ({args.dashboard})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
