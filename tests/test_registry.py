"""Model registry: versions, promote/rollback, and safety with concurrent processes."""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

from cals.registry import Registry, RegistryError, Version

CKPT_BYTES = 300_000


def _files(tmp: Path, seed: int, size: int = 1000) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    ckpt = tmp / f"ckpt{seed}.pth"
    ckpt.write_bytes(os.urandom(size))
    (tmp / "config.py").write_text(f"seed = {seed}\n")
    (tmp / "schema.yaml").write_text("label: person\n")
    return {"checkpoint.pth": ckpt, "config.py": tmp / "config.py", "schema.yaml": tmp / "schema.yaml"}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_add_list_get_and_meta_survive(tmp_path):
    reg = Registry(tmp_path / "reg")
    files = _files(tmp_path / "src", 1)
    v1 = reg.add(files, meta={"metrics": {"AP": 0.5}, "train_data": {"images": 10}, "config_name": "x"})
    v2 = reg.add(_files(tmp_path / "src2", 2), meta={}, parent=v1.id)
    assert [v.id for v in reg.list()] == [v1.id, v2.id]
    assert v1.id.startswith("v0001-") and v2.id.startswith("v0002-")
    again = Registry(tmp_path / "reg").get(v1.id)  # a fresh instance reads it back from disk
    assert again.metrics == {"AP": 0.5}
    assert again.meta["train_data"] == {"images": 10} and again.meta["config_name"] == "x"
    assert again.parent is None and reg.get(v2.id).parent == v1.id
    assert again.checkpoint.read_bytes() == files["checkpoint.pth"].read_bytes()
    assert again.config.name == "config.py" and again.schema.name == "schema.yaml"
    assert again.meta["files"]["checkpoint.pth"]["sha256"] == _sha(files["checkpoint.pth"])
    assert again.created_at.endswith("+00:00")
    assert reg.current() is None


def test_update_meta_is_persisted(tmp_path):
    reg = Registry(tmp_path)
    v = reg.add(_files(tmp_path / "src", 1), meta={"config_name": "c"})
    updated = reg.update_meta(v.id, metrics={"AP": 0.9})
    assert updated.metrics == {"AP": 0.9} and updated.meta["config_name"] == "c"
    assert reg.get(v.id).metrics == {"AP": 0.9}
    with pytest.raises(RegistryError, match="reserved"):
        reg.update_meta(v.id, id="v9999-20260101T000000")


def test_promote_and_rollback(tmp_path):
    reg = Registry(tmp_path)
    a, b, c = (reg.add(_files(tmp_path / f"s{i}", i), meta={}) for i in range(3))
    with pytest.raises(RegistryError, match="no previously promoted"):
        reg.rollback()
    reg.promote(a.id)
    reg.promote(b.id, reason="AP 0.7 > 0.6")
    reg.promote(c.id)
    assert reg.current() == c
    assert reg.rollback() == b and reg.current() == b
    assert reg.rollback() == a and reg.current() == a
    with pytest.raises(RegistryError, match="no previously promoted"):
        reg.rollback()
    events = [(e["event"], e["id"]) for e in reg.history()]
    assert events == [("promote", a.id), ("promote", b.id), ("promote", c.id),
                      ("rollback", b.id), ("rollback", a.id)]
    assert reg.history()[1]["reason"] == "AP 0.7 > 0.6"
    assert json.loads((tmp_path / "current.json").read_text())["id"] == a.id


def test_unknown_version_error_names_it_and_lists_known(tmp_path):
    reg = Registry(tmp_path)
    ids = [reg.add(_files(tmp_path / f"s{i}", i), meta={}).id for i in range(8)]
    with pytest.raises(RegistryError) as err:
        reg.promote("v0042-20260101T000000")
    msg = str(err.value)
    assert "'v0042-20260101T000000'" in msg and ids[0] in msg and ids[-1] in msg and "..." in msg
    with pytest.raises(RegistryError, match="unknown version 'nope'"):
        reg.get("nope")
    with pytest.raises(RegistryError, match="unknown version"):
        reg.add(_files(tmp_path / "p", 9), meta={}, parent="nope")


def test_bad_add_leaves_no_trace(tmp_path):
    reg = Registry(tmp_path / "reg")
    with pytest.raises(RegistryError, match="not found"):
        reg.add({"checkpoint.pth": tmp_path / "missing.pth"}, meta={})
    with pytest.raises(RegistryError, match="plain name"):
        reg.add({"../x.pth": _files(tmp_path / "s", 1)["checkpoint.pth"]}, meta={})
    with pytest.raises(RegistryError, match="JSON"):
        reg.add(_files(tmp_path / "s", 1), meta={"when": object()})
    assert reg.list() == [] and [p.name for p in (tmp_path / "reg").iterdir()] == ["versions"]


def test_partial_dirs_are_ignored(tmp_path):
    reg = Registry(tmp_path)
    v = reg.add(_files(tmp_path / "s", 1), meta={})
    (tmp_path / ".tmp-crashed").mkdir()
    (tmp_path / "versions" / "junk").mkdir()
    assert reg.list() == [v]


# ---- concurrency (separate processes, as the Nuclio function and the trainer are) -------------
def _reader(root: str, stop, out) -> None:
    """Poll current() and read the checkpoint until told to stop; report problems."""
    reg, reads, seen, problems = Registry(root), 0, set(), []
    while not stop.is_set() or reads == 0:
        try:
            version = reg.current()
            if version is None:
                continue
            data = version.checkpoint.read_bytes()
            if hashlib.sha256(data).hexdigest() != version.meta["checksum"]:
                problems.append(f"{version.id}: checksum mismatch ({len(data)} bytes)")
            reads += 1
            seen.add(version.id)
        except Exception as e:  # noqa: BLE001 - any failure is what the test looks for
            problems.append(f"{type(e).__name__}: {e}")
    out.put({"reads": reads, "seen": len(seen), "problems": problems[:5]})


def _writer(root: str, src: str, n: int, promote: bool, out) -> None:
    reg, ids = Registry(root), []
    for i in range(n):
        files = _files(Path(src) / str(i), i, size=CKPT_BYTES)
        v = reg.add(files, meta={"checksum": _sha(files["checkpoint.pth"])})
        reg.update_meta(v.id, metrics={"AP": i / n})
        if promote:
            reg.promote(v.id)
        ids.append(v.id)
    out.put(ids)


def test_reader_never_sees_partial_state(tmp_path):
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(str(tmp_path / "reg"), stop, out))
    Registry(tmp_path / "reg")
    reader.start()
    time.sleep(0.3)  # let the reader start polling an empty registry
    writer_out = ctx.Queue()
    _writer(str(tmp_path / "reg"), str(tmp_path / "src"), 20, True, writer_out)
    reg = Registry(tmp_path / "reg")
    for _ in range(30):  # keep switching so the reader crosses many swaps
        reg.rollback()
        reg.promote(reg.list()[-1].id)
    time.sleep(0.2)
    stop.set()
    result = out.get(timeout=30)
    reader.join(timeout=30)
    assert result["problems"] == []
    assert result["reads"] > 1000 and result["seen"] >= 2, result


def test_concurrent_writers_get_unique_ids(tmp_path):
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    root = str(tmp_path / "reg")
    Registry(root)
    procs = [ctx.Process(target=_writer, args=(root, str(tmp_path / f"src{k}"), 10, k == 0, out))
             for k in range(2)]
    for p in procs:
        p.start()
    ids = out.get(timeout=60) + out.get(timeout=60)
    for p in procs:
        p.join(timeout=30)
    assert len(set(ids)) == 20
    listed = Registry(root).list()
    assert [v.id for v in listed] == sorted(ids, key=lambda i: int(i[1:5]))
    assert [int(v.id[1:5]) for v in listed] == list(range(1, 21))
    assert all(isinstance(v, Version) and v.metrics for v in listed)


def test_previous_is_the_version_promoted_before_else_the_parent(tmp_path):
    reg = Registry(tmp_path)
    a = reg.add(_files(tmp_path / "s0", 0), meta={})
    b = reg.add(_files(tmp_path / "s1", 1), meta={}, parent=a.id)
    assert reg.previous(b.id) == a.id  # nothing promoted yet: the parent
    assert reg.previous(a.id) is None
    c = reg.add(_files(tmp_path / "s2", 2), meta={})
    reg.promote(c.id)
    reg.promote(b.id)
    assert reg.previous(b.id) == c.id


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can create files for another user")
def test_root_writer_leaves_files_the_folder_owner_can_write(tmp_path):
    """The Nuclio function (root) registers the initial model into a folder the trainer (uid 1000) owns."""
    root = tmp_path / "registry"
    root.mkdir()
    os.chown(root, 1000, 1000)
    registry = Registry(root)
    version = registry.add(_files(tmp_path / "src", 0), meta={"note": "initial"})
    registry.promote(version.id)
    registry.update_meta(version.id, metrics={"overall": {"AP": 0.1}})
    with registry._stage() as staged:  # killed here, the trainer must be able to test its lock and remove it
        created = [p for p in root.rglob("*")]
    assert {p.name for p in created} >= {".lock", "history.jsonl", "current.json", "versions", "meta.json",
                                         staged.name, ".writer.lock"}
    assert [str(p) for p in created if p.stat().st_uid != 1000] == []


# a writer in its own process that stops after staging its files (prints the staging dir) until told to go on
PAUSED_WRITER = """
import sys
import cals.registry as registry

copy = registry._copy_synced

def paused(src, dst):
    digest = copy(src, dst)
    print(dst.parent.name, flush=True)
    sys.stdin.readline()
    return digest

registry._copy_synced = paused
print(registry.Registry(sys.argv[1]).add({"checkpoint.pth": sys.argv[2]}, meta={}).id, flush=True)
"""


def _paused_writer(root: Path, source: Path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WRITER, str(root), str(source)], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return proc, root / proc.stdout.readline().strip()


def test_cleaning_removes_a_killed_writers_staging_and_never_a_live_ones(tmp_path):
    """Each writer holds its own staging dir's lock: a killed writer's dir goes even while another
    process is writing a version, and the live writer's dir stays and becomes its version."""
    import signal

    registry = Registry(tmp_path / "registry")
    files = _files(tmp_path / "src", 1, size=CKPT_BYTES)
    current = registry.promote(registry.add(files, meta={}).id)
    live, live_dir = _paused_writer(registry.root, files["checkpoint.pth"])
    killed, killed_dir = _paused_writer(registry.root, files["checkpoint.pth"])
    try:
        assert live_dir.is_dir() and killed_dir.is_dir() and live_dir != killed_dir
        assert registry.clean_staging() == [] and live_dir.is_dir() and killed_dir.is_dir()
        killed.send_signal(signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
        legacy = registry.root / ".tmp-before-writer-locks"  # staged by a release without writer locks
        legacy.mkdir()
        half_json = registry.root / ".current.json.x1y2.tmp"
        half_json.write_text("{")

        assert sorted(registry.clean_staging()) == sorted([killed_dir, legacy, half_json])
        assert live_dir.is_dir() and not killed_dir.exists() and not legacy.exists() and not half_json.exists()

        out, _ = live.communicate("go\n", timeout=30)
    finally:
        for proc in (live, killed):
            proc.kill()
            proc.wait()
    assert live.returncode == 0
    assert [v.id for v in registry.list()] == [current.id, out.strip()] and not live_dir.exists()
    assert registry.current().id == current.id and _sha(registry.get(out.strip()).checkpoint) == _sha(
        files["checkpoint.pth"])
    assert list(registry.root.glob(".tmp-*")) == [] and registry.clean_staging() == []
