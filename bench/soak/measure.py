"""What the soak records while it runs: auto-annotation load with its latencies, and per-minute samples
of each process's memory and open files, the services' health, CVAT's webhook deliveries and the
trainer's runs."""
from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

from tests.test_lambda_manager import AUTH


def api_json(client, method: str, path: str, body: Any = None, timeout: float = 120) -> tuple[int, Any]:
    """(status, JSON) of one CVAT REST call with the client's login, raw: cvat-sdk 2.80's models are newer
    than CVAT 2.23's answers (the harness's README), so they must not parse them."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    _, response = client.api_client.call_api(path, method, header_params=headers, body=body, auth_settings=AUTH,
                                              _parse_response=False, _check_status=False,
                                              _request_timeout=timeout)
    return response.status, json.loads(response.data) if response.data else None


def get_json(url: str, timeout: float = 10) -> tuple[int, Any]:
    """(status, JSON) of a GET to a service; (0, reason) when it does not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")[:300]
    except OSError as exc:
        return 0, str(exc)


class Load(threading.Thread):
    """AI-tools calls at a steady rate: CVAT's POST /api/lambda/functions/<name> on a pool frame, which
    CVAT answers by invoking the function (nothing is stored). Each call: (t, seconds, status)."""

    def __init__(self, connect: Callable, function: str, task_id: int, frames: int, mapping: dict,
                 every: float) -> None:
        super().__init__(daemon=True, name="soak-load")
        self.connect, self.function, self.task_id, self.frames = connect, function, task_id, frames
        self.mapping, self.every = mapping, every
        self.calls: list[tuple[float, float, int, str]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        rng = random.Random(0)
        client = self.connect()
        next_at = time.monotonic()
        while not self.halt.is_set():
            body = {"task": self.task_id, "frame": rng.randrange(self.frames), "mapping": self.mapping,
                    "cleanup": False, "conv_mask_to_poly": False}
            t0, wall = time.monotonic(), time.time()
            try:
                status, answer = api_json(client, "POST", f"/api/lambda/functions/{self.function}", body, timeout=120)
                detail = "" if status == 200 else str(answer)[:200]
            except Exception as exc:  # connection refused while CVAT restarts, a timeout
                status, detail = 0, f"{type(exc).__name__}: {exc}"[:200]
                time.sleep(2)
                try:
                    client = self.connect()
                except Exception:
                    pass
            self.calls.append((wall, time.monotonic() - t0, status, detail))
            next_at += self.every
            self.halt.wait(max(0.0, next_at - time.monotonic()))


def process_memory(pid: int) -> tuple[int, int] | None:
    """(RSS in kB, open files) of one process; None once it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return rss, len(list(Path(f"/proc/{pid}/fd").iterdir()))
    except (OSError, StopIteration):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


class Sampler(threading.Thread):
    """Every `every` seconds, one sample: per role, the service's own processes (the gunicorn master and
    worker, whose memory must not grow) apart from the short-lived ones it starts (training processes)."""

    def __init__(self, roles: Callable[[], dict[str, list[int]]], extra: Callable[[], dict], every: float) -> None:
        super().__init__(daemon=True, name="soak-sampler")
        self.roles, self.extra, self.every = roles, extra, every
        self.samples: list[dict] = []
        self.halt = threading.Event()

    def sample(self) -> dict:
        out: dict[str, Any] = {"t": time.time(), "processes": {}}
        for role, pids in self.roles().items():
            if not pids:
                out["processes"][role] = None
                continue
            lead = cmdline(min(pids))
            own = [p for p in pids if cmdline(p) == lead]
            measured = {p: process_memory(p) for p in pids}
            kept = [m for p, m in measured.items() if m and p in own]
            others = [m for p, m in measured.items() if m and p not in own]
            out["processes"][role] = {"rss_mb": round(sum(m[0] for m in kept) / 1024, 1),
                                      "open_files": sum(m[1] for m in kept), "processes": len(kept),
                                      "children_rss_mb": round(sum(m[0] for m in others) / 1024, 1)}
        out.update(self.extra())
        return out

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # a sample must never stop the soak
                self.samples.append({"t": time.time(), "error": f"{type(exc).__name__}: {exc}"})
            self.halt.wait(self.every)
