"""The pretrained files CALS starts from, pinned by sha256, and how they get into a models folder.

The Nuclio function's image holds two: the RTMPose-m checkpoint the initial model is built from
(trained on AIC+COCO, it outputs COCO's 17 body points) and the RTMDet-nano person detector. The
image build downloads each from its URL, or takes the local file `serverless/deploy.sh` staged
(the offline install), and checks it against its pin, so a re-uploaded, truncated or swapped file
stops the build with one line instead of serving other weights. `cals train --init URL` checks a
download of a pinned URL the same way (`cals.model.checkpoint.fetch`).

Standard library only: the build runs it before the Python stack is installed, as

    python -m cals.model.pretrained /opt/nuclio/models --all --pose URL_OR_FILE --detector URL_OR_FILE
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse
from urllib.request import Request, url2pathname, urlopen

from cals.errors import CalsError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Pretrained:
    """One pinned file: where it is downloaded from and the sha256 of the file CALS keeps."""

    name: str  # the CLI's --NAME option; CALS_<NAME>_URL / _FILE / _SHA256 when deploying
    what: str
    url: str
    sha256: str  # of `file`; for a zip download, of the member kept, not of the zip
    file: str  # path under the models folder (/opt/nuclio/models in the function's image)
    member: str | None = None  # the file kept from a zip or folder source


POSE = Pretrained(
    "pose", "RTMPose-m checkpoint (AIC+COCO, COCO's 17 points)",
    "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/"
    "rtmpose-m_simcc-aic-coco_pt-aic-coco_420e-256x192-63eb25f7_20230126.pth",
    # of the file served (54,536,690 bytes); the 63eb25f7 in its name is not a prefix of it
    "5e55be2a03f6e5dcd14d088afc4ae5afe94a4f9de93c22e5deb725ad0eee899d",
    "rtmpose-m_aic-coco_body17.pth")
DETECTOR = Pretrained(
    "detector", "RTMDet-nano person detector (end2end.onnx)",
    "https://download.openmmlab.com/mmpose/v1/projects/rtmposev1/onnx_sdk/"
    "rtmdet_nano_8xb32-100e_coco-obj365-person-05d8511e.zip",
    # the zip (mmdeploy's SDK folder) is unpinned: only its end2end.onnx is kept, and that is checked
    "b8585adb6d1352796f6e86337e09c3459b830645a7e7192d9381670bea2facbd",
    "rtmdet-nano-person/end2end.onnx", member="end2end.onnx")
PRETRAINED: tuple[Pretrained, ...] = (POSE, DETECTOR)


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks (checkpoints are tens of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str | Path, expected: str, what: str, hint: str = "") -> Path:
    """`path`, when its sha256 is `expected`; else a one-line CalsError naming `what` and both sums."""
    got = sha256_of(path)
    if got != expected.lower():
        raise CalsError(f"{what} has sha256 {got}, expected {expected}: a changed or corrupt file{hint}")
    return Path(path)


def pinned_sha256(url: str) -> str | None:
    """The pin of a URL whose download is the pinned file itself (not a zip around it)."""
    return next((p.sha256 for p in PRETRAINED if p.url == url and p.member is None), None)


def download(url: str, target: str | Path, sha256: str | None = None) -> Path:
    """Download `url` to `target` through a partial file, checked against `sha256` when given.

    `target` appears only complete and checked; a failed or mismatching download leaves nothing.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    logger.info("downloading %s", url)
    digest = hashlib.sha256()
    try:
        with urlopen(Request(url, headers={"User-Agent": "cals"}), timeout=60) as response, \
                open(part, "wb") as out:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except OSError as e:  # URLError, HTTPError and socket errors are OSErrors
        part.unlink(missing_ok=True)
        raise CalsError(f"cannot download {url}: {e}") from None
    if sha256 and digest.hexdigest() != sha256.lower():
        part.unlink()
        raise CalsError(f"download of {url} has sha256 {digest.hexdigest()}, expected {sha256}: "
                        "a changed or corrupt file; nothing kept")
    return part.replace(target)


def local_path(spec: str) -> Path | None:
    """The file a local path or file:// URL names; None for a remote URL."""
    parsed = urlparse(spec)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))
    if parsed.scheme in ("http", "https", "ftp"):
        return None
    return Path(spec).expanduser()


def install(item: Pretrained, models: str | Path, source: str | None, sha256: str | None = None) -> Path:
    """Put `item` at models/item.file from `source` (URL, file, zip or folder), its sha256 checked.

    A file already there (staged by deploy.sh) is checked and kept. `sha256` replaces the pin,
    for another file than the pinned one. Nothing unchecked is left at the target.
    """
    target = Path(models) / item.file
    expected = sha256 or item.sha256
    if target.is_file():
        return _checked(target, expected, item, str(target))
    if not source:
        raise CalsError(f"no {item.what} at {target} and no source: set CALS_{item.name.upper()}_URL "
                        f"or CALS_{item.name.upper()}_FILE")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        path = local_path(source)
        if path is None:
            path = download(source, Path(tmp) / (Path(urlparse(source).path).name or "download"))
        elif not path.exists():
            raise CalsError(f"{item.what}: {path} does not exist")
        member = _member(path, item, Path(tmp))
        shown = source if member == path else f"{source} ({item.member})"
        shutil.copyfile(_checked(member, expected, item, shown), target)
    return target


def _checked(path: Path, expected: str, item: Pretrained, shown: str) -> Path:
    return check_sha256(path, expected, f"{item.what} {shown}",
                        f" (to use another file, set CALS_{item.name.upper()}_SHA256 to its sha256)")


def _member(path: Path, item: Pretrained, tmp: Path) -> Path:
    """The file to keep from a download or local source: the file itself, or item.member inside a
    zip or a folder (searched at any depth, as mmdeploy's SDK zips nest it in a folder)."""
    if item.member is None or path.is_file() and not zipfile.is_zipfile(path):
        return path
    if path.is_dir():
        found = sorted(path.rglob(item.member))
    else:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if Path(n).name == item.member]
            found = [Path(archive.extract(names[0], tmp))] if names else []
    if not found:
        raise CalsError(f"{item.what}: {path} holds no {item.member}")
    return found[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cals.model.pretrained",
                                     description="Install the pinned pretrained files into a models folder.")
    parser.add_argument("models", type=Path, help="the models folder (/opt/nuclio/models in the image)")
    parser.add_argument("--all", action="store_true",
                        help="every pinned file must end up there (the image build); otherwise only those given")
    for item in PRETRAINED:
        parser.add_argument(f"--{item.name}", default="", metavar="URL_OR_FILE", help=f"source of the {item.what}")
        parser.add_argument(f"--{item.name}-sha256", default="", metavar="HEX",
                            help=f"expected sha256 instead of the pin {item.sha256}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # stderr: the error only
    try:
        for item in PRETRAINED:
            source = getattr(args, item.name)
            if source or args.all:
                path = install(item, args.models, source, getattr(args, f"{item.name}_sha256"))
                print(f"{item.what}: {path} (sha256 checked)")
    except CalsError as e:
        print(f"cals: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
