"""Extract an archive that came over the network without trusting its member names.

A CVAT export is data from another service: a member named `../../x` or `/etc/x`, a symlink, or
a truncated archive must fail the whole extraction before anything is written outside `dest`.
"""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from cals.errors import CalsError


class UnsafeArchiveError(CalsError):
    """The archive is corrupt, or a member would land outside the destination."""


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Check every member first (zip-slip, links, CRC), then extract; returns the written files."""
    archive, dest = Path(archive), Path(dest)
    try:
        with zipfile.ZipFile(archive) as zf:
            members = [m for m in zf.infolist() if not m.is_dir()]
            for member in members:
                _check_member(member, archive)
            bad = zf.testzip()
            if bad is not None:
                raise UnsafeArchiveError(f"{archive.name}: member {bad!r} is corrupt (CRC mismatch)")
            written = []
            for member in members:
                target = dest.joinpath(*PurePosixPath(member.filename).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                written.append(target)
            return written
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise UnsafeArchiveError(f"{archive.name} is not a readable zip archive: {exc}") from None


def _check_member(member: zipfile.ZipInfo, archive: Path) -> None:
    name = member.filename
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]) or not path.parts:
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} points outside the archive (zip-slip)")
    mode = member.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} is a symbolic link")
