"""An mmengine hook that shows training as a tqdm bar and remembers the loss curve."""
from __future__ import annotations

from mmengine.hooks import Hook
from tqdm import tqdm


class ProgressHook(Hook):
    """Progress bar over iterations with the running loss; `losses` keeps every value."""

    priority = "VERY_LOW"

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.losses: list[float] = []
        self._bar = None

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

    def after_train(self, runner) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
