"""Watch a running mmengine training from another thread: iteration, epoch and loss.

`cals.model.train.train` owns its Runner; the Runner publishes its state on mmengine's
MessageHub (RuntimeInfoHook: `iter`, `epoch`, `max_iters`, scalar `train/loss`). Reading it
from a poller thread gives a status endpoint live numbers without changing train().
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)
Callback = Callable[[dict[str, Any]], None]


def snapshot() -> dict[str, Any] | None:
    """The current Runner's progress, or None before a Runner published anything."""
    from mmengine.logging import MessageHub

    try:
        hub = MessageHub.get_current_instance()
    except Exception:  # noqa: BLE001 - mmengine raises bare errors before the first instance
        return None
    info = hub.runtime_info
    if "max_iters" not in info:
        return None
    # `iter` is the 0-based iteration in progress (set before it runs): report it 1-based
    out: dict[str, Any] = {"iteration": int(info.get("iter", 0)) + 1, "max_iterations": int(info["max_iters"]),
                           "epoch": int(info.get("epoch", 0)), "max_epochs": info.get("max_epochs")}
    loss = hub.log_scalars.get("train/loss")
    if loss is not None and loss.data[0].size:
        out["loss"] = round(float(loss.current()), 6)
    return out


@contextlib.contextmanager
def watch_training(callback: Callback, *, every: float = 0.5) -> Iterator[None]:
    """Call `callback(snapshot)` every `every` seconds (and once at the end) while inside."""
    from mmengine.logging import MessageHub

    stop = threading.Event()
    baseline = id(MessageHub.get_current_instance())  # the hub before this training's Runner

    def poll() -> None:
        while not stop.wait(every):
            _report(callback, baseline)

    thread = threading.Thread(target=poll, name="cals-train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        _report(callback, baseline)


def _report(callback: Callback, baseline: int) -> None:
    from mmengine.logging import MessageHub

    if id(MessageHub.get_current_instance()) == baseline:
        return  # the new Runner has not started yet: do not report the previous run's numbers
    try:
        state = snapshot()
        if state is not None:
            callback(state)
    except Exception:  # noqa: BLE001 - progress must never break training
        log.exception("progress callback failed")
