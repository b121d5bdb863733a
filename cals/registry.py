"""Model registry: a folder of immutable versions and one atomically switched `current`.

Layout under the root::

    versions/v0001-20261125T101500/   checkpoint.pth, config.py, schema.yaml, meta.json
    current.json                      {"id": ..., "promoted_at": ...}
    history.jsonl                     one promote/rollback event per line
    .lock                             flock'ed by writers around every change
    .tmp-*/                           versions being written (invisible to readers), each with its
                                      writer's flock'ed `.writer.lock` (see clean_staging)

Why it is safe with a reader (the Nuclio function) and a writer (the trainer) in different
processes: a version is written in a temp dir inside the root and appears only by `os.rename`, and
`current.json` and `meta.json` change only by `os.replace`; both are atomic on POSIX, so a reader sees
the old state or the new one, never a half-written file. Writers serialise on `fcntl.flock`, which is
what makes sequence numbers unique across processes. Versions are never modified in place except
their meta.json, so a reader holding a Version can keep loading its files.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

from cals.durable import disk_full, file_lock, fsync_dir, write_json_atomic, write_json_synced
from cals.errors import CalsError

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^v(\d{4,})-\d{8}T\d{6}$")
_RESERVED = ("id", "parent", "created_at", "files")
_META = "meta.json"
_WRITER_LOCK = ".writer.lock"


class RegistryError(CalsError):
    """A registry operation cannot be done (unknown version, nothing to roll back to, bad input)."""


@dataclass(frozen=True)
class Version:
    """One immutable registered model; `meta` is its parsed meta.json."""

    id: str
    path: Path
    meta: dict = field(compare=False, hash=False, repr=False)

    @property
    def checkpoint(self) -> Path:
        return self._file("checkpoint")

    @property
    def config(self) -> Path:
        return self._file("config")

    @property
    def schema(self) -> Path:
        return self._file("schema")

    @property
    def metrics(self) -> dict:
        return dict(self.meta.get("metrics") or {})

    @property
    def parent(self) -> str | None:
        return self.meta.get("parent")

    @property
    def created_at(self) -> str:
        return self.meta["created_at"]

    def _file(self, stem: str) -> Path:
        """The stored file whose name stem is `stem` (checkpoint.pth, config.py, ...)."""
        names = sorted(self.meta.get("files") or {})
        for name in names:
            if Path(name).stem == stem:
                return self.path / name
        raise RegistryError(f"version {self.id!r} has no {stem} file (files: {names})")


class Registry:
    """Versioned checkpoints with metrics and one `current`; see the module docstring for layout."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._owner = _foreign_owner(self.root)
        self._adopt(self.versions_dir)
        self._current_file = self.root / "current.json"
        self._history_file = self.root / "history.jsonl"

    def __repr__(self) -> str:
        return f"Registry({str(self.root)!r})"

    # ---- writing ----------------------------------------------------------
    def add(self, files: Mapping[str, str | os.PathLike], *, meta: dict,
            parent: str | None = None) -> Version:
        """Copy `files` ({stored name: source path}) into a new version; it is not promoted.

        The copy happens outside the lock (checkpoints are large); only id allocation, meta.json
        and the final rename hold it.
        """
        _check_new_version(files, meta)
        if parent is not None:
            self.get(parent)
        with self._disk_checked("the version was not registered; the current version stays"), self._stage() as tmp:
            hashes = {name: _copy_synced(Path(src), tmp / name) for name, src in files.items()}
            with self._locked():
                version_id = self._next_id()
                record = {**meta, "id": version_id, "parent": parent, "created_at": _now(),
                          "files": {name: {"sha256": h} for name, h in hashes.items()}}
                write_json_synced(tmp / _META, record)
                (tmp / _WRITER_LOCK).unlink()  # still held through its open file until the block ends
                fsync_dir(tmp)
                self._adopt(tmp, *tmp.iterdir())
                os.rename(tmp, self.versions_dir / version_id)
                fsync_dir(self.versions_dir)
        log.info("registered %s (parent %s, files %s)", version_id, parent, sorted(files))
        return self.get(version_id)

    def clean_staging(self) -> list[Path]:
        """Remove what killed writers left: `.tmp-*` version dirs and `.*.tmp` json files.

        Versions and current.json are never touched, nor a live writer's staging dir: each writer
        holds the flock of its own dir's `.writer.lock` until the dir is renamed into versions/, so
        a dir whose lock can be taken has no writer. The kernel releases a killed process's locks
        only once all its threads have exited (tens of ms for a training process), so a dir seen
        right after a kill may be kept: the trainer cleans again before and after every run.
        """
        with self._locked():  # json temp files are written under it, and staging dirs are created under it
            leftovers = [*self.root.glob(".*.tmp"), *self.versions_dir.glob("*/.*.tmp")]
            live = []
            for staged in self.root.glob(".tmp-*"):
                (live if _has_writer(staged) else leftovers).append(staged)
            for path in leftovers:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        if live:
            log.info("registry %s: kept %s, being written by a live process", self.root, [p.name for p in live])
        if leftovers:
            log.warning("registry %s: removed leftovers of interrupted writes: %s", self.root,
                        [p.name for p in leftovers])
        return leftovers

    def update_meta(self, version_id: str, **fields: Any) -> Version:
        """Merge `fields` into a version's meta.json (e.g. metrics after evaluation), atomically."""
        bad = sorted(set(fields) & set(_RESERVED))
        if bad:
            raise RegistryError(f"cannot change reserved meta fields {bad}")
        with self._locked():
            version = self.get(version_id)
            write_json_atomic(version.path / _META, {**version.meta, **fields}, owner=self._owner)
        return self.get(version_id)

    def promote(self, version_id: str, *, reason: str = "") -> Version:
        """Make `version_id` the current version (one atomic replace of current.json)."""
        with self._disk_checked(f"{version_id} was not promoted; the current version stays"), self._locked():
            version = self.get(version_id)
            previous = self._current_id()
            self._switch("promote", version.id, previous=previous, reason=reason)
        log.info("promoted %s (was %s)%s", version_id, previous, f": {reason}" if reason else "")
        return version

    def rollback(self) -> Version:
        """Make the version promoted before the current one current again; repeatable."""
        with self._locked():
            stack = self._promotion_stack()
            if len(stack) < 2:
                raise RegistryError("no previously promoted version to roll back to")
            version = self.get(stack[-2])
            self._switch("rollback", version.id, previous=stack[-1], reason="")
        log.info("rolled back from %s to %s", stack[-1], version.id)
        return version

    def _switch(self, event: str, version_id: str, *, previous: str | None, reason: str) -> None:
        """Log the event, then switch current.json; caller holds the lock."""
        at = _now()
        entry = {"event": event, "id": version_id, "previous": previous, "reason": reason, "at": at}
        with open(self._history_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._adopt(self._history_file)
        write_json_atomic(self._current_file, {"id": version_id, "promoted_at": at}, owner=self._owner)

    # ---- reading ----------------------------------------------------------
    def list(self) -> list[Version]:
        """All complete versions, oldest first (temp dirs of unfinished writes are not listed)."""
        return [self._load(name) for name in self._version_ids()]

    def get(self, version_id: str) -> Version:
        if not isinstance(version_id, str) or not _ID_RE.match(version_id) \
                or not (self.versions_dir / version_id / _META).is_file():
            known = self._version_ids()
            shown = known if len(known) <= 6 else known[:3] + ["..."] + known[-3:]
            raise RegistryError(f"unknown version {version_id!r} in {str(self.root)!r}; "
                                f"known: {', '.join(shown) or 'none'}")
        return self._load(version_id)

    def current(self) -> Version | None:
        """The promoted version, or None before the first promote."""
        version_id = self._current_id()
        return None if version_id is None else self.get(version_id)

    def previous(self, version_id: str) -> str | None:
        """The version promoted before `version_id`, else its parent: the committee's second member."""
        stack = [e["id"] for e in self.history() if e["event"] == "promote" and e["id"] != version_id]
        return stack[-1] if stack else self.get(version_id).parent

    def history(self) -> list[dict]:
        """Promote and rollback events, oldest first."""
        try:
            text = self._history_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # ---- internals --------------------------------------------------------
    def _load(self, version_id: str) -> Version:
        path = self.versions_dir / version_id
        return Version(id=version_id, path=path, meta=_read_json(path / _META))

    def _version_ids(self) -> list[str]:
        names = [p.name for p in self.versions_dir.iterdir() if _ID_RE.match(p.name)]
        return sorted(names, key=lambda n: int(_ID_RE.match(n).group(1)))

    def _next_id(self) -> str:
        ids = self._version_ids()
        seq = int(_ID_RE.match(ids[-1]).group(1)) + 1 if ids else 1
        return f"v{seq:04d}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S}"

    def _current_id(self) -> str | None:
        try:
            return _read_json(self._current_file)["id"]
        except FileNotFoundError:
            return None

    def _promotion_stack(self) -> list[str]:
        """Replay history: promote pushes, rollback pops; the top is the current version."""
        stack: list[str] = []
        for entry in self.history():
            if entry["event"] == "promote":
                stack.append(entry["id"])
            elif entry["event"] == "rollback" and stack:
                stack.pop()
        return stack

    def _adopt(self, *paths: Path) -> None:
        """Give files this process creates to the registry folder's owner (see _foreign_owner)."""
        if self._owner is not None:
            for path in paths:
                os.chown(path, *self._owner)

    @contextlib.contextmanager
    def _stage(self) -> Iterator[Path]:
        """A new staging dir whose `.writer.lock` this process holds for the block; removed on error.

        Created under `.lock`, so `clean_staging` (which holds it) never sees a dir before its lock;
        both belong to the folder's owner, so the trainer can test and remove what the function left."""
        with contextlib.ExitStack() as held:
            with self._locked():
                tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
                held.push(_removed_on_error(tmp))  # runs last, after the lock is let go
                held.enter_context(file_lock(tmp / _WRITER_LOCK, blocking=False))
                self._adopt(tmp, tmp / _WRITER_LOCK)
            yield tmp

    @contextlib.contextmanager
    def _disk_checked(self, what: str) -> Iterator[None]:
        """A full disk becomes a RegistryError naming it (the write itself is already undone)."""
        try:
            yield
        except OSError as exc:
            message = disk_full(exc, self.root, what)
            if message is None:
                raise
            raise RegistryError(message) from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with file_lock(self.root / ".lock"):
            self._adopt(self.root / ".lock")
            yield


def _check_new_version(files: Mapping[str, str | os.PathLike], meta: dict) -> None:
    """Validate before copying anything, so a bad call leaves no trace."""
    if not files:
        raise RegistryError("a version needs at least one file")
    for name, src in files.items():
        if not name or Path(name).name != name or name.startswith(".") or name == _META:
            raise RegistryError(f"bad stored file name {name!r}: use a plain name like 'checkpoint.pth'")
        if not Path(src).is_file():
            raise RegistryError(f"file for {name!r} not found: {str(src)!r}")
    bad = sorted(set(meta) & {"id", "created_at", "files"})
    if bad:
        raise RegistryError(f"meta must not set reserved fields {bad}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise RegistryError(f"meta is not JSON-serialisable: {e}") from None


def _removed_on_error(path: Path):
    """An ExitStack exit callback that removes `path` when the block raised (and lets it raise)."""
    def exit_(kind, value, traceback) -> bool:
        if kind is not None:
            shutil.rmtree(path, ignore_errors=True)
        return False
    return exit_


def _has_writer(staged: Path) -> bool:
    """Whether a live process holds `staged`'s writer lock (a dir without one, or a file, has none)."""
    if not staged.is_dir() or not (staged / _WRITER_LOCK).is_file():
        return False
    try:
        with file_lock(staged / _WRITER_LOCK, blocking=False):
            return False
    except BlockingIOError:
        return True
    except PermissionError:  # another user's writer lock, which this process cannot test: keep it
        return True


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _copy_synced(src: Path, dst: Path) -> str:
    """Copy `src` to `dst`, fsync it, and return its sha256."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest()


def _foreign_owner(root: Path) -> tuple[int, int] | None:
    """(uid, gid) of the registry folder when this process is root and the folder is not.

    The Nuclio function runs as root and may register the initial model; the trainer (uid 1000 in
    its container) must still be able to append to history.jsonl and take the lock afterwards.
    """
    if os.geteuid() != 0:
        return None
    st = root.stat()
    return None if st.st_uid == 0 else (st.st_uid, st.st_gid)
