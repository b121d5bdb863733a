"""An mmengine hook that shows training as a tqdm bar, remembers the loss curve and reports
progress to a callback (the trainer's run status), from inside the Runner."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from mmengine.hooks import Hook
from tqdm import tqdm

log = logging.getLogger(__name__)
Report = Callable[[dict[str, Any]], None]


class ProgressHook(Hook):
    """Progress bar over iterations with the running loss; `losses` keeps every value; `report`
    gets {"iteration" (done), "max_iterations", "epoch", "max_epochs", "loss"} at most every
    `every` seconds and after the last iteration."""

    priority = "VERY_LOW"

    def __init__(self, enabled: bool = True, report: Report | None = None, every: float = 0.5):
        self.enabled = enabled
        self.report, self.every = report, every
        self.losses: list[float] = []
        self._bar = None
        self._reported = 0.0

    def before_train(self, runner) -> None:
        self.losses = []
        if self.enabled:
            self._bar = tqdm(total=runner.max_iters, desc="training", unit="it", dynamic_ncols=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if outputs and "loss" in outputs:
            self.losses.append(float(outputs["loss"]))
        if self._bar is not None:
            self._bar.update(1)
            if self.losses:
                self._bar.set_postfix(loss=f"{self.losses[-1]:.2e}", refresh=False)
        last = runner.iter + 1 >= runner.max_iters
        if self.report is not None and (last or time.monotonic() - self._reported >= self.every):
            self._reported = time.monotonic()
            self._send(runner)

    def _send(self, runner) -> None:
        state = {"iteration": runner.iter + 1, "max_iterations": runner.max_iters, "epoch": runner.epoch,
                 "max_epochs": getattr(runner, "max_epochs", None)}
        if self.losses:
            state["loss"] = round(self.losses[-1], 6)
        try:
            self.report(state)
        except Exception:  # noqa: BLE001 - progress must never break training
            log.exception("progress report failed")

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
