"""Pinned pretrained files: downloads and local copies are checked by sha256, a mismatch keeps nothing,
and `cals train --init` takes a checkpoint by path, file:// URL or http(s) URL.

Downloads come from a local HTTP server serving small files (no network); the shipped pins are checked
in tests/test_function_spec.py and against ../shared's detector.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from cals.errors import CalsError
from cals.model import pretrained
from cals.model.checkpoint import fetch
from cals.model.pretrained import DETECTOR, POSE, Pretrained, install
from tests.trainer_helpers import running


@contextlib.contextmanager
def http_folder(root: Path) -> Iterator[str]:
    """http://127.0.0.1:PORT serving `root`, for the length of the block."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    with running(ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))) as url:
        yield url


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    with http_folder(root) as url:
        yield url, root


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CALS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints"


def test_a_download_of_a_pinned_url_is_checked_and_a_mismatch_keeps_nothing(served, cache, monkeypatch):
    url, root = served
    (root / "pose.pth").write_bytes(b"the pinned bytes")
    monkeypatch.setattr(pretrained, "PRETRAINED", (Pretrained("pose", "test checkpoint", f"{url}/pose.pth",
                                                              sha(b"the pinned bytes"), "pose.pth"),))
    assert fetch(f"{url}/pose.pth").read_bytes() == b"the pinned bytes"
    (root / "pose.pth").write_bytes(b"re-uploaded bytes")
    (cache / "pose.pth").write_bytes(b"a truncated old download")  # a bad cache is downloaded again
    with pytest.raises(CalsError, match=f"download of {url}/pose.pth has sha256 {sha(b're-uploaded bytes')}, "
                                        f"expected {sha(b'the pinned bytes')}"):
        fetch(f"{url}/pose.pth")
    assert list(cache.iterdir()) == []  # neither the file nor a partial one


def test_a_url_fragment_pins_any_download(served, cache):
    url, root = served
    (root / "other.pth").write_bytes(b"other weights")
    with pytest.raises(CalsError, match="a changed or corrupt file"):
        fetch(f"{url}/other.pth#sha256={sha(b'something else')}")
    assert not (cache / "other.pth").exists()
    assert fetch(f"{url}/other.pth#sha256={sha(b'other weights')}").read_bytes() == b"other weights"
    assert fetch(f"{url}/other.pth").read_bytes() == b"other weights"  # no pin known: cached as is


def test_the_rtmpose_m_configs_checkpoint_url_is_pinned():
    """`cals train --init` with the URL the rtmpose-m config names is checked like the image's download."""
    from mmengine.config import Config

    from cals.model.config import config_path

    url = Config.fromfile(config_path("rtmpose-m")).coco_checkpoint
    assert url == POSE.url and pretrained.pinned_sha256(url) == POSE.sha256
    assert pretrained.pinned_sha256(DETECTOR.url) is None  # a zip: only its end2end.onnx is pinned


def test_local_files_and_file_urls(tmp_path):
    path = tmp_path / "a b.pth"
    path.write_bytes(b"weights")
    assert fetch(str(path)) == path
    assert fetch(path.as_uri()) == path
    assert fetch(f"{path.as_uri()}#sha256={sha(b'weights')}") == path
    with pytest.raises(CalsError, match=r"checkpoint .*a b.pth has sha256"):
        fetch(path.as_uri(), sha256=sha(b"other"))
    assert path.exists()  # a user's own file is never deleted
    with pytest.raises(CalsError, match="checkpoint not found"):
        fetch((tmp_path / "missing.pth").as_uri())


def test_an_unreachable_url_is_one_line(tmp_path, cache):
    with pytest.raises(CalsError, match="cannot download http://127.0.0.1:9/x.pth"):
        fetch("http://127.0.0.1:9/x.pth")


def detector_zip(path: Path, onnx: bytes) -> Path:
    """A zip shaped like mmdeploy's SDK zip: end2end.onnx nested in a folder with other files."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("rtmdet-nano/pipeline.json", "{}")
        z.writestr("rtmdet-nano/end2end.onnx", onnx)
    return path


def test_install_takes_the_detector_from_a_zip_a_folder_or_the_file(served, tmp_path):
    url, root = served
    onnx = b"fake onnx"
    detector_zip(root / "det.zip", onnx)
    folder = tmp_path / "unzipped" / "rtmdet-nano"
    folder.mkdir(parents=True)
    (folder / "end2end.onnx").write_bytes(onnx)
    sources = [f"{url}/det.zip", str(root / "det.zip"), str(folder.parent), str(folder / "end2end.onnx")]
    for i, source in enumerate(sources):
        target = install(DETECTOR, tmp_path / f"models{i}", source, sha(onnx))
        assert target == tmp_path / f"models{i}" / "rtmdet-nano-person" / "end2end.onnx"
        assert target.read_bytes() == onnx and [p.name for p in target.parent.iterdir()] == ["end2end.onnx"]


def test_install_refuses_what_is_not_pinned(tmp_path):
    fake = tmp_path / "pose.pth"
    fake.write_bytes(b"not the release")
    models = tmp_path / "models"
    with pytest.raises(CalsError) as e:
        install(POSE, models, str(fake))
    assert str(e.value) == (f"RTMPose-m checkpoint (AIC+COCO, COCO's 17 points) {fake} has sha256 "
                            f"{sha(b'not the release')}, expected {POSE.sha256}: a changed or corrupt file "
                            "(to use another file, set CALS_POSE_SHA256 to its sha256)")
    assert not (models / POSE.file).exists() and fake.exists()
    with pytest.raises(CalsError, match="holds no end2end.onnx"):
        install(DETECTOR, models, str(tmp_path))
    with pytest.raises(CalsError, match="no RTMPose-m checkpoint .* and no source: set CALS_POSE_URL or CALS_POSE_FILE"):
        install(POSE, models, "")


def test_the_cli_prints_one_line_and_fails(tmp_path, capsys):
    fake = tmp_path / "pose.pth"
    fake.write_bytes(b"x")
    assert pretrained.main([str(tmp_path / "models"), "--pose", str(fake)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cals: error: RTMPose-m checkpoint") and POSE.sha256 in err
    assert pretrained.main([str(tmp_path / "models"), "--pose", str(fake), "--pose-sha256", sha(b"x")]) == 0
    assert pretrained.main([str(tmp_path / "models"), "--all"]) == 1  # what is there is checked against the pin
    assert f"{tmp_path / 'models' / POSE.file} has sha256" in capsys.readouterr().err
    assert pretrained.main([str(tmp_path / "models"), "--all", "--pose-sha256", sha(b"x")]) == 1  # no detector
    assert "no RTMDet-nano person detector" in capsys.readouterr().err


@pytest.fixture(scope="module")
def coco17_checkpoint(tmp_path_factory) -> Path:
    """A COCO-17 checkpoint of the `cpu` architecture (random weights), as a release would be."""
    from mmpose.registry import MODELS

    from cals.model import mm_imports
    from cals.model.checkpoint import COCO17_NAMES, save_checkpoint
    from cals.model.config import build_config
    from cals.schema import Schema

    mm_imports.setup()
    coco17 = Schema.from_dict({"points": [{"name": n} for n in COCO17_NAMES]})
    state = MODELS.build(build_config("cpu", coco17).model).state_dict()
    return save_checkpoint(state, tmp_path_factory.mktemp("release") / "coco17.pth", {})


@pytest.mark.parametrize("how", ["file-url", "http-url"])
def test_cals_train_init_takes_a_url(coco17_checkpoint, synthetic, served, cache, tmp_path, capsys, how):
    from cals.cli import main
    from cals.registry import Registry

    url, root = served
    (root / "coco17.pth").write_bytes(coco17_checkpoint.read_bytes())
    digest = pretrained.sha256_of(coco17_checkpoint)
    init = coco17_checkpoint.as_uri() if how == "file-url" else f"{url}/coco17.pth#sha256={digest}"
    args = ["train", "--data", str(synthetic / "val"), "--registry", str(tmp_path / "reg"), "--config", "cpu",
            "--iters", "1", "--batch-size", "2", "--init", init]
    assert main(args) == 0
    version = Registry(tmp_path / "reg").current()
    assert version.id == capsys.readouterr().out.strip() and version.meta["init"] == init
    assert version.meta["iterations"] == 1
    if how == "http-url":
        assert pretrained.sha256_of(cache / "coco17.pth") == digest
        assert main(args[:-1] + [f"{url}/coco17.pth#sha256={sha(b'other')}"]) == 1  # the cached copy is checked
        assert "a changed or corrupt file" in capsys.readouterr().err
