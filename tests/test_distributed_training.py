"""`cals train` under torchrun on a CPU host: two processes (gloo), one version.

What a user relies on when they scale training out: both processes finish, exactly one version is
registered (by rank 0, with the world size in its meta.json), the ranks end with the same weights
(gradients were averaged) although each trained on other people (the data was split), and the
registered weights are those weights, changed by training.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from cals.registry import Registry

pytestmark = pytest.mark.slow  # trains or serves models: make test starts these files first


def torchrun(*args: str, cwd, hosts: int = 1) -> tuple[list[int], str, str]:
    """`cals train` as 2 processes: on one host (--standalone), or as one process on each of 2
    "hosts" that meet at a rendezvous endpoint (docs/scale-out.md's multi-host command; here both on
    127.0.0.1). Returns the exit codes, stdout and stderr of every launcher."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    if hosts == 1:
        launchers = [["--standalone", "--nproc_per_node", "2"]]
    else:
        endpoint = f"127.0.0.1:{free_port()}"
        launchers = [["--nnodes", str(hosts), "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                      "--rdzv_endpoint", endpoint, "--rdzv_id", "cals-test"]] * hosts
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "cals", "train", *args],
                              cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for launcher in launchers]
    outputs = [p.communicate(timeout=600) for p in procs]
    return [p.returncode for p in procs], "".join(o for o, _ in outputs), "".join(e for _, e in outputs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest_of(version) -> str:
    from cals.model.ddp import weights_digest
    from cals.model.predict import load_model

    model, _, _ = load_model(version.path)
    return weights_digest(model)


@pytest.mark.parametrize("how", ["fine-tune cpu", "rtmpose-m from scratch", "two hosts, rendezvous"])
def test_two_processes_train_one_model_on_split_data(how, trained, synthetic, tmp_path):
    registry_root = tmp_path / "registry"  # shared by the "hosts", as docs/scale-out.md asks
    if how != "rtmpose-m from scratch":  # what every trainer round does: fine-tune the current version
        shutil.copytree(trained[0].root, registry_root)
        model_args = ["--init", "current", "--iters", "4", "--batch-size", "4"]
    else:  # the architecture users deploy
        model_args = ["--config", "rtmpose-m", "--iters", "2", "--batch-size", "2"]
    registry = Registry(registry_root)
    before = {v.id for v in registry.list()} if registry_root.exists() else set()
    current = registry.current().id if before else None

    codes, stdout, stderr = torchrun("--data", str(synthetic / "train"), "--registry", str(registry_root), *model_args,
                                     "--progress-jsonl", "--rank-report", str(tmp_path / "ranks"), cwd=tmp_path,
                                     hosts=2 if how.startswith("two hosts") else 1)

    assert codes == [0] * len(codes), stderr[-3000:]
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert any("progress" in line for line in lines), "rank 0 reports progress"
    new = {v.id for v in registry.list()} - before
    assert new == {lines[-1]["version"]}, "exactly one version, the one printed"
    version = registry.get(lines[-1]["version"])
    assert version.meta["world_size"] == 2
    if current:
        assert version.parent == current and registry.current().id == current, "a fine-tuned round is not promoted"

    reports = sorted((json.loads(p.read_text()) for p in (tmp_path / "ranks").glob("rank-*.json")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1]
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"], "gradients are averaged across ranks"
    seen = [{p["annotation"] for p in r["first_iteration"]} for r in reports]
    assert seen[0] and seen[1] and not seen[0] & seen[1], "each rank trains on other people"
    assert digest_of(version) == reports[0]["weights_sha256"], "the registered weights are the ranks' weights"
    if current:
        assert digest_of(registry.get(current)) != digest_of(version), "training changed the weights"
