"""What the soak runs and how it starts, kills and restarts it: the services as compose runs them.

The trainer and the sampler are `python -m trainer` and `python -m sampler serve` (gunicorn, as
their images run them) with deploy/.env's settings and compose's in-container overrides: the CVAT
address (here a proxy in front of CVAT, so the soak can cut it off), the shared registry and data
folders, the bind address. Each runs in a session of its own, so a kill takes its whole process
tree, as `docker kill` does a container's.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """One service process tree: start, health wait, SIGKILL of the tree, graceful stop."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], url: str, log: Path) -> None:
        self.name, self.argv, self.env, self.url, self.log = name, argv, env, url, log
        self.process: subprocess.Popen | None = None
        self.started_at: list[float] = []  # when each start answered /health

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process and self.process.poll() is None else None

    def start(self, timeout: float = 300) -> None:
        with self.log.open("a") as log:
            log.write(f"\n--- soak: start {self.name} ({time.strftime('%H:%M:%S')}) ---\n")
            self.process = subprocess.Popen([sys.executable, *self.argv], env=self.env, cwd=ROOT, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode} at start; see {self.log}")
            if self.healthy():
                self.started_at.append(time.time())
                return
            time.sleep(1)
        raise RuntimeError(f"{self.name} did not answer /health within {timeout} s; see {self.log}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL to the whole tree, no cleanup, as the kernel's OOM killer or `docker kill` does."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 60) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def tree(self) -> list[int]:
        """The service's live processes: its session (gunicorn master, worker, training or scoring ranks)."""
        if self.pid is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getsid(int(entry.name)) == self.pid:
                        found.append(int(entry.name))
                except OSError:
                    pass
        return found


def service_env(values: dict[str, str], overrides: dict[str, str]) -> dict[str, str]:
    """The environment compose gives a service: the host's, deploy/.env's, then its own overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALS_")}
    env.update(values)
    env.update(overrides)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class TmpfsRegistry:
    """The registry on a small tmpfs of its own, so the disk-full fault fills a real file system."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path, self.size_mb, self.mounted = path, size_mb, False

    def mount(self) -> str | None:
        """Mount it; None, or why not (then the fault is skipped and says so)."""
        self.path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            return f"cannot mount a tmpfs at {self.path}: {done.stderr.strip() or done.returncode}"
        self.mounted = True
        return None

    def fill(self, leave_kb: int = 512) -> Path:
        """A ballast file that leaves `leave_kb` free: the next version write meets ENOSPC."""
        stat = os.statvfs(self.path)
        ballast = self.path / ".soak-ballast"
        size = stat.f_bavail * stat.f_frsize - leave_kb * 1024
        with ballast.open("wb") as out:
            chunk = b"\0" * (1 << 20)
            while size > 0:
                out.write(chunk[:min(size, len(chunk))])
                size -= len(chunk)
        return ballast

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)
            self.mounted = False
